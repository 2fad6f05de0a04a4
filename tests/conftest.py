"""Shared test set-up: Triton's CPU interpreter for kernel tests, and helpers to run ``motif`` as a subprocess."""

import os

# Triton reads this when a module that defines @triton.jit kernels is imported: set it before any of them.
os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory):
    """One cache folder for the small embedded corpus, shared by every test that builds or reads it."""
    return tmp_path_factory.mktemp("motif-cache")


@pytest.fixture(scope="session")
def embedded_datamodule(corpus_cache):
    """The small embedded corpus (built once) behind a DataModule with the tiny test curriculum."""
    from lightning_motif.data.datamodule import EmbeddedCorpusDataModule
    from motif_cli import tiny_schedule

    datamodule = EmbeddedCorpusDataModule(tiny_schedule(), val_seq_len=64, val_batch_size=4, tokenizer_vocab_size=512,
                                          bytes_per_domain=200_000, cache_dir=str(corpus_cache))
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, corpus_cache, embedded_datamodule):
    """A checkpoint file of a short tiny run on the small embedded corpus, and that corpus's tokenizer folder."""
    from motif_cli import run_motif, tiny_run_args

    tmp = tmp_path_factory.mktemp("tiny-checkpoint")
    result = run_motif(["fit", *tiny_run_args(tmp, corpus_cache, 6), "--trainer.limit_val_batches=0",
                        "--trainer.callbacks.dirpath", str(tmp / "checkpoints")], cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "checkpoints" / "step=6.ckpt", embedded_datamodule.data_dir


@pytest.fixture(scope="session")
def tiny_sharded_checkpoint(tmp_path_factory, corpus_cache, embedded_datamodule):
    """The distributed-checkpoint folder of a short tiny run under FSDP2 on 2 gloo processes (fp32), and the run's
    TensorBoard folder (every step logged)."""
    from motif_cli import REPO, run_motif, tiny_run_args

    tmp = tmp_path_factory.mktemp("tiny-sharded")
    result = run_motif(["fit", *tiny_run_args(tmp, corpus_cache, 6), "--trainer.limit_val_batches=0",
                        "--trainer.log_every_n_steps=1", "--config", str(REPO / "experiments/strategies/fsdp2.yaml"),
                        "--model.parallelism.param_dtype=null", "--trainer.devices=2", "--trainer.accelerator=cpu",
                        "--trainer.callbacks.dirpath", str(tmp / "checkpoints")], cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "checkpoints" / "step=6.ckpt", tmp / "tensorboard" / "version_0"
