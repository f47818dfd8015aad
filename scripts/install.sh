#!/usr/bin/env bash
# Install everything nbray needs on a fresh Debian machine: the Python
# package (editable) with its dev tools in .venv, the prebuilt JupyterLab
# extension (built from labextension/ by the package build), and the
# system packages the tests use (Debian's Chromium, iproute2).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v ip >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        echo "note: install ${need_apt[*]} (Debian packages) for the browser and network tests" >&2
    fi
fi

command -v node >/dev/null || { echo "Node.js >= 20 is needed to build the JupyterLab extension" >&2; exit 1; }
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
test -f nbray/labextension/package.json || { echo "the JupyterLab extension was not built" >&2; exit 1; }
# the TypeScript unit tests run from labextension/ with its node_modules
(cd labextension && PATH="$PWD/../.venv/bin:$PATH" jlpm install --immutable >/dev/null)
echo "nbray is installed in .venv; run the tests with: .venv/bin/python -m pytest"
