"""Per-query-head maximum attention logit for QK-clip (MuonClip, Kimi K2 arXiv 2507.20534, Sec. 2.1):
S_max[h] = max over batch and causal pairs (i >= j) of q_i,h . k_j,kv(h) / sqrt(head_dim).

Triton: one program per (block of queries, batch x query head) forms q k^T tiles on the tensor cores against the
key blocks up to the diagonal (blocks above it are never touched, only the diagonal block is masked) and keeps
a running row maximum; nothing S x S is written. Each program writes one partial maximum, reduced on the host.
The reference forms the same scores in PyTorch one block of queries at a time and is the CPU path.

Query head h reads key head h // (q_heads / kv_heads) (GQA layout). Inputs are (batch, seq, heads, head_dim)
in any strides (so the strided key views of differential attention need no copy). No gradient flows through a
maximum that only steers the optimizer. With ``documents`` (batch, seq) sample ids of packed rows
(``components.documents``), only pairs within one sample count: the maxima of the document-masked attention.
"""

import math

import torch
import triton
import triton.language as tl

from kernels.launch import use_triton


@torch.no_grad()
def causal_max_logits_reference(q: torch.Tensor, k: torch.Tensor, documents: torch.Tensor | None = None) -> torch.Tensor:
    """S_max per query head in fp32, scores formed one block of queries at a time against the keys up to it
    (memory batch x heads x block x seq instead of seq x seq)."""
    batch, seq, q_heads, dim = q.shape
    kv_heads = k.shape[2]
    grouped_q = q.transpose(1, 2).reshape(batch, kv_heads, q_heads // kv_heads, seq, dim)
    keys = k.transpose(1, 2).unsqueeze(2)
    block = max(64, (1 << 21) // seq)
    result = torch.full((kv_heads, q_heads // kv_heads), float("-inf"), device=q.device)
    positions = torch.arange(seq, device=q.device)
    for start in range(0, seq, block):
        stop = min(seq, start + block)
        scores = (grouped_q[..., start:stop, :] @ keys[..., :stop, :].mT).float()
        hidden = positions[None, :stop] > positions[start:stop, None]
        if documents is not None:  # (batch, 1, 1, queries, keys): a key of another sample is hidden too
            hidden = hidden | (documents[:, None, None, start:stop, None] != documents[:, None, None, None, :stop])
        scores.masked_fill_(hidden, float("-inf"))
        result = torch.maximum(result, scores.amax(dim=(0, 3, 4)))
    return result.flatten() / math.sqrt(dim)


@triton.jit
def _causal_max_logits_kernel(Q, K, DOCUMENTS, PARTIAL, seq, q_heads, group, stride_qb, stride_qs, stride_qh,
                              stride_kb, stride_ks, stride_kh, head_dim, DIM_BLOCK: tl.constexpr,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
                              HAS_DOCUMENTS: tl.constexpr):
    # the longest rows (the last query blocks) start first, so the short ones fill the tail of the grid
    query_block = tl.num_programs(0) - 1 - tl.program_id(0)
    batch_head = tl.program_id(1)
    b, h = batch_head // q_heads, batch_head % q_heads
    rows = query_block * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, DIM_BLOCK)
    in_head = dims[None, :] < head_dim  # head_dim padded to a power of two of at least 16 for the tensor cores
    q = tl.load(Q + b.to(tl.int64) * stride_qb + h * stride_qh + rows[:, None].to(tl.int64) * stride_qs + dims[None, :],
                mask=(rows[:, None] < seq) & in_head, other=0.0)
    key_base = K + b.to(tl.int64) * stride_kb + (h // group) * stride_kh
    running = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    diagonal_start = (query_block * BLOCK_M) // BLOCK_N * BLOCK_N
    if HAS_DOCUMENTS:
        documents = DOCUMENTS + b.to(tl.int64) * seq
        row_documents = tl.load(documents + rows, mask=rows < seq, other=-1)
    for start in range(0, diagonal_start, BLOCK_N):  # wholly below the diagonal: causally visible
        cols = start + tl.arange(0, BLOCK_N)
        k = tl.load(key_base + cols[:, None].to(tl.int64) * stride_ks + dims[None, :], mask=in_head, other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if HAS_DOCUMENTS:
            same = row_documents[:, None] == tl.load(documents + cols)[None, :]
            scores = tl.where(same, scores, float("-inf"))
        running = tl.maximum(running, tl.max(scores, axis=1))
    for start in range(diagonal_start, tl.minimum((query_block + 1) * BLOCK_M, seq), BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k = tl.load(key_base + cols[:, None].to(tl.int64) * stride_ks + dims[None, :], mask=(cols[:, None] < seq) & in_head,
                    other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        visible = (cols[None, :] <= rows[:, None]) & (rows[:, None] < seq)
        if HAS_DOCUMENTS:
            visible &= row_documents[:, None] == tl.load(documents + cols, mask=cols < seq, other=-2)[None, :]
        running = tl.maximum(running, tl.max(tl.where(visible, scores, float("-inf")), axis=1))
    tl.store(PARTIAL + batch_head.to(tl.int64) * tl.num_programs(0) + query_block, tl.max(running, axis=0))


BLOCK_M, BLOCK_N, WARPS, STAGES = 128, 64, 8, 3
"""Query rows and key rows per tile, warps and pipeline stages: the fastest found on an H200 at the 12.7B shapes
(benchmarks/RESULTS.md)."""


@torch.library.custom_op("motif::causal_max_logits", mutates_args=())
def causal_max_logits_triton(q: torch.Tensor, k: torch.Tensor, documents: torch.Tensor | None = None) -> torch.Tensor:
    batch, seq, q_heads, dim = q.shape
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    blocks = triton.cdiv(seq, BLOCK_M)
    partial = torch.empty(batch * q_heads, blocks, device=q.device, dtype=torch.float32)
    documents = None if documents is None else documents.to(torch.int32).contiguous()
    _causal_max_logits_kernel[(blocks, batch * q_heads)](
        q, k, documents, partial, seq, q_heads, q_heads // k.shape[2], q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2), dim, DIM_BLOCK=max(16, triton.next_power_of_2(dim)), BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32", HAS_DOCUMENTS=documents is not None,
        num_warps=WARPS, num_stages=STAGES)
    return partial.view(batch, q_heads, blocks).amax(dim=(0, 2)) / math.sqrt(dim)


@causal_max_logits_triton.register_fake
def _(q, k, documents=None):
    return q.new_empty(q.shape[2], dtype=torch.float32)


def causal_max_logits(q: torch.Tensor, k: torch.Tensor, impl: str = "auto",
                      documents: torch.Tensor | None = None) -> torch.Tensor:
    """S_max per query head (fp32, shape (q_heads,)) of causal attention between q (batch, seq, q_heads, dim) and
    k (batch, seq, kv_heads, dim), within each sample when ``documents`` (batch, seq) gives packed rows' sample
    ids. ``impl``: "triton", "reference" or "auto" (Triton on CUDA)."""
    if use_triton(impl, q):
        with torch.no_grad():
            return causal_max_logits_triton(q.detach(), k.detach(), documents)
    return causal_max_logits_reference(q, k, documents)
