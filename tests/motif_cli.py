"""Run the ``motif`` console script in a subprocess (multi-process Lightning re-runs sys.argv, so CLI runs stay
out of the pytest process)."""

import os
import subprocess
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_motif.ablation.runner import motif_command

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.yaml"
TINY = REPO / "experiments" / "presets" / "tiny.yaml"
TINY_CURRICULUM = REPO / "tests" / "configs" / "tiny_curriculum.yaml"


def run_motif(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(motif_command() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_motif_in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``motif`` called as a function in this process (no interpreter start-up, about 5 s saved per call), with
    its stdout, stderr and exit status collected like ``run_motif``'s. For commands that stay in one process:
    Lightning starts the other ranks of a multi-process run by re-running the command line."""
    import contextlib
    import io

    from lightning_motif.cli import main

    out, err, status = io.StringIO(), io.StringIO(), 0
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def tiny_run_args(tmp: Path, cache: Path, steps: int) -> list[str]:
    """Quickstart config shrunk to the tiny preset, a small embedded corpus with a fast two-phase curriculum and
    ``steps`` steps, logging under tmp."""
    return [
        "--config", str(QUICKSTART),
        "--config", str(TINY_CURRICULUM),
        "--model.transformer", str(TINY),
        "--data.init_args.cache_dir", str(cache),
        "--trainer.max_steps", str(steps),
        "--trainer.val_check_interval", str(steps // 2),
        "--trainer.limit_val_batches", "2",
        "--trainer.log_every_n_steps", "5",
        "--trainer.default_root_dir", str(tmp),
        "--trainer.logger.init_args.save_dir", str(tmp),
        "--model.lr_scheduler.init_args.warmup_steps", "5",
    ]


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar series of the newest TensorBoard run under ``run_dir``."""
    events = sorted(run_dir.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard events under {run_dir}"
    accumulator = EventAccumulator(str(events[-1].parent))
    accumulator.Reload()
    return {tag: [e.value for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def tiny_schedule():
    """The CurriculumSchedule of tests/configs/tiny_curriculum.yaml."""
    import yaml

    from lightning_motif.data.curriculum import CurriculumSchedule
    from lightning_motif.presets import parse_config

    schedule = yaml.safe_load(TINY_CURRICULUM.read_text())["data"]["init_args"]["schedule"]
    return parse_config(CurriculumSchedule, yaml.safe_dump(schedule))


def scalar_steps(run_dir: Path, tag: str) -> dict[int, float]:
    """{step: value} of one scalar in the TensorBoard run whose events are directly in ``run_dir``."""
    return scalars_by_step(run_dir)[tag]


def scalars_by_step(run_dir: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar in the TensorBoard run whose events are directly in ``run_dir``."""
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return {tag: {event.step: event.value for event in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]}
