"""The attention interface shared by the GQA baseline, differential and grouped differential attention."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from components.config_error import require, require_choices
from components.documents import segments
from components.kv_cache import DecodeStep, KVCache
from components.layers import WeightInit
from components.optim.qk_clip import QKClipTarget
from kernels.launch import Implementation


@dataclass(kw_only=True)
class AttentionConfig:
    """Fields every attention takes; subclasses choose the implementation (YAML ``class_path``)."""

    head_dim: int = 128
    """Width of one query/key head. RoPE rotates all of it, so it must be even."""
    kernel: Implementation = "auto"
    """The fused GPU paths (the max-logit measurement for QK-clip; in differential attention also the combine +
    sub-norm): "auto" (Triton on CUDA, PyTorch elsewhere), "triton" or "reference" (PyTorch), for ablations."""

    def __post_init__(self) -> None:
        require_choices(self)
        require(self.head_dim > 0 and self.head_dim % 2 == 0, self, "head_dim",
                "RoPE rotates pairs of dimensions: use a positive even head_dim such as 64 or 128")

    def build(self, hidden_size: int, layer_idx: int, init: WeightInit) -> "Attention":
        raise NotImplementedError(f"{type(self).__name__} does not build an attention module")

    def context_macs_per_token(self, context: int) -> int:
        """Multiply-adds one token spends against ``context`` keys: q.k for every query head and the
        probability-weighted sum of the values it reads (the projections are counted with the parameters)."""
        raise NotImplementedError(f"{type(self).__name__} does not count its attention work")


class Attention(nn.Module):
    """Causal self-attention: ``forward(x, cos, sin)`` maps (batch, seq, hidden) to the same shape.

    ``cos`` and ``sin`` are the rotary tables of :func:`components.rope.rotary_cos_sin` for this sequence.
    With ``track_max_logits`` set, every forward also folds the largest pre-softmax logit of each query head
    into ``max_logits`` (for QK-clip and the dashboard) until ``reset_max_logits`` is called.
    Decoding passes a ``cache`` (``components.kv_cache``) and the ``step``: the new tokens' keys and values are
    stored there and the queries attend to everything cached; ``cache_layout`` says what a token stores.
    Packed rows pass ``documents``, the (batch, seq) sample ids of ``components.documents``: queries attend within
    their own sample only, and the max logits count those pairs only.
    """

    track_max_logits: bool = False
    max_logits: torch.Tensor | None = None
    kernel: str = "auto"

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                step: DecodeStep | None = None, documents: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def cache_layout(self) -> tuple[int, int, int, int]:
        """(key heads, key width, value heads, value width) one token stores in a KVCache."""
        raise NotImplementedError

    def _cached(self, k: torch.Tensor, v: torch.Tensor, cache: KVCache | None, step: DecodeStep | None):
        """(keys, values, mask) the queries attend to: the new ones (causal) without a cache, else the cache's."""
        if cache is None:
            return k, v, None
        keys, values = cache.write(step, k, v)
        return keys, values, step.mask

    def key_head_of_query(self) -> list[int]:
        """For each query head in q_proj order, the index of the key head (in k_proj order) it attends with."""
        raise NotImplementedError

    def qk_clip_target(self) -> QKClipTarget:
        return QKClipTarget(self.q_proj.weight, self.k_proj.weight, self.key_head_of_query(), self.head_dim,
                            self.max_logits)

    def reset_max_logits(self) -> None:
        self.max_logits = None

    def _record_max_logits(self, per_query_head: torch.Tensor) -> None:
        self.max_logits = per_query_head if self.max_logits is None else torch.maximum(self.max_logits, per_query_head)

    def statistics(self) -> dict[str, torch.Tensor]:
        """Scalars worth watching during training (logged by the model-statistics callback)."""
        return {} if self.max_logits is None else {"max_logit": self.max_logits.max()}


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                     documents: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim) + causal mask) v through SDPA (no S x S tensor on GPU).

    Inputs are (batch, seq, heads, dim); key/value heads may be fewer than query heads, in which case query
    head h reads key/value head h // (q_heads / kv_heads) (GQA, consecutive query heads share a key). The
    value width may differ from the query/key width. Returns (batch, seq, q_heads, value_dim). A ``mask``
    (batch, 1, q_seq, k_seq; True = attend) replaces causality (a decoding cache's). With ``documents`` (the
    sample ids of packed rows) each sample attends causally within its own range.
    """
    if documents is not None:
        return attention_within_samples(q, k, v, documents)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
        is_causal=mask is None, enable_gqa=q.shape[2] != k.shape[2],
    )
    return out.transpose(1, 2)


@torch.compiler.disable
def attention_within_samples(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Causal attention over each packed sample's range, one SDPA call per sample. Left out of compiled graphs:
    the ranges are read from the device, and a compiled block would otherwise specialise on every packing."""
    rows = [torch.cat([causal_attention(q[b:b + 1, s:e], k[b:b + 1, s:e], v[b:b + 1, s:e]) for s, e in row], dim=1)
            for b, row in enumerate(segments(documents))]
    return torch.cat(rows, dim=0)
