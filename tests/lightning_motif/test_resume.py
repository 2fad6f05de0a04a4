"""Exact resume: a run killed with SIGKILL and restarted with ``--ckpt_path last`` trains on exactly the samples
and mixture weights of an uninterrupted run, so on CPU its losses match bit for bit; with 0, 1 and 2 loader
workers, with 2 processes (gloo) under DDP and under FSDP2 (sharded distributed checkpoints); also when the run
is killed in the middle of writing a checkpoint (the half-written one is ignored, the previous one resumes)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from motif_cli import REPO, motif_command, run_motif, scalar_steps, tiny_run_args

STEPS = 14


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


def kill_after_checkpoint(args: list[str], checkpoints, step: int, cwd) -> None:
    """Start ``motif fit``, wait until the checkpoint of ``step`` exists, then SIGKILL every process of the run."""
    process = subprocess.Popen(motif_command() + args, cwd=cwd, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(checkpoints.glob(f"*step={step}.ckpt")) and time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus_cache):
    """Uninterrupted reference runs: one process (0 workers), two under DDP, two under FSDP2."""
    references = {}
    for processes, strategy in ((1, "ddp"), (2, "ddp"), (2, "fsdp2")):
        tmp = tmp_path_factory.mktemp(f"reference-{processes}-{strategy}")
        result = run_motif(["fit", *resume_args(tmp, corpus_cache, 0, processes, strategy)], cwd=tmp)
        assert result.returncode == 0, result.stderr[-3000:]
        references[processes, strategy] = losses(tmp, 0)
        assert sorted(references[processes, strategy]) == list(range(STEPS))
    return references


@pytest.mark.parametrize("workers,processes,strategy,kill_at", [
    (0, 1, "ddp", 5), (1, 1, "ddp", 8), (2, 1, "ddp", 3), (0, 2, "ddp", 6), (0, 2, "fsdp2", 7)])
def test_killed_run_resumes_exactly(workers, processes, strategy, kill_at, tmp_path, corpus_cache, uninterrupted):
    args = resume_args(tmp_path, corpus_cache, workers, processes, strategy)
    kill_after_checkpoint(["fit", *args], tmp_path / "checkpoints", kill_at, tmp_path)
    result = run_motif(["fit", *args, "--ckpt_path", "last"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = losses(tmp_path, 1)
    first = min(resumed)
    assert kill_at - 1 <= first < STEPS - 2, resumed  # last.ckpt is written just after the step file
    assert sorted(resumed) == list(range(first, STEPS))
    reference = uninterrupted[processes, strategy]
    assert {step: reference[step] for step in resumed} == resumed  # bit for bit


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
    result = run_motif(["fit", *args, "--ckpt_path", "last"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = losses(tmp_path, 1)
    assert min(resumed) == 5 and sorted(resumed) == list(range(5, STEPS))
    reference = uninterrupted[processes, strategy]
    assert {step: reference[step] for step in resumed} == resumed  # bit for bit
    kept = sorted(p.name for p in checkpoints.iterdir())
    assert kept == ["epoch=0-step=13.ckpt", "epoch=0-step=14.ckpt", "last.ckpt"], kept  # keep_last 2, no leftovers
