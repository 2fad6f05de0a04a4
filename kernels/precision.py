"""The dtype the PyTorch reference paths compute in: fp32 for bf16, fp16 and fp32 inputs (the statistics of norms,
PolyNorm and RoPE need it), fp64 when an input is fp64, so that identities tested in fp64 (e.g. a grown model's
logits equal its source's) hold to fp64 rounding rather than to fp32's."""

import torch


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def widened(x: torch.Tensor) -> torch.Tensor:
    """``x`` in its compute dtype."""
    return x.to(compute_dtype(x))
