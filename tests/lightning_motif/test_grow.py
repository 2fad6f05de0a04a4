"""``motif grow`` end to end: a trained checkpoint grown in width, depth and attention kind validates to its
source's loss, and an unreachable target is refused before anything is written."""

import re
from dataclasses import replace

import yaml

from lightning_motif.interop.hf_config import model_config_yaml
from lightning_motif.interop.weights import open_weights
from motif_cli import run_motif, run_motif_in_process, tiny_run_args

VAL_LOSS = re.compile(r"val/loss\s+([0-9.]+)")


def grown_target(source):
    """Hidden and FFN x2, one more layer, GDA groups x2 and signal heads per group x2."""
    attention = replace(source.attention, num_noise_heads=2 * source.attention.num_noise_heads,
                        signal_noise_ratio=2 * source.attention.signal_noise_ratio)
    return replace(source, hidden_size=2 * source.hidden_size, num_layers=source.num_layers + 1, attention=attention,
                   mlp=replace(source.mlp, intermediate_size=2 * source.mlp.intermediate_size))


def test_a_grown_checkpoint_validates_to_its_sources_loss(tiny_checkpoint, corpus_cache, tmp_path):
    checkpoint, _ = tiny_checkpoint
    (tmp_path / "target.yaml").write_text(model_config_yaml(grown_target(open_weights(checkpoint).config)))
    grown = tmp_path / "grown"
    result = run_motif_in_process(["grow", "--source", str(checkpoint), "--target", str(tmp_path / "target.yaml"),
                                   "--output", str(grown), "--growth.noise", "0.01"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in grown.iterdir()) == ["growth.yaml", "model.ckpt", "model.yaml"]
    record = yaml.safe_load((grown / "growth.yaml").read_text())
    assert record["depth"]["inserted_identity_blocks"] == [2] and record["width"]["hidden_copies"] == 2
    # fp32 forward of both models: the grown one sums the same products in other groupings (~1e-7 relative)
    assert record["verified"]["max_abs_logit_difference"] < 1e-4 * max(1.0, record["verified"]["max_abs_logit"])
    losses = {}
    for name, args in (("source", ["--ckpt_path", str(checkpoint)]),
                       ("grown", ["--model.transformer", str(grown / "model.yaml"), "--ckpt_path",
                                  str(grown / "model.ckpt")])):
        result = run_motif(["validate", *tiny_run_args(tmp_path / name, corpus_cache, 4), *args], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        losses[name] = float(VAL_LOSS.search(result.stdout).group(1))
    assert abs(losses["grown"] - losses["source"]) < 1e-4 * losses["source"], losses  # same function, fp32


def test_an_unreachable_target_is_refused_before_anything_is_written(tiny_checkpoint, tmp_path):
    checkpoint, _ = tiny_checkpoint
    source = open_weights(checkpoint).config
    (tmp_path / "target.yaml").write_text(model_config_yaml(replace(source, hidden_size=source.hidden_size + 8)))
    result = run_motif_in_process(["grow", "--source", str(checkpoint), "--target", str(tmp_path / "target.yaml"),
                                   "--output", str(tmp_path / "grown")], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"motif: error: GrowthConfig.target = 'hidden_size {source.hidden_size} -> {source.hidden_size + 8}': "
        "HyperCloning copies units whole: the target needs a whole multiple of the source's"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.yaml"]
