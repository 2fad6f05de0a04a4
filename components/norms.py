"""RMSNorm (pre-norm, final norm and the differential-attention sub-norm)."""

import torch
from torch import nn

from kernels.add_rmsnorm import add_rmsnorm
from kernels.precision import widened


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """N(u) = u / sqrt(mean(u^2 over the last dim) + eps), computed and returned in fp32 (fp64 for fp64 input)."""
    x = widened(x)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    """y = weight * N(x) (Zhang & Sennrich 2019); statistics in fp32 whatever the input dtype.

    Motif-2 uses eps 1e-6 for the block norms and 1e-5 for the attention sub-norm (the exact values are
    not published, so both are configurable). Given ``residual``, the norm is taken of
    x + residual and both are returned, fused in one pass (``kernel``: "auto" = Triton on CUDA, "triton",
    "reference").
    """

    def __init__(self, dim: int, eps: float = 1e-6, kernel: str = "auto") -> None:
        super().__init__()
        self.eps = eps
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        """weight * N(x), or (weight * N(x + residual), x + residual) when ``residual`` is given."""
        if residual is not None:
            return add_rmsnorm(x, residual, self.weight, self.eps, impl=self.kernel)
        return (rms_normalize(x, self.eps) * widened(self.weight)).to(x.dtype)
