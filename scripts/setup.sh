#!/usr/bin/env bash
# Create .venv and install lightning-motif (editable) with the extras named in $1 (default: test; the tests
# also take eval, lm-evaluation-harness, which the quickstart does not need). Safe to re-run.
#   torch is pinned through constraints.txt so that pip never swaps in a different (multi-GB) build;
#   litdata pulls in torchvision, and a torchvision that does not match the installed torch breaks
#   `import lightning`, so it is removed when it fails to import (the token pipeline does not use it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
EXTRAS="${1:-test}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$EXTRAS]"
if ! .venv/bin/python -c "import torchvision" >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall --quiet --yes torchvision >/dev/null 2>&1 || true
fi
.venv/bin/python -c "import lightning, litdata, torch; print(f'lightning-motif ready: torch {torch.__version__}, lightning {lightning.__version__}')"
