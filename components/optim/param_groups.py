"""Split parameters into optimizer groups."""

from torch import nn


def weight_decay_groups(model: nn.Module) -> list[dict]:
    """Matrices (ndim >= 2: projections, embeddings, lm_head) get the optimizer's weight decay; vectors (norm
    weights, sub-norm, lambda vectors, PolyNorm weight and bias) get none, since decaying them toward zero
    changes the function rather than regularising it."""
    matrices = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": matrices, "name": "matrices"}, {"params": vectors, "name": "vectors", "weight_decay": 0.0}]
