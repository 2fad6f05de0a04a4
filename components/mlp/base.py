"""The MLP interface: a typed config that builds a module mapping (..., hidden) to (..., hidden)."""

from dataclasses import dataclass

import torch
from torch import nn

from components.config_error import require, require_choices
from components.layers import WeightInit


@dataclass(kw_only=True)
class MLPConfig:
    """Fields every gated MLP takes; subclasses choose the implementation (YAML ``class_path``)."""

    intermediate_size: int = 16384

    def __post_init__(self) -> None:
        require(self.intermediate_size >= 1, self, "intermediate_size", "use a positive FFN width")
        require_choices(self)

    def build(self, hidden_size: int, init: WeightInit) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} does not build an MLP")


class MLP(nn.Module):
    """A position-wise feed-forward block; ``statistics`` exposes scalars worth logging."""

    def statistics(self) -> dict[str, torch.Tensor]:
        return {}
