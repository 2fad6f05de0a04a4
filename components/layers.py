"""Bias-free Linear and Embedding with the explicit normal initialisation the model config asks for.

Each module owns its ``reset_parameters`` so that a model built on the meta device and materialised
module by module (as FSDP2 set-up does) gets the same initialisation as one built directly.
"""

from dataclasses import dataclass

import torch
from torch import nn

from kernels.linear_cross_entropy import linear_cross_entropy


@dataclass(frozen=True)
class WeightInit:
    """Standard deviations for N(0, std^2) weight initialisation.

    ``output_std`` applies to projections that write into the residual stream (o_proj, down_proj); the
    common choice std / sqrt(2 * num_layers) keeps the residual variance bounded with depth (GPT-2).
    """

    std: float
    output_std: float


class Linear(nn.Linear):
    """``nn.Linear`` without bias, initialised N(0, init_std^2)."""

    def __init__(self, in_features: int, out_features: int, init_std: float) -> None:
        self.init_std = init_std
        super().__init__(in_features, out_features, bias=False)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, mean=0.0, std=self.init_std)


class Embedding(nn.Embedding):
    """``nn.Embedding`` initialised N(0, init_std^2)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float) -> None:
        self.init_std = init_std
        super().__init__(num_embeddings, embedding_dim)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, mean=0.0, std=self.init_std)


def count_parameters(module: nn.Module) -> int:
    """Number of distinct parameters (a tied weight counts once); works on the meta device."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())





class LMHead(Linear):
    """The output projection; given targets, it returns the summed next-token cross-entropy instead of logits,
    through ``kernels.linear_cross_entropy`` ("chunked": the logits of all tokens never exist at once)."""

    def __init__(self, hidden_size: int, vocab_size: int, init_std: float, loss_kernel: str = "chunked") -> None:
        super().__init__(hidden_size, vocab_size, init_std)
        self.loss_kernel = loss_kernel

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if targets is None:
            return super().forward(hidden)
        weight = self.weight
        if torch.is_autocast_enabled(hidden.device.type):  # as autocast would run the matmul: both in its dtype
            dtype = torch.get_autocast_dtype(hidden.device.type)
            hidden, weight = hidden.to(dtype), weight.to(dtype)
        return linear_cross_entropy(hidden.flatten(0, -2), weight, targets.flatten(), impl=self.loss_kernel)
