"""Whole-model behaviour: shapes, causality for every component combination, presets and the 12.7B shapes."""

from pathlib import Path

import pytest
import torch

from components.attention import (
    DifferentialAttentionConfig,
    GroupedDifferentialAttentionConfig,
    GroupedQueryAttentionConfig,
)
from components.layers import count_parameters
from components.mlp import PolyNormMLPConfig, SwiGLUConfig
from components.model import ModelConfig, MotifForCausalLM
from lightning_motif.presets import load_model_config

PRESETS = Path(__file__).resolve().parents[2] / "experiments" / "presets"
ATTENTIONS = {
    "gqa": GroupedQueryAttentionConfig(num_heads=4, num_kv_heads=2, head_dim=8),
    "diff": DifferentialAttentionConfig(num_heads=2, num_kv_heads=1, head_dim=8),
    "gda": GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=3, head_dim=8),
}
MLPS = {"swiglu": SwiGLUConfig(intermediate_size=48), "polynorm": PolyNormMLPConfig(intermediate_size=48)}


def tiny(attention, mlp, **overrides) -> ModelConfig:
    return ModelConfig(vocab_size=97, hidden_size=32, num_layers=2, max_position_embeddings=64,
                       attention=attention, mlp=mlp, **overrides)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("mlp", MLPS)
def test_shapes_and_causality(attention, mlp):
    torch.manual_seed(0)
    model = MotifForCausalLM(tiny(ATTENTIONS[attention], MLPS[mlp]))
    tokens = torch.randint(0, 97, (2, 29))
    logits = model(tokens)
    assert logits.shape == (2, 29, 97)
    for t in (0, 11, 28):
        changed = tokens.clone()
        changed[:, t:] = torch.randint(0, 97, changed[:, t:].shape)
        torch.testing.assert_close(model(changed)[:, :t], logits[:, :t], atol=0, rtol=0)
        if t < 28:
            assert not torch.allclose(model(changed)[:, t], logits[:, t])


def test_backward_reaches_every_parameter():
    model = MotifForCausalLM(tiny(ATTENTIONS["gda"], MLPS["polynorm"]))
    model(torch.randint(0, 97, (2, 16))).logsumexp(-1).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_tied_embeddings_share_one_matrix():
    model = MotifForCausalLM(tiny(ATTENTIONS["diff"], MLPS["polynorm"], tie_word_embeddings=True))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    untied = MotifForCausalLM(tiny(ATTENTIONS["diff"], MLPS["polynorm"]))
    assert count_parameters(untied) - count_parameters(model) == 97 * 32


def test_initialisation_follows_config():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=1000, hidden_size=256, num_layers=8, attention=ATTENTIONS["gda"],
                         mlp=PolyNormMLPConfig(intermediate_size=1024), init_std=0.02)
    model = MotifForCausalLM(config)
    layer = model.model.layers[0]
    assert layer.mlp.up_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert layer.mlp.down_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)  # / sqrt(2 * 8)
    assert model.model.embed_tokens.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(layer.input_layernorm.weight, torch.ones(256))


def test_sequence_longer_than_max_positions_is_refused():
    model = MotifForCausalLM(tiny(ATTENTIONS["gqa"], MLPS["swiglu"]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_12_7b_preset_has_the_published_size_and_checkpoint_shapes():
    config = load_model_config(PRESETS / "motif-2-12.7b.yaml")
    with torch.device("meta"):
        model = MotifForCausalLM(config)
    assert count_parameters(model) == pytest.approx(12.7e9, rel=0.005)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert len(shapes) == 643
    assert shapes["model.embed_tokens.weight"] == (219520, 4096)
    assert shapes["lm_head.weight"] == (219520, 4096)
    assert shapes["model.norm.weight"] == (4096,)
    for i in (0, 39):
        p = f"model.layers.{i}."
        assert {k[len(p):]: v for k, v in shapes.items() if k.startswith(p)} == {
            "self_attn.q_proj.weight": (5120, 4096), "self_attn.k_proj.weight": (2048, 4096),
            "self_attn.v_proj.weight": (2048, 4096), "self_attn.o_proj.weight": (4096, 8192),
            "self_attn.lambda_q1": (128,), "self_attn.lambda_k1": (128,), "self_attn.lambda_q2": (128,),
            "self_attn.lambda_k2": (128,), "self_attn.subln.weight": (256,),
            "mlp.gate_proj.weight": (16384, 4096), "mlp.up_proj.weight": (16384, 4096),
            "mlp.down_proj.weight": (4096, 16384), "mlp.act_fn.weight": (3,), "mlp.act_fn.bias": (1,),
            "input_layernorm.weight": (4096,), "post_attention_layernorm.weight": (4096,),
        }
    assert model.model.layers[0].self_attn.lambda_q1.dtype == torch.float32
    assert config.rope_theta == 1e6 and config.max_position_embeddings == 32768


@pytest.mark.parametrize("preset,low,high", [
    ("tiny.yaml", 0.5e6, 0.8e6),
    ("motif-125m.yaml", 0.12e9, 0.135e9),
    ("motif-1b.yaml", 1.0e9, 1.3e9),
    ("motif-2.6b.yaml", 2.59e9, 2.61e9),  # 32 blocks of 67.1M + the tied 219,520 x 2048 embedding
])
def test_smaller_presets_build_on_meta_with_their_stated_sizes(preset, low, high):
    with torch.device("meta"):
        model = MotifForCausalLM(load_model_config(PRESETS / preset))
    assert low <= count_parameters(model) <= high


def test_triton_kernel_paths_match_the_reference_paths():
    """The whole model with its fused kernels (differential combine, PolyNorm * up, add + RMSNorm, chunked loss,
    max-logit measurement; Triton interpreter on CPU) against the same weights on the PyTorch reference paths,
    fp32: equal up to summation order."""
    def build(kernel: str, loss: str) -> MotifForCausalLM:
        torch.manual_seed(0)
        attention = GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=3, head_dim=8, kernel=kernel)
        return MotifForCausalLM(ModelConfig(
            vocab_size=97, hidden_size=32, num_layers=2, max_position_embeddings=64, norm_kernel=kernel,
            loss_kernel=loss, attention=attention, mlp=PolyNormMLPConfig(intermediate_size=48, kernel=kernel)))

    fused, reference = build("triton", "chunked"), build("reference", "reference")
    for model in (fused, reference):
        for block in model.model.layers:
            block.self_attn.track_max_logits = True
    tokens = torch.randint(0, 97, (2, 17), generator=torch.Generator().manual_seed(1))
    losses = [model(tokens[:, :-1], targets=tokens[:, 1:]) for model in (fused, reference)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[0], losses[1], atol=0, rtol=1e-5)
    for fused_block, reference_block in zip(fused.model.layers, reference.model.layers):
        torch.testing.assert_close(fused_block.self_attn.max_logits, reference_block.self_attn.max_logits,
                                   atol=0, rtol=1e-5)
    for (name, p), q in zip(fused.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_fused_kernels_trace_into_one_torch_compile_graph():
    """torch.compile (fullgraph, AOT autograd) through the custom ops' fake and autograd registrations; the
    compiled model computes what the eager one does."""
    torch.manual_seed(0)
    attention = GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=2, head_dim=8, kernel="triton")
    model = MotifForCausalLM(ModelConfig(vocab_size=61, hidden_size=24, num_layers=1, max_position_embeddings=32,
                                         norm_kernel="triton", attention=attention,
                                         mlp=PolyNormMLPConfig(intermediate_size=40, kernel="triton")))
    model.model.layers[0].self_attn.track_max_logits = True  # the max-logit custom op traces too
    tokens = torch.randint(0, 61, (2, 13), generator=torch.Generator().manual_seed(3))
    eager = model(tokens[:, :-1], targets=tokens[:, 1:])
    eager.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(tokens[:, :-1], targets=tokens[:, 1:])
    compiled.backward()
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


def test_chunked_loss_under_bf16_autocast_matches_the_reference_loss():
    """fp32 weights, bf16 autocast (Lightning's bf16-mixed): the chunked loss runs its matmuls in bf16 like the
    reference lm head does; both agree to bf16 rounding (2^-8 relative, loose 2e-2 over a 60-token sum)."""
    def build(loss: str) -> MotifForCausalLM:
        torch.manual_seed(0)
        return MotifForCausalLM(ModelConfig(
            vocab_size=97, hidden_size=32, num_layers=1, max_position_embeddings=64, loss_kernel=loss,
            attention=GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=2, head_dim=8),
            mlp=PolyNormMLPConfig(intermediate_size=48)))

    tokens = torch.randint(0, 97, (2, 31), generator=torch.Generator().manual_seed(1))
    losses = []
    for loss in ("chunked", "reference"):
        model = build(loss)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = model(tokens[:, :-1], targets=tokens[:, 1:])
        value.backward()
        assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.dtype == torch.float32
        losses.append(value.float())
    torch.testing.assert_close(losses[0], losses[1], rtol=2e-2, atol=0)
