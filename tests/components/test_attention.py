"""Attention implementations against fp64 re-statements of the papers' formulas, on fresh random inputs.

Tolerances: the modules run in fp32 (unit roundoff 6e-8); with sums over at most 64 terms, softmax and the
sub-norm, their error against fp64 stays near 1e-6. We allow 2e-5 (relative to the output scale), far below
the O(1) differences that any layout mistake (a wrong head order, key pairing or value slice) produces.
"""

import math

import pytest
import torch

import naive_reference as naive
from components.attention import (
    DifferentialAttentionConfig,
    GroupedDifferentialAttentionConfig,
    GroupedQueryAttentionConfig,
)
from components.attention.differential_base import lambda_init
from components.layers import WeightInit
from components.rope import rotary_cos_sin

THETA = 10_000.0
INIT = WeightInit(std=0.02, output_std=0.02)


def randomize(module: torch.nn.Module, scale: float = 0.3) -> None:
    """Replace every parameter (lambda vectors and sub-norm weights included) by fresh random values, so the
    test sees sharp attention patterns and a lambda far from its init."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale + (1.0 if p.ndim == 1 and p.numel() > 128 else 0.0))


def run(module, x):
    cos, sin = rotary_cos_sin(x.shape[1], module.head_dim, THETA, x.device)
    return module(x, cos, sin)


def fp64_weights(module):
    return {name: p.detach().double() for name, p in module.named_parameters()}


def assert_close_scaled(actual, expected, tol=2e-5):
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual.double(), expected, atol=tol * scale, rtol=tol)


@pytest.mark.parametrize("groups,ratio,head_dim,layer", [(2, 4, 16, 0), (3, 1, 8, 5), (1, 3, 12, 2)])
def test_gda_matches_naive_fp64_formula(groups, ratio, head_dim, layer):
    torch.manual_seed(groups * 100 + ratio * 10 + layer)
    hidden, seq = 48, 23
    config = GroupedDifferentialAttentionConfig(num_noise_heads=groups, signal_noise_ratio=ratio, head_dim=head_dim)
    module = config.build(hidden, layer, INIT)
    randomize(module)
    x = torch.randn(2, seq, hidden)
    expected = naive.grouped_differential_attention(
        x.double(), fp64_weights(module), groups, ratio, head_dim, layer, THETA, config.subln_eps
    )
    assert_close_scaled(run(module, x), expected)


@pytest.mark.parametrize("ratio", [4, 1])
def test_gda_fused_core_matches_the_formula_with_gradients_and_max_logits(ratio):
    """The fused Triton core (interpreter) in the module: output against the fp64 formula; input gradient and
    QK-clip max logits equal to the SDPA path's (tolerances as above)."""
    torch.manual_seed(ratio)
    hidden, seq, groups, head_dim = 48, 21, 2, 16
    modules = [GroupedDifferentialAttentionConfig(num_noise_heads=groups, signal_noise_ratio=ratio, head_dim=head_dim,
                                                  kernel="triton", fused_core=fused).build(hidden, 1, INIT)
               for fused in (True, False)]
    randomize(modules[0])
    modules[1].load_state_dict(modules[0].state_dict())
    outputs, grads, maxima = [], [], []
    for module in modules:
        module.track_max_logits = True
        module.reset_max_logits()
        x = torch.randn(2, seq, hidden, generator=torch.Generator().manual_seed(7)).requires_grad_()
        out = run(module, x)
        grads.append(torch.autograd.grad(out.square().sum(), x)[0])
        outputs.append(out)
        maxima.append(module.max_logits.clone())
    expected = naive.grouped_differential_attention(x.double(), fp64_weights(modules[0]), groups, ratio, head_dim, 1,
                                                    THETA, modules[0].subln.eps)
    assert_close_scaled(outputs[0], expected)
    assert_close_scaled(grads[0], grads[1].double())
    assert_close_scaled(maxima[0], maxima[1].double())


def test_gda_head_layout_matches_the_public_checkpoint():
    config = GroupedDifferentialAttentionConfig(num_noise_heads=8, signal_noise_ratio=4, head_dim=128)
    with torch.device("meta"):
        module = config.build(4096, 0, INIT)
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes == {
        "lambda_q1": (128,), "lambda_k1": (128,), "lambda_q2": (128,), "lambda_k2": (128,),
        "subln.weight": (256,),
        "q_proj.weight": (5120, 4096), "k_proj.weight": (2048, 4096), "v_proj.weight": (2048, 4096),
        "o_proj.weight": (4096, 8192),
    }
    assert config.num_heads == 40 and config.num_kv_heads == 16


def test_gda_with_ratio_one_equals_differential_attention_on_the_same_weights():
    torch.manual_seed(0)
    hidden, heads, head_dim = 40, 3, 8
    gda = GroupedDifferentialAttentionConfig(num_noise_heads=heads, signal_noise_ratio=1, head_dim=head_dim).build(hidden, 3, INIT)
    diff = DifferentialAttentionConfig(num_heads=heads, num_kv_heads=heads, head_dim=head_dim).build(hidden, 3, INIT)
    randomize(gda)
    assert set(gda.state_dict()) == set(diff.state_dict())
    diff.load_state_dict(gda.state_dict())
    x = torch.randn(2, 17, hidden)
    torch.testing.assert_close(run(diff, x), run(gda, x), atol=0, rtol=0)


def test_differential_attention_with_shared_kv_groups_matches_naive_formula():
    """num_kv_heads < num_heads: differential head h uses (k1, k2, v) of group h // (num_heads / num_kv_heads)."""
    torch.manual_seed(1)
    hidden, heads, kv, d, layer = 32, 4, 2, 8, 1
    config = DifferentialAttentionConfig(num_heads=heads, num_kv_heads=kv, head_dim=d)
    module = config.build(hidden, layer, INIT)
    randomize(module)
    x = torch.randn(2, 19, hidden)
    w = fp64_weights(module)
    q, k, v = (x.double() @ w[f"{n}_proj.weight"].T for n in ("q", "k", "v"))
    lam_init = naive.motif_lambda_init(layer)
    lam = torch.exp(w["lambda_q1"] @ w["lambda_k1"]) - torch.exp(w["lambda_q2"] @ w["lambda_k2"]) + lam_init
    outs = []
    for h in range(heads):
        g = h // (heads // kv)
        values = naive.head(v, g, 2 * d)
        a1 = naive.causal_softmax_attention(naive.rope(naive.head(q, 2 * h, d), THETA), naive.rope(naive.head(k, 2 * g, d), THETA), values)
        a2 = naive.causal_softmax_attention(naive.rope(naive.head(q, 2 * h + 1, d), THETA), naive.rope(naive.head(k, 2 * g + 1, d), THETA), values)
        outs.append((1 - lam_init) * naive.rms(a1 - lam * a2, w["subln.weight"], config.subln_eps))
    expected = torch.cat(outs, -1) @ w["o_proj.weight"].T
    assert_close_scaled(run(module, x), expected)


@pytest.mark.parametrize("heads,kv", [(4, 4), (6, 2), (3, 1)])
def test_gqa_matches_naive_fp64_formula(heads, kv):
    torch.manual_seed(heads * 10 + kv)
    hidden, d = 36, 10
    module = GroupedQueryAttentionConfig(num_heads=heads, num_kv_heads=kv, head_dim=d).build(hidden, 0, INIT)
    randomize(module)
    x = torch.randn(2, 21, hidden)
    expected = naive.grouped_query_attention(x.double(), fp64_weights(module), heads, kv, d, THETA)
    assert_close_scaled(run(module, x), expected)


def reference_lambda_init(layer: int, schedule: str) -> float:
    """The two schedules written out in fp64 (0-based layer index): the released Motif-2 models' code shifts the
    index by one, the Differential Transformer paper's (arXiv 2410.05258, Sec. 2.1) does not."""
    l = torch.tensor(float(layer), dtype=torch.float64)
    exponent = -0.3 * (l - 1) if schedule == "motif" else -0.3 * l
    return float(0.8 - 0.6 * torch.exp(exponent))


@pytest.mark.parametrize("schedule", ["motif", "diff_transformer"])
@pytest.mark.parametrize("layer", [0, 1, 2, 10, 39])
def test_lambda_init_schedules(layer, schedule):
    expected = reference_lambda_init(layer, schedule)
    if schedule == "motif":  # the released models' first values
        assert {0: -0.009915, 1: 0.2}.get(layer, expected) == pytest.approx(expected, abs=1e-6)
    assert lambda_init(layer, schedule) == pytest.approx(expected, abs=1e-12)
    config = GroupedDifferentialAttentionConfig(num_noise_heads=1, signal_noise_ratio=2, head_dim=8, lambda_init_schedule=schedule)
    module = config.build(16, layer, INIT)
    assert module.lambda_init.dtype == torch.float32  # a buffer (one compiled graph for every layer), fp32 as
    assert float(module.lambda_init) == pytest.approx(expected, abs=6e-8)  # the kernels take it: one fp32 rounding
    with torch.no_grad():
        for p in (module.lambda_q1, module.lambda_k1, module.lambda_q2, module.lambda_k2):
            p.zero_()
    assert module.lambda_value().item() == pytest.approx(expected, abs=1e-6)  # exp(0) - exp(0) + lambda_init


def test_lambda_vectors_are_fp32_and_initialised_with_std_0_1():
    torch.manual_seed(0)
    module = GroupedDifferentialAttentionConfig(num_noise_heads=1, signal_noise_ratio=1, head_dim=4096).build(8, 0, INIT)
    for p in (module.lambda_q1, module.lambda_k1, module.lambda_q2, module.lambda_k2):
        assert p.dtype == torch.float32
        assert p.std().item() == pytest.approx(0.1, rel=0.05)
