"""The IPython extension: ``%load_ext nbray`` gives %nbray, %%remote and %remote.

Runs in the notebook kernel (or any IPython shell). Loading it also makes
worker output of *every* task and actor appear under the cell that
submitted it (``output.CellOutputRouter``), and hooks each cell's start
(tag the cell's work, collect finished ``--async`` cells) and end (a log
flush barrier, so output printed by the cell's tasks is complete; skipped
when no task was submitted or running since the last one, ``log_barrier``).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class

from nbray.jupyter import backends, debug
from nbray.jupyter.backends import BackendUnavailable, NodeInfo
from nbray.jupyter.cell_analysis import split_line_options
from nbray.jupyter.dispatch import RemoteCellRunner
from nbray.jupyter.magic_options import (
    REMOTE_BARE_FLAGS,
    REMOTE_VALUE_FLAGS,
    nbray_parser,
    parse_bytes,
    parse_remote_args,
    parse_resources,
    parse_runtime_env,
    remote_parser,
)
from nbray.jupyter.output import CellOutputRouter
from nbray.jupyter.sessions import SessionRegistry, format_table
from nbray.jupyter.settings import get_settings

REMOTE_EXAMPLES = """\
Examples
--------
Variables the cell reads are sent with it, the ones it assigns come back,
and its last expression is the cell's result (after a cell ``n = 1000``)::

    %%remote --num-cpus 1
    import math
    total = sum(math.sqrt(i) for i in range(n))
    total

Ask for a GPU and bring back only ``gpus`` (``--no-pull``: nothing)::

    %%remote --num-gpus 1 --pull gpus
    import nbray
    gpus = nbray.get_gpu_ids()
    scratch = "stays on the cluster"

Figures, display() and DataFrames made remotely show up in the cell::

    %%remote
    import matplotlib.pyplot as plt
    plt.plot([1, 3, 2])
    display({"shown": "here"})

In the background: ``job`` is the ObjectRef of the last expression; the
variables arrive at the next cell boundary (or with ``%nbray wait job``)::

    %%remote --async job
    import time
    time.sleep(1)
    answer = 42
    answer

Once on every alive node, each node's output labelled::

    %%remote --all
    import socket
    print(socket.gethostname())

A persistent remote namespace (an actor that keeps one GPU) across cells::

    %%remote --session gpu --num-gpus 1
    steps = 0

    %%remote --session gpu
    steps += 1
    steps

One expression (line magic), here on the head node::

    %remote --node head sum(range(10))

Interrupting the kernel cancels a remote cell (forced after a grace
period). Arrays sent to a cell are read-only views: copy them to change
them in place. Mutating a notebook object inside the cell (``lst.append``)
changes the remote copy only; assign it (``lst = lst + [1]``) to bring it
back.
"""

NBRAY_EXAMPLES = """\
Examples
--------
::

    %nbray init                              # a cluster on this machine, or start one
    %nbray init 10.0.0.5:6379                # a cluster's GCS address
    %nbray init nbray://10.0.0.5:10001       # as a client, from outside the cluster
    %nbray init nbray://head:10001 --tls     # as a client, over TLS
    %nbray init --num-cpus 4 --num-gpus 1    # start a local cluster of that size
    %nbray init nbray://head:10001 --working-dir ./data   # files for the workers
    %nbray init HOST:6379 --runtime-env '{"env_vars": {"MODE": "test"}}'
    %nbray init --backend ray auto           # a Ray cluster (ray.init addresses: auto, HOST:PORT, ray://HOST:10001)
    %nbray status                            # nodes, resources, sessions
    %nbray sessions                          # %%remote --session namespaces
    %nbray close gpu                         # end a session (%nbray close --all)
    %nbray wait job                          # wait for %%remote --async job
    %nbray shutdown                          # close sessions and disconnect
    %nbray debug [TASK_ID]                   # re-run a failed task here, in the debugger
"""


@magics_class
class NbrayMagics(Magics):
    def __init__(self, shell: Any, extension: NbrayExtension) -> None:
        super().__init__(shell)
        self.ext = extension

    @line_magic
    def nbray(self, line: str) -> Any:
        """Connect to and manage an nbray cluster."""
        if line.split()[:1] == ["debug"]:
            return debug.run(line)
        parser = nbray_parser()
        args = parser.parse_args(_split(line))
        if args.help or not args.command:
            print(parser.format_help() + "\n" + NBRAY_EXAMPLES)
            return None
        return getattr(self, f"_cmd_{args.command}")(args)

    @line_cell_magic
    def remote(self, line: str, cell: str | None = None) -> Any:
        """Run a cell (%%remote) or one expression (%remote) on the cluster."""
        if cell is None:
            tokens, expression = split_line_options(line, REMOTE_VALUE_FLAGS, REMOTE_BARE_FLAGS)
            parser = _remote_parser("%remote")
            opts = parse_remote_args(parser, tokens)
            if opts.help or not expression:
                print(parser.format_help() + "\n" + REMOTE_EXAMPLES)
                return None
            return self.ext.runner.run(expression, opts)
        parser = _remote_parser("%%remote")
        opts = parse_remote_args(parser, _split(line))
        if opts.help:
            print(parser.format_help() + "\n" + REMOTE_EXAMPLES)
            return None
        return self.ext.runner.run(cell, opts, header_line=f"%%remote {line}".rstrip())

    # ---- %nbray subcommands ------------------------------------------------------------------------------

    def _cmd_init(self, args: Any) -> Any:
        kwargs: dict[str, Any] = {}
        try:
            if args.num_cpus is not None:
                kwargs["num_cpus"] = args.num_cpus
            if args.num_gpus is not None:
                kwargs["num_gpus"] = args.num_gpus
            if args.resources:
                kwargs["resources"] = parse_resources(args.resources)
            if args.object_store_memory:
                kwargs["object_store_memory"] = parse_bytes(args.object_store_memory)
            runtime_env = parse_runtime_env(args.runtime_env, args.working_dir)
            if runtime_env is not None:
                kwargs["runtime_env"] = runtime_env
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if args.namespace:
            kwargs["namespace"] = args.namespace
        if args.include_dashboard:
            kwargs["include_dashboard"] = True
        if args.no_log_to_driver:
            kwargs["log_to_driver"] = False
        if args.tls:
            kwargs["tls"] = True
        if backends.current().connected():
            raise UsageError("already connected; run '%nbray shutdown' first to connect elsewhere")
        name = args.backend or "nbray"
        try:
            backend = backends.make(name) if name != backends.current().name else backends.current()
        except BackendUnavailable as exc:
            raise UsageError(str(exc)) from None
        if args.tls and name != "nbray":
            raise UsageError("--tls is for nbray:// clients; Ray reads its TLS settings from RAY_USE_TLS and friends")
        context = backend.connect(args.address, **kwargs)
        backends.use(backend)
        self.ext.router.attach()
        return context

    def _cmd_status(self, args: Any) -> None:
        _require_connection()
        print(format_nodes(backends.current().nodes()))
        if self.ext.sessions.rows():
            print("\nSessions:\n" + format_table(self.ext.sessions.rows()))
        if self.ext.runner.async_cells:
            print("\nRunning --async cells: " + ", ".join(sorted(self.ext.runner.async_cells)))

    def _cmd_shutdown(self, args: Any) -> None:
        backend = backends.current()
        closed = self.ext.sessions.close_all() if backend.connected() else []
        self.ext.sessions.forget_all()
        self.ext.runner.async_cells.clear()
        backend.disconnect()
        print(f"Disconnected from the {'nbray' if backend.name == 'nbray' else 'Ray'} cluster" + (f" (closed sessions: {', '.join(closed)})" if closed else "")
              + ".")

    def _cmd_sessions(self, args: Any) -> None:
        print(format_table(self.ext.sessions.rows()))

    def _cmd_close(self, args: Any) -> None:
        if args.all:
            names = self.ext.sessions.close_all()
            print(f"Closed sessions: {', '.join(names)}" if names else "No sessions to close.")
            return
        if not args.name:
            raise UsageError("%nbray close NAME (or --all)")
        if not self.ext.sessions.close(args.name):
            raise UsageError(f"no session named {args.name!r}; see %nbray sessions")
        print(f"Closed session {args.name!r}.")

    def _cmd_wait(self, args: Any) -> None:
        self.ext.runner.collect_async([args.name], wait=True)


NbrayMagics.nbray.__doc__ = nbray_parser().format_help() + "\n" + NBRAY_EXAMPLES
NbrayMagics.remote.__doc__ = remote_parser("%%remote").format_help() + "\n" + REMOTE_EXAMPLES


@functools.lru_cache(maxsize=2)
def _remote_parser(prog: str) -> Any:
    """The parser of %%remote / %remote options, built once (parsing leaves it unchanged)."""
    return remote_parser(prog)


def _split(line: str) -> list[str]:
    import shlex

    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot parse {line!r}: {exc}") from None


def _require_connection() -> None:
    if not backends.current().connected():
        raise UsageError("nbray is not connected: run '%nbray init [ADDRESS]' first")


def format_status(status: Any) -> str:
    """A text table of nodes and their resource use (GetClusterStatus)."""
    lines = [f"{'NODE':<14}{'IP':<16}{'CPU':>12}{'GPU':>10}{'OBJECT STORE':>24}"]
    for n in status.nodes:
        total, avail = dict(n.total), dict(n.available)
        cpu = f"{total.get('CPU', 0) - avail.get('CPU', 0):g}/{total.get('CPU', 0):g}"
        gpu = f"{total.get('GPU', 0) - avail.get('GPU', 0):g}/{total.get('GPU', 0):g}"
        store = f"{_mb(n.object_store_used_bytes)}/{_mb(n.object_store_bytes)} MB"
        lines.append(f"{n.node_id.hex()[:12]:<14}{n.node_ip:<16}{cpu:>12}{gpu:>10}{store:>24}")
    if status.pending_actors or status.demands:
        lines.append(f"pending: {len(status.demands)} resource demand(s), {status.pending_actors} actor(s)")
    return "\n".join(lines)


def format_nodes(nodes: list[NodeInfo]) -> str:
    """A text table of alive nodes and their resource use (any backend)."""
    lines = [f"{'NODE':<14}{'IP':<16}{'CPU':>12}{'GPU':>10}{'OBJECT STORE':>24}"]
    for n in nodes:
        cpu = f"{n.total.get('CPU', 0) - n.available.get('CPU', 0):g}/{n.total.get('CPU', 0):g}"
        gpu = f"{n.total.get('GPU', 0) - n.available.get('GPU', 0):g}/{n.total.get('GPU', 0):g}"
        store = f"{_mb(n.object_store_used_bytes)}/{_mb(n.object_store_bytes)} MB"
        role = "  head" if n.is_head else ""
        lines.append(f"{n.node_id[:12]:<14}{n.node_ip:<16}{cpu:>12}{gpu:>10}{store:>24}{role}")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


class NbrayExtension:
    """Per-shell state of the extension."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.router = CellOutputRouter(shell)
        self.sessions = SessionRegistry()
        self.runner = RemoteCellRunner(shell, self.router, self.sessions, get_settings())
        self.magics = NbrayMagics(shell, self)
        self._original_start_displayhook: Any = None
        self._runtime: Any = backends.current().connection()
        self.progress_bars: Any = None  # tqdm_ray bars drawn as widgets, in a kernel

    def install_displayhook_flush(self) -> None:
        """Before a cell's result (Out[n]) is shown, let output its tasks
        already printed arrive, so it shows above the result."""
        hook = getattr(self.shell, "displayhook", None)
        start = getattr(hook, "start_displayhook", None)
        if start is None or getattr(start, "_nbray_flush", False):
            return

        def start_displayhook() -> Any:
            backend = backends.current()
            if backend.connected():
                backend.flush_output(get_settings().flush_logs_timeout_s)
            return start()

        start_displayhook._nbray_flush = True  # type: ignore[attr-defined]
        hook.start_displayhook = start_displayhook  # type: ignore[union-attr]
        self._original_start_displayhook = start

    def remove_displayhook_flush(self) -> None:
        hook = getattr(self.shell, "displayhook", None)
        if hook is not None and getattr(self, "_original_start_displayhook", None) is not None:
            if "start_displayhook" in vars(hook):
                del hook.start_displayhook
            self._original_start_displayhook = None

    def pre_run_cell(self, info: Any = None) -> None:
        self.router.begin_cell(getattr(info, "cell_id", None))
        self.router.attach()
        self._check_connection()
        self._collect_async()

    def _check_connection(self) -> None:
        """After nbray.shutdown() / a new init, sessions and --async cells of
        the old connection are gone with it."""
        rt = backends.current().connection()
        if rt is not self._runtime:
            if self._runtime is not None:
                self.sessions.forget_all()
                self.runner.async_cells.clear()
            self._runtime = rt

    def post_run_cell(self, result: Any = None) -> None:
        backend = backends.current()
        if not backend.connected():
            return
        attached = self.router.attach()
        self._check_connection()
        if attached:
            backend.flush_output(get_settings().flush_logs_timeout_s)
        if isinstance(getattr(result, "error_in_exec", None), KeyboardInterrupt):
            cancelled = backend.interrupt_cell_tasks(get_settings().cancel_grace_s)
            if cancelled:
                print(f"[nbray] cancelling the {cancelled} task(s) this cell submitted", file=sys.stderr)
        self._collect_async()

    def _collect_async(self) -> None:
        if self.runner.async_cells and backends.current().connected():
            try:
                self.runner.collect_async()
            except Exception as exc:  # never break the user's cell for this
                print(f"[nbray] collecting --async cells failed: {exc}")


_extensions: dict[int, NbrayExtension] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbray``."""
    if id(ipython) in _extensions:
        return
    ext = NbrayExtension(ipython)
    _extensions[id(ipython)] = ext
    ipython.register_magics(ext.magics)
    ipython.events.register("pre_run_cell", ext.pre_run_cell)
    ipython.events.register("post_run_cell", ext.post_run_cell)
    ext.install_displayhook_flush()
    debug.install_error_hint(ipython)
    # the cell running %load_ext already started: route its output too
    ext.router.begin_cell(None)
    ext.router.attach()
    if ext.router.kernel is not None:  # an IPython terminal keeps the text bars
        from nbray.widgets import tqdm_bars

        ext.progress_bars = tqdm_bars.install(ext.router)


def unload_ipython_extension(ipython: Any) -> None:
    ext = _extensions.pop(id(ipython), None)
    if ext is None:
        return
    for event, fn in (("pre_run_cell", ext.pre_run_cell), ("post_run_cell", ext.post_run_cell)):
        try:
            ipython.events.unregister(event, fn)
        except ValueError:
            pass
    ext.router.detach()
    ext.remove_displayhook_flush()
    if ext.progress_bars is not None:
        from nbray.widgets import tqdm_bars

        tqdm_bars.uninstall(ext.progress_bars)
    for kind in ("line", "cell"):
        for name in ("nbray", "remote"):
            ipython.magics_manager.magics[kind].pop(name, None)


def extension_for(ipython: Any) -> NbrayExtension | None:
    return _extensions.get(id(ipython))
