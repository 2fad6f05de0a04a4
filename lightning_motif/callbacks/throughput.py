"""Training throughput in tokens per second, with validation time excluded."""

import time

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput
from lightning.pytorch.callbacks import Callback

from lightning_motif.callbacks.cadence import logging_step

from lightning_motif.data.batch import step_tokens


class TokenThroughputMonitor(Callback):
    """Logs ``throughput/tokens_per_sec`` (all ranks) and ``throughput/tokens_per_sec_per_device`` every
    ``trainer.log_every_n_steps`` optimizer steps (``curriculum/tokens_seen`` counts the tokens themselves).

    Rates are averaged over the last ``window`` logging points with Lightning's ``Throughput``; the device is
    synchronised only at those points. A step's windows (sequences, seq_len + 1) train on sequences * seq_len tokens.
    """

    def __init__(self, window: int = 5) -> None:
        self.window = window
        self._throughput: Throughput | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._throughput = Throughput(window_size=self.window, world_size=trainer.world_size)
        self._batches = self._samples = self._tokens = 0
        self._paused = 0.0
        self._start = time.perf_counter()

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter() - self._start - self._paused

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._throughput is not None:
            self._paused += time.perf_counter() - self._validation_started

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        windows, _ = step_tokens(batch)
        self._batches += 1
        self._samples += windows.shape[0]
        self._tokens += windows.shape[0] * (windows.shape[1] - 1)
        step = logging_step(trainer)
        if step is None:
            return
        self._throughput.update(time=self._now(pl_module), batches=self._batches, samples=self._samples,
                                lengths=self._tokens)
        metrics = self._throughput.compute()
        if "device/items_per_sec" not in metrics:
            return
        per_device = metrics["device/items_per_sec"]
        logged = {"throughput/tokens_per_sec_per_device": per_device, "throughput/tokens_per_sec": per_device * trainer.world_size}
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=step)
