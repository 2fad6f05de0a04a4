"""The PolyNorm Triton kernels, run on CPU through Triton's interpreter, against float64 autograd of the formula.

Tolerances, relative to each output's largest magnitude (at least 1): fp32 inputs 1e-4 (the kernel accumulates row sums of
x^6 in fp32 in another order than PyTorch; x^3 and its normalisation lose a few ulps, 6e-8 each); fp16 inputs
4e-3 (every input and output is rounded to fp16, unit roundoff 4.9e-4, and the gradient passes through three
such roundings of x, dy and up). The interpreter cannot run bf16; bf16 is checked on the GPU by the benchmark.
"""

import pytest
import torch

from kernels.polynorm import polynorm, polynorm_reference


def fp64_reference(x, weight, bias, up, eps):
    x, weight, bias = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    up = up.detach().double().requires_grad_() if up is not None else None
    y = polynorm_reference(x, weight, bias, eps, up)
    return y, (x, weight, bias, up)


def close(actual, expected, tol):
    # PolyNorm's outputs and gradients are O(1) per element (normalised terms, O(1) weights); where a result is
    # ~0 in exact arithmetic (a one-element row normalises to its sign), rounding noise is measured against 1.
    scale = max(expected.abs().max().item(), 1.0)
    torch.testing.assert_close(actual.double(), expected, atol=tol * scale, rtol=0)


@pytest.mark.parametrize("rows,cols", [(7, 33), (3, 100), (5, 257), (1, 1), (4, 1024), (2, 4500)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 4e-3)])
@pytest.mark.parametrize("with_up", [False, True])
def test_kernels_match_float64_autograd(rows, cols, dtype, tol, with_up):
    torch.manual_seed(rows * 1000 + cols)
    x = (torch.randn(rows, cols) * 1.5).to(dtype).requires_grad_()
    up = torch.randn(rows, cols).to(dtype).requires_grad_() if with_up else None
    weight = torch.tensor([0.4, -0.7, 1.1], requires_grad=True)
    bias = torch.tensor([0.3], requires_grad=True)
    y = polynorm(x, weight, bias, 1e-6, up=up, impl="triton")
    dy = torch.randn(rows, cols).to(dtype)
    y.backward(dy)
    expected, leaves = fp64_reference(x, weight, bias, up, 1e-6)
    expected.backward(dy.double())
    assert y.dtype == dtype
    close(y, expected, tol)
    close(x.grad, leaves[0].grad, tol)
    close(weight.grad, leaves[1].grad, tol)
    close(bias.grad, leaves[2].grad, tol)
    if with_up:
        close(up.grad, leaves[3].grad, tol)


def test_weight_gradients_are_identical_run_to_run():
    torch.manual_seed(0)
    x, dy = torch.randn(37, 65), torch.randn(37, 65)
    results = []
    for _ in range(2):
        weight = torch.tensor([0.4, -0.7, 1.1], requires_grad=True)
        bias = torch.tensor([0.3], requires_grad=True)
        polynorm(x, weight, bias, 1e-6, impl="triton").backward(dy)
        results.append(torch.cat([weight.grad, bias.grad]))
    assert torch.equal(results[0], results[1])


def test_three_dimensional_input_and_auto_choice():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 48)
    weight, bias = torch.tensor([0.3, 0.3, 0.4]), torch.tensor([0.1])
    close(polynorm(x, weight, bias, 1e-6, impl="triton"), polynorm_reference(x.double(), weight.double(), bias.double(), 1e-6), 1e-4)
    assert torch.equal(polynorm(x, weight, bias, 1e-6), polynorm_reference(x, weight, bias, 1e-6))  # CPU: reference


@pytest.mark.parametrize("with_up", [False, True])
def test_custom_ops_pass_torch_library_checks(with_up):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch: what torch.compile relies on."""
    from kernels.polynorm import polynorm_backward, polynorm_forward

    torch.manual_seed(2)
    x = torch.randn(3, 40, requires_grad=True)
    up = torch.randn(3, 40, requires_grad=True) if with_up else None
    weight = torch.tensor([0.4, -0.7, 1.1], requires_grad=True)
    bias = torch.tensor([0.3], requires_grad=True)
    torch.library.opcheck(polynorm_forward, (x, weight, bias, up, 1e-6))
    torch.library.opcheck(polynorm_backward, (torch.randn(3, 40), x.detach(), weight.detach(), bias.detach(),
                                              up.detach() if up is not None else None, 1e-6))
