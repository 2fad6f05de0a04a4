"""SwiGLU MLP (Shazeer 2020): down_proj(silu(gate_proj(x)) * up_proj(x)), the ablation baseline."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from components.layers import Linear, WeightInit
from components.mlp.base import MLP, MLPConfig


@dataclass(kw_only=True)
class SwiGLUConfig(MLPConfig):
    """Gated MLP with a SiLU gate."""

    def build(self, hidden_size: int, init: WeightInit) -> "SwiGLU":
        return SwiGLU(hidden_size, self.intermediate_size, init)


class SwiGLU(MLP):
    def __init__(self, hidden_size: int, intermediate_size: int, init: WeightInit) -> None:
        super().__init__()
        self.gate_proj = Linear(hidden_size, intermediate_size, init.std)
        self.up_proj = Linear(hidden_size, intermediate_size, init.std)
        self.down_proj = Linear(intermediate_size, hidden_size, init.output_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
