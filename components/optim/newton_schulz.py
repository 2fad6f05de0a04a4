"""Newton-Schulz orthogonalisation for Muon (Jordan et al. 2024; Moonlight arXiv 2502.16982; SPEC section 4)."""

import torch

QUINTIC_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(update: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately the orthogonal factor U V^T of ``update`` = U S V^T, by ``steps`` quintic iterations in bf16.

    X = G / (||G||_F + eps), transposed so that rows <= cols; each step X <- a X + (b A + c A^2) X with A = X X^T
    and (a, b, c) = (3.4445, -4.7750, 2.0315). Returns bf16 in the input's orientation; a leading batch
    dimension is allowed.
    """
    a, b, c = QUINTIC_COEFFICIENTS
    x = update.bfloat16()
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.mT if transposed else x


def newton_schulz_flops(rows: int, cols: int, steps: int = 5) -> int:
    """Multiply-add FLOPs (2 per MAC) of ``newton_schulz`` on a rows x cols matrix: per step, with m <= n the
    short and long sides, X X^T (2 m^2 n), A A (2 m^3) and B X (2 m^2 n)."""
    m, n = min(rows, cols), max(rows, cols)
    return steps * (4 * m * m * n + 2 * m**3)
