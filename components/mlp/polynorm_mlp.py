"""PolyNorm-gated MLP of Motif-2 (PolyCom, arXiv 2411.03884, Eq. 3; arXiv 2511.07464): down_proj(PolyNorm(gate_proj(x)) * up_proj(x))."""

from dataclasses import dataclass

import torch
from torch import nn

from components.config_error import require
from components.layers import Linear, WeightInit
from components.mlp.base import MLP, MLPConfig
from kernels.launch import Implementation
from kernels.polynorm import polynorm


class PolyNorm(nn.Module):
    """w0 * N(x^3) + w1 * N(x^2) + w2 * N(x) + b with learnable ``weight`` [3] (init 1/3) and ``bias`` [1] (init 0).

    ``kernel``: "auto" (fused Triton kernels on CUDA, PyTorch elsewhere), "triton" or "reference".
    """

    def __init__(self, eps: float = 1e-6, kernel: str = "auto") -> None:
        super().__init__()
        self.eps = eps
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(3))
        self.bias = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, 1.0 / 3.0)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
        """PolyNorm(x), or PolyNorm(x) * up in one fused pass when ``up`` is given."""
        return polynorm(x, self.weight, self.bias, self.eps, up=up, impl=self.kernel)


@dataclass(kw_only=True)
class PolyNormMLPConfig(MLPConfig):
    """Gated MLP whose gate goes through PolyNorm (``act_fn`` in the public checkpoint)."""

    eps: float = 1e-6
    kernel: Implementation = "auto"
    """"auto": the fused Triton PolyNorm-times-up kernels on CUDA and PyTorch elsewhere; "triton"; "reference"."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.eps > 0, self, "eps", "PolyNorm divides by sqrt(mean + eps): use a small positive eps like 1e-6")

    def build(self, hidden_size: int, init: WeightInit) -> "PolyNormMLP":
        return PolyNormMLP(hidden_size, self.intermediate_size, self.eps, self.kernel, init)


class PolyNormMLP(MLP):
    def __init__(self, hidden_size: int, intermediate_size: int, eps: float, kernel: str, init: WeightInit) -> None:
        super().__init__()
        self.gate_proj = Linear(hidden_size, intermediate_size, init.std)
        self.up_proj = Linear(hidden_size, intermediate_size, init.std)
        self.down_proj = Linear(intermediate_size, hidden_size, init.output_std)
        self.act_fn = PolyNorm(eps, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x), up=self.up_proj(x)))

    def statistics(self) -> dict[str, torch.Tensor]:
        w, b = self.act_fn.weight.detach(), self.act_fn.bias.detach()
        return {"polynorm_w0_cube": w[0], "polynorm_w1_square": w[1], "polynorm_w2_linear": w[2], "polynorm_bias": b[0]}
