"""The attention core of grouped differential attention (GDA, arXiv 2510.06949, Eq. 2-3) in one pass per group:
for every group g its r signal heads attend with keys k1[g], its noise head with k2[g], and all r + 1 heads read
the group's values v[g] (2 * head_dim wide), causally:

    signal[g, j] = softmax(q_signal[g, j] k1[g]^T / sqrt(d)) v[g]        j < r
    noise[g]     = softmax(q_noise[g] k2[g]^T / sqrt(d)) v[g]

(the lambda-weighted difference and the sub-norm follow in ``kernels.differential_combine``). With
``track_max_logits`` it also returns every query head's largest logit max_(i >= j) q_i . k_j / sqrt(d) over the
batch, for QK-clip (MuonClip), from the same scores.

Triton: one program per (block of queries, batch x group) stacks the block's r signal heads into one
(BLOCK_M * r) x d tile, so each key/value tile is loaded once for the whole group and used by both branches
(online softmax in base 2, fp32 accumulators; nothing S x S is stored; the row log-sum-exp is kept for the
backward; each head's maximum reaches the result by an atomic max per program). Backward: one program per (query
block, batch x group) computes delta = rowsum(dO * O) and accumulates dq; then one per (key block, batch x group)
accumulates dk1, dk2 and dv over the query blocks at and after it; probabilities are recomputed from the saved
log-sum-exp. Only the tiles that reach the diagonal are masked; tile sizes are autotuned (``FORWARD_TILES`` and
the backward lists). r and head_dim must be powers of two (head_dim at least 16, the tensor cores' smallest tile);
other layouts, and decoding with a key/value cache, take the PyTorch reference: SDPA for each branch and
``kernels.causal_max_logits`` for the maxima, which is also the CPU path.

Speed (H200, the 12.7B layout, seq 4,096, forward + backward): 6.3 ms against 3.5 ms for the default path (two
cuDNN SDPA calls + the max-logit kernel), so models use it only with ``fused_core: true``; the dk/dv pass (3.8 ms)
is the slow part. benchmarks/RESULTS.md has the sweep.

Layouts: q (batch, seq, groups, r + 1, d) with each group's r signal heads first, then its noise head (the
q_proj order of the released checkpoint); k (batch, seq, 2 * groups, d) with k1[g] at head 2g and k2[g] at 2g + 1;
v (batch, seq, groups, 2 * d). Returns signal (batch, seq, groups * r, 2 * d), noise (batch, seq, groups, 2 * d)
and the maxima (groups * (r + 1),) in q's head order, or None.
"""

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels.causal_max_logits import causal_max_logits_reference
from kernels.launch import INTERPRETING, use_triton


def gda_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, track_max_logits: bool = False):
    """Each branch through SDPA (query heads sharing their group's keys and values); maxima per head."""
    batch, seq, groups, heads, dim = q.shape
    ratio = heads - 1
    signal_q = q[:, :, :, :ratio].reshape(batch, seq, groups * ratio, dim)
    noise_q = q[:, :, :, ratio]
    k1, k2 = k[:, :, 0::2], k[:, :, 1::2]

    def attend(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(queries.transpose(1, 2), keys.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True, enable_gqa=queries.shape[2] != keys.shape[2])
        return out.transpose(1, 2)

    maxima = None
    if track_max_logits:
        signal_max = causal_max_logits_reference(signal_q, k1).view(groups, ratio)
        noise_max = causal_max_logits_reference(noise_q, k2).view(groups, 1)
        maxima = torch.cat([signal_max, noise_max], dim=1).flatten()
    return attend(signal_q, k1), attend(noise_q, k2), maxima


@triton.jit
def _query_rows(Q, b, g, block, seq, groups, R: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr):
    """A query block of one group: the stacked signal rows (token, head) and the noise rows, with their tokens."""
    rows = tl.arange(0, BLOCK_M * R)
    tok_s = block * BLOCK_M + rows // R
    head_s = rows % R
    tok_n = block * BLOCK_M + tl.arange(0, BLOCK_M)
    q_token = groups * (R + 1) * D
    offsets = b.to(tl.int64) * seq * q_token + g * (R + 1) * D + tl.arange(0, D)[None, :]
    signal = offsets + tok_s[:, None].to(tl.int64) * q_token + head_s[:, None] * D
    noise = offsets + tok_n[:, None].to(tl.int64) * q_token + R * D
    qs = tl.load(Q + signal, mask=tok_s[:, None] < seq, other=0.0)
    qn = tl.load(Q + noise, mask=tok_n[:, None] < seq, other=0.0)
    return tok_s, head_s, tok_n, qs, qn, signal, noise


@triton.jit
def _output_offsets(b, g, tok_s, head_s, tok_n, seq, groups, R: tl.constexpr, D: tl.constexpr):
    """Element offsets of the signal rows in (batch, seq, groups * r, 2d) and of the noise rows in
    (batch, seq, groups, 2d), and of their log-sum-exp / delta in (batch * groups, seq, r) and (batch * groups, seq)."""
    DV: tl.constexpr = 2 * D
    vdims = tl.arange(0, DV)[None, :]
    signal = (b.to(tl.int64) * seq + tok_s[:, None]) * (groups * R * DV) + (g * R + head_s[:, None]) * DV + vdims
    noise = (b.to(tl.int64) * seq + tok_n[:, None]) * (groups * DV) + g * DV + vdims
    bg = (b * groups + g).to(tl.int64)
    return signal, noise, (bg * seq + tok_s) * R + head_s, bg * seq + tok_n


@triton.jit
def _query_gradients(DO_S, DO_N, LSE_S, LSE_N, DELTA_S, DELTA_N, b, g, tok_s, head_s, tok_n, seq, groups,
                     R: tl.constexpr, D: tl.constexpr):
    """For the backward: the rows' output gradients, log-sum-exp and delta = rowsum(dO * O)."""
    out_s, out_n, row_s, row_n = _output_offsets(b, g, tok_s, head_s, tok_n, seq, groups, R, D)
    valid_s, valid_n = tok_s < seq, tok_n < seq
    return (tl.load(DO_S + out_s, mask=valid_s[:, None], other=0.0),
            tl.load(LSE_S + row_s, mask=valid_s, other=0.0), tl.load(DELTA_S + row_s, mask=valid_s, other=0.0),
            tl.load(DO_N + out_n, mask=valid_n[:, None], other=0.0),
            tl.load(LSE_N + row_n, mask=valid_n, other=0.0), tl.load(DELTA_N + row_n, mask=valid_n, other=0.0))


@triton.jit
def _key_offsets(b, g, cols, seq, groups, D: tl.constexpr):
    """Element offsets of the key rows ``cols`` of k1[g] in (batch, seq, 2 * groups, d) (k2[g] is d further)
    and of their values in (batch, seq, groups, 2d)."""
    k_token, v_token = 2 * groups * D, groups * 2 * D
    k1 = (b.to(tl.int64) * seq + cols[:, None]) * k_token + 2 * g * D + tl.arange(0, D)[None, :]
    v = (b.to(tl.int64) * seq + cols[:, None]) * v_token + g * 2 * D + tl.arange(0, 2 * D)[None, :]
    return k1, v


@triton.jit
def _load_keys(K, V, b, g, cols, seq, groups, D: tl.constexpr):
    k1, v = _key_offsets(b, g, cols, seq, groups, D)
    inside = cols[:, None] < seq
    return (tl.load(K + k1, mask=inside, other=0.0), tl.load(K + k1 + D, mask=inside, other=0.0),
            tl.load(V + v, mask=inside, other=0.0))


@triton.jit
def _visible(cols, tok, seq):
    """Causal pairs: key ``cols`` inside the sequence and at or before query ``tok``. Query rows past the sequence
    are left in: their queries and output gradients are zero and nothing of theirs is stored."""
    return (cols[None, :] <= tok[:, None]) & (cols[None, :] < seq)


@triton.jit
def _online_softmax_step(q, k, v, cols, tok, seq, masked, m, l, acc, scale_log2, PRECISION: tl.constexpr):
    """One key tile of flash attention for one branch, in base 2 (scores times log2(e), so exp2 does the
    exponentials): running max ``m`` (each row's largest logit x log2(e)), running sum ``l`` and the
    unnormalised output ``acc``, rescaled to the new maximum."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
    if masked:
        s = tl.where(_visible(cols, tok, seq), s, float("-inf"))
    m_new = tl.maximum(m, tl.max(s, axis=1))
    p = tl.exp2(s - m_new[:, None])
    alpha = tl.exp2(m - m_new)
    return m_new, l * alpha + tl.sum(p, axis=1), acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)


@triton.jit
def _score_gradient(q, k, v, do, lse_log2, delta, cols, tok, seq, masked, scale_log2, PRECISION: tl.constexpr):
    """One tile of one branch's backward: the probabilities P recomputed from the saved base-2 log-sum-exp, and
    dS = P * (dO v^T - delta), the gradient of the scores (before the 1 / sqrt(d) scale)."""
    p = tl.exp2(tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2 - lse_log2[:, None])
    if masked:
        p = tl.where(_visible(cols, tok, seq), p, 0.0)
    return p, p * (tl.dot(do, tl.trans(v), input_precision=PRECISION) - delta[:, None])


def _tile_configs(tiles: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    """Autotuning candidates (query tokens per block, keys per block, warps, pipeline stages); the interpreter
    takes one small tile."""
    if INTERPRETING:
        tiles = [(16, 16, 4, 1)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in tiles]


FORWARD_TILES = [(32, 64, 8, 2), (16, 32, 4, 3)]
BACKWARD_KV_TILES = [(32, 32, 8, 2), (16, 32, 8, 1)]
BACKWARD_Q_TILES = [(32, 64, 8, 2), (16, 32, 4, 2)]
"""Candidate tiles per kernel (BLOCK_M tokens stack r + 1 heads of rows; keys; warps; stages), autotuned once per
(r, head_dim) and dtype on the GPU in use: the two fastest of each kernel's sweep on an H200 at the 12.7B layout
(``python -m benchmarks.gda_attention_bench --sweep``, numbers in benchmarks/RESULTS.md)."""


@triton.autotune(configs=_tile_configs(FORWARD_TILES), key=["R", "D"])
@triton.jit
def _gda_forward_kernel(Q, K, V, OUT_S, OUT_N, LSE_S, LSE_N, MAXIMA, seq, groups, scale_log2,
                        R: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        PRECISION: tl.constexpr):
    DV: tl.constexpr = 2 * D
    block, bg = tl.program_id(0), tl.program_id(1)
    b, g = bg // groups, bg % groups
    tok_s, head_s, tok_n, qs, qn, _, _ = _query_rows(Q, b, g, block, seq, groups, R, D, BLOCK_M)
    m_s = tl.full((BLOCK_M * R,), float("-inf"), tl.float32)
    l_s = tl.zeros((BLOCK_M * R,), tl.float32)
    acc_s = tl.zeros((BLOCK_M * R, DV), tl.float32)
    m_n = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_n = tl.zeros((BLOCK_M,), tl.float32)
    acc_n = tl.zeros((BLOCK_M, DV), tl.float32)
    diagonal = block * BLOCK_M // BLOCK_N * BLOCK_N  # key blocks before it are wholly visible: no mask
    for start in range(0, tl.minimum((block + 1) * BLOCK_M, seq), BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k1, k2, v = _load_keys(K, V, b, g, cols, seq, groups, D)
        masked = start >= diagonal
        m_s, l_s, acc_s = _online_softmax_step(qs, k1, v, cols, tok_s, seq, masked, m_s, l_s, acc_s, scale_log2,
                                               PRECISION)
        m_n, l_n, acc_n = _online_softmax_step(qn, k2, v, cols, tok_n, seq, masked, m_n, l_n, acc_n, scale_log2,
                                               PRECISION)
    out_s, out_n, row_s, row_n = _output_offsets(b, g, tok_s, head_s, tok_n, seq, groups, R, D)
    valid_s, valid_n = tok_s < seq, tok_n < seq
    tl.store(OUT_S + out_s, (acc_s / l_s[:, None]).to(OUT_S.dtype.element_ty), mask=valid_s[:, None])
    tl.store(OUT_N + out_n, (acc_n / l_n[:, None]).to(OUT_N.dtype.element_ty), mask=valid_n[:, None])
    tl.store(LSE_S + row_s, m_s + tl.log2(l_s), mask=valid_s)
    tl.store(LSE_N + row_n, m_n + tl.log2(l_n), mask=valid_n)
    # the running maximum of the scores is each row's largest logit (x log2(e)), for QK-clip: no extra pass
    LN2: tl.constexpr = 0.6931471805599453
    heads = MAXIMA + g * (R + 1)
    tl.atomic_max(heads + tl.arange(0, R),
                  tl.max(tl.reshape(tl.where(valid_s, m_s, float("-inf")), (BLOCK_M, R)), axis=0) * LN2)
    tl.atomic_max(heads + R, tl.max(tl.where(valid_n, m_n, float("-inf")), axis=0) * LN2)


@triton.autotune(configs=_tile_configs(BACKWARD_KV_TILES), key=["R", "D"])
@triton.jit
def _gda_backward_kv_kernel(Q, K, V, DO_S, DO_N, LSE_S, LSE_N, DELTA_S, DELTA_N, DK, DVAL, seq, groups, scale,
                            scale_log2, R: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr,
                            BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    key_block, bg = tl.program_id(0), tl.program_id(1)
    b, g = bg // groups, bg % groups
    cols = key_block * BLOCK_N + tl.arange(0, BLOCK_N)
    k1, k2, v = _load_keys(K, V, b, g, cols, seq, groups, D)
    dk1 = tl.zeros((BLOCK_N, D), tl.float32)
    dk2 = tl.zeros((BLOCK_N, D), tl.float32)
    dv = tl.zeros((BLOCK_N, 2 * D), tl.float32)
    for block in range(key_block * BLOCK_N // BLOCK_M, tl.cdiv(seq, BLOCK_M)):
        tok_s, head_s, tok_n, qs, qn, _, _ = _query_rows(Q, b, g, block, seq, groups, R, D, BLOCK_M)
        do_s, lse_s, delta_s, do_n, lse_n, delta_n = _query_gradients(
            DO_S, DO_N, LSE_S, LSE_N, DELTA_S, DELTA_N, b, g, tok_s, head_s, tok_n, seq, groups, R, D)
        # a query block that starts after this key block's last key sees all of it: no mask
        masked = block * BLOCK_M < (key_block + 1) * BLOCK_N
        p, ds = _score_gradient(qs, k1, v, do_s, lse_s, delta_s, cols, tok_s, seq, masked, scale_log2, PRECISION)
        dv += tl.dot(tl.trans(p).to(do_s.dtype), do_s, input_precision=PRECISION)
        dk1 += tl.dot(tl.trans(ds).to(qs.dtype), qs, input_precision=PRECISION)
        p, ds = _score_gradient(qn, k2, v, do_n, lse_n, delta_n, cols, tok_n, seq, masked, scale_log2, PRECISION)
        dv += tl.dot(tl.trans(p).to(do_n.dtype), do_n, input_precision=PRECISION)
        dk2 += tl.dot(tl.trans(ds).to(qn.dtype), qn, input_precision=PRECISION)
    k1_offsets, v_offsets = _key_offsets(b, g, cols, seq, groups, D)
    inside = cols[:, None] < seq
    tl.store(DK + k1_offsets, (dk1 * scale).to(DK.dtype.element_ty), mask=inside)
    tl.store(DK + k1_offsets + D, (dk2 * scale).to(DK.dtype.element_ty), mask=inside)
    tl.store(DVAL + v_offsets, dv.to(DVAL.dtype.element_ty), mask=inside)


@triton.jit
def _output_gradient_and_delta(DO, OUT, DELTA, out_offsets, row_offsets, valid):
    """A block's output-gradient rows and delta = rowsum(dO * O) (the softmax backward's correction), which is
    also stored for the dk/dv pass."""
    do = tl.load(DO + out_offsets, mask=valid[:, None], other=0.0)
    delta = tl.sum(do.to(tl.float32) * tl.load(OUT + out_offsets, mask=valid[:, None], other=0.0).to(tl.float32), 1)
    tl.store(DELTA + row_offsets, delta, mask=valid)
    return do, delta


@triton.autotune(configs=_tile_configs(BACKWARD_Q_TILES), key=["R", "D"])
@triton.jit
def _gda_backward_q_kernel(Q, K, V, OUT_S, OUT_N, DO_S, DO_N, LSE_S, LSE_N, DELTA_S, DELTA_N, DQ, seq, groups,
                           scale, scale_log2, R: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr,
                           BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    block, bg = tl.program_id(0), tl.program_id(1)
    b, g = bg // groups, bg % groups
    tok_s, head_s, tok_n, qs, qn, q_signal, q_noise = _query_rows(Q, b, g, block, seq, groups, R, D, BLOCK_M)
    out_s, out_n, row_s, row_n = _output_offsets(b, g, tok_s, head_s, tok_n, seq, groups, R, D)
    valid_s, valid_n = tok_s < seq, tok_n < seq
    do_s, delta_s = _output_gradient_and_delta(DO_S, OUT_S, DELTA_S, out_s, row_s, valid_s)
    do_n, delta_n = _output_gradient_and_delta(DO_N, OUT_N, DELTA_N, out_n, row_n, valid_n)
    lse_s = tl.load(LSE_S + row_s, mask=valid_s, other=0.0)
    lse_n = tl.load(LSE_N + row_n, mask=valid_n, other=0.0)
    dq_s = tl.zeros((BLOCK_M * R, D), tl.float32)
    dq_n = tl.zeros((BLOCK_M, D), tl.float32)
    diagonal = block * BLOCK_M // BLOCK_N * BLOCK_N  # key blocks before it are wholly visible: no mask
    for start in range(0, tl.minimum((block + 1) * BLOCK_M, seq), BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k1, k2, v = _load_keys(K, V, b, g, cols, seq, groups, D)
        masked = start >= diagonal
        _, ds = _score_gradient(qs, k1, v, do_s, lse_s, delta_s, cols, tok_s, seq, masked, scale_log2, PRECISION)
        dq_s += tl.dot(ds.to(k1.dtype), k1, input_precision=PRECISION)
        _, ds = _score_gradient(qn, k2, v, do_n, lse_n, delta_n, cols, tok_n, seq, masked, scale_log2, PRECISION)
        dq_n += tl.dot(ds.to(k2.dtype), k2, input_precision=PRECISION)
    tl.store(DQ + q_signal, (dq_s * scale).to(DQ.dtype.element_ty), mask=valid_s[:, None])
    tl.store(DQ + q_noise, (dq_n * scale).to(DQ.dtype.element_ty), mask=valid_n[:, None])


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _scales(dim: int) -> tuple[float, float]:
    """1 / sqrt(d), and the same times log2(e) for the kernels' base-2 softmax."""
    return 1.0 / math.sqrt(dim), math.log2(math.e) / math.sqrt(dim)


@torch.library.custom_op("motif::gda_attention_forward", mutates_args=())
def gda_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(signal, noise, base-2 log-sum-exp of the signal rows (B * G, S, r) and noise rows (B * G, S), maxima)
    from contiguous q, k, v."""
    batch, seq, groups, heads, dim = q.shape
    ratio = heads - 1
    signal = q.new_empty(batch, seq, groups * ratio, 2 * dim)
    noise = q.new_empty(batch, seq, groups, 2 * dim)
    lse_s = torch.empty(batch * groups, seq, ratio, device=q.device, dtype=torch.float32)
    lse_n = torch.empty(batch * groups, seq, device=q.device, dtype=torch.float32)
    maxima = torch.full((groups * heads,), float("-inf"), device=q.device, dtype=torch.float32)
    _gda_forward_kernel[lambda meta: (triton.cdiv(seq, meta["BLOCK_M"]), batch * groups)](
        q, k, v, signal, noise, lse_s, lse_n, maxima, seq, groups, _scales(dim)[1], R=ratio, D=dim,
        PRECISION=_precision(q.dtype))
    return signal, noise, lse_s, lse_n, maxima


@gda_attention_forward.register_fake
def _(q, k, v):
    batch, seq, groups, heads, dim = q.shape
    ratio = heads - 1
    return (q.new_empty(batch, seq, groups * ratio, 2 * dim), q.new_empty(batch, seq, groups, 2 * dim),
            q.new_empty(batch * groups, seq, ratio, dtype=torch.float32),
            q.new_empty(batch * groups, seq, dtype=torch.float32), q.new_empty(groups * heads, dtype=torch.float32))


@torch.library.custom_op("motif::gda_attention_backward", mutates_args=())
def gda_attention_backward(grad_signal: torch.Tensor, grad_noise: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                           v: torch.Tensor, signal: torch.Tensor, noise: torch.Tensor, lse_s: torch.Tensor,
                           lse_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) of the attention core, from contiguous tensors: the dq pass first (it also stores each row's
    delta), then the dk/dv pass."""
    batch, seq, groups, heads, dim = q.shape
    delta_s, delta_n = torch.empty_like(lse_s), torch.empty_like(lse_n)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    scale, scale_log2 = _scales(dim)
    constants = dict(R=heads - 1, D=dim, PRECISION=_precision(q.dtype))
    _gda_backward_q_kernel[lambda meta: (triton.cdiv(seq, meta["BLOCK_M"]), batch * groups)](
        q, k, v, signal, noise, grad_signal, grad_noise, lse_s, lse_n, delta_s, delta_n, dq, seq, groups, scale,
        scale_log2, **constants)
    _gda_backward_kv_kernel[lambda meta: (triton.cdiv(seq, meta["BLOCK_N"]), batch * groups)](
        q, k, v, grad_signal, grad_noise, lse_s, lse_n, delta_s, delta_n, dk, dv, seq, groups, scale, scale_log2,
        **constants)
    return dq, dk, dv


@gda_attention_backward.register_fake
def _(grad_signal, grad_noise, q, k, v, signal, noise, lse_s, lse_n):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    signal, noise, lse_s, lse_n, maxima = output
    ctx.save_for_backward(*inputs, signal, noise, lse_s, lse_n)
    ctx.mark_non_differentiable(lse_s, lse_n, maxima)


def _backward(ctx, grad_signal, grad_noise, _lse_s, _lse_n, _maxima):
    q, k, v, signal, noise, lse_s, lse_n = ctx.saved_tensors
    grad_signal = torch.zeros_like(signal) if grad_signal is None else grad_signal.contiguous()
    grad_noise = torch.zeros_like(noise) if grad_noise is None else grad_noise.contiguous()
    return gda_attention_backward(grad_signal, grad_noise, q, k, v, signal, noise, lse_s, lse_n)


gda_attention_forward.register_autograd(_backward, setup_context=_setup_context)


def triton_supports(q: torch.Tensor) -> bool:
    """r and head_dim powers of two, head_dim at least 16 (tensor-core tiles)."""
    ratio, dim = q.shape[3] - 1, q.shape[4]
    return ratio >= 1 and ratio & (ratio - 1) == 0 and dim >= 16 and dim & (dim - 1) == 0


def gda_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, track_max_logits: bool = False,
                  impl: str = "auto"):
    """Signal and noise outputs of GDA's attention core and, with ``track_max_logits``, each query head's largest
    logit (shapes in the module docstring). ``impl``: "triton", "reference" or "auto" (Triton on CUDA)."""
    if use_triton(impl, q) and triton_supports(q):
        signal, noise, _, _, maxima = gda_attention_forward(q.contiguous(), k.contiguous(), v.contiguous())
        return signal, noise, maxima if track_max_logits else None
    return gda_attention_reference(q, k, v, track_max_logits)
