"""``%nbray debug [TASK_ID]``: re-run a failed task in the kernel, under the debugger.

Runs in the notebook kernel (any IPython shell). The kernel, as a driver,
owns the tasks it submits and keeps a bounded record of those that raised
(read through ``nbray.driver_hooks``: the function, the arguments, and for
ObjectRef arguments only their ids). This module rebuilds the call from
that record, runs it here, and opens IPython's debugger on the frame that
raised (a post-mortem of the local re-run).

Also here: the one-line hint under a failed task's traceback in the
notebook (``install_error_hint``), pointing at ``%nbray debug``.

Bad input gets a one-line message and no traceback: an unknown task id, a
task that did not fail (or that another process submitted), an actor
method (its state lives in the actor), arguments that were freed or too
large to keep, client mode (the tasks' owner is the client server, not
the kernel), and the Ray backend (Ray keeps no such record).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbray import driver_hooks
from nbray.jupyter import backends

if TYPE_CHECKING:
    from nbray.driver_hooks import FailedTask, FailedTaskLog, RefArgument

NOT_ON_RAY = ("[nbray] %nbray debug is not available on the Ray backend: Ray keeps no record of failed tasks "
              "to re-run in the kernel")
USAGE = "usage: %nbray debug [TASK_ID]   (default: the last task submitted from this kernel that raised)"
FETCH_TIMEOUT_S = 30.0


class CannotDebug(Exception):
    """A one-line reason why a task cannot be re-run here."""


class _Gone(Exception):
    """An ObjectRef argument whose object was freed."""


# ---- pure parts -------------------------------------------------------------------------------------


def parse_line(line: str) -> str | None:
    """The task id of ``debug [TASK_ID]`` (None: the last failed task).
    Raises CannotDebug with the usage for anything else."""
    words = line.split()
    if not words or words[0] != "debug":
        raise CannotDebug(USAGE)
    if len(words) == 1:
        return None
    if len(words) > 2 or words[1] in ("-h", "--help"):
        raise CannotDebug(USAGE)
    task_id = words[1].lower()
    if len(task_id) < 4 or any(c not in "0123456789abcdef" for c in task_id):
        raise CannotDebug(f"{words[1]!r} is not a task id (hex, as ref.task_id().hex() or the task list shows)")
    return task_id


def choose(log: FailedTaskLog, task_id: str | None) -> FailedTask:
    """The record to debug. Raises CannotDebug (one line) when there is none."""
    if task_id is None:
        record = log.latest()
        if record is None:
            raise CannotDebug("no task submitted from this kernel has failed (yet)")
    else:
        record = log.find(task_id)
    if record is None:
        known = ", ".join(t.task_id.hex()[:12] for t in reversed(log.all())) or "none"
        raise CannotDebug(f"no failed task {task_id}: it did not fail, was not submitted from this kernel, or is "
                          f"older than the last {log.max_tasks} failures kept (kept: {known})")
    if record.is_actor_task:
        raise CannotDebug(f"task {record.name} is an actor method: its state lives in the actor, so it cannot "
                          "be re-run in the kernel")
    return record


def place(args: list[Any], kwargs: dict[str, Any], position: int, keyword: str, value: Any) -> None:
    if position >= 0:
        args[position] = value
    else:
        kwargs[keyword] = value


def argument_label(ref: RefArgument) -> str:
    where = f"argument {ref.position}" if ref.position >= 0 else f"keyword argument {ref.keyword!r}"
    return f"{where} (ObjectRef {ref.object_id.hex()[:16]}…)"


def rebuild_call(record: FailedTask, load_function: Callable[[bytes], Any], deserialize: Callable[[bytes], Any],
                 fetch: Callable[[RefArgument], Any]) -> tuple[Any, list[Any], dict[str, Any]]:
    """(function, args, kwargs) of a failed task. ``fetch`` gives an
    ObjectRef argument's value or raises _Gone(reason). Raises CannotDebug
    naming every argument that is missing, and why."""
    if not record.function_body:
        raise CannotDebug(f"the function of task {record.name} is no longer known to this kernel")
    if record.args_pickle is None:
        raise CannotDebug(f"cannot re-run {record.name}: {record.args_dropped_reason}")
    args, kwargs = deserialize(record.args_pickle)
    args, kwargs = list(args), dict(kwargs)
    gone: list[str] = []
    for ref in record.ref_args:
        if ref.inline_value is not None:
            place(args, kwargs, ref.position, ref.keyword, deserialize(ref.inline_value))
            continue
        try:
            place(args, kwargs, ref.position, ref.keyword, fetch(ref))
        except _Gone as exc:
            gone.append(f"{argument_label(ref)} {exc}")
    if gone:
        raise CannotDebug(f"cannot re-run {record.name}: " + "; ".join(gone))
    return load_function(record.function_body), args, kwargs


def hint_line(task_id: bytes, is_latest: bool) -> str:
    command = "%nbray debug" if is_latest else f"%nbray debug {task_id.hex()}"
    return f"[nbray] To re-run this task here under the debugger: {command}"


# ---- the kernel side --------------------------------------------------------------------------------


def _owner_core() -> Any:
    if driver_hooks.runtime() is None:
        raise CannotDebug("not connected to an nbray cluster: run %nbray init first")
    core = driver_hooks.driver_core()
    if core is None:
        raise CannotDebug("post-mortem debugging needs the kernel to be a driver of the cluster (%nbray init "
                          "HOST:PORT); in client mode the tasks' owner is the client server")
    return core


def _fetcher(core: Any) -> Callable[[RefArgument], Any]:
    from nbray.object_ref import ObjectRef

    def fetch(ref: RefArgument) -> Any:
        if not driver_hooks.object_referenced(core, ref.object_id):
            # The record keeps ids only, never the objects: it must not make them outlive the program's refs.
            raise _Gone("is gone: no reference to it was left, so the object was freed (keep a reference, "
                        "e.g. a variable holding the ObjectRef, to debug with it)")
        import nbray

        return nbray.get(ObjectRef(ref.object_id, ref.owner), timeout=FETCH_TIMEOUT_S)

    return fetch


def post_mortem(tb: Any) -> None:
    """IPython's debugger on the innermost frame of `tb`."""
    from IPython.core.debugger import Pdb

    debugger = Pdb()
    debugger.reset()
    debugger.interaction(None, tb)


def run(line: str, debugger: Callable[[Any], None] = post_mortem) -> None:
    """``%nbray debug [TASK_ID]``: prints a one-line message instead of raising for bad input."""
    if backends.current().name == "ray":
        print(NOT_ON_RAY)
        return
    try:
        record = choose(_log(), parse_line(line))
        from nbray.common.serialization import deserialize, loads_function

        function, args, kwargs = rebuild_call(record, loads_function, deserialize, _fetcher(_owner_core()))
    except CannotDebug as exc:
        print(f"[nbray] {exc}")
        return
    print(f"[nbray] re-running {record.name} (task {record.task_id.hex()[:16]}…) in the kernel")
    try:
        function(*args, **kwargs)
    except BaseException:  # whatever it raises is what the user wants to look at
        _, error, tb = sys.exc_info()
        print(f"[nbray] it raised {type(error).__name__}: {error}")
        debugger(tb.tb_next if tb is not None and tb.tb_next is not None else tb)
        return
    print(f"[nbray] {record.name} ran without an error in the kernel; its failure on the cluster may depend on "
          "the worker (its files, environment or node)")


def _log() -> FailedTaskLog:
    return driver_hooks.failed_task_log(_owner_core())


def install_error_hint(shell: Any) -> None:
    """Under the traceback of a failed task, a one-line hint to debug it."""
    from nbray.exceptions import RayTaskError

    if RayTaskError in getattr(shell, "custom_exceptions", ()):
        return

    def handler(shell: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        line = _hint_for(value)
        if line:
            print(line)

    shell.set_custom_exc((RayTaskError,), handler)


def _hint_for(error: Any) -> str:
    """The hint when a task of this kernel's record raised `error` ("" otherwise)."""
    try:
        log = _log()
    except CannotDebug:
        return ""
    name = getattr(error, "function_name", "")
    records = log.all()
    for record in reversed(records):
        if not record.is_actor_task and name and (record.name == name or record.name.endswith("." + name)
                                                  or name.endswith(record.name)):
            return hint_line(record.task_id, record is records[-1])
    return ""
