#!/usr/bin/env bash
# Install, then run the test suite on CPU. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,eval
exec .venv/bin/python -m pytest "$@"
