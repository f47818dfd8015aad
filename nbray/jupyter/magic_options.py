"""Command-line options of the ``%nbray`` and ``%%remote`` magics.

Runs in the notebook kernel. Parsers raise ``UsageError`` (IPython shows
it as a short message, not a traceback); the converters are pure and
unit-tested.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from IPython.core.error import UsageError

_BYTE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``"2GB"`` -> 2000000000, ``"512MiB"``, ``"1e9"``, ``"1000"``."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError(f"not a size in bytes: {text!r} (examples: 1000000, 2GB, 512MiB)")
    value = float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]
    return int(value)


def parse_resources(text: str) -> dict[str, float]:
    """``'{"accel": 1}'`` -> {"accel": 1.0}."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--resources must be JSON like '{{\"accel\": 1}}': {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, (int, float)) for v in value.values()):
        raise ValueError("--resources must be a JSON object of numbers, e.g. '{\"accel\": 1}'")
    return {str(k): float(v) for k, v in value.items()}


def parse_runtime_env(text: str | None, working_dir: str | None) -> dict[str, Any] | None:
    """``--runtime-env JSON`` and ``--working-dir PATH`` as one runtime_env
    dict (None when neither is given). A local working_dir is made absolute
    against the kernel's directory; a URI (``s3://...``) is kept as is.
    Raises ValueError naming the option at fault."""
    env: dict[str, Any] = {}
    if text:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(
                f"--runtime-env must be a JSON object like '{{\"env_vars\": {{\"A\": \"1\"}}}}': {exc}") from None
        if not isinstance(value, dict):
            raise ValueError(f"--runtime-env must be a JSON object, not {type(value).__name__}")
        env.update(value)
    if working_dir:
        if "://" not in working_dir:
            path = os.path.abspath(os.path.expanduser(working_dir))
            if not os.path.exists(path):
                raise ValueError(f"--working-dir: {working_dir!r} does not exist (looked at {path})")
            working_dir = path
        env["working_dir"] = working_dir
    return env or None


def parse_names(text: str | None) -> list[str]:
    """``"a, b,c"`` -> ["a", "b", "c"]; each must be an identifier."""
    if not text:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a variable name")
    return names


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or f"{self.prog}: invalid arguments")


@dataclass
class RemoteOptions:
    """Parsed ``%%remote`` / ``%remote`` options."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None
    resources: dict[str, float] | None = None
    node: str | None = None
    push: tuple[str, ...] = ()
    pull: tuple[str, ...] | None = None
    no_pull: bool = False
    async_name: str | None = None
    all_nodes: bool = False
    session: str | None = None
    help: bool = False

    def resource_options(self) -> dict[str, Any]:
        """The task/actor options these flags ask for."""
        out: dict[str, Any] = {}
        if self.num_cpus is not None:
            out["num_cpus"] = self.num_cpus
        if self.num_gpus is not None:
            out["num_gpus"] = self.num_gpus
        if self.memory is not None:
            out["memory"] = self.memory
        if self.resources:
            out["resources"] = dict(self.resources)
        return out


def remote_parser(prog: str) -> _Parser:
    p = _Parser(prog=prog, add_help=False, description="Run the cell on the nbray cluster as a task.")
    p.add_argument("-h", "--help", action="store_true", help="show this help")
    p.add_argument("--num-cpus", type=float, help="CPUs the cell needs (default 1)")
    p.add_argument("--num-gpus", type=float, help="GPUs the cell needs")
    p.add_argument("--memory", help="memory to reserve, in bytes (2GB, 512MiB, ...)")
    p.add_argument("--resources", help="custom resources as JSON, e.g. '{\"accel\": 1}'")
    p.add_argument("--node", help="run on this node (hex node id or a unique prefix; 'head')")
    p.add_argument("--push", help="also send these variables (comma-separated)")
    p.add_argument("--pull", help="bring back only these variables (comma-separated)")
    p.add_argument("--no-pull", action="store_true", help="bring no variables back")
    p.add_argument("--async", dest="async_name", metavar="NAME",
                   help="return at once; bind the result's ObjectRef to NAME")
    p.add_argument("--all", dest="all_nodes", action="store_true",
                   help="run once on every alive node; output labelled per node")
    p.add_argument("--session", metavar="NAME",
                   help="run in a persistent remote namespace (an actor holding the resources)")
    return p


REMOTE_VALUE_FLAGS = ("--num-cpus", "--num-gpus", "--memory", "--resources", "--node", "--push", "--pull",
                      "--async", "--session")
REMOTE_BARE_FLAGS = ("-h", "--help", "--no-pull", "--all")


def parse_remote_args(parser: _Parser, argv: list[str]) -> RemoteOptions:
    ns = parser.parse_args(argv)
    try:
        opts = RemoteOptions(
            num_cpus=ns.num_cpus, num_gpus=ns.num_gpus,
            memory=parse_bytes(ns.memory) if ns.memory is not None else None,
            resources=parse_resources(ns.resources) if ns.resources is not None else None,
            node=ns.node, push=tuple(parse_names(ns.push)),
            pull=tuple(parse_names(ns.pull)) if ns.pull is not None else None,
            no_pull=ns.no_pull, async_name=ns.async_name, all_nodes=ns.all_nodes, session=ns.session,
            help=ns.help)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if opts.async_name is not None and not opts.async_name.isidentifier():
        raise UsageError(f"--async needs a variable name, got {opts.async_name!r}")
    if opts.no_pull and opts.pull is not None:
        raise UsageError("use either --pull or --no-pull, not both")
    if opts.all_nodes and (opts.node or opts.session):
        raise UsageError("--all runs on every node: it cannot be combined with --node or --session")
    if opts.session is not None and not opts.session:
        raise UsageError("--session needs a name")
    return opts


def nbray_parser() -> _Parser:
    p = _Parser(prog="%nbray", add_help=False, description="Connect to and manage an nbray cluster.")
    p.add_argument("-h", "--help", action="store_true", help="show this help")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    init = sub.add_parser("init", add_help=False, help="connect (or start a local cluster)")
    init.add_argument("address", nargs="?", default=None,
                      help="HOST:PORT of a cluster, 'auto', 'local' or nbray://HOST:PORT (with --backend ray: "
                           "what ray.init accepts, e.g. auto, HOST:PORT, ray://HOST:10001)")
    init.add_argument("--backend", choices=("nbray", "ray"),
                      help="the runtime to use: nbray (default) or an installed Ray >= 2.50")
    init.add_argument("--num-cpus", type=float)
    init.add_argument("--num-gpus", type=float)
    init.add_argument("--resources", help="custom resources as JSON")
    init.add_argument("--object-store-memory", help="bytes (2GB, 512MiB, ...)")
    init.add_argument("--namespace")
    init.add_argument("--include-dashboard", action="store_true")
    init.add_argument("--no-log-to-driver", action="store_true", help="do not show worker output")
    init.add_argument("--working-dir", metavar="PATH",
                      help="files for the cluster's workers (runtime_env working_dir; the notebook's own "
                           "modules travel without it)")
    init.add_argument("--runtime-env", metavar="JSON",
                      help="the job's runtime_env as JSON, e.g. '{\"env_vars\": {\"A\": \"1\"}}'")
    init.add_argument("--tls", action="store_true",
                      help="connect to nbray://HOST:PORT over TLS (verified against NBRAY_TLS_CA_CERT)")
    sub.add_parser("status", add_help=False, help="nodes, resources and sessions")
    sub.add_parser("shutdown", add_help=False, help="close sessions and disconnect")
    sub.add_parser("sessions", add_help=False, help="list %%%%remote --session namespaces")
    close = sub.add_parser("close", add_help=False, help="end a session")
    close.add_argument("name", nargs="?")
    close.add_argument("--all", action="store_true", help="end every session")
    wait = sub.add_parser("wait", add_help=False, help="wait for a %%%%remote --async cell; bring its variables back")
    wait.add_argument("name")
    return p
