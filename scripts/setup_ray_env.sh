#!/usr/bin/env bash
# Build .venv-ray: a virtualenv with real Ray (pinned, the version the Ray
# backend of the notebook layer is tested against), a Jupyter kernel and
# nbray itself (this checkout on the path, with the few packages its notebook
# layer imports), for the tests marked ray_backend. Idempotent: a second run
# that finds everything in place only checks the versions.
set -euo pipefail
cd "$(dirname "$0")/.."

RAY_VERSION="${NBRAY_TEST_RAY_VERSION:-2.60.0}"
VENV="${NBRAY_RAY_VENV:-.venv-ray}"
PYTHON="${PYTHON:-python3}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
have="$("$VENV/bin/python" -c 'import ray; print(ray.__version__)' 2>/dev/null || true)"
if [ "$have" != "$RAY_VERSION" ] || ! "$VENV/bin/python" -c 'import ipykernel, nbclient, jupyter_client, matplotlib' 2>/dev/null; then
    # constraints/ray.txt locks every package of this venv (Ray pins its own
    # dependencies, so it cannot share the main lock); NBRAY_UNLOCKED=1 skips it
    lock=(-c constraints/ray.txt)
    if [ -n "${NBRAY_UNLOCKED:-}" ] || [ "$RAY_VERSION" != "2.60.0" ]; then lock=(); fi
    "$VENV/bin/python" -m pip install -q "${lock[@]}" "ray[default]==$RAY_VERSION" ipykernel jupyter_client nbclient nbformat \
        "protobuf>=7.35.1,<8" cloudpickle pyarrow networkx ipywidgets numpy anywidget matplotlib
fi
# nbray from this checkout, without building the package (that needs Node for
# the lab extension): a path entry is all an editable install would add here
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n' "$PWD" > "$site/nbray-checkout.pth"
"$VENV/bin/python" -c 'import ray, nbray.jupyter.magics; print("ray", ray.__version__, "ready in '"$VENV"'")'
