"""Parameter counts and training FLOPs per token of a model config, for tables and for MFU.

FLOPs follow the convention of the PaLM paper (arXiv 2204.02311, App. B), also torchtitan's: a training step costs
3x the forward (forward + two backward matmuls), the forward 2 FLOPs per multiply-add; every matmul weight counts
(the lm_head too, tied or not; the token embedding is a lookup and does not), and attention adds its q.k and
value work against the whole sequence. ``causal=True`` counts only the keys a query sees under the causal mask,
(T + 1) / 2 on average: the work a kernel that skips masked blocks does.
"""

from dataclasses import dataclass

import torch
from torch import nn

from components.layers import count_parameters
from components.model import MotifForCausalLM, ModelConfig


@dataclass(frozen=True)
class ModelSize:
    parameters: int
    """Every trained parameter (a tied lm_head once)."""
    embedding_parameters: int
    """The token embedding (vocab_size x hidden_size)."""
    matmul_parameters: int
    """Weights of the linear layers a token passes through: the blocks' projections and the lm_head."""
    flops_per_token: int
    """Training FLOPs (forward + backward) per token at the sequence length asked for."""

    @property
    def non_embedding_parameters(self) -> int:
        return self.parameters - self.embedding_parameters


def model_size(config: ModelConfig, seq_len: int, causal: bool = False) -> ModelSize:
    """Counts on a copy built on the meta device (no memory), so any size works, sharded or not."""
    with torch.device("meta"):
        model = MotifForCausalLM(config)
    parameters = count_parameters(model)
    embedding = config.vocab_size * config.hidden_size
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))  # lm_head is one
    attention = config.num_layers * config.attention.context_macs_per_token(seq_len)
    if causal:
        attention = attention * (seq_len + 1) / (2 * seq_len)
    return ModelSize(parameters, embedding, matmul, round(6 * (matmul + attention)))
