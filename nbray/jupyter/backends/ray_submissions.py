"""The Ray tasks each notebook cell submits, so that interrupting the cell cancels them.

Runs in the notebook kernel, for the Ray backend. Ray has no public callback
at task submission, and its driver forgets a task as soon as the notebook
drops the task's ObjectRef: after a fire-and-forget ``f.remote()``,
``ray.cancel`` can no longer reach the task ("No owner found for object").
Listing the task later (the state API, a second behind; or the driver's
pending children) therefore misses exactly the tasks an interrupt should
stop. So while the Ray backend is connected, ``SubmissionHook`` wraps Ray's
two submission methods, ``RemoteFunction._remote`` (every ``f.remote()`` and
``f.options(...).remote()``) and ``ActorMethod._remote`` (actor method
calls), and hands each ref they return to ``CellTasks``. On Ray Client
(``ray://``) ``f.remote()`` goes through Ray Client's stubs instead, so there
the hook wraps their ``remote``: ``ClientRemoteFunc``, ``ClientRemoteMethod``
and ``OptionWrapper`` (what ``.options(...)`` of either returns; their
``_remote`` calls it). Creating an actor is not wrapped: an interrupt stops
the actor's calls, not the actor. The wrappers pass every argument through
unchanged and return what Ray returned.

``CellTasks`` holds the refs of the running cell only, so an interrupt can
cancel them; refs of finished tasks are dropped in batches (``prune``), so a
cell that submits many short tasks does not keep their results pinned.
``cancel_tasks`` is the interrupt: ``ray.cancel`` each, then, after a grace
period, ``ray.cancel(force=True)`` the ones still running (Ray refuses force
for actor calls: those were asked once and are left at that). Refs are
matched by value, not identity: Ray Client's ``ray.wait`` answers with new
ref objects.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PRUNE_AT_REFS = 1000
"""When a cell holds this many refs, those of finished tasks are dropped (the
threshold then doubles over what is left, so pruning stays amortised O(1))."""
MAX_HELD_REFS = 1_000_000
"""At most this many refs are held per cell; beyond it the oldest are let go
(their tasks are then not cancelled by an interrupt)."""
_HOOK_MARK = "_nbray_submission_hook"


@dataclass
class TrackedTask:
    """One submission: the ref to cancel it by, and whether it is an actor call."""

    ref: Any
    """What ``ray.cancel`` takes: an ObjectRef, or a streaming task's ObjectRefGenerator."""
    actor_call: bool
    probe: Any = None
    """The ObjectRef that is ready once the task ended (`ref` itself unless a generator)."""

    def __post_init__(self) -> None:
        if self.probe is None:
            self.probe = self.ref


@dataclass
class CellTasks:
    """The refs submitted while the current cell runs (thread-safe)."""

    ready: Callable[[list[Any]], list[Any]]
    """The refs of `refs` whose tasks finished, without waiting or fetching."""
    prune_at: int = PRUNE_AT_REFS
    max_held: int = MAX_HELD_REFS
    tag: str = ""
    tasks: list[TrackedTask] = field(default_factory=list)
    _next_prune: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, tag: str) -> None:
        """A new cell runs: the refs of the previous one are let go."""
        with self._lock:
            if tag == self.tag:
                return
            self.tag = tag
            self.tasks = []
            self._next_prune = self.prune_at

    def add(self, task: TrackedTask) -> None:
        with self._lock:
            self.tasks.append(task)
            if len(self.tasks) > self.max_held:
                del self.tasks[: len(self.tasks) - self.max_held]
            if len(self.tasks) < max(self._next_prune, self.prune_at):
                return
            self._prune_locked()

    def _prune_locked(self) -> None:
        finished = set(self.ready([t.probe for t in self.tasks]))
        self.tasks = [t for t in self.tasks if t.probe not in finished]
        self._next_prune = 2 * len(self.tasks)

    def take(self) -> list[TrackedTask]:
        """The current cell's submissions, forgotten here (the caller cancels them)."""
        with self._lock:
            tasks, self.tasks = self.tasks, []
            self._next_prune = self.prune_at
            return tasks


def tracked(returned: Any, actor_call: bool, generator_type: Any) -> TrackedTask | None:
    """What to hold of one ``_remote`` call's result: its first ref (every
    ref of a task identifies it), the generator of a streaming task (with its ``completed()`` ref); None
    when the call returned no ref (``num_returns=0``)."""
    if isinstance(returned, generator_type):
        return TrackedTask(returned, actor_call, probe=returned.completed())
    if isinstance(returned, (list, tuple)):
        return tracked(returned[0], actor_call, generator_type) if returned else None
    if returned is None:
        return None
    return TrackedTask(returned, actor_call)


def _always(stub: Any) -> bool:
    return True


def _never(stub: Any) -> bool:
    return False


def client_actor_call(stub: Any) -> bool:
    """Whether a Ray Client ``OptionWrapper`` wraps an actor method (else a remote function)."""
    from ray.util.client.common import ClientRemoteMethod

    return isinstance(getattr(stub, "_remote_stub", None), ClientRemoteMethod)


class SubmissionHook:
    """Wraps Ray's submission methods so each submitted task reaches `record`
    (with `client`, those of Ray Client's stubs)."""

    def __init__(self, ray: Any, record: Callable[[Any, bool], None], client: bool = False) -> None:
        self.ray = ray
        self.record = record
        self.client = client
        self._originals: list[tuple[type, str, Any]] = []

    def _targets(self) -> list[tuple[type, bool]]:
        """The driver's classes whose ``_remote`` submits, each with whether it submits actor calls."""
        from ray.actor import ActorMethod
        from ray.remote_function import RemoteFunction

        return [(RemoteFunction, False), (ActorMethod, True)]

    def _client_targets(self) -> list[tuple[type, str, Callable[[Any], bool]]]:
        """Ray Client's submitting methods, each with how to tell an actor call from its stub."""
        from ray.util.client.common import ClientRemoteFunc, ClientRemoteMethod, OptionWrapper

        return [(ClientRemoteFunc, "remote", _never), (ClientRemoteMethod, "remote", _always),
                (OptionWrapper, "remote", client_actor_call)]

    def _methods(self) -> list[tuple[type, str, Callable[[Any], bool]]]:
        if self.client:
            return self._client_targets()
        return [(cls, "_remote", _always if actor_call else _never) for cls, actor_call in self._targets()]

    def install(self) -> None:
        """Wrap (once); a wrapper some other hook left in place is wrapped in turn."""
        if self._originals:
            return
        for cls, name, actor_call in self._methods():
            original = cls.__dict__[name]
            setattr(cls, name, self._wrap(original, actor_call))
            self._originals.append((cls, name, original))

    def _wrap(self, original: Any, actor_call: Callable[[Any], bool]) -> Any:
        record = self.record

        @functools.wraps(original)
        def submit(stub: Any, *args: Any, **kwargs: Any) -> Any:
            returned = original(stub, *args, **kwargs)
            record(returned, actor_call(stub))
            return returned

        setattr(submit, _HOOK_MARK, self)
        return submit

    def uninstall(self) -> None:
        """Put Ray's methods back (where the wrapper is still ours)."""
        for cls, name, original in self._originals:
            if getattr(cls.__dict__.get(name), _HOOK_MARK, None) is self:
                setattr(cls, name, original)
        self._originals = []


def cancel_tasks(ray: Any, tasks: list[TrackedTask], grace_s: float) -> list[TrackedTask]:
    """``ray.cancel`` each of `tasks`; those still running after `grace_s`
    get ``ray.cancel(force=True)`` (normal tasks only). Returns the tasks that
    were forced. Blocks for up to `grace_s`."""
    asked = [t for t in tasks if _cancel(ray, t.ref, force=False)]
    if not asked:
        return []
    probes = [t.probe for t in asked]
    ready, _ = ray.wait(probes, num_returns=len(probes), timeout=grace_s, fetch_local=False)
    ended = set(ready)
    forced = [t for t in asked if t.probe not in ended and not t.actor_call]
    for task in forced:
        _cancel(ray, task.ref, force=True)
    return forced


def _cancel(ray: Any, ref: Any, force: bool) -> bool:
    """False when Ray refuses: the task finished and its refs are gone, or
    force on an actor call."""
    try:
        ray.cancel(ref, force=force)
    except (TypeError, ValueError, ConnectionError, ray.exceptions.RayError):
        return False  # ConnectionError: Ray Client lost its server
    return True
