#!/usr/bin/env bash
# Train the quickstart model for every attention x MLP variant in experiments/ablations/.
# Runs land in runs/quickstart/tensorboard/<attention>-<mlp>; extra arguments go to every `motif fit`.
set -euo pipefail
cd "$(dirname "$0")/.."
for attention in gda diff gqa; do
    for mlp in polynorm swiglu; do
        .venv/bin/motif fit --config experiments/quickstart.yaml \
            --config "experiments/ablations/attention/$attention.yaml" \
            --config "experiments/ablations/mlp/$mlp.yaml" \
            --trainer.logger.init_args.version "$attention-$mlp" "$@"
    done
done
