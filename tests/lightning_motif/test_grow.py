"""``motif grow`` end to end: a trained checkpoint grown in width, depth and attention kind validates to its
source's loss, and an unreachable target is refused before anything is written."""

import re
from dataclasses import replace

import yaml

from components.attention import GroupedDifferentialAttentionConfig
from hf_synthetic import released_config, released_tensors, write_released_folder, write_released_tokenizer
from lightning_motif.interop.hf_config import model_config_yaml
from lightning_motif.interop.weights import open_weights
from motif_cli import run_motif_in_process, tiny_run_args

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
        result = run_motif_in_process(["validate", *tiny_run_args(tmp_path / name, corpus_cache, 4), *args],
                                      cwd=tmp_path)
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


def test_an_imported_2_6b_style_folder_grows_into_a_gda_model(tmp_path):
    """The growth the report describes, from the released layout: a Hugging Face folder of a tied plain
    differential model (bf16) into an untied GDA 4:1 model twice as wide and one layer deeper; tokenizer files
    travel along."""
    config = released_config(hidden=32, layers=2, ffn=48, noise_heads=2, ratio=1, head_dim=8, vocab=101, tied=True)
    folder = write_released_folder(tmp_path / "released", config, released_tensors(config))
    write_released_tokenizer(folder, base_words=300, added=4)
    source = open_weights(folder).config
    attention = GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=4, head_dim=8,
                                                   subln_eps=source.attention.subln_eps)
    target = replace(source, hidden_size=64, num_layers=3, attention=attention, tie_word_embeddings=False,
                     mlp=replace(source.mlp, intermediate_size=96))
    (tmp_path / "target.yaml").write_text(model_config_yaml(target))
    result = run_motif_in_process(["grow", "--source", str(folder), "--target", str(tmp_path / "target.yaml"),
                                   "--output", str(tmp_path / "grown")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = yaml.safe_load((tmp_path / "grown" / "growth.yaml").read_text())
    # bf16 weights copied and divided by powers of two stay exact; the fp32 forwards differ by summation order
    assert record["verified"]["max_abs_logit_difference"] < 1e-4 * max(1.0, record["verified"]["max_abs_logit"])
    assert record["lambda_init_compensated"] == [{"layer": 2, "source_layer": 1, "lambda_init": [0.2, 0.355509]}]
    assert (tmp_path / "grown" / "tokenizer.json").is_file()
    assert open_weights(tmp_path / "grown" / "model.ckpt").config == target


def test_a_sharded_fsdp2_checkpoint_grows_like_a_checkpoint_file(tiny_sharded_checkpoint, tmp_path):
    folder, _ = tiny_sharded_checkpoint  # a distributed-checkpoint folder, read tensor by tensor
    (tmp_path / "target.yaml").write_text(model_config_yaml(grown_target(open_weights(folder).config)))
    result = run_motif_in_process(["grow", "--source", str(folder), "--target", str(tmp_path / "target.yaml"),
                                   "--output", str(tmp_path / "grown")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = yaml.safe_load((tmp_path / "grown" / "growth.yaml").read_text())
    assert record["verified"]["max_abs_logit_difference"] < 1e-4 * max(1.0, record["verified"]["max_abs_logit"])
