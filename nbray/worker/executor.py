"""Running tasks in a worker process (worker side).

Pushed tasks arrive on the I/O thread and run on the main thread, one at a
time, in arrival order (so calls from one handle of a sync actor keep their
order). A threaded actor runs calls on a pool of ``max_concurrency``
threads; an async actor runs them as coroutines on an asyncio loop that
owns the main thread. Each task's returns are stored inline or in the
node's object store and the reply goes straight back to the owner.

Cancellation: a queued task is dropped; a running task on the main thread
gets a KeyboardInterrupt (delivered as SIGINT, so a blocking call such as
``time.sleep`` is interrupted too); an async actor call is cancelled; a
threaded actor call sees ``get_runtime_context().is_canceled()``.
"""

from __future__ import annotations

import atexit
import inspect
import io
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from nbray.common.ids import return_object_id
from nbray.common.remote_traceback import capture
from nbray.common.serialization import deserialize, dumps_exception, serialize
from nbray.exceptions import ActorDiedError, RayError, RayTaskError, TaskCancelledError
from nbray.object_ref import DynamicObjectRefGenerator, ObjectRef
from nbray.protocol import common_pb2, core_worker_pb2, method
from nbray.raylet.log_router import format_marker
from nbray.rpc.connection import Connection
from nbray.worker import context
from nbray.worker.context import TaskContext
from nbray.worker.function_manager import FunctionCache
from nbray.worker.returns import pack_returns

if TYPE_CHECKING:
    import asyncio

    from nbray.worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

_PUSH = method("CoreWorkerService.PushTask")
_REPORT_ITEM = method("CoreWorkerService.ReportGeneratorItem")
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ACTOR_TASK = common_pb2.ACTOR_TASK
_CREATION = common_pb2.ACTOR_CREATION_TASK


class ActorExitRequested(BaseException):
    """Raised by exit_actor() inside an actor method to stop the actor."""


class Executor:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.functions = FunctionCache()
        self._queue: deque[tuple[Connection, Any, int]] = deque()
        self._cond = threading.Condition()
        self.current_task_id: bytes | None = None
        self._cancel_target: bytes | None = None
        self.actor: ActorRuntime | None = None
        self.exiting = False
        self._cancelled_queued: set[bytes] = set()
        self._bounce_armed = False
        self._task_started_at = 0.0
        self.num_running = 0
        # Connections holding replies back to send several in one write.
        # They must leave before anything can wait on them: a task that
        # blocks may be waiting for exactly those results.
        self._held_replies: set[Connection] = set()

    # ---- intake (I/O thread) --------------------------------------------------------------------

    def handle_push(self, conn: Connection, req: core_worker_pb2.PushTaskRequest, rid: int) -> None:
        core = self.core
        if req.intended_worker_id and req.intended_worker_id != core.worker_id:
            conn.reply_error(rid, _PUSH.id, "wrong_worker", "this task was leased to another worker")
            return
        self.functions.remember(req.spec.function)
        if req.spec.type == _ACTOR_TASK:
            if self.actor is None:
                self.drop_registrations(req)
                conn.reply_error(rid, _PUSH.id, "not_an_actor", "this worker does not run an actor")
                return
            self.actor.submit(conn, req, rid)
            return
        self.enqueue(conn, req, rid)

    def enqueue(self, conn: Connection, req: Any, rid: int) -> None:
        with self._cond:
            self._queue.append((conn, req, rid))
            self._cond.notify()
        if req.spec.type == common_pb2.NORMAL_TASK and not self._bounce_armed:
            self._bounce_armed = True
            self.core.loop.call_later(self.core.config.pipelining_bounce_ms / 1000, self._bounce_if_stuck)

    def _bounce_if_stuck(self) -> None:
        """I/O thread: if the running task is slow, give the queued ones back."""
        self._bounce_armed = False
        if not self._queue:
            return
        bounce_s = self.core.config.pipelining_bounce_ms / 1000
        if self.current_task_id is not None and time.monotonic() - self._task_started_at >= bounce_s:
            self.on_blocked()
            return
        self._bounce_armed = True
        self.core.loop.call_later(bounce_s, self._bounce_if_stuck)

    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> bool:
        """I/O thread: cancel a queued or running task. Returns True if found."""
        if recursive:
            self.core.cancel_children(task_id)
        with self._cond:
            queued = next((item for item in self._queue if item[1].spec.task_id == task_id), None)
            if queued is not None:
                self._queue.remove(queued)
        if queued is not None:
            conn, req, rid = queued
            self.drop_registrations(req)
            conn.reply(rid, _PUSH, core_worker_pb2.PushTaskReply(was_cancelled=True))
            return True
        if self.actor is not None and self.actor.cancel(task_id):
            return True
        if self.current_task_id == task_id:
            if force:
                os._exit(1)
            self._cancel_target = task_id
            os.kill(os.getpid(), signal.SIGINT)
            return True
        return False

    def on_blocked(self) -> None:
        """The running task blocks in get/wait (or runs long): send the
        replies held back for batching, whose results it may be waiting
        for, and hand queued tasks back to their owners so nothing queued
        behind it can deadlock it."""
        self.flush_held_replies()
        with self._cond:
            bounced = [item for item in self._queue if item[1].spec.type == common_pb2.NORMAL_TASK]
            self._queue = deque(item for item in self._queue if item[1].spec.type != common_pb2.NORMAL_TASK)
        for conn, req, rid in bounced:
            self.drop_registrations(req)
            conn.reply(rid, _PUSH, core_worker_pb2.PushTaskReply(requeued=True))

    def drop_registrations(self, req: Any) -> None:
        """A task handed back unrun: its sender registered this worker as a
        borrower of the refs nested in it, and only this worker undoes that."""
        self.core.release_if_unused(self.accept_nested(req))

    def accept_nested(self, req: Any) -> list[bytes]:
        """Count the borrower registrations made for this worker, before
        anything can fail: the caller releases the ids returned in any case."""
        nested = req.spec.nested_refs
        if not nested:
            return []
        if req.nested_refs_registered:
            self.core.receive_nested(nested)
        return [r.object_id for r in nested]

    def flush_held_replies(self) -> None:
        """Any thread: send the replies held back for batching."""
        with self._cond:
            held, self._held_replies = self._held_replies, set()
        for conn in held:
            conn.flush()

    # ---- main loop (main thread) ----------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGINT, self._on_sigint)
        batched = 0
        while not self.exiting:
            with self._cond:  # (re-entrant)
                if not self._queue:
                    self.flush_held_replies()  # about to wait: nothing stays behind
                while not self._queue and not self.exiting:
                    self._cond.wait()
                if self.exiting:
                    return
                conn, req, rid = self._queue.popleft()
                # With tasks queued behind this one, its reply can wait to
                # leave with theirs.
                hold = bool(self._queue) and batched < 32 and isinstance(conn, Connection)
            if hold:
                batched += 1
            else:
                batched = 0
                # This task may run long (or wait on earlier results): what
                # finished before it must not wait for it to end.
                self.flush_held_replies()
            self.execute(conn, req, rid, flush=not hold)
            if hold:
                with self._cond:
                    self._held_replies.add(conn)
            if self.actor is not None and self.actor.mode == "async":
                self.actor.run_async_loop()  # takes over the main thread
                return

    def stop(self) -> None:
        with self._cond:
            self.exiting = True
            self._cond.notify_all()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        target = self._cancel_target
        if target is not None and target == self.current_task_id:
            self._cancel_target = None
            raise KeyboardInterrupt(f"task {target.hex()} was cancelled")

    def execute(self, conn: Connection, req: Any, rid: int, flush: bool = True) -> None:
        spec = req.spec
        if spec.type == _CREATION:
            reply = self._create_actor(conn, req)
        elif spec.type == _ACTOR_TASK and self.actor is not None:
            reply = self.run_task(conn, req, self.actor.lookup)
        else:
            reply = self.run_task(conn, req, self.functions.load)
        # Receivers of refs this task handed on are registered with the
        # owners before the caller learns the task finished: the caller may
        # then drop its refs or kill this worker.
        if not self.core.await_borrower_registrations(self.core.config.rpc_timeout_ms / 1000):
            logger.warning("task %s: owners did not acknowledge the borrowers it registered in time; "
                           "replying anyway", spec.task_id.hex())
        if not conn.closed:
            conn.reply(rid, _PUSH, reply, flush=flush or reply.worker_exiting)
        if reply.worker_exiting:
            self.core.exit_worker("the actor exited", intended=True)

    # ---- running one task -----------------------------------------------------------------------

    def make_context(self, req: Any) -> TaskContext:
        spec = req.spec
        if req.resource_ids:
            ids = {name: [i for i in value.split(",") if i] for name, value in req.resource_ids.items()}
        else:
            ids = self.actor.resource_ids if self.actor is not None else {}
        ctx = TaskContext(spec.task_id, spec.job_id, name=spec.name, func_name=spec.func_or_class_name,
                          actor_id=spec.actor_id, attempt=spec.attempt_number, context_tag=spec.context_tag,
                          resource_ids=ids, resources=spec.resources, namespace=spec.namespace,
                          is_actor_creation=spec.type == _CREATION)
        strategy = spec.scheduling_strategy
        if not strategy.placement_group_id and self.actor is not None:
            strategy = self.actor.strategy  # an actor's calls run in the actor's group
        if strategy.placement_group_id:
            ctx.placement_group_id = strategy.placement_group_id
            ctx.capture_child_tasks = strategy.capture_child_tasks
        if spec.runtime_env.env_vars:
            ctx.runtime_env = {"env_vars": dict(spec.runtime_env.env_vars)}
        return ctx

    def run_task(self, conn: Connection, req: Any, resolve: Callable[[Any], Any]) -> Any:
        """Run a normal task or a sync/threaded actor call; returns the reply."""
        spec = req.spec
        core = self.core
        t0 = time.perf_counter()
        ctx = self.make_context(req)
        if self.actor is not None and ctx.actor_id == b"":
            ctx.actor_id = self.actor.actor_id
        context.set_thread_task(ctx)
        _apply_gpu_env(ctx.resource_ids)
        on_main = threading.current_thread() is threading.main_thread()
        if on_main:
            self._task_started_at = time.monotonic()
            self.current_task_id = spec.task_id
        self.num_running += 1
        core.events.running(spec.task_id, spec.attempt_number, core.node_id, core.worker_id, os.getpid(),
                            self.actor.repr_name if self.actor is not None else "")
        nested = self.accept_nested(req)
        try:
            target = resolve(spec.function if spec.type != _ACTOR_TASK else spec)
            args, kwargs = self.load_args(spec)
            if spec.streaming_generator:
                reply = self._run_generator(conn, spec, target(*args, **kwargs))
            else:
                result = target(*args, **kwargs)
                reply = self.store_returns(spec, result)
            del args, kwargs
        except KeyboardInterrupt:  # in a task, it only ever comes from a cancel
            reply = core_worker_pb2.PushTaskReply(was_cancelled=True)
        except ActorExitRequested:
            reply = self.exit_reply(spec)
        except Exception as exc:
            reply = self.error_reply(spec, exc)
        finally:
            self.num_running -= 1
            if on_main:
                self.current_task_id = None
                self._cancel_target = None
            context.set_thread_task(None)
            _flush_std()
            if nested:
                core.release_if_unused(nested)
        reply.exec_duration_us = int((time.perf_counter() - t0) * 1e6)
        return reply

    def load_args(self, spec: Any) -> tuple[list[Any], dict[str, Any]]:
        """The call's arguments (refs nested in them were accepted first)."""
        core = self.core
        args, kwargs = deserialize(spec.args_pickle)
        if spec.ref_args:
            args = list(args)
            plasma_refs = []
            for ra in spec.ref_args:
                value_slot = (ra.position, ra.keyword)
                if ra.has_inline_value and ra.inline_value.format != common_pb2.VALUE_IN_PLASMA:
                    value = deserialize(ra.inline_value.data)
                    if ra.inline_value.format == common_pb2.VALUE_ERROR:
                        raise value if isinstance(value, BaseException) else RayError(str(value))
                    _place(args, kwargs, value_slot, value)
                else:
                    plasma_refs.append((value_slot, ra))
            if plasma_refs:
                values = core.read_args([ra.ref for _, ra in plasma_refs],
                                        [ra.inline_value.plasma_node_id if ra.has_inline_value else b""
                                         for _, ra in plasma_refs])
                for (slot, _), value in zip(plasma_refs, values):
                    _place(args, kwargs, slot, value)
        return list(args), dict(kwargs)

    def store_returns(self, spec: Any, result: Any) -> core_worker_pb2.PushTaskReply:
        n = spec.num_returns
        if n == 1:
            values: Any = (result,)
        elif n == 0:
            values = ()
        else:
            try:
                values = tuple(result)
            except TypeError:
                raise ValueError(f"task {spec.name} has num_returns={n} but returned a "
                                 f"non-iterable {type(result).__name__}") from None
            if len(values) != n:
                raise ValueError(f"task {spec.name} has num_returns={n} but returned {len(values)} values")
        return pack_returns(self.core, spec, values)

    def _run_generator(self, conn: Connection, spec: Any, gen: Any) -> Any:
        index = 0
        tid = spec.task_id
        try:
            for item in gen:
                self._report_item(conn, spec, index, self.core.make_return(return_object_id(tid, index + 2),
                                                                          item, spec.caller))
                index += 1
        except (KeyboardInterrupt, ActorExitRequested):
            raise
        except Exception as exc:
            error = self.error_reply(spec, exc).returns[0].value
            self._report_item(conn, spec, index, core_worker_pb2.ReturnObject(
                object_id=return_object_id(tid, index + 2), value=error))
            index += 1
        return core_worker_pb2.PushTaskReply(returns=[self.generator_done(spec, index)],
                                             num_generator_items=index)

    def generator_done(self, spec: Any, count: int) -> Any:
        """The first return of a generator task that yielded `count` items:
        None, or for num_returns="dynamic" a DynamicObjectRefGenerator of
        refs to the items. The items were reported to the caller, which owns
        them already: they are listed as nested refs of this value without
        registering the caller as a borrower of its own objects."""
        tid = spec.task_id
        if not spec.dynamic_returns:
            return self.core.make_return(return_object_id(tid, 1), None, spec.caller)
        caller = spec.caller.SerializeToString()
        item_ids = [return_object_id(tid, i + 2) for i in range(count)]
        s = serialize(DynamicObjectRefGenerator(ObjectRef(oid, caller) for oid in item_ids))
        s.nested_refs = []
        ret = self.core.store_serialized(return_object_id(tid, 1), s, spec.caller)
        for oid in item_ids:
            ret.value.nested_refs.add(object_id=oid, owner=spec.caller)
        return ret

    def _report_item(self, conn: Connection, spec: Any, index: int, item: Any) -> None:
        conn.call(_REPORT_ITEM, core_worker_pb2.GeneratorItemRequest(
            task_id=spec.task_id, index=index, item=item, attempt_number=spec.attempt_number))

    def error_reply(self, spec: Any, exc: BaseException) -> Any:
        core = self.core
        tb = format_user_traceback(exc)
        actor_repr = self.actor.repr_name if self.actor is not None else None
        # The frames travel too: the reader renders them with its own sources
        # (a notebook cell's lines exist only in the driver's line cache).
        err = RayTaskError(spec.name, tb, exc, pid=os.getpid(), ip=core.node_ip, actor_repr=actor_repr,
                           actor_id=spec.actor_id.hex() if spec.actor_id else None,
                           remote_traceback=capture(exc, skip_prefix=_PKG_DIR))
        # Never fails because of `exc`: RayTaskError pickles its cause on its
        # own and stands in an UnserializableException when it cannot.
        data = serialize(err, is_error=True).to_bytes()
        reply = core_worker_pb2.PushTaskReply(is_application_error=True)
        n = max(spec.num_returns, 1) if not spec.streaming_generator else 1
        for i in range(n):
            reply.returns.add(object_id=return_object_id(spec.task_id, i + 1),
                              value=common_pb2.SerializedValue(format=common_pb2.VALUE_ERROR, data=data))
        if spec.retry_exceptions:
            try:
                # Rebuilt without its __init__, so the owner can load it to
                # match retry_exceptions whatever its constructor takes.
                reply.exception_pickle = dumps_exception(exc)
            except Exception:  # pickling runs user code: anything
                # Left empty: the owner retries only on a listed type it can
                # load, so an exception that cannot be pickled is not retried.
                logger.debug("exception of task %s cannot be pickled for retry_exceptions", spec.name,
                             exc_info=True)
        # format_exception_only survives a user __str__ that raises.
        summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        core.events.failed(spec.task_id, spec.attempt_number, common_pb2.TASK_EXECUTION_EXCEPTION,
                           summary[:2000], tb[-8000:])
        return reply

    def exit_reply(self, spec: Any) -> Any:
        err = ActorDiedError(spec.actor_id.hex(), "The actor exited on purpose (exit_actor() was called); "
                             "calls after it fail.")
        data = serialize(err, is_error=True).to_bytes()
        reply = core_worker_pb2.PushTaskReply(worker_exiting=True)
        for i in range(max(spec.num_returns, 1)):
            reply.returns.add(object_id=return_object_id(spec.task_id, i + 1),
                              value=common_pb2.SerializedValue(format=common_pb2.VALUE_ERROR, data=data))
        return reply

    # ---- actors -------------------------------------------------------------------------------------

    def _create_actor(self, conn: Connection, req: Any) -> Any:
        spec = req.spec
        core = self.core
        ctx = self.make_context(req)
        context.set_thread_task(ctx)
        _apply_gpu_env(ctx.resource_ids)
        core.set_actor(spec.actor_id, spec)
        # The creation task's RUNNING and its end are recorded here, where they
        # happen; the GCS records only what no worker lived to tell. RUNNING goes
        # out at once (one message per actor): an __init__ that kills its process
        # still leaves its node and pid behind.
        core.events.running(spec.task_id, spec.attempt_number, core.node_id, core.worker_id, os.getpid())
        core.flush_events()
        try:
            cls = self.functions.load(spec.function)
            # the owner pins creation arguments for the actor's whole life
            args, kwargs = self.load_args(spec)
            init_loop: asyncio.AbstractEventLoop | None = None
            if spec.is_async_actor and inspect.iscoroutinefunction(getattr(cls, "__init__", None)):
                instance, init_loop = _construct_on_own_loop(cls, args, kwargs)
            else:
                instance = cls(*args, **kwargs)
        except Exception as exc:
            reply = self.error_reply(spec, exc)
            # The GCS kills this worker as soon as it reads the reply: send the
            # failure (with its traceback) first.
            core.flush_events()
            return reply
        finally:
            context.set_thread_task(None)
            _flush_std()
        self.actor = ActorRuntime(self, instance, spec, ctx.resource_ids, init_loop)
        core.events.finished(spec.task_id, spec.attempt_number)
        return core_worker_pb2.PushTaskReply(actor_repr_name=self.actor.repr_name)

    def kill_actor(self, force: bool) -> None:
        """The GCS stops this actor: now, or after the calls already queued."""
        if force or self.actor is None:
            self.core.exit_worker("the actor was killed", intended=True, code=1)
            return
        self.actor.terminate_after_queued()


class ActorRuntime:
    """The actor instance and how its calls run (sync, threaded or async)."""

    def __init__(self, executor: Executor, instance: Any, spec: Any, resource_ids: dict[str, list[str]],
                 init_loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.executor = executor
        self.instance = instance
        self.actor_id = spec.actor_id
        self.class_name = spec.func_or_class_name
        self.resource_ids = resource_ids
        self.strategy = spec.scheduling_strategy
        if spec.is_async_actor:
            self.mode = "async"
        elif spec.max_concurrency > 1:
            self.mode = "threaded"
        else:
            self.mode = "sync"
        self.max_concurrency = max(1, spec.max_concurrency)
        cls_repr = type(instance).__repr__
        self.repr_name = repr(instance) if cls_repr is not object.__repr__ else ""
        self._pool: ThreadPoolExecutor | None = None
        if self.mode == "threaded":
            self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="nbray-actor")
        self._aloop: asyncio.AbstractEventLoop | None = None
        # the loop an `async def __init__` ran on: the calls run on it too
        self._init_loop = init_loop
        self._sema: asyncio.Semaphore | None = None
        self._async_ready = threading.Event()
        self._running: dict[bytes, Any] = {}
        self._contexts: dict[bytes, TaskContext] = {}
        self._terminating = False

    def lookup(self, spec: Any) -> Callable[..., Any]:
        name = spec.method_name
        if name == "__ray_ready__":
            return lambda: True
        if name == "__ray_terminate__":
            def terminate() -> None:
                raise ActorExitRequested()
            return terminate
        if name == "__ray_call__":
            return lambda fn, *a, **kw: fn(self.instance, *a, **kw)
        try:
            return getattr(self.instance, name)  # type: ignore[no-any-return]
        except AttributeError:
            raise AttributeError(f"'{type(self.instance).__name__}' actor has no method '{name}'") from None

    def submit(self, conn: Connection, req: Any, rid: int) -> None:
        if self.mode == "sync":
            self.executor.enqueue(conn, req, rid)
        elif self.mode == "threaded":
            assert self._pool is not None
            self._pool.submit(self._run_threaded, conn, req, rid)
        else:
            self._async_ready.wait()
            assert self._aloop is not None
            self._aloop.call_soon_threadsafe(self._spawn, conn, req, rid)

    def _run_threaded(self, conn: Connection, req: Any, rid: int) -> None:
        reply = self.executor.run_task(conn, req, self.lookup)
        if not conn.closed:
            conn.reply(rid, _PUSH, reply)
        if reply.worker_exiting:
            self.executor.core.exit_worker("the actor exited", intended=True)

    # ---- async actors ----------------------------------------------------------------------------

    def run_async_loop(self) -> None:
        import asyncio  # async actors alone need it: other workers start without it
        loop = self._init_loop or asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._aloop = loop
        self._sema = asyncio.Semaphore(self.max_concurrency)
        self._async_ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _spawn(self, conn: Connection, req: Any, rid: int) -> None:
        assert self._aloop is not None
        task = self._aloop.create_task(self._run_async(conn, req, rid))
        self._running[req.spec.task_id] = task

    async def _run_async(self, conn: Connection, req: Any, rid: int) -> None:
        import asyncio
        ex = self.executor
        spec = req.spec
        assert self._sema is not None
        nested = ex.accept_nested(req)
        try:
            await self._sema.acquire()
        except asyncio.CancelledError:
            ex.core.release_if_unused(nested)  # cancelled before it started
            raise
        try:
            t0 = time.perf_counter()
            ctx = ex.make_context(req)
            ctx.actor_id = self.actor_id
            token = context.set_async_task(ctx)
            ex.core.events.running(spec.task_id, spec.attempt_number, ex.core.node_id, ex.core.worker_id,
                                   os.getpid(), self.repr_name)
            try:
                target = self.lookup(spec)
                if spec.ref_args and any(not ra.has_inline_value or
                                         ra.inline_value.format == common_pb2.VALUE_IN_PLASMA
                                         for ra in spec.ref_args):
                    args, kwargs = await asyncio.get_running_loop().run_in_executor(None, ex.load_args, spec)
                else:
                    args, kwargs = ex.load_args(spec)
                result = target(*args, **kwargs)
                if spec.streaming_generator and inspect.isasyncgen(result):
                    reply = await self._run_async_generator(conn, spec, result)
                elif spec.streaming_generator and inspect.isgenerator(result):
                    reply = ex._run_generator(conn, spec, result)  # a plain generator method
                else:
                    if inspect.isawaitable(result):
                        result = await result
                    reply = ex.store_returns(spec, result)
            except asyncio.CancelledError:
                reply = core_worker_pb2.PushTaskReply(was_cancelled=True)
            except ActorExitRequested:
                reply = ex.exit_reply(spec)
            except Exception as exc:
                reply = ex.error_reply(spec, exc)
            finally:
                context.reset_async_task(token)
                self._running.pop(spec.task_id, None)
                if nested:
                    ex.core.release_if_unused(nested)
            reply.exec_duration_us = int((time.perf_counter() - t0) * 1e6)
            if not conn.closed:
                conn.reply(rid, _PUSH, reply)
            if reply.worker_exiting:
                ex.core.exit_worker("the actor exited", intended=True)
        finally:
            self._sema.release()

    async def _run_async_generator(self, conn: Connection, spec: Any, agen: Any) -> Any:
        ex = self.executor
        index = 0
        tid = spec.task_id
        try:
            async for item in agen:
                ex._report_item(conn, spec, index, ex.core.make_return(return_object_id(tid, index + 2),
                                                                      item, spec.caller))
                index += 1
        except Exception as exc:
            error = ex.error_reply(spec, exc).returns[0].value
            ex._report_item(conn, spec, index, core_worker_pb2.ReturnObject(
                object_id=return_object_id(tid, index + 2), value=error))
            index += 1
        return core_worker_pb2.PushTaskReply(returns=[ex.generator_done(spec, index)],
                                             num_generator_items=index)

    # ---- cancel / terminate --------------------------------------------------------------------------

    def cancel(self, task_id: bytes) -> bool:
        running = self._running.get(task_id)
        if running is not None and self._aloop is not None:
            self._aloop.call_soon_threadsafe(running.cancel)
            return True
        ctx = self._contexts.get(task_id)
        if ctx is not None:
            ctx.cancelled = True
            return True
        return False

    def terminate_after_queued(self) -> None:
        if self._terminating:
            return
        self._terminating = True
        core = self.executor.core
        if self.mode == "sync":
            req = core_worker_pb2.PushTaskRequest()
            req.spec.type = _ACTOR_TASK
            req.spec.method_name = "__ray_terminate__"
            req.spec.num_returns = 0
            req.spec.args_pickle = serialize(((), {})).to_bytes()
            self.executor.enqueue(_NullConnection(), req, 0)  # type: ignore[arg-type]
        elif self.mode == "threaded":
            assert self._pool is not None
            pool = self._pool
            def drain_then_exit() -> None:
                pool.shutdown(wait=True)
                core.exit_worker("the actor went out of scope", intended=True)

            threading.Thread(target=drain_then_exit, daemon=True).start()
        else:
            core.exit_worker("the actor went out of scope", intended=True)


def _construct_on_own_loop(cls: Any, args: list[Any], kwargs: dict[str, Any]
                           ) -> tuple[Any, asyncio.AbstractEventLoop]:
    """An actor with ``async def __init__``: run it on a new event loop that
    then becomes the actor's, so what __init__ starts there (background
    tasks, connections) lives on the loop its calls run on, as in Ray."""
    import asyncio
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        instance = cls.__new__(cls)
        loop.run_until_complete(instance.__init__(*args, **kwargs))
    except BaseException:
        asyncio.set_event_loop(None)
        loop.close()
        raise
    return instance, loop


class _NullConnection:
    """Stands in for a caller when the worker queues work for itself."""

    closed = True

    def reply(self, *args: Any) -> None:
        pass


def _place(args: list[Any], kwargs: dict[str, Any], slot: tuple[int, str], value: Any) -> None:
    position, keyword = slot
    if position >= 0:
        args[position] = value
    else:
        kwargs[keyword] = value


_CUDA_AT_START = os.environ.get("CUDA_VISIBLE_DEVICES")
_cuda_set = [False]


def _apply_gpu_env(resource_ids: dict[str, list[str]]) -> None:
    """A task holding GPUs sees exactly its GPU ids; others see the original setting."""
    gpus = resource_ids.get("GPU")
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        _cuda_set[0] = True
    elif _cuda_set[0]:
        _cuda_set[0] = False
        if _CUDA_AT_START is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = _CUDA_AT_START


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "dirty", True):
            try:
                stream.flush()
            except Exception:
                pass


def format_user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` without nbray's own frames."""
    te = traceback.TracebackException.from_exception(exc)
    frames = [f for f in te.stack if not f.filename.startswith(_PKG_DIR)]
    te.stack = traceback.StackSummary.from_list(frames)
    return "".join(te.format())


class TaskOutput(io.TextIOBase):
    """sys.stdout/sys.stderr of a worker: tags output with the running task.

    Before the first write of a task a marker line tells the raylet's log
    router which task (and notebook cell) the following lines belong to.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._last: Any = None
        self._lock = threading.Lock()
        # written since the last flush (tasks flush only when they printed)
        self.dirty = False

    def write(self, s: str) -> int:
        ctx = context.current_or_none()
        self.dirty = True
        with self._lock:
            if ctx is not self._last:
                self._last = ctx
                if ctx is None:
                    self._raw.write(format_marker("", "", "", "", ""))
                else:
                    actor = self._actor_name(ctx)
                    self._raw.write(format_marker(ctx.job_id.hex(), ctx.task_id.hex(), ctx.name,
                                                  ctx.context_tag, actor))
            return self._raw.write(s)  # type: ignore[no-any-return]

    @staticmethod
    def _actor_name(ctx: TaskContext) -> str:
        return ctx.name.split(".")[0] if ctx.actor_id and "." in ctx.name else ""

    def flush(self) -> None:
        self.dirty = False
        self._raw.flush()

    def fileno(self) -> int:
        return self._raw.fileno()  # type: ignore[no-any-return]

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._raw.encoding  # type: ignore[no-any-return]

    def writable(self) -> bool:
        return True


def install_task_output() -> None:
    sys.stdout = TaskOutput(sys.stdout)
    sys.stderr = TaskOutput(sys.stderr)


def run_exit_hooks() -> None:
    try:
        atexit._run_exitfuncs()
    except Exception:
        pass


__all__ = ["ActorExitRequested", "Executor", "TaskCancelledError", "install_task_output"]
