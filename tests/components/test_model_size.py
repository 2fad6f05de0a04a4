"""Parameter counts and training FLOPs per token (components.model_size) against a count of the model itself."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from components.attention import (DifferentialAttentionConfig, GroupedDifferentialAttentionConfig,
                                  GroupedQueryAttentionConfig)
from components.mlp import PolyNormMLPConfig, SwiGLUConfig
from components.model import ModelConfig, MotifForCausalLM
from components.model_size import model_size

ATTENTIONS = {
    "gda": GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=4, head_dim=16, kernel="reference"),
    "diff": DifferentialAttentionConfig(num_heads=4, num_kv_heads=2, head_dim=16, kernel="reference"),
    "gqa": GroupedQueryAttentionConfig(num_heads=8, num_kv_heads=2, head_dim=16, kernel="reference"),
}


def _config(attention: str, mlp, tie: bool = False) -> ModelConfig:
    return ModelConfig(vocab_size=512, hidden_size=64, num_layers=3, max_position_embeddings=128,
                       attention=ATTENTIONS[attention], mlp=mlp, tie_word_embeddings=tie, norm_kernel="reference",
                       loss_kernel="reference")


@pytest.mark.parametrize("attention", sorted(ATTENTIONS))
@pytest.mark.parametrize("mlp", [PolyNormMLPConfig(intermediate_size=96, kernel="reference"),
                                 SwiGLUConfig(intermediate_size=96)], ids=["polynorm", "swiglu"])
def test_flops_per_token_match_the_matmuls_the_model_runs(attention, mlp):
    """Three times the forward's matmul FLOPs as torch's FLOP counter sees them (SDPA's math backend and the
    differential reference paths compute attention as matmuls over the whole sequence, the convention the count
    follows): equal to the FLOP, since neither counts elementwise work."""
    config, seq_len = _config(attention, mlp), 32
    model = MotifForCausalLM(config)
    tokens = torch.randint(0, config.vocab_size, (2, seq_len))
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(tokens)  # the math backend: attention as matmuls the counter sees
    assert 3 * counter.get_total_flops() == model_size(config, seq_len).flops_per_token * tokens.numel()


@pytest.mark.parametrize("tie", [False, True])
def test_parameter_counts(tie):
    config = _config("gda", SwiGLUConfig(intermediate_size=96), tie=tie)
    model = MotifForCausalLM(config)
    size = model_size(config, 16)
    assert size.parameters == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert size.embedding_parameters == 512 * 64
    assert size.non_embedding_parameters == size.parameters - 512 * 64
    assert size.matmul_parameters == sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_the_causal_count_takes_the_keys_a_query_sees():
    """(T + 1) / 2 keys per query on average under the causal mask: the attention term shrinks by (T + 1) / 2T."""
    config, seq_len = _config("gda", SwiGLUConfig(intermediate_size=96)), 32
    whole, causal = model_size(config, seq_len), model_size(config, seq_len, causal=True)
    attention = 6 * 3 * config.attention.context_macs_per_token(seq_len)
    assert whole.flops_per_token - causal.flops_per_token == round(attention * (1 - (seq_len + 1) / (2 * seq_len)))
