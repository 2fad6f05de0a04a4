"""FSDP2 through Lightning (FSDP2Strategy: fully_shard per block, 2 processes with gloo on CPU) trains like one
process on the same global batches: same losses and the same global gradient norm (taken over the sharded
gradients) up to summation order, with MuonClip (Parallel Muon on the row shards, QK-clip on sharded weights)
and activation checkpointing. fp32 compute (param_dtype null) so that the comparison is tight. Step 0 (before any
update) differs only in how gradients are summed (two half batches reduce-scattered vs one batch): 1e-5. Later
steps also carry Muon's bf16 Newton-Schulz, whose roundings (unit roundoff 2^-8) flip differently once the inputs
differ in their last fp32 bits: 2e-3, still far below what a wrong shard or a missing rank does (the loss moves by
1e-2 per step here)."""

import pytest

from motif_cli import REPO, run_motif, scalar_steps, tiny_run_args

STEPS = 6
FSDP2 = ["--config", str(REPO / "experiments/strategies/fsdp2.yaml"), "--trainer.devices=2", "--trainer.accelerator=cpu"]


def fit(tmp, cache, extra: list[str]) -> dict[str, dict[int, float]]:
    args = ["fit", *tiny_run_args(tmp, cache, STEPS), "--config", str(REPO / "experiments/ablations/optimizer/muonclip.yaml"),
            "--trainer.limit_val_batches=0", "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false",
            *extra, "--model.parallelism.param_dtype=null"]
    result = run_motif(args, cwd=tmp)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp / "tensorboard" / "version_0"
    return {tag: scalar_steps(run, tag) for tag in ("train/loss", "train/grad_norm", "model/layer_00/max_logit")}


def test_fsdp2_trains_like_one_process(tmp_path, corpus_cache):
    (tmp_path / "one").mkdir()
    (tmp_path / "fsdp2").mkdir()
    single = fit(tmp_path / "one", corpus_cache, [])
    sharded = fit(tmp_path / "fsdp2", corpus_cache, FSDP2 + ["--model.parallelism.activation_checkpointing=true"])
    for tag, expected in single.items():
        assert sorted(sharded[tag]) == sorted(expected) == list(range(STEPS)), tag
        for step, value in expected.items():
            assert sharded[tag][step] == pytest.approx(value, rel=1e-5 if step == 0 else 2e-3), (tag, step)
