"""What differential and grouped differential attention share: their config fields, lambda, the sub-norm and
the combine.

Differential Transformer (arXiv 2410.05258), Eq. 1-3, as used by Motif-2 (Motif-2-12.7B report, arXiv 2511.07464):
  A = softmax(Q1 K1^T / sqrt(d)) - lambda * softmax(Q2 K2^T / sqrt(d)),  out = A V
  lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init
  head_out = (1 - lambda_init) * subln(out)
with lambda_init(l) for the 0-based layer index l either as the released Motif-2 models compute it,
0.8 - 0.6 exp(-0.3 (l - 1)) (layer 0: -0.0099, layer 1: 0.2), or as the Differential Transformer paper's code
does (Sec. 2.1), 0.8 - 0.6 exp(-0.3 l). Since A V = softmax(Q1 K1^T) V - lambda * softmax(Q2 K2^T) V, each branch
is one SDPA call.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from components.attention.base import Attention, AttentionConfig
from components.norms import RMSNorm
from kernels.differential_combine import differential_combine
from kernels.precision import compute_dtype, widened

LAMBDA_VECTOR_STD = 0.1
LambdaInitSchedule = Literal["motif", "diff_transformer"]


def lambda_init(layer_idx: int, schedule: LambdaInitSchedule = "motif") -> float:
    """lambda_init for the 0-based layer index: "motif" 0.8 - 0.6 exp(-0.3 (l - 1)) (the released Motif-2
    models), "diff_transformer" 0.8 - 0.6 exp(-0.3 l) (arXiv 2410.05258, Sec. 2.1)."""
    shift = 1 if schedule == "motif" else 0
    return 0.8 - 0.6 * math.exp(-0.3 * (layer_idx - shift))


@dataclass(kw_only=True)
class DifferentialConfig(AttentionConfig):
    """Fields of both differential attentions."""

    subln_eps: float = 1e-5
    """eps of the per-head sub-norm (the released config.json's attn_rms_norm_eps)."""
    lambda_init_schedule: LambdaInitSchedule = "motif"
    """lambda_init by layer: "motif" as the released Motif-2 models compute it (0.8 - 0.6 exp(-0.3 (l - 1))),
    "diff_transformer" as the Differential Transformer paper (0.8 - 0.6 exp(-0.3 l)); l is 0-based."""


class DifferentialAttentionBase(Attention):
    """Owns the re-parameterised lambda (one per layer, shared by all heads) and the per-head sub-norm.

    Parameter names follow the public Motif-2 checkpoint: ``lambda_q1, lambda_k1, lambda_q2, lambda_k2``
    (fp32 vectors of size head_dim, init N(0, 0.1^2)) and ``subln.weight`` (size 2 * head_dim).
    """

    def __init__(self, config: DifferentialConfig, layer_idx: int) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.kernel = config.kernel
        self.layer_idx = layer_idx
        self.lambda_init_schedule = config.lambda_init_schedule
        # a tensor, not a Python float: torch.compile guards on float attributes, so a float that differs per
        # layer would compile every block separately; fp32 (fp64 in a model built under an fp64 default dtype);
        # not persistent, so state dicts keep the checkpoint's names
        self.register_buffer("lambda_init", torch.empty((), dtype=compute_dtype(torch.empty(()))), persistent=False)
        self.lambda_q1 = nn.Parameter(torch.empty(self.head_dim, dtype=torch.float32))
        self.lambda_k1 = nn.Parameter(torch.empty(self.head_dim, dtype=torch.float32))
        self.lambda_q2 = nn.Parameter(torch.empty(self.head_dim, dtype=torch.float32))
        self.lambda_k2 = nn.Parameter(torch.empty(self.head_dim, dtype=torch.float32))
        self.subln = RMSNorm(2 * self.head_dim, eps=config.subln_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lambda_init.fill_(lambda_init(self.layer_idx, self.lambda_init_schedule))
        for vector in (self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2):
            nn.init.normal_(vector, mean=0.0, std=LAMBDA_VECTOR_STD)

    def lambda_value(self) -> torch.Tensor:
        """lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init, an fp32 scalar."""
        first = torch.exp(torch.sum(widened(self.lambda_q1) * widened(self.lambda_k1)))
        second = torch.exp(torch.sum(widened(self.lambda_q2) * widened(self.lambda_k2)))
        return first - second + self.lambda_init

    def combine(self, signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(1 - lambda_init) * subln(signal - lambda * noise), per head over its 2 * head_dim values.

        ``signal`` is (batch, seq, signal_heads, 2 * head_dim) and ``noise`` (batch, seq, noise_heads, ...);
        signal head h subtracts noise head h // (signal_heads / noise_heads). Returns (batch, seq,
        signal_heads * 2 * head_dim) for o_proj, through ``kernels.differential_combine`` (``kernel``).
        """
        output_weight = self.subln.weight * (1.0 - self.lambda_init)
        return differential_combine(signal, noise, self.lambda_value(), output_weight, self.subln.eps, impl=self.kernel)

    def statistics(self) -> dict[str, torch.Tensor]:
        return {"lambda": self.lambda_value().detach(), **super().statistics()}
