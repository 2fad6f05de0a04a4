"""The per-block wrappers of ``lightning_motif.parallelism`` without sharding: activation checkpointing and
torch.compile (inductor, on CPU) change neither the result nor the parameter names (checkpoints and the
optimizer's groups do not depend on them). fp32; the compiled blocks may fuse and reorder elementwise work, so
loss and gradients agree to 1e-5 relative, not bit for bit. (FSDP2 sharding: test_fsdp2.py.)"""

import torch

from components.attention import GroupedDifferentialAttentionConfig
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM
from components.optim.param_groups import motif_param_groups
from lightning_motif.parallelism import ParallelismConfig, apply_parallelism


def build() -> MotifForCausalLM:
    torch.manual_seed(0)
    return MotifForCausalLM(ModelConfig(
        vocab_size=97, hidden_size=32, num_layers=2, max_position_embeddings=64,
        attention=GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=2, head_dim=8),
        mlp=PolyNormMLPConfig(intermediate_size=48)))


def test_checkpointed_compiled_blocks_compute_the_same_with_the_same_names():
    plain, wrapped = build(), build()
    apply_parallelism(wrapped, ParallelismConfig(activation_checkpointing=True, compile=True), None)
    tokens = torch.randint(0, 97, (2, 17), generator=torch.Generator().manual_seed(1))
    losses = [model(tokens[:, :-1], targets=tokens[:, 1:]) for model in (plain, wrapped)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0], atol=0, rtol=1e-5)
    for (name, p), (wrapped_name, q) in zip(plain.named_parameters(), wrapped.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    assert [[p.shape for p in g["params"]] for g in motif_param_groups(wrapped)] == \
        [[p.shape for p in g["params"]] for g in motif_param_groups(plain)]
