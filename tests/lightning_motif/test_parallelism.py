"""The per-block wrappers of ``lightning_motif.parallelism`` without sharding: activation checkpointing and
torch.compile (inductor, on CPU) change neither the result nor the parameter names (checkpoints and the
optimizer's groups do not depend on them). fp32; the compiled blocks may fuse and reorder elementwise work, so
loss and gradients agree to 1e-5 relative, not bit for bit. (FSDP2 sharding: test_fsdp2.py.)"""

import torch
from torch._dynamo.utils import counters

from components.attention import GroupedDifferentialAttentionConfig
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM
from components.optim import MuonClip
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


def test_blocks_compiled_per_block_share_one_graph_whatever_the_depth(monkeypatch):
    """Per-layer values (lambda_init) must not reach torch.compile as Python constants: Dynamo guards on them,
    compiles every block again and, past its recompile limit, runs the remaining blocks eagerly. A 12-layer
    model trained with MuonClip (max-logit tracking over two micro-batches, QK-clip) and evaluated under no_grad
    compiles exactly the graphs a 1-layer model does, with no graph break. Guards and graph breaks are Dynamo's,
    whatever the backend: aot_eager traces forward and backward through AOT autograd without inductor's C++
    compile time."""
    compile_block = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compile_block(self, backend="aot_eager", **kw))

    def graphs_after_training(num_layers: int) -> int:
        torch._dynamo.reset()
        counters.clear()
        torch.manual_seed(0)
        net = MotifForCausalLM(ModelConfig(
            vocab_size=97, hidden_size=32, num_layers=num_layers, max_position_embeddings=64,
            attention=GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=2, head_dim=8),
            mlp=PolyNormMLPConfig(intermediate_size=48)))
        apply_parallelism(net, ParallelismConfig(compile=True), None)
        attentions = [layer.self_attn for layer in net.model.layers]
        optimizer = MuonClip(motif_param_groups(net), lr=1e-2, qk_clip_tau=0.01)
        optimizer.set_qk_clip_sources([a.qk_clip_target for a in attentions])
        tokens = torch.randint(0, 97, (4, 17), generator=torch.Generator().manual_seed(1))
        clipped = 0
        for _ in range(2):
            for attention in attentions:
                attention.reset_max_logits()
                attention.track_max_logits = True
            for micro_batch in tokens.split(2):
                net(micro_batch[:, :-1], targets=micro_batch[:, 1:]).backward()
            optimizer.step()
            optimizer.zero_grad()
            clipped += sum(optimizer.clipped_heads)
            for attention in attentions:
                attention.track_max_logits = False
            with torch.no_grad():
                net(tokens[:, :-1], targets=tokens[:, 1:])
        assert clipped > 0  # QK-clip rescaled weights between the compiled calls
        assert not counters["graph_break"], dict(counters["graph_break"])
        return counters["stats"]["unique_graphs"]

    assert graphs_after_training(12) == graphs_after_training(1)
