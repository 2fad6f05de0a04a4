"""Training throughput in tokens per second and model FLOP/s (MFU), with validation time excluded."""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.distributed import ReduceOp

from components.documents import segments
from components.model_size import model_size
from lightning_motif.callbacks.cadence import logging_step
from lightning_motif.data.batch import is_packed_sft, step_tokens

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "H20": 148e12, "A100": 312e12, "L40S": 362e12, "B200": 2250e12}
"""Dense bf16 tensor-core peaks (vendor datasheets, without sparsity), matched against the CUDA device name."""


def peak_flops(device: torch.device) -> float | None:
    """The bf16 peak of a known CUDA device; None elsewhere (then no MFU is logged)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    matches = [key for key in PEAK_BF16_FLOPS if key in name]
    return PEAK_BF16_FLOPS[max(matches, key=len)] if matches else None


def step_model_flops(batch: dict | torch.Tensor, flops_per_token: Callable[[int], float]) -> float:
    """Model FLOPs of a training step's batch: each window at its length, or in packed SFT rows each sample at its
    own length (its attention spans that sample only; padding counts as a sample, since it is computed)."""
    windows, _ = step_tokens(batch)
    if not is_packed_sft(batch):
        return windows.shape[0] * (windows.shape[1] - 1) * flops_per_token(windows.shape[1] - 1)
    return sum((end - start) * flops_per_token(end - start) for row in segments(batch["documents"]) for start, end in row)


@dataclass(frozen=True)
class Rates:
    """Per-device rates between two logging points."""

    steps_per_sec: float
    tokens_per_sec: float
    flops_per_sec: float


class RateWindow:
    """The last ``size`` logging points (time, optimizer steps, tokens and FLOPs so far on this device); rates over
    the span from the oldest to the newest, from the second point on (a run of large, slow steps shows its rates at
    its second logging point, not after a full window)."""

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"window: {size} logging points cannot span an interval; use 2 or more")
        self._points: deque[tuple[float, int, int, float]] = deque(maxlen=size)

    def add(self, seconds: float, steps: int, tokens: int, flops: float) -> Rates | None:
        self._points.append((seconds, steps, tokens, flops))
        if len(self._points) < 2:
            return None
        (t0, steps0, tokens0, flops0), (t1, steps1, tokens1, flops1) = self._points[0], self._points[-1]
        elapsed = t1 - t0
        return Rates((steps1 - steps0) / elapsed, (tokens1 - tokens0) / elapsed, (flops1 - flops0) / elapsed)


class TokenThroughputMonitor(Callback):
    """Logs ``throughput/tokens_per_sec`` (all ranks), ``throughput/tokens_per_sec_per_device``,
    ``throughput/model_tflops_per_device`` and, on a GPU of known peak (``PEAK_BF16_FLOPS``, or ``peak_flops``),
    ``throughput/mfu``, and ``throughput/step_seconds`` (wall time per optimizer step) every
    ``trainer.log_every_n_steps`` optimizer steps (``curriculum/tokens_seen`` counts the tokens themselves); on GPUs
    also ``memory/peak_allocated_gib`` (this process) and ``memory/peak_allocated_gib_max`` (the largest over the
    ranks), the peak since the run started. At the start it logs the model's size: ``model/parameters``,
    ``model/non_embedding_parameters`` and ``model/flops_per_token`` (training FLOPs at the longest sequence;
    ``components.model_size`` says how they are counted).

    Model FLOPs follow ``step_model_flops`` (packed SFT rows: each sample at its own length, since its attention
    spans only that sample). Rates are averaged over the last ``window`` logging points (``RateWindow``), logged
    from the second point on; the device is synchronised only at those points. A step's windows (sequences,
    seq_len + 1) train on sequences * seq_len tokens.
    """

    def __init__(self, window: int = 5, peak_flops: float | None = None) -> None:
        RateWindow(window)  # a bad window stops the run before it starts
        self.window = window
        self.peak_flops = peak_flops
        self._rates: RateWindow | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        config = pl_module.transformer_config
        self._flops_per_token = cache(lambda seq_len: model_size(config, seq_len).flops_per_token)
        longest = getattr(trainer.datamodule, "seq_len", None) or config.max_position_embeddings
        size = model_size(config, longest)
        for logger in trainer.loggers:
            logger.log_metrics({"model/parameters": float(size.parameters),
                                "model/non_embedding_parameters": float(size.non_embedding_parameters),
                                "model/flops_per_token": float(size.flops_per_token)}, step=trainer.global_step)
        self._peak = self.peak_flops or peak_flops(pl_module.device)
        self._rates = RateWindow(self.window)
        self._steps = self._tokens = self._flops = 0
        self._paused = 0.0
        self._start = time.perf_counter()

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter() - self._start - self._paused

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._rates is not None:
            self._paused += time.perf_counter() - self._validation_started

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        windows, _ = step_tokens(batch)
        self._steps += 1
        self._tokens += windows.shape[0] * (windows.shape[1] - 1)
        self._flops += step_model_flops(batch, self._flops_per_token)
        step = logging_step(trainer)
        if step is None:
            return
        rates = self._rates.add(self._now(pl_module), self._steps, self._tokens, self._flops)
        if rates is None:
            return
        logged = {"throughput/tokens_per_sec_per_device": rates.tokens_per_sec,
                  "throughput/tokens_per_sec": rates.tokens_per_sec * trainer.world_size,
                  "throughput/model_tflops_per_device": rates.flops_per_sec / 1e12,
                  "throughput/step_seconds": 1.0 / rates.steps_per_sec}
        if self._peak:
            logged["throughput/mfu"] = rates.flops_per_sec / self._peak
        if pl_module.device.type == "cuda":
            peak = torch.tensor(torch.cuda.max_memory_allocated(pl_module.device) / 2**30, device=pl_module.device)
            logged["memory/peak_allocated_gib"] = peak.item()
            logged["memory/peak_allocated_gib_max"] = trainer.strategy.reduce(peak, reduce_op=ReduceOp.MAX).item()
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=step)
