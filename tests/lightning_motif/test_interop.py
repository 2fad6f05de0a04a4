"""The released Motif-2 layout (Hugging Face): config.json <-> presets, ``motif convert import|export`` on synthetic
checkpoints written in exactly that layout (tests/hf_synthetic.py), parity of the imported model with an fp64
forward of the released architecture written from the published formulas (tests/naive_reference.py), and
starting a run from imported weights."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import naive_reference as naive
from components.config_error import ConfigError
from components.model import MotifForCausalLM
from hf_synthetic import released_config, released_tensors, write_released_folder
from lightning_motif.initialization import load_weights
from lightning_motif.interop.convert import ConvertConfig, convert
from lightning_motif.interop.hf_config import from_config_json, to_config_json
from lightning_motif.interop.weights import expected_tensors, open_weights
from lightning_motif.presets import load_model_config
from motif_cli import REPO, run_motif, run_motif_in_process, scalar_steps, tiny_run_args

PRESETS = REPO / "experiments" / "presets"
RELEASED_12_7B = {  # the released config.json's values (arXiv 2511.07464, Table 1; the public checkpoint)
    "architectures": ["MotifForCausalLM"], "model_type": "motif", "hidden_act": "poly_norm", "hidden_size": 4096,
    "intermediate_size": 16384, "num_hidden_layers": 40, "num_noise_heads": 8, "num_attention_heads": 40,
    "num_key_value_heads": 16, "head_dim": 128, "vocab_size": 219520, "rms_norm_eps": 1e-6, "attn_rms_norm_eps": 1e-5,
    "rope_theta": 1e6, "max_position_embeddings": 32768, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}


def test_the_12_7b_preset_is_the_released_config_json_field_for_field():
    preset = load_model_config(PRESETS / "motif-2-12.7b.yaml")
    assert to_config_json(preset) == RELEASED_12_7B
    assert from_config_json(RELEASED_12_7B) == preset
    shapes = {name: shape for name, (shape, _) in expected_tensors(preset).items()}
    assert len(shapes) == 643 and shapes["model.layers.39.self_attn.o_proj.weight"] == (4096, 8192)


def test_the_2_6b_preset_is_the_inferred_released_layout():
    preset = load_model_config(PRESETS / "motif-2.6b.yaml")
    config = to_config_json(preset)
    assert {k: config[k] for k in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_noise_heads",
                                   "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                                   "tie_word_embeddings")} == {
        "hidden_size": 2048, "num_hidden_layers": 32, "intermediate_size": 8192, "num_noise_heads": 8,
        "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 128, "vocab_size": 219520,
        "tie_word_embeddings": True}
    assert from_config_json(config) == preset
    shapes = {name: shape for name, (shape, _) in expected_tensors(preset).items()}
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == (2 * 8 * 128, 2048)  # 8 (signal, noise) pairs
    assert shapes["model.layers.0.self_attn.o_proj.weight"] == (2048, 8 * 256)


SMALL = dict(hidden=48, ffn=80, noise_heads=2, ratio=4, head_dim=8, vocab=101)


@pytest.fixture
def released(tmp_path):
    config = released_config(layers=6, **SMALL)
    tensors = released_tensors(config)
    return write_released_folder(tmp_path / "released", config, tensors), config, tensors


def imported_model(folder: Path, output: Path) -> MotifForCausalLM:
    convert("import", ConvertConfig(source=str(folder), output=str(output), verbose=False))
    source = open_weights(output / "model.ckpt")
    assert load_model_config(output / "model.yaml") == source.config
    torch.manual_seed(0)
    model = MotifForCausalLM(source.config)
    load_weights(model, source)
    return model


@pytest.mark.parametrize("layers", [1, 2, 6])  # a first, a second and a deep layer
@pytest.mark.parametrize("layout", ["gda", "diff-tied"])  # the 12.7B layout; the 2.6B layout (r = 1, tied)
def test_imported_weights_give_the_released_architectures_logits(layers, layout, tmp_path):
    """fp32 model against the fp64 formulas on the same (bf16-exact) weights: a relative error of a few 1e-6 per
    layer (sums of <= 80 terms, softmax, three norms); 1e-4 of the logit scale is far below what a wrong head
    order, lambda_init or norm produces (O(1))."""
    shape = dict(SMALL, ratio=1, noise_heads=3) if layout == "diff-tied" else SMALL
    config = released_config(layers=layers, tied=layout == "diff-tied", **shape)
    tensors = released_tensors(config, seed=layers)
    folder = write_released_folder(tmp_path / "released", config, tensors, shards=2)
    model = imported_model(folder, tmp_path / "imported")
    tokens = torch.randint(0, config["vocab_size"], (2, 19), generator=torch.Generator().manual_seed(3))
    expected = naive.released_model_logits(tensors, config, tokens)
    with torch.no_grad():
        actual = model(tokens).double()
    scale = expected.abs().max().item()
    assert scale > 1.0
    torch.testing.assert_close(actual, expected, atol=1e-4 * scale, rtol=0)


def read_folder(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            tensors.update({name: handle.get_tensor(name) for name in handle.keys()})
    return tensors


def test_import_then_export_gives_back_the_same_bits(released, tmp_path):
    folder, config, tensors = released
    convert("import", ConvertConfig(source=str(folder), output=str(tmp_path / "imported"), verbose=False))
    checkpoint = torch.load(tmp_path / "imported" / "model.ckpt", weights_only=False)
    assert not [k for k in checkpoint["state_dict"] if "inv_freq" in k]  # dropped
    assert (tmp_path / "imported" / "tokenizer_config.json").is_file()
    convert("export", ConvertConfig(source=str(tmp_path / "imported" / "model.ckpt"), output=str(tmp_path / "exported"),
                                    max_shard_bytes=60_000, verbose=False))
    exported = read_folder(tmp_path / "exported")
    assert sorted(exported) == sorted(tensors)
    for name, tensor in tensors.items():
        assert exported[name].dtype == tensor.dtype and torch.equal(exported[name], tensor), name
    written = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert {k: written[k] for k in RELEASED_12_7B} == {k: config[k] for k in RELEASED_12_7B}
    index = json.loads((tmp_path / "exported" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors) and len(set(index["weight_map"].values())) > 1
    assert all(f.stat().st_size <= 60_000 + 10_000 for f in (tmp_path / "exported").glob("*.safetensors"))  # + header
    assert (tmp_path / "exported" / "generation_config.json").is_file()


def test_a_trained_checkpoint_exports_in_bf16_with_fp32_lambdas(tmp_path, corpus_cache):
    result = run_motif(["fit", *tiny_run_args(tmp_path, corpus_cache, 6), "--trainer.limit_val_batches=0",
                        "--trainer.callbacks.dirpath", str(tmp_path / "checkpoints")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    source = tmp_path / "checkpoints" / "step=6.ckpt"
    result = run_motif(["convert", "export", "--source", str(source), "--output", str(tmp_path / "hf")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(source, weights_only=False)["state_dict"]
    exported = read_folder(tmp_path / "hf")
    for name, tensor in exported.items():
        original = state[f"net.{name}"]
        expected = original if "lambda_" in name else original.to(torch.bfloat16)
        assert tensor.dtype == expected.dtype and torch.equal(tensor, expected), name
    convert("import", ConvertConfig(source=str(tmp_path / "hf"), output=str(tmp_path / "back"), verbose=False))
    back = torch.load(tmp_path / "back" / "model.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(back[f"net.{name}"], tensor) for name, tensor in exported.items())


def damaged(folder: Path, config: dict, tensors: dict, change: str) -> Path:
    tensors, config = dict(tensors), dict(config)
    if change == "unknown-field":
        config["rope_scaling"] = {"type": "linear", "factor": 2.0}
    elif change == "missing-tensor":
        del tensors["model.layers.3.mlp.up_proj.weight"]
    elif change == "extra-tensor":
        tensors["model.layers.0.self_attn.q_norm.weight"] = torch.ones(8, dtype=torch.bfloat16)
    elif change == "misshapen-tensor":
        tensors["model.layers.2.self_attn.k_proj.weight"] = torch.zeros(24, 48, dtype=torch.bfloat16)
    elif change == "integer-tensor":
        tensors["model.norm.weight"] = torch.ones(48, dtype=torch.int32)
    elif change == "inconsistent-heads":
        config["num_key_value_heads"] = 6
    return write_released_folder(folder, config, tensors, inv_freq=False)


@pytest.mark.parametrize("change,expected", [
    ("unknown-field", "config.json.rope_scaling = {'type': 'linear', 'factor': 2.0}: only None is supported"),
    ("missing-tensor", "weights.source = 'model.layers.3.mlp.up_proj.weight': missing tensor"),
    ("extra-tensor", "weights.source = 'model.layers.0.self_attn.q_norm.weight': unexpected tensor"),
    ("misshapen-tensor", "weights.source = 'model.layers.2.self_attn.k_proj.weight': shape [24, 48] where the model config needs [32, 48]"),
    ("integer-tensor", "weights.source = 'model.norm.weight': dtype torch.int32"),
    ("inconsistent-heads", "config.json.num_key_value_heads = 6: must be 2 x num_noise_heads = 4"),
])
def test_import_refuses_what_it_cannot_honour_with_one_line(change, expected, released, tmp_path):
    _, config, tensors = released
    folder = damaged(tmp_path / change, config, tensors, change)
    result = run_motif_in_process(["convert", "import", "--source", str(folder), "--output", str(tmp_path / "out")], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("motif: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_an_existing_output_is_never_overwritten(released, tmp_path):
    folder, _, _ = released
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="^ConvertConfig.output = .*exists: give a new folder"):
        convert("import", ConvertConfig(source=str(folder), output=str(tmp_path / "out"), verbose=False))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_a_run_starts_from_imported_weights_with_fresh_state(tmp_path, corpus_cache):
    """``model.init_weights_from``: the first step's loss is that of the trained weights (not of a fresh init), while
    the optimizer, the schedule and the data start over (step 0, warm-up, the stream's first batch)."""
    first = tmp_path / "first"
    result = run_motif(["fit", *tiny_run_args(first, corpus_cache, 30), "--trainer.limit_val_batches=0",
                        "--trainer.log_every_n_steps=1", "--trainer.callbacks.dirpath", str(first / "checkpoints")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    convert("export", ConvertConfig(source=str(first / "checkpoints" / "step=30.ckpt"), output=str(tmp_path / "hf"), verbose=False))
    convert("import", ConvertConfig(source=str(tmp_path / "hf"), output=str(tmp_path / "imported"), verbose=False))
    trained = scalar_steps(first / "tensorboard" / "version_0", "train/loss")
    for name, weights in (("from-checkpoint", first / "checkpoints" / "step=30.ckpt"), ("from-import", tmp_path / "imported" / "model.ckpt"),
                          ("from-hf", tmp_path / "hf")):
        run = tmp_path / name
        result = run_motif(["fit", *tiny_run_args(run, corpus_cache, 6), "--trainer.limit_val_batches=0",
                            "--trainer.log_every_n_steps=1", f"--model.init_weights_from={weights}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        losses = scalar_steps(run / "tensorboard" / "version_0", "train/loss")
        assert sorted(losses) == list(range(6))
        assert losses[0] < trained[0] - 1.0 and abs(losses[0] - trained[29]) < 1.0, (name, losses, trained)
        lr = scalar_steps(run / "tensorboard" / "version_0", "lr-MuonClip/hidden_matrices")
        assert lr[0] < lr[2], lr  # warm-up again


def test_init_weights_from_another_model_is_refused(tmp_path, corpus_cache, released):
    folder, _, _ = released
    result = run_motif(["fit", *tiny_run_args(tmp_path, corpus_cache, 3), f"--model.init_weights_from={folder}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "MotifLM.init_weights_from = " in result.stderr and "the weights belong to another model" in result.stderr


WORKER = REPO / "tests" / "distributed" / "initialization_worker.py"


def test_each_fsdp2_rank_reads_its_rows_of_the_weights(released, tmp_path):
    folder, _, tensors = released
    result = subprocess.run([sys.executable, str(WORKER), "2", str(folder)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads(line[len("REPORT "):]) for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert reports[-1] == {"loaded_from": str(folder), "max_difference": 0.0, "rows_read_per_rank": "own"}


def test_prepare_takes_a_released_style_tokenizer_folder(tmp_path):
    """A tokenizer folder of the released structure (219,520 entries with 520 added tokens, the eos token in
    tokenizer_config.json): the dataset keeps its files, the manifest records the full vocabulary, and a model
    whose vocabulary is smaller is refused before any compute."""
    from components.attention import GroupedDifferentialAttentionConfig
    from components.mlp import PolyNormMLPConfig
    from components.model import ModelConfig
    from hf_synthetic import write_released_tokenizer
    from lightning_motif.data.datamodule import CurriculumDataModule
    from lightning_motif.data.prepare import DomainSource, PrepareConfig, prepare
    from lightning_motif.module import MotifLM
    from motif_cli import tiny_schedule

    tokenizer = write_released_tokenizer(tmp_path / "tokenizer")
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"text": " ".join(f"w{(i * 7919 + j) % 218_999}" for j in range(200))}) + "\n"
                           for i in range(60)))
    out = tmp_path / "data"
    manifest = prepare(PrepareConfig(output_dir=str(out), tokenizer=str(tokenizer), val_fraction=0.2, num_workers=1,
                                     verbose=False, domains={d: DomainSource(paths=[str(raw)]) for d in ("code", "math", "prose")}))
    assert manifest.vocab_size == 219_520 and manifest.eos_token_id == 219_002  # "<|im_end|>", an added token
    assert manifest.tokenizer_files == ["added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"]
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"].startswith("{% for m in messages %}")
    datamodule = CurriculumDataModule(str(out), tiny_schedule())

    def model(vocab: int) -> MotifLM:
        return MotifLM(ModelConfig(vocab_size=vocab, hidden_size=32, num_layers=1, max_position_embeddings=128,
                                   attention=GroupedDifferentialAttentionConfig(num_noise_heads=1, signal_noise_ratio=2, head_dim=8),
                                   mlp=PolyNormMLPConfig(intermediate_size=32)))

    datamodule.check_fits(model(219_520))
    with pytest.raises(ConfigError, match="ModelConfig.vocab_size = 219000: smaller than the tokenizer's 219520 tokens"):
        datamodule.check_fits(model(219_000))


def test_a_distributed_checkpoint_exports_tensor_by_tensor(tmp_path, corpus_cache, tiny_sharded_checkpoint):
    """An FSDP2 run's sharded checkpoint (2 gloo processes) exports without any process group: each tensor is
    assembled from its shards, alone, and written in bf16 (lambda vectors fp32). Another FSDP2 run starts from
    it (``init_weights_from``), each rank reading the pieces of its own shards."""
    folder, run = tiny_sharded_checkpoint
    assert folder.is_dir() and list(folder.glob("*.distcp"))
    convert("export", ConvertConfig(source=str(folder), output=str(tmp_path / "hf"), verbose=False))
    source = open_weights(folder)
    exported = read_folder(tmp_path / "hf")
    assert sorted(exported) == sorted(source.names())
    for name, tensor in exported.items():
        expected = source.tensor(name)
        assert torch.equal(tensor, expected if "lambda_" in name else expected.to(torch.bfloat16)), name
    trained = scalar_steps(run, "train/loss")
    result = run_motif(["fit", *tiny_run_args(tmp_path / "again", corpus_cache, 6), "--trainer.limit_val_batches=0",
                        "--trainer.log_every_n_steps=1", "--config", str(REPO / "experiments/strategies/fsdp2.yaml"),
                        "--model.parallelism.param_dtype=null", "--trainer.devices=2", "--trainer.accelerator=cpu",
                        f"--model.init_weights_from={folder}"], cwd=tmp_path)  # each rank loads its shards from it
    assert result.returncode == 0, result.stderr[-3000:]
    again = scalar_steps(tmp_path / "again" / "tensorboard" / "version_0", "train/loss")
    assert again[0] < trained[0] - 0.5 and abs(again[0] - trained[5]) < 0.5, (again, trained)


def test_validate_and_test_accept_an_imported_checkpoint(tmp_path, corpus_cache):
    config = released_config(layers=2, **dict(SMALL, vocab=600))
    folder = write_released_folder(tmp_path / "released", config, released_tensors(config))
    convert("import", ConvertConfig(source=str(folder), output=str(tmp_path / "imported"), verbose=False))
    for command, key in (("validate", "val/loss"), ("test", "test/loss")):
        result = run_motif([command, *tiny_run_args(tmp_path, corpus_cache, 4), "--model.transformer",
                            str(tmp_path / "imported" / "model.yaml"), "--ckpt_path", str(tmp_path / "imported" / "model.ckpt")],
                           cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert key in result.stdout
