"""Bad data and bad resumes stop ``motif fit`` before training with one line that names the field and the fix:
a missing shard, a corrupt (cut short) shard, and a checkpoint written by a model of another shape. Nothing is
trained and nothing already written is touched. (Config-only cases: tests/lightning_motif/test_cli.py.)"""

import shutil

import pytest
import yaml

from motif_cli import QUICKSTART, TINY, TINY_CURRICULUM, run_motif, scalars, tiny_run_args


def assert_one_line_error(result, expected: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("motif: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.fixture
def prepared_copy(tmp_path, embedded_datamodule):
    """A copy of the prepared embedded corpus, and the args of a fit on it through CurriculumDataModule."""
    data_dir = tmp_path / "data"
    shutil.copytree(embedded_datamodule.data_dir, data_dir)
    data = yaml.safe_load(TINY_CURRICULUM.read_text())["data"]["init_args"]
    config = {"data": {"class_path": "lightning_motif.data.datamodule.CurriculumDataModule", "init_args": {
        "data_dir": str(data_dir), "schedule": data["schedule"], "micro_batch_tokens": data["micro_batch_tokens"],
        "val_seq_len": data["val_seq_len"], "val_batch_size": data["val_batch_size"]}}}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(config["data"]))
    args = ["fit", "--config", str(QUICKSTART), "--data", str(tmp_path / "data.yaml"), "--model.transformer", str(TINY),
            "--trainer.max_steps=4", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "run"),
            "--model.lr_scheduler.init_args.total_steps=4", "--model.lr_scheduler.init_args.warmup_steps=1"]
    return data_dir, args


def test_the_prepared_copy_trains(tmp_path, prepared_copy):
    _, args = prepared_copy
    result = run_motif(args + ["--trainer.limit_val_batches=0"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_missing_shard(tmp_path, prepared_copy):
    data_dir, args = prepared_copy
    chunk = sorted((data_dir / "train" / "code").glob("*.bin"))[0]
    chunk.unlink()
    assert_one_line_error(run_motif(args, cwd=tmp_path), f"shard {chunk.name} is missing")
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_corrupt_shard(tmp_path, prepared_copy):
    data_dir, args = prepared_copy
    chunk = sorted((data_dir / "train" / "prose").glob("*.bin"))[0]
    size = chunk.stat().st_size
    with open(chunk, "r+b") as handle:
        handle.truncate(size - 100)
    assert_one_line_error(run_motif(args, cwd=tmp_path), f"shard {chunk.name} has {size - 100} bytes where its index records {size}")


def test_checkpoint_from_another_model_shape(tmp_path, corpus_cache):
    args = ["fit", *tiny_run_args(tmp_path, corpus_cache, 6), "--trainer.limit_val_batches=0",
            "--trainer.callbacks.dirpath", str(tmp_path / "checkpoints")]
    assert run_motif(args, cwd=tmp_path).returncode == 0
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    result = run_motif(args + ["--model.transformer.hidden_size=96", "--ckpt_path", "last"], cwd=tmp_path)
    assert_one_line_error(result, "the checkpoint holds another model (model.transformer.hidden_size = 64 there, 96 here)")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before
    assert len(list((tmp_path / "tensorboard").iterdir())) == 1 or not scalars(sorted((tmp_path / "tensorboard").iterdir())[-1])
