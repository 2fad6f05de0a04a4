"""Chunked linear + cross-entropy against the unfused fp64 loss and its autograd gradients.

fp32 tolerance 1e-5 relative: the chunked path forms the same logits and softmax as the reference, in fp32,
summed in another order. bf16 is compared on the GPU by the benchmark.
"""

import contextlib

import pytest
import torch

import kernels.linear_cross_entropy as linear_cross_entropy_module
from kernels.linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_reference


@pytest.mark.parametrize("tokens,chunk", [(37, 8), (64, 64), (50, 1000)])
def test_chunked_matches_unfused_loss_and_gradients(tokens, chunk):
    torch.manual_seed(tokens)
    hidden = torch.randn(tokens, 24, requires_grad=True)
    weight = (torch.randn(97, 24) * 0.3).requires_grad_()
    targets = torch.randint(0, 97, (tokens,))
    targets[::7] = -100  # ignored positions
    loss = linear_cross_entropy(hidden, weight, targets, chunk_tokens=chunk)
    (2.5 * loss).backward()
    ref_hidden, ref_weight = hidden.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    reference = linear_cross_entropy_reference(ref_hidden, ref_weight, targets)
    (2.5 * reference).backward()
    torch.testing.assert_close(loss.double(), reference, atol=0, rtol=1e-5)
    torch.testing.assert_close(hidden.grad.double(), ref_hidden.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weight.grad.double(), ref_weight.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "inputs_without_grad"])
def test_no_gradient_work_without_grad(mode, monkeypatch):
    """Evaluation batches form the loss only: the autograd Function (which builds d(hidden) and d(weight) in its
    forward) never runs. fp32: the same logits as the reference, summed in another order (1e-5 relative)."""
    def fail(*args):
        raise AssertionError("gradient work under " + mode)

    monkeypatch.setattr(linear_cross_entropy_module._ChunkedLinearCrossEntropy, "forward", staticmethod(fail))
    torch.manual_seed(0)
    hidden, weight, targets = torch.randn(10, 8), torch.randn(13, 8), torch.randint(0, 13, (10,))
    expected = linear_cross_entropy(hidden, weight, targets, impl="reference")
    if mode != "inputs_without_grad":
        hidden.requires_grad_(), weight.requires_grad_()
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(mode, contextlib.nullcontext)
    with context():
        chunked = linear_cross_entropy(hidden, weight, targets, chunk_tokens=3)
    assert not chunked.requires_grad
    torch.testing.assert_close(chunked, expected.detach(), atol=0, rtol=1e-5)


def test_weight_gradient_accumulates_in_fp32():
    """bf16: the weight gradient summed over 512 one-token chunks equals the one-chunk gradient up to one bf16
    rounding (2^-7 relative at most): both sum in fp32, only in another order (1e-6 of the gradient's scale).
    Summing the chunks in bf16 instead loses hundreds of ulps on entries where the tokens' terms cancel."""
    def weight_grad(chunk_tokens: int) -> torch.Tensor:
        torch.manual_seed(0)
        hidden = torch.randn(512, 32).bfloat16().requires_grad_()
        weight = (torch.randn(50, 32) * 0.3).bfloat16().requires_grad_()
        linear_cross_entropy(hidden, weight, torch.randint(0, 50, (512,)), chunk_tokens=chunk_tokens).backward()
        assert weight.grad.dtype == torch.bfloat16
        return weight.grad.float()

    one_chunk = weight_grad(512)
    torch.testing.assert_close(weight_grad(1), one_chunk, rtol=2**-7, atol=1e-6 * float(one_chunk.abs().max()))
