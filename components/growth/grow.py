"""Growing a trained model into a larger one that computes the same function: width by HyperCloning (arXiv
2409.12903), then depth by LLaMA-Pro block expansion (arXiv 2401.02415), as the Motif-2-12.7B report (arXiv
2511.07464, Sec. 3) grew Motif-2.6B into 12.7B, with GDA introduced at the width step. The report publishes the
methods, not the mapping: every choice here (copy order, where blocks go, the lambda_init compensation, the noise)
is ours and configurable.

``check_growth`` refuses, before any tensor is touched, a target the source cannot reach function-preservingly;
``grow`` maps a state dict (Hugging Face names) of the source to one of the target.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from components.attention.differential_base import DifferentialConfig
from components.config_error import ConfigError, require
from components.growth.depth import grow_depth, layer_plan
from components.growth.heads import HeadMap, head_map, whole_multiple
from components.growth.width import grow_width
from components.model import ModelConfig

SAME = ("vocab_size", "rope_theta", "norm_eps")
"""Fields a grown model keeps: they change what every unit computes, not how many units there are."""


@dataclass(kw_only=True)
class GrowthConfig:
    """How a model grows (the target's sizes come from its own model config)."""

    insert_after: list[int] | None = None
    """Source layers after which a copy is inserted (one entry per new layer; a layer may repeat). Default:
    LLaMA-Pro's, a copy after the last layer of each of (new layers) equal groups."""
    noise: float = 0.0
    """Symmetry-breaking noise on the cloned matrices, as a fraction of each source matrix's standard deviation;
    it cancels between copies, so the function is kept (0: copies stay identical until training tells them apart,
    which for exact copies it never does)."""
    seed: int = 0
    """Seed of the noise."""

    def __post_init__(self) -> None:
        require(self.noise >= 0, self, "noise", "use 0 (no noise) or a small positive fraction such as 0.01")


@dataclass(frozen=True)
class GrowthPlan:
    """What ``grow`` will do, checked: the head copy map and, per target layer, its source layer."""

    heads: HeadMap
    layers: list[tuple[int, bool]]
    width: int
    ffn: int


def check_growth(source: ModelConfig, target: ModelConfig, config: GrowthConfig) -> GrowthPlan:
    """The plan, or a ConfigError (one line naming what cannot grow) when ``target`` is out of reach."""
    for field in SAME:
        if getattr(source, field) != getattr(target, field):
            raise ConfigError("GrowthConfig", "target", f"{field} {getattr(source, field)} -> "
                              f"{getattr(target, field)}", "a grown model keeps this field: use the source's value")
    if type(source.mlp) is not type(target.mlp) or getattr(source.mlp, "eps", None) != getattr(target.mlp, "eps", None):
        raise ConfigError("GrowthConfig", "target", f"{source.mlp} -> {target.mlp}",
                          "the MLP keeps its kind (and PolyNorm its eps): grow within one MLP kind")
    if target.tie_word_embeddings and not source.tie_word_embeddings:
        raise ConfigError("GrowthConfig", "target", "tie_word_embeddings false -> true",
                          "an untied source's lm_head cannot become its embedding: grow to an untied target")
    width = whole_multiple(target.hidden_size, source.hidden_size, "hidden_size")
    ffn = whole_multiple(target.mlp.intermediate_size, source.mlp.intermediate_size, "mlp.intermediate_size")
    heads = head_map(source.attention, target.attention)
    layers = layer_plan(source.num_layers, target.num_layers, config.insert_after)
    return GrowthPlan(heads=heads, layers=layers, width=width, ffn=ffn)


def grow(state: dict[str, torch.Tensor], source: ModelConfig, target: ModelConfig, config: GrowthConfig,
         on_layer: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """The target's state dict (Hugging Face names) from the source's: width, then depth; ``on_layer`` is called
    after each source layer is widened (progress)."""
    plan = check_growth(source, target, config)
    generator = torch.Generator().manual_seed(config.seed)
    wide = grow_width(state, source, target, plan.heads, config.noise, generator, on_layer)

    def schedule(attention):
        return attention.lambda_init_schedule if isinstance(attention, DifferentialConfig) else None
    return grow_depth(wide, plan.layers, schedule(source.attention), schedule(target.attention))
