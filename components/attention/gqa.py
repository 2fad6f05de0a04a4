"""Grouped-query attention (MHA when num_kv_heads == num_heads): the ablation baseline."""

from dataclasses import dataclass

import torch

from components.attention.base import Attention, AttentionConfig, causal_attention
from components.kv_cache import DecodeStep, KVCache
from components.config_error import require
from components.layers import Linear, WeightInit
from components.rope import apply_rotary
from kernels.causal_max_logits import causal_max_logits


@dataclass(kw_only=True)
class GroupedQueryAttentionConfig(AttentionConfig):
    """Standard softmax attention with ``num_kv_heads`` key/value heads shared by groups of query heads."""

    num_heads: int = 32
    num_kv_heads: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_heads >= 1, self, "num_heads", "use at least one query head")
        require(self.num_kv_heads >= 1, self, "num_kv_heads", "use at least one key/value head")
        require(self.num_heads % self.num_kv_heads == 0, self, "num_kv_heads",
                f"must divide num_heads = {self.num_heads} (each key/value head serves a whole group of query heads)")

    def build(self, hidden_size: int, layer_idx: int, init: WeightInit) -> "GroupedQueryAttention":
        return GroupedQueryAttention(self, hidden_size, init)

    def context_macs_per_token(self, context: int) -> int:
        """softmax(q k^T / sqrt(d)) v per query head: d for the scores and d for the values, per key."""
        return self.num_heads * 2 * self.head_dim * context


class GroupedQueryAttention(Attention):
    def __init__(self, config: GroupedQueryAttentionConfig, hidden_size: int, init: WeightInit) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.kernel = config.kernel
        self.q_proj = Linear(hidden_size, self.num_heads * self.head_dim, init.std)
        self.k_proj = Linear(hidden_size, self.num_kv_heads * self.head_dim, init.std)
        self.v_proj = Linear(hidden_size, self.num_kv_heads * self.head_dim, init.std)
        self.o_proj = Linear(self.num_heads * self.head_dim, hidden_size, init.output_std)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                step: DecodeStep | None = None, documents: torch.Tensor | None = None) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = apply_rotary(self.q_proj(x).view(batch, seq, self.num_heads, self.head_dim), cos, sin)
        k = apply_rotary(self.k_proj(x).view(batch, seq, self.num_kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).view(batch, seq, self.num_kv_heads, self.head_dim)
        if self.track_max_logits:
            self._record_max_logits(causal_max_logits(q, k, impl=self.kernel, documents=documents))
        k, v, mask = self._cached(k, v, cache, step)
        return self.o_proj(causal_attention(q, k, v, mask, documents).reshape(batch, seq, -1))

    def cache_layout(self) -> tuple[int, int, int, int]:
        return self.num_kv_heads, self.head_dim, self.num_kv_heads, self.head_dim

    def key_head_of_query(self) -> list[int]:
        return [h // (self.num_heads // self.num_kv_heads) for h in range(self.num_heads)]
