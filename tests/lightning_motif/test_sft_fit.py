"""``motif fit`` on packed conversations (the stage-1 recipe with the demo's changes): two data-parallel processes
train like one process on the same rows (the loss is the mean over the trained tokens of all ranks), and a run
resumed from a mid-run checkpoint continues the SFT stream at the exact next step.

Tolerance: the same fp32 computations, with the gradient sum over two ranks (gloo all-reduce) in another order
than one process's: about 1e-7 relative per step; 1e-4 after four steps leaves a margin far below what one wrong
row or a wrongly weighted rank changes (the loss per row varies by about 10%).
"""

from pathlib import Path

import pytest

from lightning_motif.data.demo_chat import write_demo_chat
from lightning_motif.data.prepare import DomainSource, PrepareConfig, prepare
from motif_cli import REPO, run_motif, scalars_by_step

SFT = REPO / "experiments" / "sft"
STEPS = 4


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sft-fit")
    raw = write_demo_chat(root / "broad.jsonl", "broad", 60)
    prepare(PrepareConfig(output_dir=str(root / "data"), vocab_size=512, chat_template="chatml", val_fraction=0.0,
                          domains={"chat": DomainSource(paths=[str(raw)], format="chat")}, num_workers=1, verbose=False))
    return root / "data"


def fit_args(data: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(SFT / "stage1.yaml"), "--config", str(SFT / "demo" / "fit.yaml"),
            "--data.init_args.data_dir", str(data), "--data.init_args.seq_len", "128",
            "--data.init_args.rows_per_step", "4", "--data.init_args.micro_batch_rows", "1",
            "--model.transformer.vocab_size", "512", "--trainer.max_steps", str(STEPS), "--trainer.limit_val_batches", "0",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root), *extra]


def losses(root: Path) -> dict[int, float]:
    return scalars_by_step(next(root.glob("tensorboard/version_*")))["train/loss"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, chat_data) -> Path:
    """One process, a checkpoint every two steps."""
    root = tmp_path_factory.mktemp("one")
    result = run_motif(fit_args(chat_data, root, "--trainer.callbacks.init_args.every_n_train_steps", "2",
                                "--trainer.callbacks.init_args.keep_last", "3"), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_two_processes_train_like_one_on_the_same_rows(tmp_path, chat_data, one_process):
    two = run_motif(fit_args(chat_data, tmp_path, "--trainer.strategy=ddp", "--trainer.devices=2"), cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = losses(one_process), losses(tmp_path)
    assert sorted(single) == sorted(double) and len(single) == STEPS
    for step in single:
        assert double[step] == pytest.approx(single[step], rel=1e-4), step


def test_a_resumed_run_continues_the_stream_at_the_next_step(tmp_path, chat_data, one_process):
    middle = next(one_process.rglob("step=2.ckpt"))
    resumed = run_motif(fit_args(chat_data, tmp_path, "--ckpt_path", str(middle)), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    uninterrupted, continued = losses(one_process), losses(tmp_path)
    assert sorted(continued) == [2, 3]  # training batches 2 and 3 (the checkpoint was written after two steps)
    for step in continued:
        assert continued[step] == pytest.approx(uninterrupted[step], rel=1e-6), step
