"""Fused residual add + RMSNorm through Triton's interpreter against float64 autograd of the formula.

Tolerances relative to each result's largest magnitude (at least 1): fp32 1e-5 (a row sum in another order);
fp16 3e-3 (h, y and the gradient are each rounded to fp16, unit roundoff 4.9e-4, and y is formed from the
rounded h).
"""

import pytest
import torch

from kernels.add_rmsnorm import add_rmsnorm, add_rmsnorm_backward, add_rmsnorm_forward


def close(actual, expected, tol):
    torch.testing.assert_close(actual.double(), expected, atol=tol * max(expected.abs().max().item(), 1.0), rtol=0)


@pytest.mark.parametrize("rows,cols", [(5, 48), (3, 100), (2, 1000), (1, 7)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 3e-3)])
@pytest.mark.parametrize("residual_grad", [True, False])
def test_add_rmsnorm_matches_float64_autograd(rows, cols, dtype, tol, residual_grad):
    torch.manual_seed(rows + cols)
    x = torch.randn(rows, cols).to(dtype).requires_grad_()
    residual = torch.randn(rows, cols).to(dtype).requires_grad_()
    weight = (1 + 0.3 * torch.randn(cols)).requires_grad_()
    y, h = add_rmsnorm(x, residual, weight, 1e-6, impl="triton")
    dy, dh = torch.randn(rows, cols).to(dtype), torch.randn(rows, cols).to(dtype)
    torch.autograd.backward([y, h] if residual_grad else [y], [dy, dh] if residual_grad else [dy])

    xd, rd, wd = (t.detach().double().requires_grad_() for t in (x, residual, weight))
    hd = xd + rd
    yd = hd / torch.sqrt(hd.pow(2).mean(-1, keepdim=True) + 1e-6) * wd
    torch.autograd.backward([yd, hd] if residual_grad else [yd], [dy.double(), dh.double()] if residual_grad else [dy.double()])
    close(h, hd.detach(), tol)
    close(y, yd.detach(), tol)
    close(x.grad, xd.grad, tol)
    close(residual.grad, rd.grad, tol)
    close(weight.grad, wd.grad, tol)


def test_custom_ops_pass_torch_library_checks():
    torch.manual_seed(0)
    x, residual = torch.randn(4, 24, requires_grad=True), torch.randn(4, 24, requires_grad=True)
    weight = torch.randn(24, requires_grad=True)
    torch.library.opcheck(add_rmsnorm_forward, (x, residual, weight, 1e-6))
    _, h, rstd = add_rmsnorm_forward(x.detach(), residual.detach(), weight.detach(), 1e-6)
    torch.library.opcheck(add_rmsnorm_backward, (torch.randn(4, 24), torch.randn(4, 24), h, rstd, weight.detach()))
    torch.library.opcheck(add_rmsnorm_backward, (torch.randn(4, 24), None, h, rstd, weight.detach()))
