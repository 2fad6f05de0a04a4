"""``motif ablate``: an ablation suite, each variant x learning rate x seed one ``motif fit`` run, and its report.

    motif ablate run --config experiments/ablations/suite/grid.yaml
    motif ablate report --config experiments/ablations/suite/grid.yaml

run: first each optimizer's learning-rate sweep (on its sweep variant, first seed), then every variant at every
seed at its optimizer's best learning rate; runs go side by side, one per GPU (or ``devices_per_run`` GPUs), one
at a time on CPU; each writes its TensorBoard logs into ``<output_dir>/<variant>-lr<lr>-seed<seed>/``. A finished
run is never repeated and an interrupted one starts again, so the same command continues a grid run in parts
(``--start_runs_for_s``). It ends by writing the report.

report: the table (mean +- standard deviation over seeds of the final validation loss, overall and per domain; the
paired difference to the reference with its 95% interval; parameters, FLOPs per token, tokens/s), summary.json,
the plots and TensorBoard's hparams view, from the runs' logs alone.
"""

from lightning_motif.ablation.config import AblationConfig
from lightning_motif.ablation.report import write_report
from lightning_motif.ablation.runner import run as run_grid


def run(direction: str, config: AblationConfig) -> None:
    if direction == "run":
        run_grid(config)
    else:
        write_report(config)
