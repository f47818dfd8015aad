#!/usr/bin/env bash
# Install everything nbray needs on a fresh Debian machine: the Python
# package (editable) with its dev tools in .venv, the prebuilt JupyterLab
# extension (built from labextension/ by the package build), and the
# system packages the tests use (Debian's Chromium, iproute2, redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "note: install ${need_apt[*]} (Debian packages) for the browser and network tests" >&2
    fi
fi

command -v node >/dev/null || { echo "Node.js >= 20 is needed to build the JupyterLab extension" >&2; exit 1; }
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The lock (constraints/, refreshed by scripts/refresh_lock.sh) pins every
# package, the build backend included, to the set the suite last passed
# with; pyproject.toml keeps open ranges for users. NBRAY_UNLOCKED=1
# installs the newest releases instead.
if [ "${NBRAY_UNLOCKED:-0}" = 1 ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
else
    .venv/bin/python -m pip install -q "$(grep -i '^pip==' constraints/runtime.txt)"
    .venv/bin/python -m pip install -q -c constraints/runtime.txt \
        --build-constraint constraints/build.txt -e ".[dev]"
fi
test -f nbray/labextension/package.json || { echo "the JupyterLab extension was not built" >&2; exit 1; }
# An editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE set
# every GCS, raylet and worker would compile nbray's modules at each start
# (about half of their start-up CPU); compile them once here, as a wheel
# install would. Python still reads these files with that variable set, and
# recompiles in memory any module edited since.
.venv/bin/python -m compileall -q nbray >/dev/null
# the TypeScript unit tests run from labextension/ with its node_modules
(cd labextension && PATH="$PWD/../.venv/bin:$PATH" jlpm install --immutable >/dev/null)
echo "nbray is installed in .venv; run the tests with: .venv/bin/python -m pytest"
