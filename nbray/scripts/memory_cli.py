"""``nbray memory``: the ObjectRefs held across the cluster (Ray's ``ray memory``).

    nbray memory                                   # grouped by node, largest first
    nbray memory --group-by STACK_TRACE --units MB
    nbray memory --sort-by REFERENCE_TYPE --num-entries 20
    nbray memory --stats-only                      # object store totals only
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from nbray._private.memory_report import GROUP_BY, SORT_BY, UNITS


def add_parser(sub: Any, address_of: Callable[[argparse.Namespace], str | None], temp_dir_help: str) -> None:
    """Register the subcommand; `address_of` resolves --address/--temp-dir
    to the cluster's address as the other state commands do."""
    p = sub.add_parser("memory", help="object references held across the cluster and store usage",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=None, help="GCS address HOST:PORT (default: the local cluster)")
    p.add_argument("--group-by", choices=GROUP_BY, default="NODE_ADDRESS",
                   help="group references by node address or by call site (default NODE_ADDRESS)")
    p.add_argument("--sort-by", choices=SORT_BY, default="OBJECT_SIZE",
                   help="order of references within a group (default OBJECT_SIZE)")
    p.add_argument("--units", choices=tuple(UNITS), default="B", help="unit of sizes (default B)")
    p.add_argument("--no-format", action="store_true", help="do not wrap long call sites")
    p.add_argument("--stats-only", action="store_true", help="print only the object store totals")
    p.add_argument("--num-entries", type=int, default=None, help="references listed per group (default all)")
    p.add_argument("--temp-dir", default=None, help=temp_dir_help)

    def run(args: argparse.Namespace) -> int:
        return cmd_memory(args, address_of(args))

    p.set_defaults(func=run)


def cmd_memory(args: argparse.Namespace, address: str | None) -> int:
    from nbray._private.internal_api import memory_summary

    if args.num_entries is not None and args.num_entries < 0:
        raise ValueError(f"--num-entries must be >= 0, got {args.num_entries}")
    print(memory_summary(address, group_by=args.group_by, sort_by=args.sort_by, units=args.units,
                         line_wrap=not args.no_format, stats_only=args.stats_only,
                         num_entries=args.num_entries), end="")
    return 0
