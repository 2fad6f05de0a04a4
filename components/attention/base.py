"""The attention interface shared by the GQA baseline, differential and grouped differential attention."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from components.config_error import require
from components.layers import WeightInit


@dataclass(kw_only=True)
class AttentionConfig:
    """Fields every attention takes; subclasses choose the implementation (YAML ``class_path``)."""

    head_dim: int = 128
    """Width of one query/key head. RoPE rotates all of it, so it must be even."""

    def __post_init__(self) -> None:
        require(self.head_dim > 0 and self.head_dim % 2 == 0, self, "head_dim",
                "RoPE rotates pairs of dimensions: use a positive even head_dim such as 64 or 128")

    def build(self, hidden_size: int, layer_idx: int, init: WeightInit) -> "Attention":
        raise NotImplementedError(f"{type(self).__name__} does not build an attention module")


class Attention(nn.Module):
    """Causal self-attention: ``forward(x, cos, sin)`` maps (batch, seq, hidden) to the same shape.

    ``cos`` and ``sin`` are the rotary tables of :func:`components.rope.rotary_cos_sin` for this sequence.
    """

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def statistics(self) -> dict[str, torch.Tensor]:
        """Scalars worth watching during training (logged by the model-statistics callback)."""
        return {}


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim) + causal mask) v through SDPA (no S x S tensor on GPU).

    Inputs are (batch, seq, heads, dim); key/value heads may be fewer than query heads, in which case query
    head h reads key/value head h // (q_heads / kv_heads) (GQA, consecutive query heads share a key). The
    value width may differ from the query/key width. Returns (batch, seq, q_heads, value_dim).
    """
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
        is_causal=True, enable_gqa=q.shape[2] != k.shape[2],
    )
    return out.transpose(1, 2)
