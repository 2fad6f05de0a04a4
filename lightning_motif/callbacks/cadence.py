"""When and under which step the dashboard callbacks log, aligned with what ``self.log`` writes."""

import lightning as L


def logging_step(trainer: L.Trainer) -> int | None:
    """The step to log under after a training batch, or None between logging points.

    Lightning logs a step's ``self.log`` values under the step's 0-based index, every ``log_every_n_steps``
    optimizer steps; callbacks that write to the loggers directly use the same index, so their curves line
    up with ``train/loss``.
    """
    completed = trainer.global_step
    if completed == 0 or completed % trainer.log_every_n_steps != 0:
        return None
    return completed - 1
