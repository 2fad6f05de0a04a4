"""Rotary position embedding, rotate-half (GPT-NeoX) style over the full head dimension (RoFormer, arXiv 2104.09864, Eq. 34; Motif-2-12.7B: theta 1e6)."""

import torch

from kernels.precision import widened


def rotary_cos_sin(
    seq_len: int, head_dim: int, theta: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq_len, head_dim) in fp32 for positions 0..seq_len-1.

    Frequencies theta^(-2i/head_dim) for i < head_dim/2, each repeated for both halves (rotate-half layout).
    Computed per forward (a few KB) instead of cached, so no buffer needs re-initialising after meta-device
    construction or sharding.
    """
    return rotary_at(torch.arange(seq_len, device=device), head_dim, theta)


def rotary_at(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (*positions.shape, head_dim) in fp32 for the given positions (decoding: each
    row of a batch at its own positions)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x of shape (batch, seq, heads, head_dim): x * cos + rotate_half(x) * sin, in fp32; cos and sin
    are (seq, head_dim) tables, or (batch, seq, head_dim) when rows sit at different positions."""
    x32 = widened(x)
    first, second = x32.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    cos, sin = (cos[None, :, None, :], sin[None, :, None, :]) if cos.ndim == 2 else (cos[:, :, None, :], sin[:, :, None, :])
    return (x32 * cos + rotated * sin).to(x.dtype)
