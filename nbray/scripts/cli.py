"""The ``nbray`` command line (flags named as in ``ray start``).

    nbray start --head [--port 6379] [--num-cpus N] [--num-gpus N] [--resources JSON]
                       [--object-store-memory BYTES] [--temp-dir DIR] [--storage URI] [--fresh]
    nbray start --address HOST:PORT [...]        join a cluster as a worker node
    nbray start ... --use-tls --tls-server-cert F --tls-server-key F --tls-ca-cert F   (or --allow-insecure-network)
    nbray tls init DIR [--host NAME ...]         a CA and a certificate for a TLS cluster
    nbray stop [--force] [--temp-dir DIR]        every cluster of the user on this machine (or under DIR)
    nbray status [--address HOST:PORT] [--temp-dir DIR]
    nbray list tasks|actors|objects|nodes|jobs|placement-groups|workers [--filter k=v] [--limit N] [--detail]
    nbray summary tasks|actors|objects
    nbray timeline [--output FILE]
    nbray get-auth-token [--address HOST:PORT] [--temp-dir DIR]
    nbray microbenchmark [--json] [--tls] [--envelope]
    nbray demo
    nbray job submit|status|logs|stop|list|delete ...   (see nbray/scripts/job_cli.py)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where a command needs it: building the parser (and `--help`)
    # must not pay for the config module and what it imports.
    from nbray.common.config import Config


def _json_arg(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{flag} must be JSON, e.g. '{{\"accel\": 1}}': {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{flag} must be a JSON object")
    return value


def _config(args: argparse.Namespace) -> Config:
    from nbray.common.config import Config

    config = Config()
    config.apply_env()
    if getattr(args, "system_config", None):
        config.apply(_json_arg(args.system_config, "--system-config"))
    return config


# ---- start ---------------------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    from nbray.node import detect, launcher, session
    from nbray.rpc import auth
    from nbray.scripts import tls_cli

    listen_hosts = [args.node_ip_address or detect.node_ip_address()]
    if args.head and args.include_dashboard:
        listen_hosts.append(args.dashboard_host)
    tls_cli.apply_start_flags(args, listen_hosts)
    config = _config(args)
    if args.storage is not None:
        if not args.head:
            raise SystemExit("--storage belongs to the head node (nbray start --head --storage URI)")
        config.gcs_storage = args.storage
    if args.fresh and not args.head:
        raise SystemExit("--fresh belongs to the head node (nbray start --head --fresh)")
    resources = _json_arg(args.resources, "--resources") if args.resources else None
    labels = _json_arg(args.labels, "--labels") if args.labels else None
    root = _temp_root(args)
    if args.head:
        port = args.port if args.port is not None else 6379
        node = launcher.start_head(
            config=config, port=port, node_ip=args.node_ip_address, num_cpus=args.num_cpus,
            num_gpus=args.num_gpus, resources=resources, object_store_memory=args.object_store_memory,
            memory=args.memory, temp_dir=root, labels=labels,
            include_dashboard=args.include_dashboard, dashboard_host=args.dashboard_host,
            dashboard_port=args.dashboard_port,
            client_server_port=args.ray_client_server_port if args.ray_client_server_port >= 0 else None,
            client_server_host=args.node_ip_address or "127.0.0.1", fresh=args.fresh,
        )
        with _stop_on_failure(node):
            session.publish_current_cluster(node.session_dir, node.gcs_address, temp_root=root)
            _print_head_started(node, args)
    else:
        if not args.address:
            raise SystemExit("nbray start needs --head or --address HOST:PORT")
        session_dir = session.session_for_address(args.address, temp_root=_temp_dir(args))
        token = session.find_token(session_dir)
        if args.auth_token_file:
            token = auth.read_token_file(args.auth_token_file)
        if token is None:
            raise SystemExit(f"No cluster token for {args.address}: set NBRAY_AUTH_TOKEN to the output of "
                             "'nbray get-auth-token' on the head node.")
        if args.temp_dir and session_dir is not None and os.path.dirname(session_dir) != root:
            session_dir = None  # the head's files are elsewhere: this node keeps its own under --temp-dir
        node = launcher.start_worker_node(
            config=config, gcs_address=args.address, token=token, node_ip=args.node_ip_address,
            num_cpus=args.num_cpus, num_gpus=args.num_gpus, resources=resources,
            object_store_memory=args.object_store_memory, memory=args.memory, temp_dir=root,
            session_dir=session_dir, labels=labels,
        )
        with _stop_on_failure(node):
            if session_dir is None:
                session.publish_current_cluster(node.session_dir, args.address, temp_root=root)
            print(f"Started an nbray node {node.node_id.hex()[:12]} joined to {args.address}.")
    if args.block:
        _block(node)
    return 0


@contextlib.contextmanager
def _stop_on_failure(node: Any) -> Iterator[None]:
    """Stop the node's processes if what follows their start fails: nothing is left running unrecorded."""
    try:
        yield
    except BaseException:
        node.stop(force=True)
        raise


def _print_head_started(node: Any, args: argparse.Namespace) -> None:
    temp = f" --temp-dir {shlex.quote(args.temp_dir)}" if args.temp_dir else ""
    print(f"Started an nbray head node at {node.gcs_address} (node {node.node_id.hex()[:12]}).")
    if node.extra.get("resumed"):
        print("  It resumed the cluster of the previous head on this port, which did not stop cleanly "
              "(start with --fresh to start empty).")
    print(f"  Session directory: {node.session_dir}")
    if node.extra.get("dashboard_url"):
        print(f"  Dashboard: {node.extra['dashboard_url']}")
    if node.extra.get("client_server_address"):
        print(f"  Notebook clients: nbray.init('nbray://{node.extra['client_server_address']}')")
    print("\nTo connect a driver on this machine:  nbray.init()  (or address='auto')")
    print(f"To add a node from another machine:    nbray start --address {node.gcs_address}")
    print(f"    with NBRAY_AUTH_TOKEN set to the output of 'nbray get-auth-token --address {node.gcs_address}'")
    print(f"To stop:                              nbray stop{temp}  (without --temp-dir: every cluster)")


def _temp_root(args: argparse.Namespace) -> str:
    """Where this command keeps (or looks for) session files: --temp-dir, else the default root."""
    from nbray.node import session

    return session.resolve_temp_root(getattr(args, "temp_dir", None))


def _temp_dir(args: argparse.Namespace) -> str | None:
    """--temp-dir as an absolute path, or None: then lookups cover every cluster of the user's registry."""
    temp_dir = getattr(args, "temp_dir", None)
    return os.path.abspath(temp_dir) if temp_dir else None


def _block(node: Any) -> None:
    stop = {"now": False}

    def on_signal(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop["now"] and all(p.poll() is None for p in node.processes.values()):
        time.sleep(0.5)
    node.stop()


# ---- stop ------------------------------------------------------------------------------------------------


def cmd_stop(args: argparse.Namespace) -> int:
    from nbray.node import stop

    report = stop.stop_clusters(_temp_dir(args), force=args.force)
    if report.survivors:
        print(f"nbray stop: processes still running after SIGKILL: {sorted(report.survivors)}", file=sys.stderr)
        return 1
    if not report.stopped_pids:
        print("No nbray processes are running.")
        return 0
    killed = f" ({len(report.killed_pids)} needed SIGKILL)" if report.killed_pids and not args.force else ""
    print(f"Stopped {len(report.stopped_pids)} nbray process(es){killed}.")
    return 0


# ---- status ------------------------------------------------------------------------------------------------


def _find_cluster(address: str | None, temp_dir: str | None) -> tuple[str, str | None]:
    """(GCS address, session dir or None) of the cluster a command talks to.

    `temp_dir` None: any cluster of the user on this machine (the newest head
    when no address is given); else only one started under that root.
    """
    from nbray.node import session

    if address is None:
        found = session.find_current_cluster(temp_dir)
        if found is None:
            where = f"under {temp_dir}" if temp_dir else "on this machine"
            raise SystemExit(f"No running nbray cluster found {where}; start one with 'nbray start --head' "
                             "or pass --address HOST:PORT.")
        return found
    return address, session.session_for_address(address, temp_root=temp_dir)


def _gcs_client(address: str | None, temp_dir: str | None) -> Any:
    from nbray.node import session
    from nbray.rpc.blocking import BlockingClient

    address, session_dir = _find_cluster(address, temp_dir)
    token = session.find_token(session_dir)
    if token is None:
        raise SystemExit(f"No cluster token for {address}; set NBRAY_AUTH_TOKEN.")
    try:
        return BlockingClient(address, token, role="cli", timeout_s=10.0)
    except ConnectionError as exc:
        raise SystemExit(f"Could not reach the GCS at {address}: {exc}") from None


def _fmt_amount(name: str, value: float) -> str:
    if name in ("memory", "object_store_memory"):
        return _fmt_bytes(value)
    return f"{value:g}"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return str(n)


def format_status(status: Any) -> str:
    from nbray.protocol import gcs_pb2

    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"======== Cluster status: {now} ========", "Node status", "-" * 60, "Active:"]
    for n in status.nodes:
        lines.append(f" 1 node_{n.node_id.hex()[:12]} ({n.node_ip})")
    if not status.nodes:
        lines.append(" (no active nodes)")
    lines.append("Recent failures:")
    if status.dead_nodes:
        for n in status.dead_nodes:
            lines.append(f" node_{n.node_id.hex()[:12]} ({n.node_ip}): {n.death_reason} {n.death_reason_message}")
    else:
        lines.append(" (no failures)")
    lines += ["", "Resources", "-" * 60, "Usage:"]
    total: dict[str, float] = {}
    avail: dict[str, float] = {}
    for n in status.nodes:
        for k, v in n.total.items():
            total[k] = total.get(k, 0.0) + v
        for k, v in n.available.items():
            avail[k] = avail.get(k, 0.0) + v
    store_used = sum(n.object_store_used_bytes for n in status.nodes)
    for name in sorted(total, key=lambda k: (k not in ("CPU", "GPU", "memory", "object_store_memory"), k)):
        if name.startswith("node:") or "_group_" in name:
            continue
        if name == "object_store_memory":
            lines.append(f" {_fmt_bytes(store_used)}/{_fmt_bytes(total[name])} object_store_memory")
            continue
        used = total[name] - max(0.0, avail.get(name, 0.0))
        lines.append(f" {_fmt_amount(name, used)}/{_fmt_amount(name, total[name])} {name}")
    lines += ["", "Demands:"]
    if not status.demands and not status.pending_placement_groups and not status.pending_actors:
        lines.append(" (no resource demands)")
    for d in status.demands:
        tag = " (infeasible)" if d.infeasible else ""
        lines.append(f" {dict(d.shape)}: {d.count}+ pending tasks/actors{tag}")
    strategies = {v: k for k, v in gcs_pb2.PlacementGroupInfo.Strategy.items()}
    for pg in status.pending_placement_groups:
        bundles = [dict(b.amounts) for b in pg.bundles]
        lines.append(f" {bundles} ({strategies.get(pg.strategy, 'PACK')}): 1+ pending placement groups"
                     f"{' — ' + pg.pending_reason if pg.pending_reason else ''}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    with _gcs_client(args.address, _temp_dir(args)) as client:
        status = client.call("GcsService.GetClusterStatus")
    print(format_status(status))
    return 0


# ---- state API ----------------------------------------------------------------------------------------------


_LIST_COLUMNS = {
    "tasks": ["task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type",
              "func_or_class_name", "parent_task_id", "node_id", "worker_id", "worker_pid", "error_type"],
    "actors": ["actor_id", "class_name", "state", "job_id", "name", "node_id", "pid", "ray_namespace"],
    "objects": ["object_id", "object_size", "task_status", "reference_type", "type", "pid", "ip"],
    "nodes": ["node_id", "node_ip", "is_head_node", "state", "node_name"],
    "jobs": ["job_id", "status", "entrypoint", "start_time"],
    "placement-groups": ["placement_group_id", "name", "creator_job_id", "state"],
    "workers": ["worker_id", "worker_type", "pid", "node_id", "is_idle"],
}


def _parse_filters(filters: list[str]) -> list[tuple[str, str, str]]:
    out = []
    for f in filters or []:
        if "!=" in f:
            k, v = f.split("!=", 1)
            out.append((k.strip(), "!=", v.strip()))
        elif "=" in f:
            k, v = f.split("=", 1)
            out.append((k.strip(), "=", v.strip()))
        else:
            raise SystemExit(f"--filter must look like key=value or key!=value, got {f!r}")
    return out


def _state_address(args: argparse.Namespace) -> str | None:
    """The address for the state API; with --temp-dir, the cluster found there (and its token)."""
    if not getattr(args, "temp_dir", None):
        return args.address  # type: ignore[no-any-return]
    from nbray.rpc import auth

    address, session_dir = _find_cluster(args.address, _temp_dir(args))
    token_file = os.path.join(session_dir, auth.TOKEN_FILE_NAME) if session_dir else ""
    if os.path.exists(token_file) and auth.TOKEN_ENV not in os.environ:
        os.environ[auth.TOKEN_FILE_ENV] = token_file  # this command's own process only
    return address


def cmd_list(args: argparse.Namespace) -> int:
    from nbray.util import state

    fn = {"tasks": state.list_tasks, "actors": state.list_actors, "objects": state.list_objects,
          "nodes": state.list_nodes, "jobs": state.list_jobs, "placement-groups": state.list_placement_groups,
          "workers": state.list_workers}[args.resource]
    rows = fn(_state_address(args), filters=_parse_filters(args.filter), limit=args.limit, detail=args.detail)
    if args.format == "json" or args.detail:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    columns = _LIST_COLUMNS[args.resource]
    _print_table(rows, columns)
    print(f"\n{len(rows)} {args.resource} shown.")
    return 0


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        return s if len(s) <= 40 else s[:37] + "..."

    widths = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(cell(r.get(c)).ljust(widths[c]) for c in columns))


def cmd_summary(args: argparse.Namespace) -> int:
    from nbray.util import state

    if args.resource == "tasks":
        summary = state.summarize_tasks(_state_address(args))["cluster"]
        print(f"Total tasks: {summary['total_tasks']}\n")
        rows = [{"FUNC_OR_CLASS_NAME": k, "TYPE": v["type"],
                 "STATE_COUNTS": json.dumps(v["state_counts"])} for k, v in summary["summary"].items()]
        _print_table(rows, ["FUNC_OR_CLASS_NAME", "TYPE", "STATE_COUNTS"])
    elif args.resource == "actors":
        summary = state.summarize_actors(_state_address(args))["cluster"]
        print(f"Total actors: {summary['total_actors']}\n")
        rows = [{"CLASS_NAME": k, "STATE_COUNTS": json.dumps(v["state_counts"])}
                for k, v in summary["summary"].items()]
        _print_table(rows, ["CLASS_NAME", "STATE_COUNTS"])
    else:
        print(json.dumps(state.summarize_objects(_state_address(args)), indent=2))
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    from nbray.util import timeline

    path = args.output or f"timeline-{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}.json"
    try:
        path = timeline.check_output_path(path)
    except OSError as exc:
        raise SystemExit(f"nbray timeline: {exc.strerror}: {exc.filename}") from None
    events = timeline.timeline(address=_state_address(args))
    assert events is not None
    with open(path, "w") as f:
        json.dump(events, f)
    print(f"Wrote {len(events)} events to {path} (open it in ui.perfetto.dev or chrome://tracing).")
    return 0


def cmd_get_auth_token(args: argparse.Namespace) -> int:
    from nbray.node import session
    from nbray.rpc import auth

    address, session_dir = _find_cluster(args.address, _temp_dir(args))
    token = session.find_token(session_dir)
    if token is None:
        raise SystemExit(f"No cluster token found for {address}: it is kept by the head's machine; run "
                         "'nbray get-auth-token' there.")
    print(auth.encode_token(token))
    return 0


def cmd_microbenchmark(args: argparse.Namespace) -> int:
    from nbray.scripts.microbenchmark import run

    return run(as_json=args.json, quick=args.quick, only=args.only,
               compare_ray=args.compare_ray or bool(args.ray_python), ray_python=args.ray_python,
               tls=args.tls, envelope=args.envelope, envelope_tasks=args.envelope_tasks,
               envelope_put_gib=args.envelope_put_gib)


def cmd_demo(args: argparse.Namespace) -> int:
    from nbray.scripts.demo import run_demo

    return run_demo()


_TEMP_DIR_HELP = ("root directory of session files (default: $NBRAY_TMPDIR/nbray); other commands "
                  "find the cluster without it, or pass it to pick a cluster started under it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbray", description="nbray: Ray-compatible clusters for notebooks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("start", help="start a head node or join a cluster")
    p.add_argument("--head", action="store_true", help="start the head node (GCS + raylet)")
    p.add_argument("--address", help="GCS address HOST:PORT of the cluster to join")
    p.add_argument("--port", type=int, default=None, help="GCS port of a head node (default 6379)")
    p.add_argument("--node-ip-address", default=None, help="IP to listen on (default 127.0.0.1)")
    p.add_argument("--num-cpus", type=float, default=None)
    p.add_argument("--num-gpus", type=float, default=None)
    p.add_argument("--memory", type=int, default=None, help="bytes of the 'memory' resource")
    p.add_argument("--resources", default=None, help="custom resources as JSON, e.g. '{\"accel\": 2}'")
    p.add_argument("--labels", default=None, help="node labels as JSON")
    p.add_argument("--object-store-memory", type=int, default=None, help="object store capacity in bytes")
    p.add_argument("--temp-dir", default=None, help=_TEMP_DIR_HELP)
    p.add_argument("--include-dashboard", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--dashboard-host", default="127.0.0.1")
    p.add_argument("--dashboard-port", type=int, default=8265)
    p.add_argument("--ray-client-server-port", type=int, default=10001,
                   help="port of the notebook client server (-1 to disable)")
    p.add_argument("--system-config", default=None, help="JSON overrides of nbray's config")
    p.add_argument("--auth-token-file", default=None, help="file holding the cluster token")
    p.add_argument("--storage", default=None, metavar="URI",
                   help="where the head's GCS keeps its tables: sqlite:///PATH or a file path, "
                        "redis://[:PASSWORD@]HOST:PORT/DB[?namespace=NAME] (needs nbray[redis]); a head "
                        "started again on it resumes them; memory:// for nowhere (default: a SQLite file "
                        "under --temp-dir kept per --port, resumed by the next head on that port if this "
                        "one did not stop cleanly)")
    p.add_argument("--fresh", action="store_true",
                   help="start the head empty even if the previous head on this --port and --temp-dir "
                        "did not stop cleanly (its tables and token are discarded)")
    p.add_argument("--block", action="store_true", help="stay in the foreground until interrupted")
    from nbray.scripts import tls_cli
    tls_cli.add_start_flags(p)
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", help="stop every nbray cluster of this user on this machine")
    p.add_argument("--force", action="store_true", help="SIGKILL instead of a graceful stop")
    p.add_argument("--temp-dir", default=None, help="stop only the clusters started under this root")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", help="nodes, resource usage and pending demand")
    p.add_argument("--address", default=None)
    p.add_argument("--temp-dir", default=None, help=_TEMP_DIR_HELP)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", help="list tasks, actors, objects, nodes, jobs, placement groups, workers")
    p.add_argument("resource", choices=sorted(_LIST_COLUMNS))
    p.add_argument("--address", default=None)
    p.add_argument("--filter", action="append", default=[], help="key=value or key!=value (repeatable)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--detail", action="store_true")
    p.add_argument("--format", choices=["default", "json", "table"], default="default")
    p.add_argument("--temp-dir", default=None, help=_TEMP_DIR_HELP)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("summary", help="counts of tasks, actors or objects")
    p.add_argument("resource", choices=["tasks", "actors", "objects"])
    p.add_argument("--address", default=None)
    p.add_argument("--temp-dir", default=None, help=_TEMP_DIR_HELP)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("timeline", help="write a Chrome trace of the task attempts the GCS keeps")
    p.add_argument("--address", default=None)
    p.add_argument("--output", "-o", default=None, help="file to write (default: timeline-<date>.json)")
    p.add_argument("--temp-dir", default=None, help=_TEMP_DIR_HELP)
    p.set_defaults(func=cmd_timeline)

    from nbray.scripts import job_cli, memory_cli, tls_cli
    memory_cli.add_parser(sub, _state_address, _TEMP_DIR_HELP)
    tls_cli.add_parser(sub)
    job_cli.add_parser(sub)

    p = sub.add_parser("get-auth-token", help="print the cluster token of the local head node")
    p.add_argument("--address", default=None, help="GCS address HOST:PORT (default: the newest local head)")
    p.add_argument("--temp-dir", default=None, help=_TEMP_DIR_HELP)
    p.set_defaults(func=cmd_get_auth_token)

    p = sub.add_parser("microbenchmark", help="measure nbray's hot paths")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--quick", action="store_true", help="shorter runs")
    p.add_argument("--only", default=None, help="comma-separated substrings of case names to run")
    p.add_argument("--envelope", action="store_true", help="the single-node scale envelope instead")
    p.add_argument("--envelope-tasks", type=int, default=None, help="queued tasks (default 1,000,000)")
    p.add_argument("--envelope-put-gib", type=float, default=None, help="largest put (default 4 GiB)")
    p.add_argument("--compare-ray", action="store_true", help="also run the cases on Ray, if installed")
    p.add_argument("--tls", action="store_true",
                   help="run the network cases in plaintext and over TLS (certificates made in a temp dir)")
    p.add_argument("--ray-python", metavar="PYTHON",
                   help="run the Ray cases with this interpreter (a separate environment with ray, numpy, "
                        "cloudpickle, grpcio and pyarrow installed)")
    p.set_defaults(func=cmd_microbenchmark)

    p = sub.add_parser("demo", help="run a small task/actor program on a local cluster")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from nbray.exceptions import AuthenticationError

    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError, AuthenticationError) as exc:
        print(f"nbray {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
