"""Route a model's parameters into optimizer groups."""

from torch import nn


def motif_param_groups(model: nn.Module) -> list[dict]:
    """Three groups, each flagged for MuonClip and named for the dashboard; plain AdamW ignores the flag.

    - ``hidden_matrices`` (use_muon): every 2-D weight inside the decoder blocks (q/k/v/o, gate/up/down).
    - ``embeddings``: the other matrices, token embedding and lm_head (Muon's orthogonal update suits neither).
    - ``vectors`` (no weight decay): norm weights, the sub-norm, lambda vectors, PolyNorm weight and bias;
      decaying them toward zero changes the function rather than regularising it.
    """
    hidden, embeddings, vectors = [], [], []
    for name, p in {id(p): (n, p) for n, p in model.named_parameters() if p.requires_grad}.values():
        if p.ndim < 2:
            vectors.append(p)
        elif ".layers." in f".{name}":
            hidden.append(p)
        else:
            embeddings.append(p)
    return [
        {"params": hidden, "name": "hidden_matrices", "use_muon": True},
        {"params": embeddings, "name": "embeddings", "use_muon": False},
        {"params": vectors, "name": "vectors", "use_muon": False, "weight_decay": 0.0},
    ]
