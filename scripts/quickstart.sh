#!/usr/bin/env bash
# Install, then train the quickstart model on the embedded corpus (CPU is fine; about 2-3 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/motif fit --config experiments/quickstart.yaml "$@"
