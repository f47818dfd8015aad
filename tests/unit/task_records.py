"""Building task-event reports for the GCS store's unit tests, and timers
the task-event buffer's tests fire by hand."""

from nbray.protocol import gcs_pb2


def record(tid, attempt=0, states=(), info=None, **kw):
    """A report for attempt `attempt` of task `tid`: (state, timestamp) pairs and optional info."""
    rec = gcs_pb2.TaskEventRecord(task_id=tid, attempt_number=attempt, **kw)
    for state, ts in states:
        rec.states.append(state)
        rec.state_ts_ns.append(ts)
    if info is not None:
        rec.info.CopyFrom(info)
        rec.has_info = True
    return rec


class ManualTimers:
    """A scheduler whose timers a test fires by hand."""

    def __init__(self):
        self.timers = []

    def schedule(self, delay_s, fn, *args):
        self.timers.append((delay_s, fn, args))

    def fire_all(self):
        timers, self.timers = self.timers, []
        for _, fn, args in timers:
            fn(*args)
