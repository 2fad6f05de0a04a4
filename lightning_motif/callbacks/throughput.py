"""Training throughput in tokens per second, with validation time excluded."""

import time

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput
from lightning.pytorch.callbacks import Callback


class TokenThroughputMonitor(Callback):
    """Logs ``throughput/tokens_per_sec`` (all ranks), ``throughput/tokens_per_sec_per_device`` and
    ``throughput/tokens_seen`` every ``trainer.log_every_n_steps`` optimizer steps.

    Rates are averaged over the last ``window`` logging points with Lightning's ``Throughput``; the device is
    synchronised only at those points. A batch is (batch, seq_len + 1) and trains on batch * seq_len tokens.
    """

    def __init__(self, window: int = 5) -> None:
        self.window = window
        self._throughput: Throughput | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._throughput = Throughput(window_size=self.window, world_size=trainer.world_size)
        self._batches = self._samples = self._tokens = 0
        self._paused = 0.0
        self._last_logged_step = -1
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
        self._batches += 1
        self._samples += batch.shape[0]
        self._tokens += batch.shape[0] * (batch.shape[1] - 1)
        step = trainer.global_step
        if step % trainer.log_every_n_steps != 0 or step == self._last_logged_step:
            return
        self._last_logged_step = step
        self._throughput.update(time=self._now(pl_module), batches=self._batches, samples=self._samples,
                                lengths=self._tokens)
        metrics = self._throughput.compute()
        logged = {"throughput/tokens_seen": float(self._tokens * trainer.world_size)}
        if "device/items_per_sec" in metrics:
            per_device = metrics["device/items_per_sec"]
            logged.update({"throughput/tokens_per_sec_per_device": per_device,
                           "throughput/tokens_per_sec": per_device * trainer.world_size})
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=step)
