"""PolyNorm and PolyNorm-times-up (PolyCom, arXiv 2411.03884, Eq. 3; Motif-2-12.7B report, arXiv 2511.07464): Triton kernels, their
autograd glue as ``torch.library`` custom ops (so ``torch.compile`` traces through them), and the pure-PyTorch
reference that is also the CPU path.

  PolyNorm(x) = w0 * N(x^3) + w1 * N(x^2) + w2 * N(x) + b,   N(u) = u / sqrt(mean(u^2 over last dim) + eps)
  fused MLP gate: PolyNorm(gate) * up

Each kernel program handles one row, walking it in chunks of columns: a first pass forms the row sums (of x^2,
x^4, x^6, and in the backward also of g x^k), a second pass, which mostly finds the row still in cache, writes
the outputs; first-pass loads ask L2 to keep their lines and second-pass loads to drop them. The RMS statistics
are recomputed in the backward pass instead of stored, so forward reads x (and up) and writes y, and backward
reads x and dy (and up) and writes dx (and dup): the memory floor. The outputs are evaluated in Horner form with
per-row coefficients, and rows whose width is a multiple of the chunk run without masks.
With n_k = x^k, r_k = 1 / sqrt(mean(n_k^2) + eps), N_k = n_k r_k and g = dy (times up):
  dw_k = sum g N_k,   db = sum g,   dn_k = r_k (w_k g - N_k mean(w_k g N_k)),   dx = dn_1 + 2 x dn_2 + 3 x^2 dn_3.
The weight and bias gradients are reduced through a per-row partial buffer summed in a fixed order, so they are
the same bits run to run (no atomics).
"""

import torch
import triton
import triton.language as tl

from kernels.launch import use_triton
from kernels.precision import widened


def polynorm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                       up: torch.Tensor | None = None) -> torch.Tensor:
    """PolyNorm in fp32 (times ``up`` when given), returned in x's dtype. ``weight`` has 3 entries (for x^3,
    x^2, x), ``bias`` one."""
    x32 = widened(x)
    w = widened(weight)

    def normalize(u: torch.Tensor) -> torch.Tensor:
        return u * torch.rsqrt(u.pow(2).mean(dim=-1, keepdim=True) + eps)

    y = w[0] * normalize(x32.pow(3)) + w[1] * normalize(x32.pow(2)) + w[2] * normalize(x32) + widened(bias)
    if up is not None:
        y = y * widened(up)
    return y.to(x.dtype)


@triton.jit
def _load(pointer, mask, NO_MASK: tl.constexpr, EVICTION: tl.constexpr):
    if NO_MASK:
        return tl.load(pointer, eviction_policy=EVICTION).to(tl.float32)
    else:
        return tl.load(pointer, mask=mask, other=0.0, eviction_policy=EVICTION).to(tl.float32)


@triton.jit
def _store(pointer, value, mask, NO_MASK: tl.constexpr):
    if NO_MASK:
        tl.store(pointer, value.to(pointer.dtype.element_ty))
    else:
        tl.store(pointer, value.to(pointer.dtype.element_ty), mask=mask)


@triton.jit
def _polynorm_forward_kernel(X, UP, Y, W, B, n_cols, eps, HAS_UP: tl.constexpr, BLOCK: tl.constexpr,
                             NO_MASK: tl.constexpr, STAGES: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    offset = tl.program_id(0).to(tl.int64) * n_cols
    # first pass: the RMS sums of x^2, x^4, x^6
    sum2 = tl.zeros((BLOCK,), tl.float32)
    sum4 = tl.zeros((BLOCK,), tl.float32)
    sum6 = tl.zeros((BLOCK,), tl.float32)
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):
        x = _load(X + offset + start + cols, start + cols < n_cols, NO_MASK, "evict_last")
        x2 = x * x
        x4 = x2 * x2
        sum2 += x2
        sum4 += x4
        sum6 += x4 * x2
    # y = x (k1 + x (k2 + x k3)) + b with k1 = w2 r1, k2 = w1 r2, k3 = w0 r3 (Horner form)
    k1 = tl.load(W + 2).to(tl.float32) * tl.rsqrt(tl.sum(sum2, axis=0) / n_cols + eps)
    k2 = tl.load(W + 1).to(tl.float32) * tl.rsqrt(tl.sum(sum4, axis=0) / n_cols + eps)
    k3 = tl.load(W).to(tl.float32) * tl.rsqrt(tl.sum(sum6, axis=0) / n_cols + eps)
    b = tl.load(B).to(tl.float32)
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):  # the second read of the row comes from cache
        mask = start + cols < n_cols
        x = _load(X + offset + start + cols, mask, NO_MASK, "evict_first")
        y = x * (k1 + x * (k2 + x * k3)) + b
        if HAS_UP:
            y = y * _load(UP + offset + start + cols, mask, NO_MASK, "evict_first")
        _store(Y + offset + start + cols, y, mask, NO_MASK)


@triton.jit
def _polynorm_backward_kernel(DY, X, UP, DX, DUP, PARTIAL, W, n_cols, eps, HAS_UP: tl.constexpr,
                              BLOCK: tl.constexpr, NO_MASK: tl.constexpr, STAGES: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    row = tl.program_id(0).to(tl.int64)
    offset = row * n_cols
    w0, w1, w2 = tl.load(W).to(tl.float32), tl.load(W + 1).to(tl.float32), tl.load(W + 2).to(tl.float32)
    # first pass: the RMS sums of x^{2k}, t_k = sum g x^k and sum g, where g = dy (times up)
    sum2 = tl.zeros((BLOCK,), tl.float32)
    sum4 = tl.zeros((BLOCK,), tl.float32)
    sum6 = tl.zeros((BLOCK,), tl.float32)
    t1 = tl.zeros((BLOCK,), tl.float32)
    t2 = tl.zeros((BLOCK,), tl.float32)
    t3 = tl.zeros((BLOCK,), tl.float32)
    t0 = tl.zeros((BLOCK,), tl.float32)
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):
        mask = start + cols < n_cols
        x = _load(X + offset + start + cols, mask, NO_MASK, "evict_last")
        g = _load(DY + offset + start + cols, mask, NO_MASK, "evict_last")
        if HAS_UP:
            g = g * _load(UP + offset + start + cols, mask, NO_MASK, "evict_last")
        x2 = x * x
        x4 = x2 * x2
        gx = g * x
        sum2 += x2
        sum4 += x4
        sum6 += x4 * x2
        t0 += g
        t1 += gx
        t2 += gx * x
        t3 += gx * x2
    r1 = tl.rsqrt(tl.sum(sum2, axis=0) / n_cols + eps)
    r2 = tl.rsqrt(tl.sum(sum4, axis=0) / n_cols + eps)
    r3 = tl.rsqrt(tl.sum(sum6, axis=0) / n_cols + eps)
    s1, s2, s3 = tl.sum(t1, axis=0), tl.sum(t2, axis=0), tl.sum(t3, axis=0)
    partial = PARTIAL + row * 4  # this row's dw_k = r_k t_k and db, summed over rows in a fixed order
    tl.store(partial, s3 * r3)
    tl.store(partial + 1, s2 * r2)
    tl.store(partial + 2, s1 * r1)
    tl.store(partial + 3, tl.sum(t0, axis=0))
    # second pass: dx = g (a1 + x (a2 + x a3)) - x (c1 + x^2 (c2 + x^2 c3)), the expansion of
    # dn_1 + 2 x dn_2 + 3 x^2 dn_3 with dn_k = r_k (w_k g - N_k mean(w_k g N_k)) and mean(w_k g N_k) = w_k r_k t_k / n
    a1, a2, a3 = w2 * r1, 2.0 * w1 * r2, 3.0 * w0 * r3
    c1 = w2 * r1 * r1 * r1 * s1 / n_cols
    c2 = 2.0 * w1 * r2 * r2 * r2 * s2 / n_cols
    c3 = 3.0 * w0 * r3 * r3 * r3 * s3 / n_cols
    b = tl.load(W + 3).to(tl.float32)  # the bias rides after the three weights
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):
        mask = start + cols < n_cols
        x = _load(X + offset + start + cols, mask, NO_MASK, "evict_first")
        g = _load(DY + offset + start + cols, mask, NO_MASK, "evict_first")
        if HAS_UP:  # dup = dy PolyNorm(x), with PolyNorm's Horner form of the forward
            _store(DUP + offset + start + cols, g * (x * (w2 * r1 + x * (w1 * r2 + x * (w0 * r3))) + b), mask, NO_MASK)
            g = g * _load(UP + offset + start + cols, mask, NO_MASK, "evict_first")
        x2 = x * x
        dx = g * (a1 + x * (a2 + x * a3)) - x * (c1 + x2 * (c2 + x2 * c3))
        _store(DX + offset + start + cols, dx, mask, NO_MASK)


FORWARD, FORWARD_WITH_UP, BACKWARD, BACKWARD_WITH_UP = (4096, 4, 3), (4096, 4, 3), (2048, 4, 3), (2048, 8, 3)
"""(columns one program touches at a time, warps, pipeline stages) per kernel: one program per row, walking the
row in chunks so registers hold a chunk, not a row; the fastest of a sweep on an H200 at 16,384 x 16,384 bf16
(benchmarks/RESULTS.md)."""


def _launch_shape(x: torch.Tensor, chunk: int, warps: int, stages: int) -> dict:
    """Rows (the grid) and the kernel's compile-time parameters for rows of x's last dimension."""
    n_cols = x.shape[-1]
    block = min(triton.next_power_of_2(n_cols), chunk)
    return dict(rows=x.numel() // n_cols, BLOCK=block, NO_MASK=n_cols % block == 0, STAGES=stages,
                num_warps=min(warps, max(1, block // 256)))


@torch.library.custom_op("motif::polynorm_forward", mutates_args=())
def polynorm_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, up: torch.Tensor | None,
                     eps: float) -> torch.Tensor:
    x = x.contiguous()
    up = up.contiguous() if up is not None else None
    y = torch.empty_like(x)
    launch = _launch_shape(x, *(FORWARD_WITH_UP if up is not None else FORWARD))
    _polynorm_forward_kernel[(launch.pop("rows"),)](x, up if up is not None else x, y, weight, bias, x.shape[-1],
                                                    eps, HAS_UP=up is not None, **launch)
    return y


@polynorm_forward.register_fake
def _(x, weight, bias, up, eps):
    return torch.empty_like(x)


@torch.library.custom_op("motif::polynorm_backward", mutates_args=())
def polynorm_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      up: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias, dup); dup is empty when ``up`` is None."""
    dy, x = dy.contiguous(), x.contiguous()
    up = up.contiguous() if up is not None else None
    dx = torch.empty_like(x)
    dup = torch.empty_like(up) if up is not None else x.new_empty(0)
    launch = _launch_shape(x, *(BACKWARD_WITH_UP if up is not None else BACKWARD))
    rows = launch.pop("rows")
    partial = torch.empty(rows, 4, device=x.device, dtype=torch.float32)
    weight_and_bias = torch.cat([weight.float(), bias.float()])
    _polynorm_backward_kernel[(rows,)](dy, x, up if up is not None else x, dx, dup if up is not None else dx, partial,
                                       weight_and_bias, x.shape[-1], eps, HAS_UP=up is not None, **launch)
    sums = partial.sum(0)
    return dx, sums[:3].to(weight.dtype, copy=True), sums[3:].to(bias.dtype, copy=True), dup


@polynorm_backward.register_fake
def _(dy, x, weight, bias, up, eps):
    return torch.empty_like(x), torch.empty_like(weight), torch.empty_like(bias), (
        torch.empty_like(up) if up is not None else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, weight, bias, up, eps = inputs
    ctx.save_for_backward(x, weight, bias, up)
    ctx.eps = eps


def _backward(ctx, dy):
    x, weight, bias, up = ctx.saved_tensors
    dx, dweight, dbias, dup = polynorm_backward(dy, x, weight, bias, up, ctx.eps)
    return dx, dweight, dbias, (dup if up is not None else None), None


polynorm_forward.register_autograd(_backward, setup_context=_setup_context)

def polynorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, up: torch.Tensor | None = None,
             impl: str = "auto") -> torch.Tensor:
    """PolyNorm of x over its last dimension (times ``up`` when given). ``impl``: "triton" (the fused kernels),
    "reference" (PyTorch, fp32) or "auto" (Triton on CUDA, the reference elsewhere)."""
    if use_triton(impl, x):
        return polynorm_forward(x, weight, bias, up, eps)
    return polynorm_reference(x, weight, bias, eps, up)
