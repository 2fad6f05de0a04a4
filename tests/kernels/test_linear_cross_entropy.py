"""Chunked linear + cross-entropy against the unfused fp64 loss and its autograd gradients.

fp32 tolerance 1e-5 relative: the chunked path forms the same logits and softmax as the reference, in fp32,
summed in another order. bf16 is compared on the GPU by the benchmark.
"""

import pytest
import torch

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


def test_reference_and_no_grad_paths():
    torch.manual_seed(0)
    hidden, weight, targets = torch.randn(10, 8), torch.randn(13, 8), torch.randint(0, 13, (10,))
    with torch.no_grad():
        chunked = linear_cross_entropy(hidden, weight, targets, chunk_tokens=3)
    torch.testing.assert_close(chunked, linear_cross_entropy(hidden, weight, targets, impl="reference"))
