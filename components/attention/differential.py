"""Differential attention (arXiv 2410.05258): every head is a (signal, noise) pair of query heads.

Layout (the Motif-2.6B and Diff Transformer order, and GDA's layout with signal_noise_ratio = 1):
  q_proj -> num_heads pairs [q1_0, q2_0, q1_1, q2_1, ...], each head_dim wide
  k_proj -> num_kv_heads pairs [k1_0, k2_0, k1_1, k2_1, ...]
  v_proj -> num_kv_heads heads of 2 * head_dim ([v1_g ; v2_g])
  o_proj <- num_heads * 2 * head_dim
With num_kv_heads < num_heads, differential head h uses key/value group h // (num_heads / num_kv_heads).
"""

from dataclasses import dataclass

import torch

from components.attention.base import causal_attention
from components.attention.differential_base import DifferentialAttentionBase, DifferentialConfig
from components.config_error import require
from components.kv_cache import DecodeStep, KVCache
from components.layers import Linear, WeightInit
from components.rope import apply_rotary
from kernels.causal_max_logits import causal_max_logits


@dataclass(kw_only=True)
class DifferentialAttentionConfig(DifferentialConfig):
    """Plain differential attention: one noise head per signal head (GDA ratio 1:1)."""

    num_heads: int = 16
    """Differential heads; each uses two query heads and outputs 2 * head_dim values."""
    num_kv_heads: int = 16
    """Key/value groups; each holds a (k1, k2) pair and 2 * head_dim values."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_heads >= 1, self, "num_heads", "use at least one differential head")
        require(self.num_kv_heads >= 1, self, "num_kv_heads", "use at least one key/value group")
        require(self.num_heads % self.num_kv_heads == 0, self, "num_kv_heads",
                f"must divide num_heads = {self.num_heads} (each key/value group serves whole heads)")

    def build(self, hidden_size: int, layer_idx: int, init: WeightInit) -> "DifferentialAttention":
        return DifferentialAttention(self, hidden_size, layer_idx, init)

    def context_macs_per_token(self, context: int) -> int:
        """Two query heads per differential head (arXiv 2410.05258 Eq. 1), each map reads the 2d-wide values:
        d + 2d per key and query head."""
        return 2 * self.num_heads * 3 * self.head_dim * context


class DifferentialAttention(DifferentialAttentionBase):
    def __init__(
        self, config: DifferentialAttentionConfig, hidden_size: int, layer_idx: int, init: WeightInit
    ) -> None:
        super().__init__(config, layer_idx)
        self.num_heads, self.num_kv_heads = config.num_heads, config.num_kv_heads
        d = self.head_dim
        self.q_proj = Linear(hidden_size, 2 * self.num_heads * d, init.std)
        self.k_proj = Linear(hidden_size, 2 * self.num_kv_heads * d, init.std)
        self.v_proj = Linear(hidden_size, 2 * self.num_kv_heads * d, init.std)
        self.o_proj = Linear(2 * self.num_heads * d, hidden_size, init.output_std)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                step: DecodeStep | None = None, documents: torch.Tensor | None = None) -> torch.Tensor:
        batch, seq, _ = x.shape
        d = self.head_dim
        q = apply_rotary(self.q_proj(x).view(batch, seq, 2 * self.num_heads, d), cos, sin)
        k = apply_rotary(self.k_proj(x).view(batch, seq, 2 * self.num_kv_heads, d), cos, sin)
        v = self.v_proj(x).view(batch, seq, self.num_kv_heads, 2 * d)
        if self.track_max_logits:  # per head h: [q1_h, q2_h], the q_proj order
            both = (causal_max_logits(q[:, :, 0::2], k[:, :, 0::2], impl=self.kernel, documents=documents),
                    causal_max_logits(q[:, :, 1::2], k[:, :, 1::2], impl=self.kernel, documents=documents))
            self._record_max_logits(torch.stack(both, dim=1).flatten())
        k, v, mask = self._cached(k, v, cache, step)
        signal = causal_attention(q[:, :, 0::2], k[:, :, 0::2], v, mask, documents)
        noise = causal_attention(q[:, :, 1::2], k[:, :, 1::2], v, mask, documents)
        return self.o_proj(self.combine(signal, noise))

    def cache_layout(self) -> tuple[int, int, int, int]:
        return 2 * self.num_kv_heads, self.head_dim, self.num_kv_heads, 2 * self.head_dim

    def key_head_of_query(self) -> list[int]:
        per_group = self.num_heads // self.num_kv_heads
        return [2 * (h // per_group) + branch for h in range(self.num_heads) for branch in (0, 1)]
