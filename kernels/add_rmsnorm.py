"""Fused residual add + RMSNorm (Zhang & Sennrich 2019) for the pre-norm block: h = x + residual,
y = weight * h / sqrt(mean(h^2) + eps). Triton kernels, ``torch.library`` custom ops and the PyTorch reference.

One pass reads x and residual and writes h (the new residual stream) and y; the backward reads dy, the
incoming gradient of h, h itself and the saved per-row 1/rms, and writes one gradient (shared by x and
residual). With n = h r and dn = weight * dy:  dh = r (dn - n mean(dn n)) + dh_in,  dweight = sum dy n,
reduced through per-program partial sums in a fixed order (no atomics). The norm is taken of h rounded to the
input dtype, as the unfused ``norm(x + residual)`` would.
"""

import torch
import triton
import triton.language as tl

from kernels.launch import persistent_programs, use_triton
from kernels.precision import widened


def add_rmsnorm_reference(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                          eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, h) with h = x + residual in x's dtype and y = weight * RMSNorm(h), statistics in fp32."""
    h = x + residual
    h32 = widened(h)
    y = h32 * torch.rsqrt(h32.pow(2).mean(dim=-1, keepdim=True) + eps) * widened(weight)
    return y.to(x.dtype), h


@triton.jit
def _forward_kernel(X, RES, Y, H, RSTD, W, n_rows, n_cols, eps, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    for row in range(tl.program_id(0).to(tl.int64), n_rows, tl.num_programs(0)):
        offset = row * n_cols
        x = tl.load(X + offset + cols, mask=mask, other=0.0).to(tl.float32)
        r = tl.load(RES + offset + cols, mask=mask, other=0.0).to(tl.float32)
        h = (x + r).to(H.dtype.element_ty)
        tl.store(H + offset + cols, h, mask=mask)
        h = h.to(tl.float32)
        rstd = tl.rsqrt(tl.sum(h * h, axis=0) / n_cols + eps)
        tl.store(RSTD + row, rstd)
        tl.store(Y + offset + cols, (h * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(DY, DH_IN, H, RSTD, W, DH, PARTIAL, n_rows, n_cols, HAS_DH_IN: tl.constexpr,
                     BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), tl.float32)
    for row in range(tl.program_id(0).to(tl.int64), n_rows, tl.num_programs(0)):
        offset = row * n_cols
        dy = tl.load(DY + offset + cols, mask=mask, other=0.0).to(tl.float32)
        h = tl.load(H + offset + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        n = h * rstd
        dn = dy * w
        dw += dy * n
        dh = rstd * (dn - n * (tl.sum(dn * n, axis=0) / n_cols))
        if HAS_DH_IN:
            dh += tl.load(DH_IN + offset + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DH + offset + cols, dh.to(DH.dtype.element_ty), mask=mask)
    tl.store(PARTIAL + tl.program_id(0).to(tl.int64) * n_cols + cols, dw, mask=mask)


def _launch(x: torch.Tensor) -> tuple[int, int, int, int]:
    n_cols = x.shape[-1]
    n_rows = x.numel() // n_cols
    block = triton.next_power_of_2(n_cols)
    return n_rows, block, persistent_programs(n_rows, x.device, 8), 4 if block <= 2048 else 8


@torch.library.custom_op("motif::add_rmsnorm_forward", mutates_args=())
def add_rmsnorm_forward(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                        eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, h, rstd): the normalised output, the new residual stream, and 1/rms per row (fp32)."""
    x, residual = x.contiguous(), residual.contiguous()
    y, h = torch.empty_like(x), torch.empty_like(x)
    n_rows, block, programs, num_warps = _launch(x)
    rstd = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    _forward_kernel[(programs,)](x, residual, y, h, rstd, weight, n_rows, x.shape[-1], eps, BLOCK=block,
                                 num_warps=num_warps)
    return y, h, rstd


@add_rmsnorm_forward.register_fake
def _(x, residual, weight, eps):
    return torch.empty_like(x), torch.empty_like(x), x.new_empty(x.numel() // x.shape[-1], dtype=torch.float32)


@torch.library.custom_op("motif::add_rmsnorm_backward", mutates_args=())
def add_rmsnorm_backward(dy: torch.Tensor, dh_in: torch.Tensor | None, h: torch.Tensor, rstd: torch.Tensor,
                         weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dh, dweight): the gradient reaching both x and residual, and the weight's."""
    dy, h = dy.contiguous(), h.contiguous()
    dh_in = dh_in.contiguous() if dh_in is not None else None
    dh = torch.empty_like(h)
    n_rows, block, programs, num_warps = _launch(h)
    partial = torch.empty(programs, h.shape[-1], device=h.device, dtype=torch.float32)
    _backward_kernel[(programs,)](dy, dh_in if dh_in is not None else dy, h, rstd, weight, dh, partial, n_rows,
                                  h.shape[-1], HAS_DH_IN=dh_in is not None, BLOCK=block, num_warps=num_warps)
    return dh, partial.sum(0).to(weight.dtype)


@add_rmsnorm_backward.register_fake
def _(dy, dh_in, h, rstd, weight):
    return torch.empty_like(h), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    _, _, weight, _ = inputs
    _, h, rstd = output
    ctx.save_for_backward(h, rstd, weight)
    ctx.mark_non_differentiable(rstd)


def _backward(ctx, dy, dh_in, _drstd):
    h, rstd, weight = ctx.saved_tensors
    dh, dweight = add_rmsnorm_backward(dy, dh_in, h, rstd, weight)
    return dh, dh, dweight, None


add_rmsnorm_forward.register_autograd(_backward, setup_context=_setup_context)

def add_rmsnorm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float,
                impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(weight * RMSNorm(x + residual), x + residual). ``impl``: "triton", "reference" or "auto" (Triton on CUDA)."""
    if use_triton(impl, x):
        y, h, _ = add_rmsnorm_forward(x, residual, weight, eps)
        return y, h
    return add_rmsnorm_reference(x, residual, weight, eps)
