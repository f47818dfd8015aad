"""``nbray job ...``: the Jobs API from the shell (flags named as in ``ray job``).

    nbray job submit [--address URL] [--submission-id ID] [--working-dir DIR] [--runtime-env-json JSON]
                     [--metadata-json JSON] [--entrypoint-num-cpus N] [--entrypoint-num-gpus N]
                     [--entrypoint-resources JSON] [--no-wait] -- ENTRYPOINT...
    nbray job status ID | logs ID [--follow] | stop ID [--no-wait] | list | delete ID

Without --no-wait, ``submit`` follows the log until the job ends and exits
1 unless it SUCCEEDED.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

STOP_WAIT_S = 60.0


def _json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{flag} must be JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{flag} must be a JSON object")
    return value


def _client(args: argparse.Namespace) -> Any:
    from nbray.job_submission import JobSubmissionClient

    return JobSubmissionClient(args.address, verify=not args.no_verify)


def _follow(client: Any, sid: str) -> None:
    for chunk in client.iter_job_logs(sid):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def cmd_submit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    entrypoint = list(args.entrypoint)
    if entrypoint and entrypoint[0] == "--":
        entrypoint = entrypoint[1:]
    if not entrypoint:
        parser.error("an entrypoint is required: nbray job submit [options] -- COMMAND")
    runtime_env = _json_object(args.runtime_env_json, "--runtime-env-json") or {}
    if args.working_dir:
        runtime_env["working_dir"] = args.working_dir
    client = _client(args)
    sid = client.submit_job(
        entrypoint=" ".join(entrypoint) if len(entrypoint) == 1 else shlex.join(entrypoint),
        submission_id=args.submission_id, runtime_env=runtime_env or None,
        metadata=_json_object(args.metadata_json, "--metadata-json"),
        entrypoint_num_cpus=args.entrypoint_num_cpus, entrypoint_num_gpus=args.entrypoint_num_gpus,
        entrypoint_resources=_json_object(args.entrypoint_resources, "--entrypoint-resources"))
    print(f"Job '{sid}' submitted successfully", file=sys.stderr)
    if args.no_wait:
        print(f"Query its status with: nbray job status {sid}", file=sys.stderr)
        return 0
    _follow(client, sid)
    info = client.get_job_info(sid)
    print(f"Job '{sid}' {info.status}: {info.message or ''}", file=sys.stderr)
    return 0 if info.status == "SUCCEEDED" else 1


def cmd_status(args: argparse.Namespace) -> int:
    info = _client(args).get_job_info(args.job_id)
    print(f"Status for job '{args.job_id}': {info.status}")
    if info.message:
        print(f"Status message: {info.message}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.follow:
        _follow(client, args.job_id)
    else:
        sys.stdout.write(client.get_job_logs(args.job_id))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    client = _client(args)
    stopped = client.stop_job(args.job_id)
    print(f"Job '{args.job_id}': {'stop requested' if stopped else 'had already ended'}")
    if stopped and not args.no_wait:
        status = client.wait_until_done(args.job_id, STOP_WAIT_S)
        print(f"Job '{args.job_id}' {status}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = _client(args).list_jobs()
    print(json.dumps([r.to_json() for r in rows], indent=2))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _client(args).delete_job(args.job_id)
    print(f"Job '{args.job_id}' deleted")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``nbray job`` on the main parser's subcommands."""
    job = sub.add_parser("job", help="submit and manage jobs (Ray's 'ray job')")
    commands = job.add_subparsers(dest="job_command", required=True)

    def common_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", default=None,
                       help="dashboard URL http://HEAD:8265 or GCS HOST:PORT (default: NBRAY_ADDRESS, "
                            "then the cluster on this machine)")
        p.add_argument("--no-verify", action="store_true", help="do not verify the dashboard's TLS certificate")

    p = commands.add_parser("submit", help="run a shell command as a job")
    common_flags(p)
    p.add_argument("--submission-id", "--job-id", dest="submission_id", default=None)
    p.add_argument("--working-dir", default=None)
    p.add_argument("--runtime-env-json", default=None)
    p.add_argument("--metadata-json", default=None)
    p.add_argument("--entrypoint-num-cpus", type=float, default=None)
    p.add_argument("--entrypoint-num-gpus", type=float, default=None)
    p.add_argument("--entrypoint-resources", default=None, help="JSON, e.g. '{\"accel\": 1}'")
    p.add_argument("--no-wait", action="store_true", help="return once submitted instead of following the log")
    p.add_argument("entrypoint", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: cmd_submit(a, p))

    for name, fn, text in (("status", cmd_status, "a job's status"), ("logs", cmd_logs, "a job's log"),
                           ("stop", cmd_stop, "stop a job"), ("delete", cmd_delete, "forget a finished job")):
        q = commands.add_parser(name, help=text)
        common_flags(q)
        q.add_argument("job_id")
        if name == "logs":
            q.add_argument("-f", "--follow", action="store_true")
        if name == "stop":
            q.add_argument("--no-wait", action="store_true")
        q.set_defaults(func=fn)

    q = commands.add_parser("list", help="every submitted job")
    common_flags(q)
    q.set_defaults(func=cmd_list)
