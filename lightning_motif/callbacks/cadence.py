"""The one step axis of every training scalar, and when the dashboard callbacks log on it.

Lightning logs a batch's ``self.log`` values under the batch's 0-based index in the training stream, counting
every batch, also one whose optimizer step was skipped as non-finite (so it can differ from
``trainer.global_step``, which counts optimizer steps); its LearningRateMonitor uses the same index. The
callbacks and messages here use it too, so all curves and messages share one axis, which a resumed run
continues (Lightning saves it in the checkpoint).
"""

import lightning as L


def training_batch_index(trainer: L.Trainer) -> int:
    """0-based index of the current training batch (during its hooks), or of the next one (between batches)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def logging_step(trainer: L.Trainer) -> int | None:
    """The step to log under after a training batch, or None between logging points (every
    ``trainer.log_every_n_steps`` batches, as Lightning logs ``self.log`` values)."""
    step = training_batch_index(trainer)
    return step if (step + 1) % trainer.log_every_n_steps == 0 else None
