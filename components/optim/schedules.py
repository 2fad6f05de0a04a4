"""Warmup-stable-decay learning-rate schedule (Motif-2 pre-training: peak 4e-4, decayed to 10%; Motif-2-12.7B report, arXiv 2511.07464)."""

import math
from typing import Literal, get_args

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from components.config_error import require, require_choice

DecayShape = Literal["linear", "cosine", "sqrt"]


class WarmupStableDecayLR(LambdaLR):
    """Linear warmup to the peak, constant, then decay to ``final_lr_ratio`` * peak over the last
    ``decay_fraction`` of ``total_steps``; stepped once per optimizer step.

    Shapes of the decay d(t) for progress t in [0, 1]: linear 1 - t, cosine (1 + cos(pi t)) / 2, sqrt 1 - sqrt(t)
    (MiniCPM). The multiplier is final_lr_ratio + (1 - final_lr_ratio) * d(t). Motif's exact warmup and decay
    lengths are not published; these are configurable. ``total_steps`` None: the run's ``trainer.max_steps``
    (``MotifLM`` fills it in), so the schedule follows the run's length unless set.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int | None = None,
        warmup_steps: int = 0,
        decay_fraction: float = 0.2,
        final_lr_ratio: float = 0.1,
        decay_shape: DecayShape = "linear",
        last_epoch: int = -1,
    ) -> None:
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.decay_fraction = decay_fraction
        self.final_lr_ratio = final_lr_ratio
        self.decay_shape = decay_shape
        require(total_steps is not None and total_steps >= 1, self, "total_steps",
                "use the run's number of optimizer steps (trainer.max_steps), or leave it unset under motif fit")
        require(0 <= warmup_steps <= total_steps, self, "warmup_steps", f"must be between 0 and total_steps = {total_steps}")
        require(0.0 <= decay_fraction <= 1.0, self, "decay_fraction", "use a fraction of total_steps in [0, 1]")
        require(0.0 <= final_lr_ratio <= 1.0, self, "final_lr_ratio", "use a fraction of the peak in [0, 1] (Motif-2: 0.1)")
        require_choice(self, "decay_shape", get_args(DecayShape))
        self.decay_steps = round(decay_fraction * total_steps)
        super().__init__(optimizer, self.multiplier, last_epoch)

    def multiplier(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_start = self.total_steps - self.decay_steps
        if step < decay_start or self.decay_steps == 0:
            return 1.0
        t = min(1.0, (step - decay_start) / self.decay_steps)
        decay = {"linear": 1.0 - t, "cosine": 0.5 * (1.0 + math.cos(math.pi * t)), "sqrt": 1.0 - math.sqrt(t)}
        return self.final_lr_ratio + (1.0 - self.final_lr_ratio) * decay[self.decay_shape]
