"""MuonClip against plain re-statements of its formulas, its routing, and QK-clip."""

import math

import pytest
import torch

import naive_reference as naive
from components.attention import (
    DifferentialAttentionConfig,
    GroupedDifferentialAttentionConfig,
    GroupedQueryAttentionConfig,
)
from kernels.causal_max_logits import causal_max_logits
from components.config_error import ConfigError
from components.layers import WeightInit
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM
from components.optim import MuonClip
from components.optim.newton_schulz import newton_schulz, newton_schulz_flops
from components.optim.param_groups import motif_param_groups
from components.optim.qk_clip import qk_clip_
from components.rope import rotary_cos_sin

INIT = WeightInit(0.02, 0.02)


def reference_newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The quintic iteration written out plainly (Moonlight, arXiv 2502.16982), in float64."""
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        a = x @ x.T
        x = 3.4445 * x + (-4.7750 * a + 2.0315 * (a @ a)) @ x
    return x.T if tall else x


@pytest.mark.parametrize("shape", [(8, 8), (5, 12), (12, 5), (33, 7), (64, 48)])
def test_newton_schulz_orthogonalises(shape):
    """bf16 against the float64 iteration: bf16 keeps 8 bits (relative error 2^-8 per rounding) and five
    iterations of a map whose slope reaches ~3 near the origin amplify that to a few 1e-2 on entries of size
    up to 1, so 0.06 absolute is the bf16 agreement; a wrong coefficient or orientation is off by O(1)."""
    torch.manual_seed(0)
    g = torch.randn(shape)
    out = newton_schulz(g)
    assert out.dtype == torch.bfloat16 and out.shape == shape
    torch.testing.assert_close(out.double(), reference_newton_schulz(g), atol=0.06, rtol=0)
    batched = newton_schulz(torch.stack([g, 2 * g]))
    torch.testing.assert_close(batched[0], out, atol=0, rtol=0)  # scale-free, batch-independent
    singular_values = torch.linalg.svdvals(out.float())
    assert singular_values.min() > 0.6 and singular_values.max() < 1.25  # the quintic's band around 1
    m, n = min(shape), max(shape)
    assert newton_schulz_flops(*shape) == 5 * (4 * m * m * n + 2 * m**3)


def tiny_model(num_layers: int = 2) -> MotifForCausalLM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, hidden_size=24, num_layers=num_layers, max_position_embeddings=32,
                         attention=GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=2, head_dim=8),
                         mlp=PolyNormMLPConfig(intermediate_size=40))
    return MotifForCausalLM(config)


def test_routing_sends_hidden_matrices_to_muon_and_the_rest_to_adamw():
    model = tiny_model()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["name"]: (g["use_muon"], sorted(names[id(p)] for p in g["params"])) for g in motif_param_groups(model)}
    muon, hidden = groups["hidden_matrices"]
    assert muon and hidden == sorted(n for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("model.layers."))
    assert groups["embeddings"] == (False, ["lm_head.weight", "model.embed_tokens.weight"])
    vectors = groups["vectors"][1]
    assert not groups["vectors"][0] and "model.layers.0.self_attn.lambda_q1" in vectors
    assert "model.layers.1.mlp.act_fn.bias" in vectors and "model.norm.weight" in vectors
    assert all(model.get_parameter(n).ndim == 1 for n in vectors)


def test_two_steps_match_muon_and_adamw_formulas():
    model = tiny_model()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = MuonClip(motif_param_groups(model), lr=0.01, weight_decay=0.1, qk_clip_tau=None)
    head = torch.nn.Parameter(initial["lm_head.weight"].clone())
    adamw = torch.optim.AdamW([head], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    grads = []
    for step in range(2):
        torch.manual_seed(step + 1)
        grads.append({n: torch.randn_like(p) for n, p in model.named_parameters()})
        for n, p in model.named_parameters():
            p.grad = grads[step][n].clone()
        optimizer.step()
        head.grad = grads[step]["lm_head.weight"].clone()
        adamw.step()

    name = "model.layers.1.self_attn.q_proj.weight"  # Muon: W <- W(1 - lr wd) - lr 0.2 sqrt(max dim) NS(G + mu B)
    w, buffer = initial[name], torch.zeros_like(initial[name])
    scale = 0.2 * math.sqrt(max(w.shape))
    for step in range(2):
        g = grads[step][name]
        buffer = 0.95 * buffer + g
        w = w * (1 - 0.01 * 0.1) - 0.01 * scale * newton_schulz(g + 0.95 * buffer).float()
    torch.testing.assert_close(model.get_parameter(name).detach(), w, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(model.get_parameter("lm_head.weight").detach(), head.detach(), atol=0, rtol=0)


def test_bad_optimizer_settings_name_the_field():
    with pytest.raises(ConfigError, match=r"^MuonClip.lr = -1"):
        MuonClip(motif_param_groups(tiny_model()), lr=-1)
    with pytest.raises(ConfigError, match=r"^MuonClip.qk_clip_tau = 0"):
        MuonClip(motif_param_groups(tiny_model()), qk_clip_tau=0)


@pytest.mark.parametrize("seq", [37, 3000])  # one block; several blocks (past keys unmasked, diagonal masked)
def test_causal_max_logits_matches_the_full_score_matrix(seq):
    torch.manual_seed(0)
    q, k = torch.randn(2, seq, 6, 8) * 3, torch.randn(2, seq, 3, 8) * 3
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1)
    expected = torch.stack([
        max((q[b, :, h] @ k[b, :, h // 2].T).masked_fill(future, float("-inf")).max() for b in range(2))
        for h in range(6)]) / math.sqrt(8)
    torch.testing.assert_close(causal_max_logits(q, k), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", [
    GroupedQueryAttentionConfig(num_heads=6, num_kv_heads=2, head_dim=8),
    DifferentialAttentionConfig(num_heads=4, num_kv_heads=2, head_dim=8),
    GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=3, head_dim=8),
], ids=["gqa", "diff", "gda"])
def test_qk_clip_bounds_every_head_and_scales_shared_keys_once(config):
    torch.manual_seed(1)
    attention = config.build(32, 0, INIT)
    with torch.no_grad():
        for p in attention.parameters():
            p.normal_(0, 0.6)
    x = torch.randn(2, 24, 32)
    cos, sin = rotary_cos_sin(24, 8, 1e4, x.device)
    attention.track_max_logits = True
    attention(x, cos, sin)
    before = attention.max_logits.clone()
    tau = float(before.median())  # about half of the heads are above
    k_before = attention.k_proj.weight.detach().clone()
    clipped = qk_clip_(attention.qk_clip_target(), tau)
    assert clipped == int((before > tau).sum()) > 0
    attention.reset_max_logits()
    attention(x, cos, sin)
    after = attention.max_logits
    expected = torch.minimum(before, torch.full_like(before, tau))
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=1e-4)  # clipped heads land on tau, others unchanged
    keys = attention.k_proj.weight.detach().view(-1, 8, 32)
    ratio = (keys / k_before.view(-1, 8, 32)).flatten(1)
    assert torch.allclose(ratio, ratio[:, :1], rtol=1e-5)  # each key head scaled by one factor
    assert (ratio[:, 0] <= 1 + 1e-6).all()


def test_qk_clip_holds_logits_near_tau_where_they_would_explode():
    """At a learning rate where the attention logits explode without clipping (past 5 tau), QK-clip keeps the
    logits of every training forward within one update of tau and stops their growth.

    QK-clip scales the weights after the update by tau / S_max, where S_max was measured in the step's forward
    with the weights before the update (Kimi K2); so the next forward sees tau times one update's growth of the
    logits, not tau exactly (the exact bound on the measured inputs is tested above). One layer, so that one
    layer's clip does not move another's inputs.

    The bounds hold on any CPU: Muon's bf16 Newton-Schulz makes the trajectory depend on the last bits of every
    matmul (which differ between CPUs), so they were set by rerunning with the initial weights perturbed by
    relative 1e-6 to 1e-2 (24 draws each): unclipped peaks 37.6-76.9 (>= 9.4 tau; bound 5 tau), clipped peaks
    at most 5.9 (1.48 tau; bound 1.75 tau), and the clipped peak's growth from steps 10-19 to steps 20-29 at
    most 0.8% of the unclipped run's growth over the same steps (>= 17.6; bound 5%)."""
    tau, steps, lr = 4.0, 30, 0.1
    tokens = torch.randint(0, 64, (4, 33), generator=torch.Generator().manual_seed(0))

    def peaks(clip: bool) -> list[float]:
        model = tiny_model(num_layers=1)
        attentions = [layer.self_attn for layer in model.model.layers]
        optimizer = MuonClip(motif_param_groups(model), lr=lr, weight_decay=0.0, qk_clip_tau=tau if clip else None)
        optimizer.set_qk_clip_sources([a.qk_clip_target for a in attentions])
        measured = []
        for _ in range(steps):
            for a in attentions:
                a.reset_max_logits()
                a.track_max_logits = True
            logits = model(tokens[:, :-1])
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
            measured.append(max(float(a.max_logits.max()) for a in attentions))
            optimizer.step()
            optimizer.zero_grad()
        return measured

    def late_growth(series: list[float]) -> float:
        return max(series[20:]) - max(series[10:20])

    unclipped, clipped = peaks(clip=False), peaks(clip=True)
    assert max(unclipped) > 5 * tau, unclipped
    assert max(clipped) <= 1.75 * tau, clipped
    assert late_growth(clipped) < 0.05 * late_growth(unclipped), (clipped, unclipped)  # held, not creeping upward


def test_reference_formulas_used_by_the_tests_agree_with_naive_module():
    assert naive.rms(torch.ones(1, 4, dtype=torch.float64), torch.ones(4, dtype=torch.float64), 0.0).sum() == 4
