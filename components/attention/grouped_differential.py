"""Grouped Differential Attention (arXiv 2510.06949), the Motif-2-12.7B attention (Motif-2-12.7B report, arXiv 2511.07464, Table 1).

G groups, each with ``signal_noise_ratio`` (r) signal heads and one noise head. Layout of the public
checkpoint, kept so a converter needs no permutation:
  q_proj -> G groups of (r + 1) consecutive heads: r signal heads, then the group's noise head
  k_proj -> G pairs [k1_0, k2_0, k1_1, k2_1, ...]; v_proj -> G pairs [v1_0, v2_0, ...]
Signal head (g, j) attends with k1_g, noise head g with k2_g; both read [v1_g ; v2_g] (2 * head_dim).
  out = out_signal - lambda * repeat_interleave(out_noise, r);  o_proj((1 - lambda_init) * subln(out))
With r = 1 this is plain differential attention.
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
from kernels.gda_attention import gda_attention


@dataclass(kw_only=True)
class GroupedDifferentialAttentionConfig(DifferentialConfig):
    """GDA with ``num_noise_heads`` groups of ``signal_noise_ratio`` signal heads (12.7B: 8 and 4)."""

    num_noise_heads: int = 8
    """G: noise heads, equal to the number of groups and of (k1, k2) / (v1, v2) pairs."""
    signal_noise_ratio: int = 4
    """r: signal heads per noise head; 1 gives plain differential attention."""
    fused_core: bool = False
    """Training and prefill through ``kernels.gda_attention``: one Triton pass per group over its keys and values
    for both branches, the max logits for QK-clip from the same scores (with ``kernel`` "triton", or "auto" on a
    GPU; packed rows of several samples take the SDPA path). Off: SDPA per branch and a separate max-logit
    pass, which is faster on an H200 today (3.5 ms against
    6.3 ms per layer's attention forward + backward at the 12.7B layout and 4,096 tokens)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_noise_heads >= 1, self, "num_noise_heads", "use at least one noise head (one group)")
        require(self.signal_noise_ratio >= 1, self, "signal_noise_ratio",
                "each group needs at least one signal head: use 1 for plain differential attention, 4 for Motif-2")

    @property
    def num_heads(self) -> int:
        """Query heads in q_proj: G * (r + 1) (40 for the 12.7B model)."""
        return self.num_noise_heads * (self.signal_noise_ratio + 1)

    @property
    def num_kv_heads(self) -> int:
        """Key heads in k_proj (and value heads in v_proj): 2 * G (16 for the 12.7B model)."""
        return 2 * self.num_noise_heads

    def build(self, hidden_size: int, layer_idx: int, init: WeightInit) -> "GroupedDifferentialAttention":
        return GroupedDifferentialAttention(self, hidden_size, layer_idx, init)

    def context_macs_per_token(self, context: int) -> int:
        """G (r + 1) query heads (signal and noise, arXiv 2510.06949), each map reads its group's 2d-wide values:
        d + 2d per key and query head."""
        return self.num_heads * 3 * self.head_dim * context


class GroupedDifferentialAttention(DifferentialAttentionBase):
    def __init__(
        self, config: GroupedDifferentialAttentionConfig, hidden_size: int, layer_idx: int, init: WeightInit
    ) -> None:
        super().__init__(config, layer_idx)
        self.groups, self.ratio = config.num_noise_heads, config.signal_noise_ratio
        self.fused_core = config.fused_core
        d = self.head_dim
        self.q_proj = Linear(hidden_size, config.num_heads * d, init.std)
        self.k_proj = Linear(hidden_size, config.num_kv_heads * d, init.std)
        self.v_proj = Linear(hidden_size, config.num_kv_heads * d, init.std)
        self.o_proj = Linear(self.groups * self.ratio * 2 * d, hidden_size, init.output_std)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                step: DecodeStep | None = None, documents: torch.Tensor | None = None) -> torch.Tensor:
        batch, seq, _ = x.shape
        g, r, d = self.groups, self.ratio, self.head_dim
        q = apply_rotary(self.q_proj(x).view(batch, seq, g * (r + 1), d), cos, sin).view(batch, seq, g, r + 1, d)
        k = apply_rotary(self.k_proj(x).view(batch, seq, 2 * g, d), cos, sin)
        v = self.v_proj(x).view(batch, seq, g, 2 * d)
        if self.fused_core and cache is None and documents is None:
            signal, noise, maxima = gda_attention(q, k, v, self.track_max_logits, impl=self.kernel)
            if maxima is not None:
                self._record_max_logits(maxima)
            return self.o_proj(self.combine(signal, noise))
        signal_q, noise_q = q[:, :, :, :r].reshape(batch, seq, g * r, d), q[:, :, :, r]
        if self.track_max_logits:  # per group: r signal heads, then the noise head (the q_proj order)
            signal_max = causal_max_logits(signal_q, k[:, :, 0::2], impl=self.kernel, documents=documents).view(g, r)
            noise_max = causal_max_logits(noise_q, k[:, :, 1::2], impl=self.kernel, documents=documents).view(g, 1)
            self._record_max_logits(torch.cat([signal_max, noise_max], dim=1).flatten())
        k, v, mask = self._cached(k, v, cache, step)
        signal = causal_attention(signal_q, k[:, :, 0::2], v, mask, documents)
        noise = causal_attention(noise_q, k[:, :, 1::2], v, mask, documents)
        return self.o_proj(self.combine(signal, noise))

    def cache_layout(self) -> tuple[int, int, int, int]:
        """2G key heads (k1, k2 per group) and G value pairs of 2 * head_dim: each stored once."""
        return 2 * self.groups, self.head_dim, self.groups, 2 * self.head_dim

    def key_head_of_query(self) -> list[int]:
        return [2 * g + (j == self.ratio) for g in range(self.groups) for j in range(self.ratio + 1)]
