"""A NaN loss: the step is skipped (its gradients dropped, the optimizer and schedule not stepped) and counted on
the dashboard, or, with ``on_nonfinite: stop`` or too many in a row, the run stops with one line and exit status
3; either way every checkpoint holds finite weights."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from motif_cli import REPO, scalar_steps, tiny_run_args

DRIVER = Path(__file__).with_name("nonfinite_at_steps.py")


def fit_with_nan(tmp, cache, nan_steps: str, extra: list[str]) -> subprocess.CompletedProcess:
    args = ["fit", *tiny_run_args(tmp, cache, 8), "--trainer.limit_val_batches=0", "--trainer.log_every_n_steps=1",
            "--trainer.callbacks.dirpath", str(tmp / "checkpoints"), "--trainer.callbacks.every_n_train_steps=1", *extra]
    env = {**os.environ, "MOTIF_NAN_STEPS": nan_steps, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(DRIVER), *args], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=600)


def finite_checkpoints(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.glob("*step=*.ckpt")):
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), path
        names.append(path.name)
    return names


def test_nonfinite_steps_are_skipped_and_counted(tmp_path, corpus_cache):
    result = fit_with_nan(tmp_path, corpus_cache, "3,5", ["--trainer.callbacks.keep_last=20"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipping the optimizer step: non-finite step 3" in result.stderr
    skipped = scalar_steps(tmp_path / "tensorboard" / "version_0", "train/skipped_steps")
    assert max(skipped.values()) == 2
    assert len(finite_checkpoints(tmp_path / "checkpoints")) == 8  # 8 optimizer steps still ran (10 batches)


def test_stop_policy_stops_with_one_line(tmp_path, corpus_cache):
    result = fit_with_nan(tmp_path, corpus_cache, "4", ["--model.on_nonfinite=stop", "--trainer.callbacks.keep_last=20"])
    assert result.returncode == 3, result.stderr[-3000:]
    stopped = [line for line in result.stderr.splitlines() if line.startswith("motif: stopped:")]
    assert len(stopped) == 1 and "non-finite training step 4" in stopped[0], result.stderr[-3000:]
    assert finite_checkpoints(tmp_path / "checkpoints") == [f"step={s}.ckpt" for s in range(1, 5)]


def test_too_many_skips_in_a_row_stop(tmp_path, corpus_cache):
    result = fit_with_nan(tmp_path, corpus_cache, "2,3,4", ["--model.max_consecutive_skips=2"])
    assert result.returncode == 3 and "3 non-finite steps in a row, the last at step 4" in result.stderr, result.stderr[-3000:]
