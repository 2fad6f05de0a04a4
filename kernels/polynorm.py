"""PolyNorm and PolyNorm-times-up (arXiv 2411.03884; Motif-2 report, SPEC section 3): Triton kernels, their
autograd glue as ``torch.library`` custom ops (so ``torch.compile`` traces through them), and the pure-PyTorch
reference that is also the CPU path.

  PolyNorm(x) = w0 * N(x^3) + w1 * N(x^2) + w2 * N(x) + b,   N(u) = u / sqrt(mean(u^2 over last dim) + eps)
  fused MLP gate: PolyNorm(gate) * up

Each kernel program handles whole rows, walking each row in chunks of columns: a first pass forms the row sums
(of x^2, x^4, x^6, and in the backward also of g x^k), a second pass, which mostly finds the row still in
cache, writes the outputs; first-pass loads ask L2 to keep their lines and second-pass loads to drop them, which
keeps more of the rows in flight cached for their second read. The RMS statistics are recomputed in the backward pass instead of stored, so forward reads
x (and up) and writes y, and backward reads x and dy (and up) and writes dx (and dup): the memory floor.
With n_k = x^k, r_k = 1 / sqrt(mean(n_k^2) + eps), N_k = n_k r_k and g = dy (times up):
  dw_k = sum g N_k,   db = sum g,   dn_k = r_k (w_k g - N_k mean(w_k g N_k)),   dx = dn_1 + 2 x dn_2 + 3 x^2 dn_3.
The weight and bias gradients are reduced through a per-program partial buffer summed in a fixed order, so
they are the same bits run to run (no atomics).
"""

import torch
import triton
import triton.language as tl

from kernels.launch import persistent_programs


def polynorm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                       up: torch.Tensor | None = None) -> torch.Tensor:
    """PolyNorm in fp32 (times ``up`` when given), returned in x's dtype. ``weight`` has 3 entries (for x^3,
    x^2, x), ``bias`` one."""
    x32 = x.float()
    w = weight.float()

    def normalize(u: torch.Tensor) -> torch.Tensor:
        return u * torch.rsqrt(u.pow(2).mean(dim=-1, keepdim=True) + eps)

    y = w[0] * normalize(x32.pow(3)) + w[1] * normalize(x32.pow(2)) + w[2] * normalize(x32) + bias.float()
    if up is not None:
        y = y * up.float()
    return y.to(x.dtype)


@triton.jit
def _row_statistics(X, offset, n_cols, eps, BLOCK: tl.constexpr):
    """1 / sqrt(mean(x^{2k}) + eps) for k = 1, 2, 3, from one pass over the row in BLOCK-wide chunks."""
    cols = tl.arange(0, BLOCK)
    sum2 = tl.zeros((BLOCK,), tl.float32)
    sum4 = tl.zeros((BLOCK,), tl.float32)
    sum6 = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):
        x = tl.load(X + offset + start + cols, mask=start + cols < n_cols, other=0.0, eviction_policy="evict_last").to(tl.float32)
        x2 = x * x
        sum2 += x2
        sum4 += x2 * x2
        sum6 += x2 * x2 * x2
    r1 = tl.rsqrt(tl.sum(sum2, axis=0) / n_cols + eps)
    r2 = tl.rsqrt(tl.sum(sum4, axis=0) / n_cols + eps)
    r3 = tl.rsqrt(tl.sum(sum6, axis=0) / n_cols + eps)
    return r1, r2, r3


@triton.jit
def _polynorm_forward_kernel(X, UP, Y, W, B, n_rows, n_cols, eps, HAS_UP: tl.constexpr, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    w0, w1, w2 = tl.load(W).to(tl.float32), tl.load(W + 1).to(tl.float32), tl.load(W + 2).to(tl.float32)
    b = tl.load(B).to(tl.float32)
    for row in range(tl.program_id(0).to(tl.int64), n_rows, tl.num_programs(0)):
        offset = row * n_cols
        r1, r2, r3 = _row_statistics(X, offset, n_cols, eps, BLOCK)
        for start in range(0, n_cols, BLOCK):  # the second read of the row comes from cache
            mask = start + cols < n_cols
            x = tl.load(X + offset + start + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            x2 = x * x
            y = w0 * x2 * x * r3 + w1 * x2 * r2 + w2 * x * r1 + b
            if HAS_UP:
                y = y * tl.load(UP + offset + start + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(Y + offset + start + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _polynorm_backward_kernel(DY, X, UP, DX, DUP, PARTIAL, W, n_rows, n_cols, eps,
                              HAS_UP: tl.constexpr, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    w0, w1, w2 = tl.load(W).to(tl.float32), tl.load(W + 1).to(tl.float32), tl.load(W + 2).to(tl.float32)
    b = tl.load(W + 3).to(tl.float32)  # the bias rides after the three weights
    dw0 = tl.zeros((BLOCK,), tl.float32)
    dw1 = tl.zeros((BLOCK,), tl.float32)
    dw2 = tl.zeros((BLOCK,), tl.float32)
    db = tl.zeros((BLOCK,), tl.float32)
    for row in range(tl.program_id(0).to(tl.int64), n_rows, tl.num_programs(0)):
        offset = row * n_cols
        # first pass: the RMS sums of x^{2k} and s_k = sum g x^k, where g = dy (times up)
        sum2 = tl.zeros((BLOCK,), tl.float32)
        sum4 = tl.zeros((BLOCK,), tl.float32)
        sum6 = tl.zeros((BLOCK,), tl.float32)
        s1 = tl.zeros((BLOCK,), tl.float32)
        s2 = tl.zeros((BLOCK,), tl.float32)
        s3 = tl.zeros((BLOCK,), tl.float32)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            x = tl.load(X + offset + start + cols, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
            g = tl.load(DY + offset + start + cols, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
            if HAS_UP:
                g = g * tl.load(UP + offset + start + cols, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
            x2 = x * x
            sum2 += x2
            sum4 += x2 * x2
            sum6 += x2 * x2 * x2
            s1 += g * x
            s2 += g * x2
            s3 += g * x2 * x
            db += g
        r1 = tl.rsqrt(tl.sum(sum2, axis=0) / n_cols + eps)
        r2 = tl.rsqrt(tl.sum(sum4, axis=0) / n_cols + eps)
        r3 = tl.rsqrt(tl.sum(sum6, axis=0) / n_cols + eps)
        dw0 += s3 * r3
        dw1 += s2 * r2
        dw2 += s1 * r1
        # second pass: dn_k = r_k (w_k g - N_k mean(w_k g N_k)), mean(w_k g N_k) = w_k r_k t_k / n_cols
        c1 = w2 * r1 * r1 * tl.sum(s1, axis=0) / n_cols
        c2 = w1 * r2 * r2 * tl.sum(s2, axis=0) / n_cols
        c3 = w0 * r3 * r3 * tl.sum(s3, axis=0) / n_cols
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            x = tl.load(X + offset + start + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            g = tl.load(DY + offset + start + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            x2 = x * x
            if HAS_UP:
                polynorm = w0 * x2 * x * r3 + w1 * x2 * r2 + w2 * x * r1 + b
                tl.store(DUP + offset + start + cols, (g * polynorm).to(DUP.dtype.element_ty), mask=mask)
                g = g * tl.load(UP + offset + start + cols, mask=mask, other=0.0).to(tl.float32)
            dn1 = r1 * (w2 * g - x * c1)
            dn2 = r2 * (w1 * g - x2 * c2)
            dn3 = r3 * (w0 * g - x2 * x * c3)
            dx = dn1 + 2.0 * x * dn2 + 3.0 * x2 * dn3
            tl.store(DX + offset + start + cols, dx.to(DX.dtype.element_ty), mask=mask)
    base = PARTIAL + tl.program_id(0) * 4
    tl.store(base, tl.sum(dw0, axis=0))
    tl.store(base + 1, tl.sum(dw1, axis=0))
    tl.store(base + 2, tl.sum(dw2, axis=0))
    tl.store(base + 3, tl.sum(db, axis=0))


FORWARD, BACKWARD, BACKWARD_WITH_UP = (4096, 4), (2048, 8), (1024, 4)
"""(columns one program touches at a time, warps): the row is walked in chunks, so registers hold a chunk, not
a row; the fastest found on an H200 at 16,384 x 16,384 bf16 (benchmarks/RESULTS.md)."""


def _launch_shape(x: torch.Tensor, chunk: int, warps: int) -> tuple[int, int, int, int]:
    """(rows, BLOCK, programs, num_warps) for rows of x's last dimension."""
    n_cols = x.shape[-1]
    n_rows = x.numel() // n_cols
    block = min(triton.next_power_of_2(n_cols), chunk)
    num_warps = min(warps, max(1, block // 256))
    return n_rows, block, persistent_programs(n_rows, x.device, 16), num_warps


@torch.library.custom_op("motif::polynorm_forward", mutates_args=())
def polynorm_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, up: torch.Tensor | None,
                     eps: float) -> torch.Tensor:
    x = x.contiguous()
    up = up.contiguous() if up is not None else None
    y = torch.empty_like(x)
    n_rows, block, programs, num_warps = _launch_shape(x, *FORWARD)
    _polynorm_forward_kernel[(programs,)](x, up if up is not None else x, y, weight, bias, n_rows, x.shape[-1], eps,
                                          HAS_UP=up is not None, BLOCK=block, num_warps=num_warps)
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
    n_rows, block, programs, num_warps = _launch_shape(x, *(BACKWARD_WITH_UP if up is not None else BACKWARD))
    partial = torch.empty(programs, 4, device=x.device, dtype=torch.float32)
    weight_and_bias = torch.cat([weight.float(), bias.float()])
    _polynorm_backward_kernel[(programs,)](dy, x, up if up is not None else x, dx, dup if up is not None else dx,
                                           partial, weight_and_bias, n_rows, x.shape[-1], eps,
                                           HAS_UP=up is not None, BLOCK=block, num_warps=num_warps)
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

IMPLEMENTATIONS = ("auto", "triton", "reference")


def polynorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, up: torch.Tensor | None = None,
             impl: str = "auto") -> torch.Tensor:
    """PolyNorm of x over its last dimension (times ``up`` when given). ``impl``: "triton" (the fused kernels),
    "reference" (PyTorch, fp32) or "auto" (Triton on CUDA, the reference elsewhere)."""
    use_triton = impl == "triton" or (impl == "auto" and x.is_cuda)
    if use_triton:
        return polynorm_forward(x, weight, bias, up, eps)
    return polynorm_reference(x, weight, bias, eps, up)
