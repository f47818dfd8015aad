"""Building task-event reports for the GCS store's unit tests."""

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
