"""The remote half of ``%%remote`` on Ray: a cell that streams its output.

Runs in Ray worker processes (``stream_cell`` as a streaming-generator task,
``RaySessionActor`` behind ``--session``). Imports nothing of Ray: the
driver wraps these with ``ray.remote``. The cell runs on a thread of its own
(``remote_cell.run_in_namespace``) with ``sys.stdout``/``sys.stderr``
writing into a queue; the generator yields what was written every
``OUTPUT_PERIOD_S`` while the cell runs, then the cell's value and reply
(or its exception, its traceback already rendered with the cell's lines).
A cancellation (``ray.cancel``: KeyboardInterrupt in the generator) is
passed on to the cell's thread. A cell that names matplotlib gets the
notebook's figure backend, so ``plt.show()`` streams its figures into the
cell as it runs (without it the worker's default Agg backend would hold them
until the cell ends).
"""

from __future__ import annotations

import ctypes
import dataclasses
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any

from nbray.jupyter.remote_cell import TRACEBACK_ATTR, CellRequest, TextSink, new_namespace, run_in_namespace

OUTPUT_PERIOD_S = 0.05
"""How long written output may wait before it is sent (it is batched within this)."""
INTERRUPT_JOIN_S = 2.0
"""How long a cancelled cell's thread gets to stop before the generator gives up on it."""
_DONE = object()


class _QueueStream(TextSink):
    """A text stream whose writes become (is_err, text) items of a queue."""

    def __init__(self, chunks: queue.Queue[Any], is_err: bool) -> None:
        self.chunks = chunks
        self.is_err = is_err

    def write(self, s: str) -> int:
        if s:
            self.chunks.put((self.is_err, s))
        return len(s)

    def flush(self) -> None:
        pass


def _portable_error(exc: BaseException) -> BaseException:
    """`exc` when it pickles, else a RuntimeError carrying its rendering."""
    import cloudpickle

    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception:
        stand_in = RuntimeError(f"{type(exc).__name__}: {exc}")
        setattr(stand_in, TRACEBACK_ATTR, getattr(exc, TRACEBACK_ATTR, str(stand_in)))
        return stand_in


def _interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in `thread` (at its next Python instruction)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


def drain(chunks: queue.Queue[Any], first_timeout_s: float) -> tuple[list[tuple[bool, str]], bool]:
    """What is queued now (waiting up to `first_timeout_s` for the first item),
    neighbouring pieces of one stream joined; and whether the cell ended."""
    out: list[tuple[bool, str]] = []
    done = False
    try:
        item = chunks.get(timeout=first_timeout_s)
        while True:
            if item is _DONE:
                done = True
            elif out and out[-1][0] == item[0]:
                out[-1] = (item[0], out[-1][1] + item[1])
            else:
                out.append(item)
            item = chunks.get_nowait()
    except queue.Empty:
        pass
    return out, done


def stream_cell(req: CellRequest, ns: dict[str, Any] | None = None) -> Iterator[tuple[Any, ...]]:
    """Run `req` (in `ns`, or a fresh namespace); yields ``("out", [(is_err,
    text), ...])`` while it runs, then ``("result", value, reply)`` or
    ``("error", exception)``."""
    namespace = ns if ns is not None else new_namespace()
    if not req.wants_matplotlib and "matplotlib" in req.code:
        req = dataclasses.replace(req, wants_matplotlib=True)
    chunks: queue.Queue[Any] = queue.Queue()
    ended: dict[str, Any] = {}

    def run() -> None:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _QueueStream(chunks, False), _QueueStream(chunks, True)
        try:
            ended["result"] = run_in_namespace(req, namespace)
        except BaseException as exc:  # the cell's own error travels back as its outcome
            ended["error"] = exc
        finally:
            sys.stdout, sys.stderr = saved
            chunks.put(_DONE)

    thread = threading.Thread(target=run, name="nbray-remote-cell", daemon=True)
    thread.start()
    try:
        done = False
        while not done:
            out, done = drain(chunks, OUTPUT_PERIOD_S)
            if out:
                yield ("out", out)
    except KeyboardInterrupt:
        _interrupt(thread)
        thread.join(INTERRUPT_JOIN_S)
        out, _ = drain(chunks, 0)
        if out:
            yield ("out", out)
        raise
    if "error" in ended:
        yield ("error", _portable_error(ended["error"]))
    else:
        value, reply = ended["result"]
        yield ("result", value, reply)


def run_cell_once(req: CellRequest, ns: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """Run `req` (in `ns`, or a fresh namespace), its output going to the worker's own
    streams; returns ``("result", value, reply)`` or ``("error", exception)``.
    The remote cell on Ray Client, which has no streaming generators: Ray
    forwards the output to the client (``ray_client_logs``)."""
    if not req.wants_matplotlib and "matplotlib" in req.code:
        req = dataclasses.replace(req, wants_matplotlib=True)
    try:
        value, reply = run_in_namespace(req, ns if ns is not None else new_namespace())
    except Exception as exc:  # the cell's own error travels back as its outcome
        return ("error", _portable_error(exc))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return ("result", value, reply)


class RaySessionActor:
    """``%%remote --session NAME`` on Ray: an actor keeping one namespace.

    Its ``repr`` is `log_name`: Ray labels an actor's forwarded output with
    the actor's ``repr`` where the class defines one (else with the class
    name), and on Ray Client, where the cell's output arrives that way, the
    notebook shows lines labelled as a remote cell's without a prefix."""

    def __init__(self, name: str, log_name: str = "") -> None:
        self.name = name
        self.log_name = log_name or f"session {name}"
        self.ns = new_namespace()
        self.cells_run = 0

    def __repr__(self) -> str:
        return self.log_name

    def run(self, req: CellRequest) -> Iterator[tuple[Any, ...]]:
        self.cells_run += 1
        yield from stream_cell(req, self.ns)

    def run_once(self, req: CellRequest) -> tuple[Any, ...]:
        """``run`` on Ray Client (no streaming generators there)."""
        self.cells_run += 1
        return run_cell_once(req, self.ns)

    def names(self) -> list[str]:
        return sorted(k for k in self.ns if not k.startswith("_") and k not in ("display", "get_ipython"))
