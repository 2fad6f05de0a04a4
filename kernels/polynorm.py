"""PolyNorm activation (arXiv 2411.03884; Motif-2 report, SPEC section 3).

  PolyNorm(x) = w0 * N(x^3) + w1 * N(x^2) + w2 * N(x) + b,   N(u) = u / sqrt(mean(u^2 over last dim) + eps)

This file holds the pure-PyTorch reference, which is also the CPU path.
"""

import torch


def polynorm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """PolyNorm in fp32, returned in x's dtype. ``weight`` has 3 entries (for x^3, x^2, x), ``bias`` one."""
    x32 = x.float()
    w = weight.float()

    def normalize(u: torch.Tensor) -> torch.Tensor:
        return u * torch.rsqrt(u.pow(2).mean(dim=-1, keepdim=True) + eps)

    y = w[0] * normalize(x32.pow(3)) + w[1] * normalize(x32.pow(2)) + w[2] * normalize(x32) + bias.float()
    return y.to(x.dtype)


def polynorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """PolyNorm of x over its last dimension."""
    return polynorm_reference(x, weight, bias, eps)
