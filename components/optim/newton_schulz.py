"""Newton-Schulz orthogonalisation for Muon (Jordan et al. 2024; Moonlight, arXiv 2502.16982, Sec. 2)."""

import torch

QUINTIC_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(update: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately the orthogonal factor U V^T of ``update`` = U S V^T, by ``steps`` quintic iterations in bf16.

    X = G / (||G||_F + eps), transposed so that rows <= cols; each step X <- a X + (b A + c A^2) X with A = X X^T
    and (a, b, c) = (3.4445, -4.7750, 2.0315). Returns bf16 in the input's orientation. A leading batch
    dimension orthogonalises a stack of same-shaped matrices in one batched GEMM per product. The scalings run
    in the GEMM epilogues (addmm / baddbmm), which keeps the iteration at the matmul roofline.
    """
    a, b, c = QUINTIC_COEFFICIENTS
    x = update.bfloat16()
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    multiply_add = torch.addmm if x.ndim == 2 else torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT
        polynomial = multiply_add(gram, gram, gram, beta=b, alpha=c)  # b A + c A A
        x = multiply_add(x, polynomial, x, beta=a, alpha=1.0)  # a X + (b A + c A A) X
    return x.mT if transposed else x


def newton_schulz_flops(rows: int, cols: int, steps: int = 5) -> int:
    """Multiply-add FLOPs (2 per MAC) of ``newton_schulz`` on a rows x cols matrix: per step, with m <= n the
    short and long sides, X X^T (2 m^2 n), A A (2 m^3) and B X (2 m^2 n)."""
    m, n = min(rows, cols), max(rows, cols)
    return steps * (4 * m * m * n + 2 * m**3)


def newton_schulz_many(updates: list[torch.Tensor], steps: int = 5, max_batch_elements: int = 1 << 25) -> list[torch.Tensor]:
    """``newton_schulz`` of each matrix, stacking same-shaped ones into batches of at most ``max_batch_elements``
    elements. Small matrices gain from a batched GEMM (on an H200, 12.7B's 2048 x 4096 key projections go from
    549 to 552 TFLOP/s, and more for smaller ones) while large ones lose, so a matrix of more than half the cap
    runs alone."""
    results: list[torch.Tensor | None] = [None] * len(updates)
    by_shape: dict[tuple, list[int]] = {}
    for i, update in enumerate(updates):
        by_shape.setdefault((tuple(update.shape), update.device), []).append(i)
    for (shape, _), indices in by_shape.items():
        per_batch = max(1, max_batch_elements // max(1, shape[0] * shape[1]))
        for start in range(0, len(indices), per_batch):
            batch = indices[start:start + per_batch]
            if len(batch) == 1:  # a batch of one is slower through baddbmm than through addmm
                results[batch[0]] = newton_schulz(updates[batch[0]], steps)
                continue
            stacked = newton_schulz(torch.stack([updates[i] for i in batch]), steps)
            for i, result in zip(batch, stacked.unbind(0)):
                results[i] = result
    return results
