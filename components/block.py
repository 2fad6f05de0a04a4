"""Pre-norm decoder block: h = x + attn(norm(x)); out = h + mlp(norm(h)), the second add fused with its norm."""

import torch
from torch import nn

from components.attention.base import AttentionConfig
from components.kv_cache import DecodeStep, KVCache
from components.layers import WeightInit
from components.mlp.base import MLPConfig
from components.norms import RMSNorm


class DecoderBlock(nn.Module):
    """One transformer layer; attribute names match the public checkpoint (``model.layers.{i}.*``)."""

    def __init__(
        self,
        hidden_size: int,
        layer_idx: int,
        attention: AttentionConfig,
        mlp: MLPConfig,
        norm_eps: float,
        init: WeightInit,
        norm_kernel: str = "auto",
    ) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(hidden_size, norm_eps)
        self.self_attn = attention.build(hidden_size, layer_idx, init)
        self.post_attention_layernorm = RMSNorm(hidden_size, norm_eps, norm_kernel)
        self.mlp = mlp.build(hidden_size, init)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                step: DecodeStep | None = None, documents: torch.Tensor | None = None) -> torch.Tensor:
        """``cache`` and ``step`` only when decoding (``components.kv_cache``); ``documents``: the sample ids of
        packed rows (``components.documents``)."""
        attended = self.self_attn(self.input_layernorm(x), cos, sin, cache, step, documents)
        normed, h = self.post_attention_layernorm(attended, residual=x)
        return h + self.mlp(normed)
