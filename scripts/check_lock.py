"""Check that an environment holds exactly the versions in the lock.

    python scripts/check_lock.py [--python .venv/bin/python] [--lock constraints/runtime.txt]

``scripts/install.sh`` installs with ``constraints/runtime.txt`` as pip
constraints, so a fresh machine tests exactly the set the suite last
passed with. This check (run by CI right after the install) fails when a
package is installed at another version than the lock names, or is missing
from the lock altogether: either would mean the tests ran on a set nobody
has tested before. Exit status 0 when they match, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(text: str) -> dict[str, str]:
    """{canonical name: version} of the ``name==version`` lines of `text`."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"lock line {raw!r} is not of the form name==version")
        pins[canonical(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def installed(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                         check=True, capture_output=True, text=True).stdout
    return parse_pins("\n".join(line for line in out.splitlines() if "==" in line))


def differences(locked: dict[str, str], have: dict[str, str]) -> list[str]:
    problems = []
    for name, version in sorted(have.items()):
        if name not in locked:
            problems.append(f"{name}=={version} is installed but not in the lock")
        elif locked[name] != version:
            problems.append(f"{name} is {version}, the lock says {locked[name]}")
    for name in sorted(set(locked) - set(have)):
        problems.append(f"{name}=={locked[name]} is in the lock but not installed")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--lock", default=str(ROOT / "constraints" / "runtime.txt"))
    args = parser.parse_args(argv)
    problems = differences(parse_pins(Path(args.lock).read_text()), installed(args.python))
    for p in problems:
        print(f"lock mismatch: {p}", file=sys.stderr)
    if problems:
        print("the environment is not the locked set: rerun ./scripts/install.sh, or refresh the lock "
              "with ./scripts/refresh_lock.sh", file=sys.stderr)
        return 1
    print(f"environment matches {args.lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
