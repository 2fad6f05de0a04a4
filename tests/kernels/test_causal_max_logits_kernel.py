"""The max-logit kernel (QK-clip's S_max), run through Triton's interpreter, against the full fp64 score matrix.

Tolerance 1e-5 relative to the largest logit for fp32 and fp16 inputs alike: both reach the kernel exactly (the
fp64 reference sees the same rounded values) and each logit is a sum of head_dim products accumulated in fp32
(error at most head_dim x 6e-8 of the largest |q||k|, a few 1e-6 here).
"""

import math

import pytest
import torch

from components.documents import PackedDocuments
from kernels.causal_max_logits import causal_max_logits, causal_max_logits_reference, causal_max_logits_triton


def full_matrix_max(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    batch, seq, q_heads, dim = q.shape
    group = q_heads // k.shape[2]
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1)
    scores = torch.einsum("bihd,bjhd->bhij", q.double(), k.double().repeat_interleave(group, dim=2))
    return scores.masked_fill(future, float("-inf")).amax(dim=(0, 2, 3)) / math.sqrt(dim)


def per_sample_max(q: torch.Tensor, k: torch.Tensor, lengths: list[list[int]]) -> torch.Tensor:
    """Each packed sample cut out and measured alone, then the maximum over the samples."""
    maxima = []
    for row, row_lengths in enumerate(lengths):
        start = 0
        for length in row_lengths:
            maxima.append(full_matrix_max(q[row:row + 1, start:start + length], k[row:row + 1, start:start + length]))
            start += length
    return torch.stack(maxima).amax(dim=0)


@pytest.mark.parametrize("batch,seq,q_heads,kv_heads,dim", [
    (2, 37, 6, 2, 24),    # one block, head_dim padded to 32, GQA groups of 3
    (1, 300, 4, 4, 16),   # several query blocks; key blocks below the diagonal run unmasked
    (1, 129, 5, 1, 64),   # one row past a block edge
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_matches_the_full_score_matrix(batch, seq, q_heads, kv_heads, dim, dtype):
    torch.manual_seed(seq + dim)
    q = (torch.randn(batch, seq, q_heads, dim) * 2).to(dtype)
    keys = (torch.randn(batch, seq, 2 * kv_heads, dim) * 2).to(dtype)
    k = keys[:, :, 0::2]  # a strided view, as differential attention passes it
    expected = full_matrix_max(q, k)
    actual = causal_max_logits(q, k, impl="triton")
    assert actual.dtype == torch.float32 and actual.shape == (q_heads,)
    torch.testing.assert_close(actual.double(), expected, atol=1e-5 * expected.abs().max().item(), rtol=0)
    torch.testing.assert_close(causal_max_logits_reference(q.double(), k.double()).double(), expected)


def test_a_single_huge_logit_on_the_diagonal_is_found_and_the_future_is_ignored():
    torch.manual_seed(0)
    q, k = torch.randn(1, 70, 2, 16), torch.randn(1, 70, 1, 16)
    q[0, 50, 1] = 10 * k[0, 50, 0]          # the diagonal pair (50, 50): a large logit for head 1
    k[0, 60, 0] = 20 * q[0, 20, 0] / q[0, 20, 0].norm()  # a future pair (20, 60) with logit 20 for head 0 ...
    q[0, 60:, 0] = 0                                       # ... whose key no query of head 0 may see
    actual = causal_max_logits(q, k, impl="triton")
    torch.testing.assert_close(actual.double(), full_matrix_max(q, k), atol=1e-4, rtol=0)
    assert actual[1] == pytest.approx(float(q[0, 50, 1] @ k[0, 50, 0]) / 4, rel=1e-5)
    assert float(q[0, 20, 0] @ k[0, 60, 0]) / 4 > 19 and actual[0] < 10


def test_custom_op_passes_torch_library_checks():
    torch.manual_seed(1)
    torch.library.opcheck(causal_max_logits_triton, (torch.randn(1, 20, 4, 16), torch.randn(1, 20, 2, 16)))


@pytest.mark.parametrize("impl", ["triton", "reference"])
def test_packed_samples_count_only_pairs_within_a_sample(impl):
    """Rows of packed samples (components.documents): the maxima equal each sample measured alone, also when a
    large logit sits between two samples (a key of the sample before, below the causal diagonal)."""
    torch.manual_seed(2)
    lengths = [[70, 90, 40], [200]]  # samples crossing query and key block edges; a row of one sample
    q, k = torch.randn(2, 200, 4, 16), torch.randn(2, 200, 2, 16)
    q[0, 100, 0] = 10 * k[0, 30, 0]  # sample 2's query against sample 1's key: visible causally, not as a document
    documents = PackedDocuments.from_lengths(lengths).ids
    expected = per_sample_max(q, k, lengths)
    assert full_matrix_max(q, k)[0] > expected[0] + 10  # the cross-sample logit would dominate without the mask
    actual = causal_max_logits(q, k, impl=impl, documents=documents)
    torch.testing.assert_close(actual.double(), expected, atol=1e-5 * expected.abs().max().item(), rtol=0)
