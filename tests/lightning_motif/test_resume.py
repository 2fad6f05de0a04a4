"""Exact resume: a run killed with SIGKILL and restarted with ``--ckpt_path last`` trains on exactly the samples
and mixture weights of an uninterrupted run, so on CPU its losses match bit for bit; with 0, 1 and 2 loader
workers and with 2 processes (gloo)."""

import os
import signal
import subprocess
import time

import pytest

from motif_cli import motif_command, run_motif, scalar_steps, tiny_run_args

STEPS = 14


def resume_args(tmp, cache, workers: int, processes: int) -> list[str]:
    args = tiny_run_args(tmp, cache, STEPS) + [
        "--trainer.limit_val_batches=0", "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false",
        f"--data.init_args.num_workers={workers}",
        "--trainer.callbacks+=lightning_motif.callbacks.MotifCheckpoint",
        f"--trainer.callbacks.dirpath={tmp / 'checkpoints'}",
        "--trainer.callbacks.every_n_train_steps=1", "--trainer.callbacks.keep_last=2",
    ]
    if processes > 1:
        args += ["--trainer.strategy=ddp", f"--trainer.devices={processes}", "--trainer.accelerator=cpu"]
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
    """Uninterrupted reference runs: one process (0 workers) and two processes."""
    references = {}
    for processes in (1, 2):
        tmp = tmp_path_factory.mktemp(f"reference-{processes}")
        result = run_motif(["fit", *resume_args(tmp, corpus_cache, 0, processes)], cwd=tmp)
        assert result.returncode == 0, result.stderr[-3000:]
        references[processes] = losses(tmp, 0)
        assert sorted(references[processes]) == list(range(STEPS))
    return references


@pytest.mark.parametrize("workers,processes,kill_at", [(0, 1, 5), (1, 1, 8), (2, 1, 3), (0, 2, 6)])
def test_killed_run_resumes_exactly(workers, processes, kill_at, tmp_path, corpus_cache, uninterrupted):
    args = resume_args(tmp_path, corpus_cache, workers, processes)
    kill_after_checkpoint(["fit", *args], tmp_path / "checkpoints", kill_at, tmp_path)
    result = run_motif(["fit", *args, "--ckpt_path", "last"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = losses(tmp_path, 1)
    first = min(resumed)
    assert kill_at - 1 <= first < STEPS - 2, resumed  # last.ckpt is written just after the step file
    assert sorted(resumed) == list(range(first, STEPS))
    reference = uninterrupted[processes]
    assert {step: reference[step] for step in resumed} == resumed  # bit for bit
