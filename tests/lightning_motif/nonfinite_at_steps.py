"""``motif`` with the training loss patched to be NaN for the training batches at the (0-based) curriculum stream
steps listed in ``MOTIF_NAN_STEPS`` (comma-separated), to watch the non-finite policy; keyed on the stream step,
so a resumed run meets the NaN where an uninterrupted one does.

    python nonfinite_at_steps.py fit --config ...   (used by test_nonfinite.py)
"""

import os

from lightning_motif.cli import main
from lightning_motif.module import MotifLM

NAN_STEPS = {int(step) for step in os.environ["MOTIF_NAN_STEPS"].split(",")}
loss_sum, training_step = MotifLM._loss_sum, MotifLM.training_step


def remember_batch(self, batch, batch_idx):
    self.nan_batch = batch["curriculum"]["step"] in NAN_STEPS
    return training_step(self, batch, batch_idx)


def nan_in_chosen_batches(self, windows, *packed):
    loss = loss_sum(self, windows, *packed)
    return loss * float("nan") if self.training and getattr(self, "nan_batch", False) else loss


MotifLM.training_step, MotifLM._loss_sum = remember_batch, nan_in_chosen_batches

if __name__ == "__main__":
    main()
