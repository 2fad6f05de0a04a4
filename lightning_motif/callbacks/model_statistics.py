"""Logs the model's own scalars (differential-attention lambda, PolyNorm weights) per layer."""

import lightning as L
from lightning.pytorch.callbacks import Callback

from lightning_motif.callbacks.cadence import logging_step


class ModelStatisticsMonitor(Callback):
    """Every ``trainer.log_every_n_steps`` optimizer steps, logs ``model/layer_XX/<name>`` for each scalar the
    LightningModule's ``statistics()`` reports (e.g. ``model/layer_03/lambda``, ``model/layer_03/polynorm_w0_cube``)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        step = logging_step(trainer)
        if step is None or not hasattr(pl_module, "statistics"):
            return
        stats = {f"model/{name}": float(value) for name, value in pl_module.statistics().items()}
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=step)
