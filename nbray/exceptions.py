"""Exceptions raised by nbray, with Ray's class names and hierarchy.

::

    Exception
     └── RayError
          ├── RayTaskError                 user code raised; also an instance
          │                                of the user's exception class
          ├── GetTimeoutError (+TimeoutError)
          ├── TaskCancelledError
          ├── RayActorError
          │    ├── ActorDiedError
          │    └── ActorUnavailableError
          ├── ActorAlreadyExistsError (+ValueError)
          ├── ActorHandleNotFoundError (+ValueError)
          ├── ActorUnschedulableError / TaskUnschedulableError
          ├── ActorPlacementGroupRemoved / TaskPlacementGroupRemoved
          ├── WorkerCrashedError
          ├── NodeDiedError
          ├── LocalRayletDiedError
          ├── OutOfMemoryError
          ├── ObjectStoreFullError
          ├── OutOfDiskError
          ├── ObjectLostError
          │    ├── OwnerDiedError
          │    ├── ObjectReconstructionFailedError
          │    │    ├── ObjectReconstructionFailedMaxAttemptsExceededError
          │    │    └── ObjectReconstructionFailedLineageEvictedError
          │    ├── ObjectFetchTimedOutError
          │    ├── ObjectFreedError
          │    └── ReferenceCountingAssertionError (+AssertionError)
          ├── RaySystemError
          ├── RuntimeEnvSetupError
          ├── PendingCallsLimitExceeded
          ├── ObjectRefStreamEndOfStreamError
          ├── UnserializableException
          ├── AuthenticationError
          ├── VersionMismatchError (+RuntimeError)
          └── RpcError
"""

from __future__ import annotations

import os
import pickle
import socket
import types
from typing import Any

from nbray.common.remote_traceback import RemoteTraceback
from nbray.common.remote_traceback import render as render_traceback


class RayError(Exception):
    """Base class of every nbray error."""


class RayTaskError(RayError):
    """A task or actor method raised an exception.

    ``get`` raises ``as_instanceof_cause()``: an instance of a class derived
    from both RayTaskError and the user's exception class, so
    ``except ValueError`` catches a remote ValueError. Attributes not found
    on the error are looked up on ``cause``.

    The remote traceback travels as frames (``remote_traceback``) and is
    rendered by the process that reads the error, so source lines the
    worker could not read (a notebook cell, a driver's script) come from
    the reader, and notebook cells are named ``Cell In[5], line 3``.
    ``traceback_str`` is that rendering (the worker's text when no frames
    were captured).

    Pickling never fails because of the cause: it is pickled on its own,
    rebuilt without calling its ``__init__``; a cause that cannot be
    pickled, or not be loaded by the reader, becomes an
    ``UnserializableException`` carrying the traceback text.
    """

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException | None,
        proctitle: str | None = None,
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
        actor_id: str | None = None,
        remote_traceback: RemoteTraceback | None = None,
    ) -> None:
        self.function_name = function_name
        self._traceback_text = traceback_str
        self.remote_traceback = remote_traceback
        self.cause = cause
        self.proctitle = proctitle
        self.pid = pid if pid is not None else os.getpid()
        self.ip = ip or _local_ip()
        self.actor_repr = actor_repr
        self.actor_id = actor_id
        # Not super().__init__: in the class derived from the cause's class
        # the next __init__ would be the user's, which may take anything.
        Exception.__init__(self, self._message())

    @property
    def traceback_str(self) -> str:
        """The remote traceback, rendered with this process's sources."""
        if self.remote_traceback is None:
            return self._traceback_text
        return render_traceback(self.remote_traceback)

    @traceback_str.setter
    def traceback_str(self, text: str) -> None:
        self._traceback_text = text
        self.remote_traceback = None

    def _message(self) -> str:
        where = f"pid={self.pid}, ip={self.ip}"
        if self.actor_repr:
            where += f", actor={self.actor_repr}"
        head = f"{type(self.cause).__name__ if self.cause is not None else 'Error'}"
        if isinstance(self.cause, UnserializableException) and self.cause.reason:
            where += f"; the exception was not sent: {self.cause.reason}"
        return (
            f"{head}: task {self.function_name}() failed ({where})\n"
            f"{self.traceback_str.rstrip()}"
        )

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> Any:
        cause: BaseException | None = None
        cause_pickle: bytes | None = None
        if self.cause is not None:
            # Imported here: every process imports this module, and the
            # serializer (cloudpickle) is needed only to send a task's error.
            from nbray.common.serialization import dumps_exception

            try:
                cause_pickle = dumps_exception(self.cause)
            except Exception as exc:  # pickling runs user code (__reduce__, attributes): anything
                cause = UnserializableException(
                    self.traceback_str,
                    f"{type(self.cause).__name__} could not be pickled: {type(exc).__name__}: {exc}")
        return (
            _rebuild_task_error,
            (
                self.function_name,
                self._traceback_text,
                cause,
                self.proctitle,
                self.pid,
                self.ip,
                self.actor_repr,
                self.actor_id,
                self.remote_traceback,
                cause_pickle,
            ),
        )

    def as_instanceof_cause(self) -> RayTaskError:
        """An equivalent error that is also an instance of the cause's class
        (this error itself when no such class can be made)."""
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
            return self
        cause_cls = type(cause)
        derived = _derived_error_class(cause_cls)
        if derived is None:
            return self
        try:
            # The built-in base's __new__: the cause class's own may demand arguments.
            err: Any = _builtin_exception_base(cause_cls).__new__(derived)
        except TypeError:
            return self
        RayTaskError.__init__(
            err,
            self.function_name,
            self._traceback_text,
            cause,
            self.proctitle,
            self.pid,
            self.ip,
            self.actor_repr,
            self.actor_id,
            self.remote_traceback,
        )
        # Keep the cause's own args so code reading e.args still works.
        err.args = cause.args
        _copy_builtin_fields(cause, err)
        return err  # type: ignore[no-any-return]


_DERIVED: dict[type, type | None] = {}


def _builtin_exception_base(cls: type) -> Any:
    """The nearest built-in class of `cls`'s ancestry (whose ``__new__`` lays it out)."""
    return next(base for base in cls.__mro__ if base.__module__ == "builtins")


def _copy_builtin_fields(cause: BaseException, err: BaseException) -> None:
    """Copy the C-level fields of built-in exceptions (``OSError.errno``,
    ``StopIteration.value``, ...): they live on `err` itself, so looking
    attributes up on the cause never reaches them."""
    for klass in _builtin_exception_base(type(cause)).__mro__:
        if klass is BaseException:
            break
        for name, field in vars(klass).items():
            if isinstance(field, (types.MemberDescriptorType, types.GetSetDescriptorType)) \
                    and not name.startswith("__"):
                try:
                    setattr(err, name, getattr(cause, name))
                except (AttributeError, TypeError, ValueError):
                    pass  # unset on the cause (characters_written), or read-only


def _derived_error_class(cause_cls: type) -> type | None:
    if cause_cls in _DERIVED:
        return _DERIVED[cause_cls]
    name = f"RayTaskError({cause_cls.__name__})"

    def __getattr__(self: Any, attr: str) -> Any:
        cause = self.__dict__.get("cause")
        if cause is None:
            raise AttributeError(attr)
        return getattr(cause, attr)

    try:
        derived: type | None = type(
            name,
            (RayTaskError, cause_cls),
            {
                "__getattr__": __getattr__,
                "__module__": "nbray.exceptions",
                "__str__": RayTaskError.__str__,
                "__reduce__": RayTaskError.__reduce__,
                "__init__": RayTaskError.__init__,
            },
        )
    except Exception:  # a final class or clashing layout (TypeError), or a user __init_subclass__
        derived = None
    _DERIVED[cause_cls] = derived
    return derived


def _rebuild_task_error(
    function_name: str,
    traceback_str: str,
    cause: BaseException | None,
    proctitle: str | None = None,
    pid: int | None = None,
    ip: str | None = None,
    actor_repr: str | None = None,
    actor_id: str | None = None,
    remote_traceback: RemoteTraceback | None = None,
    cause_pickle: bytes | None = None,
) -> RayTaskError:
    if cause_pickle is not None:
        try:
            cause = pickle.loads(cause_pickle)
        except Exception as exc:  # loading runs user code (imports, __setstate__): anything
            text = render_traceback(remote_traceback) if remote_traceback is not None else traceback_str
            cause = UnserializableException(text, f"it could not be unpickled here: {type(exc).__name__}: {exc}")
    return RayTaskError(function_name, traceback_str, cause, proctitle, pid, ip, actor_repr, actor_id,
                        remote_traceback)


class GetTimeoutError(RayError, TimeoutError):
    """``get`` did not finish within its timeout."""


class TaskCancelledError(RayError):
    """The task was cancelled."""

    def __init__(self, task_id: str | None = None, message: str | None = None) -> None:
        self.task_id = task_id
        super().__init__(message or f"Task {task_id} was cancelled.")

    def __reduce__(self) -> Any:
        return type(self), (self.task_id, str(self))


class RayActorError(RayError):
    """The actor is dead or unreachable."""

    def __init__(
        self,
        actor_id: str | None = None,
        error_msg: str = "The actor died unexpectedly before finishing this task.",
        actor_init_failed: bool = False,
        preempted: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        self.actor_id = actor_id
        self.error_msg = error_msg
        self.actor_init_failed = actor_init_failed
        self.preempted = preempted
        self.cause = cause
        super().__init__(error_msg)

    def __reduce__(self) -> Any:
        return (
            type(self),
            (self.actor_id, self.error_msg, self.actor_init_failed, self.preempted, self.cause),
        )


class ActorDiedError(RayActorError):
    """The actor died: process or node death, ``kill``, or ``__init__`` raised."""


class ActorUnavailableError(RayActorError):
    """The actor is temporarily unreachable; the call may or may not have run."""


class ActorAlreadyExistsError(ValueError, RayError):
    """A named actor with that name exists in the namespace."""


class ActorHandleNotFoundError(ValueError, RayError):
    """No actor is known for the handle."""


class ActorUnschedulableError(RayError):
    """The actor's placement can never be satisfied."""


class TaskUnschedulableError(RayError):
    """The task's placement can never be satisfied."""


class ActorPlacementGroupRemoved(RayError):
    """The placement group of the actor was removed."""


class TaskPlacementGroupRemoved(RayError):
    """The placement group of the task was removed."""


class WorkerCrashedError(RayError):
    """The worker died while running the task and retries are used up."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The worker died unexpectedly while executing this task. "
            "Check the worker's log for a crash (segfault, os._exit, out of memory)."
        )


class NodeDiedError(RayError):
    """The node is dead or unreachable."""


class LocalRayletDiedError(RayError):
    """The raylet of this node died."""


class OutOfMemoryError(RayError):
    """The raylet's memory monitor killed the worker running the task because
    the node's memory use passed ``memory_usage_threshold``, and the task's
    retries are used up (or it had none). The message names the node, the
    memory used and total, the threshold and the task."""


class ObjectStoreFullError(RayError):
    """The object store cannot hold the object."""


class OutOfDiskError(RayError):
    """Spilling failed because the disk is full."""


class ObjectLostError(RayError):
    """All copies of the object are lost and it cannot be rebuilt."""

    def __init__(self, object_ref_hex: str = "", owner_address: str = "", call_site: str = "",
                 message: str | None = None) -> None:
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site
        super().__init__(message or self._default_message())

    def _default_message(self) -> str:
        return f"Object {self.object_ref_hex} is lost: every copy is gone and it cannot be rebuilt."

    def __reduce__(self) -> Any:
        return (_rebuild_lost, (type(self), self.object_ref_hex, self.owner_address,
                                self.call_site, str(self)))


def _rebuild_lost(cls: type, oid: str, owner: str, call_site: str, message: str) -> ObjectLostError:
    err: Any = cls.__new__(cls)  # type: ignore[call-overload]
    ObjectLostError.__init__(err, oid, owner, call_site, message)
    return err  # type: ignore[no-any-return]


class OwnerDiedError(ObjectLostError):
    """The owner of the object died; the object cannot be recovered."""

    def _default_message(self) -> str:
        return (
            f"Object {self.object_ref_hex} is lost because its owner ({self.owner_address}) died. "
            "Objects are owned by the process that created them; keep the owner alive."
        )


class ObjectReconstructionFailedError(ObjectLostError):
    """Rebuilding the object from lineage failed."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """The task that makes the object ran out of retries."""


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """The lineage of the object was evicted."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object timed out."""


class ObjectFreedError(ObjectLostError):
    """The object was freed."""


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """The object was deleted while a reference existed."""


class RaySystemError(RayError):
    """An internal error."""

    def __init__(self, client_exc: Any = None, traceback_str: str | None = None) -> None:
        self.client_exc = client_exc
        self.traceback_str = traceback_str
        super().__init__(str(client_exc) if client_exc is not None else "system error")


class RuntimeEnvSetupError(RayError):
    """The runtime environment could not be set up."""


class PendingCallsLimitExceeded(RayError):
    """The actor handle's max_pending_calls was exceeded."""


class ObjectRefStreamEndOfStreamError(RayError):
    """The generator has no more items."""


class UnserializableException(RayError):
    """A remote exception could not be pickled by the worker or unpickled by
    the reader; its traceback text is kept, and why in ``reason``."""

    def __init__(self, original_stack_trace: str, reason: str = "") -> None:
        self.original_stack_trace = original_stack_trace
        self.reason = reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"The remote exception could not be deserialized{why}; its traceback was:\n"
            + original_stack_trace
        )

    def __reduce__(self) -> Any:
        return type(self), (self.original_stack_trace, self.reason)


class AuthenticationError(RayError):
    """The cluster token is missing or wrong."""


class VersionMismatchError(RayError, RuntimeError):
    """The two ends of a connection run different nbray or Python versions."""


class RpcError(RayError):
    """A request failed at the transport level or was refused by the peer."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"[{code}] {message}")

    def __reduce__(self) -> Any:
        return type(self), (self.code, self.message)


class ConnectionLostError(RpcError, ConnectionError):
    """The connection closed before the reply arrived."""

    def __init__(self, message: str) -> None:
        super().__init__("connection_lost", message)

    def __reduce__(self) -> Any:
        return (type(self), (self.message,))


_LOCAL_IP: str | None = None


def _local_ip() -> str:
    global _LOCAL_IP
    if _LOCAL_IP is None:
        try:
            _LOCAL_IP = socket.gethostbyname(socket.gethostname())
        except OSError:
            _LOCAL_IP = "127.0.0.1"
    return _LOCAL_IP


__all__ = [
    "ActorAlreadyExistsError",
    "ActorDiedError",
    "ActorHandleNotFoundError",
    "ActorPlacementGroupRemoved",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AuthenticationError",
    "ConnectionLostError",
    "GetTimeoutError",
    "LocalRayletDiedError",
    "NodeDiedError",
    "ObjectFetchTimedOutError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedLineageEvictedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectRefStreamEndOfStreamError",
    "ObjectStoreFullError",
    "OutOfDiskError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "RayActorError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "ReferenceCountingAssertionError",
    "RpcError",
    "RuntimeEnvSetupError",
    "TaskCancelledError",
    "TaskPlacementGroupRemoved",
    "TaskUnschedulableError",
    "UnserializableException",
    "VersionMismatchError",
    "WorkerCrashedError",
]
