"""The Motif-2 decoder-only language model: embed -> blocks -> final norm -> lm_head.

Module names give the state-dict keys of the public Motif-2-12.7B checkpoint (Hugging Face Motif-Technologies/Motif-2-12.7B-Base), e.g.
``model.layers.0.self_attn.q_proj.weight`` and ``lm_head.weight``.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from components.attention.base import AttentionConfig
from components.block import DecoderBlock
from components.config_error import require, require_choices
from components.documents import PackedDocuments
from components.layers import Embedding, LMHead, WeightInit
from kernels.launch import Implementation
from kernels.linear_cross_entropy import LossImplementation
from components.mlp.base import MLPConfig
from components.norms import RMSNorm
from components.kv_cache import DecodeStep, DecodingState
from components.rope import rotary_at, rotary_cos_sin


@dataclass(kw_only=True)
class ModelConfig:
    """Sizes of the transformer and the configs of its swappable parts."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    attention: AttentionConfig
    mlp: MLPConfig
    max_position_embeddings: int = 4096
    rope_theta: float = 1e6
    norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    init_std: float = 0.02
    """Weights are N(0, init_std^2); projections into the residual stream use init_std / sqrt(2 * num_layers)."""
    norm_kernel: Implementation = "auto"
    """The fused residual add + RMSNorm after attention: "auto" (Triton on CUDA, PyTorch elsewhere), "triton",
    "reference"."""
    loss_kernel: LossImplementation = "chunked"
    """How the training loss meets the lm head: "chunked" (fused linear + cross-entropy, no full logits) or
    "reference" (logits, then cross-entropy)."""

    def __post_init__(self) -> None:
        for field in ("vocab_size", "hidden_size", "num_layers", "max_position_embeddings"):
            require(getattr(self, field) >= 1, self, field, "must be a positive integer")
        require(self.rope_theta > 0, self, "rope_theta", "RoPE base must be positive (Motif-2: 1e6)")
        require(self.norm_eps > 0, self, "norm_eps", "use a small positive eps like 1e-6")
        require(self.init_std > 0, self, "init_std", "use a positive standard deviation such as 0.02")
        require_choices(self)

    @property
    def weight_init(self) -> WeightInit:
        return WeightInit(std=self.init_std, output_std=self.init_std / math.sqrt(2 * self.num_layers))


class MotifTransformer(nn.Module):
    """Token embedding, decoder blocks and final norm; returns normalised hidden states."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        init = config.weight_init
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, init.std)
        self.layers = nn.ModuleList(
            DecoderBlock(config.hidden_size, i, config.attention, config.mlp, config.norm_eps, init, config.norm_kernel)
            for i in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.norm_eps)

    def forward(self, input_ids: torch.Tensor, step: DecodeStep | None = None,
                documents: PackedDocuments | None = None) -> torch.Tensor:
        """Hidden states of ``input_ids`` (batch, seq); with ``step`` the tokens continue a decoding cache; with
        ``documents`` each row packs several samples, each attending to itself from position 0."""
        head_dim, theta = self.config.attention.head_dim, self.config.rope_theta
        if step is not None:
            cos, sin = rotary_at(step.positions, head_dim, theta)
        else:
            self._check_positions(input_ids.shape[1])
            if documents is None:
                cos, sin = rotary_cos_sin(input_ids.shape[1], head_dim, theta, input_ids.device)
            else:
                cos, sin = rotary_at(documents.positions, head_dim, theta)
        x = self.embed_tokens(input_ids)
        ids = None if documents is None else documents.ids
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, documents=ids) if step is None else layer(x, cos, sin, step.caches[i], step)
        return self.norm(x)

    def _check_positions(self, length: int) -> None:
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {length} exceeds ModelConfig.max_position_embeddings = "
                f"{self.config.max_position_embeddings}: shorten the sequences or raise max_position_embeddings"
            )


class MotifForCausalLM(nn.Module):
    """Transformer plus ``lm_head`` (a separate matrix unless ``tie_word_embeddings``).

    ``forward(input_ids)`` gives logits; ``forward(input_ids, targets)`` gives the summed next-token
    cross-entropy (fp32) through the lm head's loss kernel, without materialising the logits when chunked (targets
    of -100 count nothing: prompts, padding, and each packed sample's last token). ``documents`` packs samples.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = MotifTransformer(config)
        self.lm_head = LMHead(config.hidden_size, config.vocab_size, config.init_std, config.loss_kernel)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None,
                step: DecodeStep | None = None, documents: PackedDocuments | None = None) -> torch.Tensor:
        return self.lm_head(self.model(input_ids, step, documents), targets)

    def decoding_state(self, batch: int, length: int, dtype: torch.dtype | None = None) -> DecodingState:
        """Empty key/value caches for ``batch`` rows of up to ``length`` tokens (prompt and generation): each
        layer's attention says what one token stores. ValueError if ``length`` passes max_position_embeddings."""
        self.model._check_positions(length)
        weight = self.lm_head.weight
        layouts = [layer.self_attn.cache_layout() for layer in self.model.layers]
        return DecodingState(layouts, batch, length, weight.device, dtype or weight.dtype)

    def statistics(self) -> dict[str, torch.Tensor]:
        """Per-layer scalars of the swappable parts, keyed ``layer_{i:02d}/{name}`` (lambda, PolyNorm weights)."""
        stats = {}
        for i, layer in enumerate(self.model.layers):
            for part in (layer.self_attn, layer.mlp):
                stats.update({f"layer_{i:02d}/{name}": value for name, value in part.statistics().items()})
        return stats
