"""The fused differential combine + sub-norm through Triton's interpreter against float64 autograd.

Inputs are strided like the attention outputs they come from (a transposed (B, H, S, D) tensor).
Tolerances relative to each result's magnitude (at least 1): fp32 1e-5; fp16 3e-3 (inputs and outputs
rounded to fp16, unit roundoff 4.9e-4).
"""

import pytest
import torch

from kernels.differential_combine import (
    differential_combine,
    differential_combine_backward,
    differential_combine_forward,
    differential_combine_reference,
)


def close(actual, expected, tol):
    torch.testing.assert_close(actual.double(), expected, atol=tol * max(expected.abs().max().item(), 1.0), rtol=0)


def attention_like(batch, heads, seq, width, dtype):
    return torch.randn(batch, heads, seq, width).to(dtype).transpose(1, 2).requires_grad_()


@pytest.mark.parametrize("groups,ratio,width", [(2, 4, 32), (3, 1, 16), (1, 3, 64), (2, 5, 8)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 3e-3)])
def test_combine_matches_float64_autograd(groups, ratio, width, dtype, tol):
    torch.manual_seed(groups * 10 + ratio)
    batch, seq = 2, 5
    signal = attention_like(batch, groups * ratio, seq, width, dtype)
    noise = attention_like(batch, groups, seq, width, dtype)
    lam = torch.tensor(0.37, requires_grad=True)
    weight = (1 + 0.2 * torch.randn(width)).requires_grad_()
    out = differential_combine(signal, noise, lam, weight, 1e-5, impl="triton")
    dout = torch.randn_like(out)
    out.backward(dout)
    leaves = [t.detach().double().requires_grad_() for t in (signal, noise, lam, weight)]
    expected = differential_combine_reference(*leaves, 1e-5)
    expected.backward(dout.double())
    assert out.shape == (batch, seq, groups * ratio * width) and out.dtype == dtype
    close(out, expected.detach(), tol)
    for actual, leaf in zip((signal.grad, noise.grad, lam.grad, weight.grad), leaves):
        close(actual, leaf.grad, tol)


def test_custom_ops_pass_torch_library_checks():
    torch.manual_seed(0)
    signal, noise = attention_like(1, 4, 3, 8, torch.float32), attention_like(1, 2, 3, 8, torch.float32)
    lam, weight = torch.tensor(0.5, requires_grad=True), torch.randn(8, requires_grad=True)
    torch.library.opcheck(differential_combine_forward, (signal, noise, lam, weight, 1e-5))
    out, rstd = differential_combine_forward(signal.detach(), noise.detach(), lam.detach(), weight.detach(), 1e-5)
    torch.library.opcheck(differential_combine_backward,
                          (torch.randn_like(out), signal.detach(), noise.detach(), lam.detach(), weight.detach(), rstd))
