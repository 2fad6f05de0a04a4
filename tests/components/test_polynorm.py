"""PolyNorm and the MLPs against fp64 re-statements of the PolyNorm formula (arXiv 2411.03884, Eq. 3), on fresh random inputs.

fp32 tolerance 1e-5 relative: x^3 spans a wide range, and its RMS normalisation divides by a mean of x^6 over
the row; fp32's 6e-8 unit roundoff grows to about 1e-6 through the cube and the mean.
fp16 input: the result is computed in fp32 and rounded once to fp16 (unit roundoff 4.9e-4), so we compare at
2e-3 relative to the output scale.
"""

import pytest
import torch

import naive_reference as naive
from components.layers import WeightInit
from components.mlp import PolyNorm, PolyNormMLPConfig, SwiGLUConfig

INIT = WeightInit(std=0.02, output_std=0.02)


@pytest.mark.parametrize("width", [1, 7, 96, 1000])
def test_polynorm_matches_fp64_formula(width):
    torch.manual_seed(width)
    module = PolyNorm(eps=1e-6)
    with torch.no_grad():
        module.weight.copy_(torch.randn(3))
        module.bias.copy_(torch.randn(1))
    x = torch.randn(5, 3, width) * 2
    expected = naive.polynorm(x.double(), module.weight.double(), module.bias.double(), 1e-6)
    torch.testing.assert_close(module(x).double(), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


def test_polynorm_fp16_input_is_computed_in_fp32_and_rounded_once():
    torch.manual_seed(0)
    module = PolyNorm(eps=1e-6)
    x = torch.randn(4, 333).half()
    out = module(x)
    assert out.dtype == torch.float16
    expected = naive.polynorm(x.double(), module.weight.double(), module.bias.double(), 1e-6)
    torch.testing.assert_close(out.double(), expected, atol=2e-3 * expected.abs().max().item(), rtol=2e-3)


def test_polynorm_initial_weights_and_gradients():
    module = PolyNorm()
    assert module.weight.tolist() == pytest.approx([1 / 3] * 3) and module.bias.tolist() == [0.0]
    x = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    module = module.double()
    assert torch.autograd.gradcheck(lambda t, w, b: naive.polynorm(t, w, b, 1e-6), (x, module.weight, module.bias))
    out = module(x)
    out.square().sum().backward()
    assert x.grad is not None and module.weight.grad is not None and module.bias.grad is not None


def test_polynorm_mlp_matches_its_formula():
    torch.manual_seed(3)
    mlp = PolyNormMLPConfig(intermediate_size=40).build(24, INIT)
    x = torch.randn(2, 5, 24)
    w = {n: p.detach().double() for n, p in mlp.named_parameters()}
    xd = x.double()
    gated = naive.polynorm(xd @ w["gate_proj.weight"].T, w["act_fn.weight"], w["act_fn.bias"], 1e-6) * (xd @ w["up_proj.weight"].T)
    expected = gated @ w["down_proj.weight"].T
    torch.testing.assert_close(mlp(x).double(), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)
    assert set(mlp.statistics()) == {"polynorm_w0_cube", "polynorm_w1_square", "polynorm_w2_linear", "polynorm_bias"}


def test_swiglu_matches_its_formula():
    torch.manual_seed(4)
    mlp = SwiGLUConfig(intermediate_size=40).build(24, INIT)
    x = torch.randn(2, 5, 24)
    w = {n: p.detach().double() for n, p in mlp.named_parameters()}
    xd = x.double()
    expected = (torch.nn.functional.silu(xd @ w["gate_proj.weight"].T) * (xd @ w["up_proj.weight"].T)) @ w["down_proj.weight"].T
    torch.testing.assert_close(mlp(x).double(), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)
