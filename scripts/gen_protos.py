#!/usr/bin/env python3
"""Regenerate the Python modules for nbray/protocol/*.proto.

    python scripts/gen_protos.py          # rewrite the generated files
    python scripts/gen_protos.py --check  # exit 1 if they are stale

The generated *_pb2.py / *_pb2.pyi files are committed so an installed
nbray needs no code generator; CI runs --check so they never drift from
the .proto files.
"""

from __future__ import annotations

import argparse
import filecmp
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "nbray" / "protocol"


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    from grpc_tools import protoc  # imported late: only needed by developers

    protos = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(p.relative_to(ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / "nbray" / "protocol").glob("*_pb2.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if stale")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(pathlib.Path(tmp))
        stale = []
        for path in generated:
            target = PROTO_DIR / path.name
            if not target.exists() or not filecmp.cmp(path, target, shallow=False):
                stale.append(target.name)
                if not opts.check:
                    shutil.copyfile(path, target)
        known = {p.name for p in generated}
        orphans = [p.name for p in PROTO_DIR.glob("*_pb2.py*") if p.name not in known]
    if opts.check:
        if stale or orphans:
            print("generated protocol code is stale: " + ", ".join(stale + orphans))
            print("run: python scripts/gen_protos.py")
            return 1
        print("generated protocol code is up to date")
        return 0
    for name in orphans:
        (PROTO_DIR / name).unlink()
    print(f"regenerated {len(stale)} file(s)" if stale else "already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
