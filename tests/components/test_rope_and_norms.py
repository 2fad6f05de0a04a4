"""RoPE and RMSNorm against their definitions."""

import torch

import naive_reference as naive
from components.norms import RMSNorm
from components.rope import apply_rotary, rotary_cos_sin


def test_rope_matches_naive_rotate_half():
    torch.manual_seed(0)
    x = torch.randn(2, 13, 3, 10)
    cos, sin = rotary_cos_sin(13, 10, 1e6, x.device)
    out = apply_rotary(x, cos, sin)
    for h in range(3):
        expected = naive.rope(x[:, :, h].double(), 1e6)
        torch.testing.assert_close(out[:, :, h].double(), expected, atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)
    cos, sin = rotary_cos_sin(64, 16, 10_000.0, q.device)
    cos, sin = cos.double(), sin.double()

    def score(i, j):
        qi = apply_rotary(q, cos[i:i + 1], sin[i:i + 1])
        kj = apply_rotary(k, cos[j:j + 1], sin[j:j + 1])
        return (qi * kj).sum().item()

    assert abs(score(5, 2) - score(40, 37)) < 1e-5
    assert abs(score(5, 2) - score(5, 3)) > 1e-3


def test_rmsnorm_matches_definition_and_keeps_dtype():
    torch.manual_seed(2)
    norm = RMSNorm(37, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(37))
    x = torch.randn(4, 37)
    expected = naive.rms(x.double(), norm.weight.double(), 1e-6)
    torch.testing.assert_close(norm(x).double(), expected, atol=1e-5, rtol=1e-5)
    assert norm(x.half()).dtype == torch.float16
