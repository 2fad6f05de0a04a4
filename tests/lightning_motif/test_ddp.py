"""Two-process data-parallel training on CPU (gloo) through the same config: scaling out needs no code change."""

from motif_cli import REPO, run_motif, scalars, tiny_run_args


def test_fit_with_ddp_on_two_cpu_processes(tmp_path, corpus_cache):
    args = ["fit", *tiny_run_args(tmp_path, corpus_cache, 10), "--trainer.strategy=ddp", "--trainer.devices=2",
            "--trainer.accelerator=cpu"]
    result = run_motif(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    tags = scalars(tmp_path)
    assert len(tags["train/loss"]) >= 2 and "val/loss" in tags


def test_fit_with_ddp_and_muonclip_reduces_logit_maxima_across_ranks(tmp_path, corpus_cache):
    """QK-clip all-reduces each layer's maxima across ranks inside the optimizer step: two processes must not
    hang and must log the maxima."""
    args = ["fit", *tiny_run_args(tmp_path, corpus_cache, 10), "--trainer.strategy=ddp", "--trainer.devices=2",
            "--trainer.accelerator=cpu", "--trainer.limit_val_batches=0",
            "--config", str(REPO / "experiments/ablations/optimizer/muonclip.yaml")]
    result = run_motif(args, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    tags = scalars(tmp_path)
    assert "model/layer_00/max_logit" in tags and "model/layer_01/qk_clipped_heads" in tags
