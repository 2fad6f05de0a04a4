"""The differential-attention combine and sub-norm in one pass (Differential Transformer, arXiv 2410.05258,
Eq. 3; Grouped Differential Attention, arXiv 2510.06949), after the signal and noise attention calls:

    out[t, g, j] = weight * RMSNorm(signal[t, g, j] - lambda * noise[t, g])

for token t, group g and its r signal heads j, each row 2 * head_dim wide; the attentions pass the sub-norm
weight times (1 - lambda_init) as ``weight``, so no per-layer constant reaches the kernel. One program takes a tile of
consecutive tokens of one group at a time: it loads each noise row once for all r signal heads of its group
(no repeat_interleave copy), and
the inputs are read in place with their strides (the attention outputs need no transposing copy). The
backward sums the noise gradient over the group's signal heads in registers; the gradients of lambda and of
the sub-norm weight are reduced through per-program partial sums in a fixed order (no atomics).
"""

import torch
import triton
import triton.language as tl

from kernels.launch import persistent_programs, use_triton
from kernels.precision import compute_dtype


def differential_combine_reference(signal: torch.Tensor, noise: torch.Tensor, lam: torch.Tensor,
                                   weight: torch.Tensor, eps: float) -> torch.Tensor:
    """signal (B, S, G * r, D), noise (B, S, G, D) -> (B, S, G * r * D) in signal's dtype, computed in fp32."""
    ratio = signal.shape[2] // noise.shape[2]
    dtype = compute_dtype(signal)
    difference = signal.to(dtype) - lam.to(dtype) * noise.to(dtype).repeat_interleave(ratio, dim=2)
    normalised = difference * torch.rsqrt(difference.pow(2).mean(-1, keepdim=True) + eps)
    return (normalised * weight.to(dtype)).to(signal.dtype).flatten(2)


@triton.jit
def _tile(token_block, g, n_tokens, seq, ratio, TOKENS: tl.constexpr, R: tl.constexpr, D: tl.constexpr):
    """Index vectors of one tile: TOKENS consecutive tokens x the R (padded) signal heads of group g x D values."""
    tokens = token_block * TOKENS + tl.arange(0, TOKENS)
    heads = tl.arange(0, R)
    cols = tl.arange(0, D)
    token_ok = tokens < n_tokens
    rows = g * ratio + heads
    mask = token_ok[:, None, None] & (heads < ratio)[None, :, None]
    return tokens, tokens // seq, tokens % seq, rows, cols, token_ok, mask


@triton.jit
def _forward_kernel(S, N, LAM, W, OUT, RSTD, n_tiles, n_tokens, seq, groups, ratio, eps,
                    s_b, s_t, s_h, n_b, n_t, n_h, D: tl.constexpr, R: tl.constexpr, TOKENS: tl.constexpr):
    lam = tl.load(LAM).to(tl.float32)
    w = tl.load(W + tl.arange(0, D)).to(tl.float32)
    for tile in range(tl.program_id(0).to(tl.int64), n_tiles, tl.num_programs(0)):
        tokens, b, t, rows, cols, token_ok, mask = _tile(tile // groups, tile % groups, n_tokens, seq, ratio, TOKENS, R, D)
        g = tile % groups
        noise = tl.load(N + (b * n_b + t * n_t + g * n_h)[:, None] + cols[None, :], mask=token_ok[:, None], other=0.0).to(tl.float32)
        signal = tl.load(S + (b * s_b + t * s_t)[:, None, None] + rows[None, :, None] * s_h + cols[None, None, :],
                         mask=mask, other=0.0).to(tl.float32)
        difference = signal - lam * noise[:, None, :]
        rstd = tl.rsqrt(tl.sum(difference * difference, axis=2) / D + eps)
        out = difference * rstd[:, :, None] * w[None, None, :]
        out_rows = tokens[:, None] * (groups * ratio) + rows[None, :]
        tl.store(OUT + out_rows[:, :, None] * D + cols[None, None, :], out.to(OUT.dtype.element_ty), mask=mask)
        tl.store(RSTD + out_rows, rstd, mask=token_ok[:, None] & (rows[None, :] < (g + 1) * ratio))


@triton.jit
def _backward_kernel(DOUT, S, N, LAM, W, RSTD, DS, DN, PARTIAL, n_tiles, n_tokens, seq, groups, ratio,
                     s_b, s_t, s_h, n_b, n_t, n_h, D: tl.constexpr, R: tl.constexpr, TOKENS: tl.constexpr):
    lam = tl.load(LAM).to(tl.float32)
    cols_all = tl.arange(0, D)
    w = tl.load(W + cols_all).to(tl.float32)
    dw = tl.zeros((D,), tl.float32)
    dlam = tl.zeros((D,), tl.float32)
    for tile in range(tl.program_id(0).to(tl.int64), n_tiles, tl.num_programs(0)):
        tokens, b, t, rows, cols, token_ok, mask = _tile(tile // groups, tile % groups, n_tokens, seq, ratio, TOKENS, R, D)
        g = tile % groups
        row_ok = token_ok[:, None] & (rows[None, :] < (g + 1) * ratio)
        noise = tl.load(N + (b * n_b + t * n_t + g * n_h)[:, None] + cols[None, :], mask=token_ok[:, None], other=0.0).to(tl.float32)
        signal = tl.load(S + (b * s_b + t * s_t)[:, None, None] + rows[None, :, None] * s_h + cols[None, None, :],
                         mask=mask, other=0.0).to(tl.float32)
        out_rows = tokens[:, None] * (groups * ratio) + rows[None, :]
        dout = tl.load(DOUT + out_rows[:, :, None] * D + cols[None, None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + out_rows, mask=row_ok, other=0.0)
        normalised = (signal - lam * noise[:, None, :]) * rstd[:, :, None]
        dw += tl.sum(tl.sum(dout * normalised, axis=1), axis=0)
        dnormalised = dout * w[None, None, :]
        mean = tl.sum(dnormalised * normalised, axis=2) / D
        ddifference = rstd[:, :, None] * (dnormalised - normalised * mean[:, :, None])
        # gradients in the inputs' own layouts, so the attention backward gets them without a copy
        tl.store(DS + (b * s_b + t * s_t)[:, None, None] + rows[None, :, None] * s_h + cols[None, None, :],
                 ddifference.to(DS.dtype.element_ty), mask=mask)
        dnoise_sum = tl.sum(ddifference, axis=1)
        tl.store(DN + (b * n_b + t * n_t + g * n_h)[:, None] + cols[None, :], (-lam * dnoise_sum).to(DN.dtype.element_ty),
                 mask=token_ok[:, None])
        dlam += tl.sum(-dnoise_sum * noise, axis=0)
    tl.store(PARTIAL + tl.program_id(0).to(tl.int64) * (D + 1) + cols_all, dw)
    tl.store(PARTIAL + tl.program_id(0).to(tl.int64) * (D + 1) + D, tl.sum(dlam, axis=0))


TOKENS_PER_TILE = 8
"""Tokens one program handles per step, for one group: a (tokens x r x 2 * head_dim) tile."""


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    assert t.stride(-1) == 1, "rows must be contiguous"
    return t.stride(0), t.stride(1), t.stride(2)


@torch.library.custom_op("motif::differential_combine_forward", mutates_args=())
def differential_combine_forward(signal: torch.Tensor, noise: torch.Tensor, lam: torch.Tensor, weight: torch.Tensor,
                                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, S, G * r * D), 1/rms per signal row (B * S * G * r,) fp32)."""
    batch, seq, signal_heads, width = signal.shape
    groups = noise.shape[2]
    ratio = signal_heads // groups
    out = torch.empty(batch, seq, signal_heads * width, device=signal.device, dtype=signal.dtype)
    rstd = torch.empty(batch * seq * signal_heads, device=signal.device, dtype=torch.float32)
    tiles = triton.cdiv(batch * seq, TOKENS_PER_TILE) * groups
    _forward_kernel[(persistent_programs(tiles, signal.device, 8),)](
        signal, noise, lam, weight, out, rstd, tiles, batch * seq, seq, groups, ratio, eps,
        *_strides(signal), *_strides(noise), D=width, R=triton.next_power_of_2(ratio), TOKENS=TOKENS_PER_TILE, num_warps=8)
    return out, rstd


@differential_combine_forward.register_fake
def _(signal, noise, lam, weight, eps):
    batch, seq, heads, width = signal.shape
    return signal.new_empty(batch, seq, heads * width), signal.new_empty(batch * seq * heads, dtype=torch.float32)


@torch.library.custom_op("motif::differential_combine_backward", mutates_args=())
def differential_combine_backward(dout: torch.Tensor, signal: torch.Tensor, noise: torch.Tensor, lam: torch.Tensor,
                                  weight: torch.Tensor, rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dsignal, dnoise, dlambda, dweight); dsignal and dnoise have the strides of signal and noise."""
    batch, seq, signal_heads, width = signal.shape
    groups = noise.shape[2]
    tiles = triton.cdiv(batch * seq, TOKENS_PER_TILE) * groups
    programs = persistent_programs(tiles, signal.device, 8)
    dsignal, dnoise = torch.empty_like(signal), torch.empty_like(noise)
    if dsignal.stride() != signal.stride() or dnoise.stride() != noise.stride():
        raise ValueError("differential_combine expects dense attention outputs (as SDPA returns them)")
    partial = torch.empty(programs, width + 1, device=signal.device, dtype=torch.float32)
    _backward_kernel[(programs,)](
        dout.contiguous(), signal, noise, lam, weight, rstd, dsignal, dnoise, partial, tiles, batch * seq, seq, groups,
        signal_heads // groups, *_strides(signal), *_strides(noise), D=width,
        R=triton.next_power_of_2(signal_heads // groups), TOKENS=TOKENS_PER_TILE, num_warps=8)
    sums = partial.sum(0)
    return dsignal, dnoise, sums[width].to(lam.dtype, copy=True).reshape(lam.shape), sums[:width].to(weight.dtype, copy=True)


@differential_combine_backward.register_fake
def _(dout, signal, noise, lam, weight, rstd):
    return torch.empty_like(signal), torch.empty_like(noise), torch.empty_like(lam), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    signal, noise, lam, weight, _ = inputs
    ctx.save_for_backward(signal, noise, lam, weight, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, dout, _drstd):
    signal, noise, lam, weight, rstd = ctx.saved_tensors
    dsignal, dnoise, dlam, dweight = differential_combine_backward(dout, signal, noise, lam, weight, rstd)
    return dsignal, dnoise, dlam, dweight, None


differential_combine_forward.register_autograd(_backward, setup_context=_setup_context)

def differential_combine(signal: torch.Tensor, noise: torch.Tensor, lam: torch.Tensor, weight: torch.Tensor,
                         eps: float, impl: str = "auto") -> torch.Tensor:
    """(B, S, G * r * D) output of the differential combine + sub-norm; ``impl`` as for the other kernels."""
    if use_triton(impl, signal):
        return differential_combine_forward(signal, noise, lam.reshape(()), weight, eps)[0]
    return differential_combine_reference(signal, noise, lam, weight, eps)
