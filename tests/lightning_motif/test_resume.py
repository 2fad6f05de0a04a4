"""Exact resume: a run killed with SIGKILL and restarted with ``--ckpt_path last`` trains on exactly the samples
and mixture weights of an uninterrupted run, so on CPU its losses match bit for bit; with 0, 1 and 2 loader
workers, with 2 processes (gloo) under DDP and under FSDP2 (sharded distributed checkpoints); also when the run
is killed in the middle of writing a checkpoint (the half-written one is ignored, the previous one resumes), and
after a step skipped as non-finite (the data position runs ahead of the optimizer steps): then every scalar of
the resumed run, not only the loss, equals the uninterrupted run's on one shared step axis."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from motif_cli import REPO, motif_command, scalar_steps, scalars_by_step, tiny_run_args

STEPS = 14
NAN_STEP = 2
"""Stream step (0-based batch) whose loss is NaN in the runs with a skipped step."""
NAN_DRIVER = Path(__file__).with_name("nonfinite_at_steps.py")


def fit_command(nan: bool) -> tuple[list[str], dict[str, str]]:
    """The command and environment of ``motif fit``, with the loss NaN at NAN_STEP when ``nan``."""
    if not nan:
        return motif_command(), {**os.environ, "PYTHONUNBUFFERED": "1"}
    return [sys.executable, str(NAN_DRIVER)], {**os.environ, "MOTIF_NAN_STEPS": str(NAN_STEP), "PYTHONPATH": str(REPO)}


def fit(args: list[str], cwd, nan: bool) -> subprocess.CompletedProcess:
    command, env = fit_command(nan)
    return subprocess.run(command + ["fit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def resume_args(tmp, cache, workers: int, processes: int, strategy: str = "ddp") -> list[str]:
    args = tiny_run_args(tmp, cache, STEPS) + [
        "--trainer.limit_val_batches=0", "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false",
        f"--data.init_args.num_workers={workers}",
        "--trainer.callbacks+=lightning_motif.callbacks.MotifCheckpoint",
        f"--trainer.callbacks.dirpath={tmp / 'checkpoints'}",
        "--trainer.callbacks.every_n_train_steps=1", "--trainer.callbacks.keep_last=2",
    ]
    if strategy == "fsdp2":
        args += ["--config", str(REPO / "experiments/strategies/fsdp2.yaml"), "--model.parallelism.param_dtype=null"]
    elif processes > 1:
        args += ["--trainer.strategy=ddp"]
    if processes > 1:
        args += [f"--trainer.devices={processes}", "--trainer.accelerator=cpu"]
    return args


def losses(tmp, version: int) -> dict[int, float]:
    return scalar_steps(tmp / "tensorboard" / f"version_{version}", "train/loss")


MODEL_SIZE_TAGS = {"model/parameters", "model/non_embedding_parameters", "model/flops_per_token"}
"""Constants logged once when training starts (again at a resume's start), not per batch."""


def training_scalars(tmp, version: int) -> dict[str, dict[int, float]]:
    """Every scalar the training steps log (throughput excluded: it measures time)."""
    return {tag: values for tag, values in scalars_by_step(tmp / "tensorboard" / f"version_{version}").items()
            if not tag.startswith("throughput/") and tag not in MODEL_SIZE_TAGS}


def kill_after_checkpoint(args: list[str], checkpoints, step: int, cwd, nan: bool = False) -> None:
    """Start ``motif fit``, wait until the checkpoint of ``step`` exists, then SIGKILL every process of the run."""
    command, env = fit_command(nan)
    process = subprocess.Popen(command + ["fit", *args], cwd=cwd, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(checkpoints.glob(f"*step={step}.ckpt")) and time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus_cache):
    """Uninterrupted reference runs, every training scalar: one process (0 workers), two under FSDP2; one process
    and two under DDP with the step at NAN_STEP skipped (the runs with a skipped step check every scalar, so they
    also cover what the same runs without one would)."""
    references = {}
    for processes, strategy, nan in ((1, "ddp", False), (2, "fsdp2", False), (1, "ddp", True), (2, "ddp", True)):
        tmp = tmp_path_factory.mktemp(f"reference-{processes}-{strategy}-{nan}")
        result = fit(resume_args(tmp, corpus_cache, 0, processes, strategy), tmp, nan)
        assert result.returncode == 0, result.stderr[-3000:]
        reference = references[processes, strategy, nan] = training_scalars(tmp, 0)
        batches = list(range(STEPS + nan))  # a skipped step takes one more batch to reach max_steps
        assert all(sorted(values) == batches for values in reference.values()), "not one shared step axis"
        assert reference["train/skipped_steps"][STEPS + nan - 1] == float(nan)
    return references


@pytest.mark.parametrize("workers,processes,strategy,kill_at,nan", [
    (1, 1, "ddp", 8, False), (0, 2, "fsdp2", 7, False), (0, 1, "ddp", 4, True), (2, 1, "ddp", 4, True),
    (0, 2, "ddp", 5, True)])
def test_killed_run_resumes_exactly(workers, processes, strategy, kill_at, nan, tmp_path, corpus_cache, uninterrupted):
    args = resume_args(tmp_path, corpus_cache, workers, processes, strategy)
    kill_after_checkpoint(args, tmp_path / "checkpoints", kill_at, tmp_path, nan)
    result = fit([*args, "--ckpt_path", "last"], tmp_path, nan)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = training_scalars(tmp_path, 1)
    first = min(resumed["train/loss"])
    assert kill_at - 1 <= first < STEPS - 2, resumed  # last.ckpt is written just after the step file
    reference = uninterrupted[processes, strategy, nan]
    assert sorted(resumed) == sorted(reference)
    for tag, values in resumed.items():  # bit for bit, on the same steps
        assert values == {step: reference[tag][step] for step in range(first, STEPS + nan)}, tag


@pytest.mark.parametrize("processes,strategy", [(1, "ddp"), (2, "fsdp2")])
def test_kill_while_saving_keeps_the_previous_checkpoint(processes, strategy, tmp_path, corpus_cache, uninterrupted):
    args = resume_args(tmp_path, corpus_cache, 0, processes, strategy)
    driver = Path(__file__).with_name("kill_while_saving.py")
    env = {**os.environ, "MOTIF_KILL_SAVING_STEP": "6", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(driver), "fit", *args], cwd=tmp_path, env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert process.wait(timeout=300) == -signal.SIGKILL
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the other rank, if it still waits for the dead one
        except ProcessLookupError:
            pass
    checkpoints = tmp_path / "checkpoints"
    assert list(checkpoints.glob("*step=6.ckpt.partial")) and not list(checkpoints.glob("*step=6.ckpt"))
    assert os.path.realpath(checkpoints / "last.ckpt").endswith("step=5.ckpt")
    result = fit([*args, "--ckpt_path", "last"], tmp_path, nan=False)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = losses(tmp_path, 1)
    assert min(resumed) == 5 and sorted(resumed) == list(range(5, STEPS))
    reference = uninterrupted[processes, strategy, False]["train/loss"]
    assert {step: reference[step] for step in resumed} == resumed  # bit for bit
    kept = sorted(p.name for p in checkpoints.iterdir())
    assert kept == ["last.ckpt", "step=13.ckpt", "step=14.ckpt"], kept  # keep_last 2, no leftovers
