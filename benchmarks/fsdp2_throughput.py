"""Steady-state training throughput of a preset (the 12.7B by default) under FSDP2 at a real batch: tokens/s per
GPU, MFU, peak GPU memory and the optimizer's exposed time, through ``motif fit`` as a user runs it.

    python -m benchmarks.fsdp2_throughput --devices 2 [--compile] [--steps 3] [--tokens_per_step 1048576]
        [--preset motif-2-12.7b]

The run of ``benchmarks.fsdp2_startup`` (FSDP2 with activation checkpointing per block, MuonClip with Parallel
Muon, bf16, sequences of 4,096 tokens, one per GPU per forward pass), with ``--tokens_per_step`` accumulated per
optimizer step and the dashboard's ``TokenThroughputMonitor``. A callback of this module times each optimizer step
on every rank (the GPU synchronised at its end) and the optimizer's step alone (synchronised before and after: the
time the optimizer adds to a step, Parallel Muon's communication included), and prints, for the steps after the
first: seconds per step, tokens/s per GPU, MFU against 989 TFLOP/s (H100/H200 dense bf16) with the FLOPs of
``components.model_size`` (the count of the dashboard's ``throughput/mfu``; causal half, and the whole-sequence
count in brackets) and peak GPU memory. Then it prints the throughput and memory tags the run logged to
TensorBoard, to check the dashboard against the callback.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.fsdp2_startup import REPO, fit_command
from components.model_size import model_size
from lightning_motif.data.batch import step_tokens

PEAK_FLOPS = 989e12
SEQ = 4096


class StepTimes(Callback):
    """Prints ``STEP {...}`` on every rank after each optimizer step and ``STEP_TIMES {...}`` when training ends;
    with ``profile_step``, rank 0 also prints torch.profiler's table of that step's kernels."""

    def __init__(self, profile_step: int | None = None) -> None:
        self.profile_step = profile_step
        self._profiler = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times, self.tokens, self.optimizer_seconds = [time.perf_counter()], [], []
        optimizer = trainer.optimizers[0]
        optimizer.register_step_pre_hook(self._optimizer_starts)
        optimizer.register_step_post_hook(self._optimizer_ends)

    def _optimizer_starts(self, optimizer, args, kwargs) -> None:
        torch.cuda.synchronize()
        self._optimizer_started = time.perf_counter()

    def _optimizer_ends(self, optimizer, args, kwargs) -> None:
        torch.cuda.synchronize()
        self.optimizer_seconds.append(time.perf_counter() - self._optimizer_started)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == self.profile_step and trainer.global_rank == 0:
            from torch.profiler import ProfilerActivity, profile

            self._profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self._profiler.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        windows, _ = step_tokens(batch)
        self.tokens.append(windows.shape[0] * (windows.shape[1] - 1))
        print("STEP " + json.dumps({"rank": trainer.global_rank, "step": batch_idx,
                                    "seconds": self.times[-1] - self.times[-2],
                                    "optimizer_seconds": self.optimizer_seconds[-1] if self.optimizer_seconds else None,
                                    "tokens": self.tokens[-1]}),
              flush=True)
        if self._profiler is not None:
            self._profiler.__exit__(None, None, None)
            print(self._profiler.key_averages().table(sort_by="self_device_time_total", row_limit=30,
                                                      max_name_column_width=70), flush=True)
            self._profiler = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = [b - a for a, b in zip(self.times, self.times[1:])][1:]  # the first step compiles and warms up
        step = statistics.median(seconds)
        per_gpu = statistics.median(self.tokens[1:]) / step
        config = pl_module.transformer_config
        causal, whole = (model_size(config, SEQ, causal=c).flops_per_token for c in (True, False))
        print("STEP_TIMES " + json.dumps({
            "rank": trainer.global_rank, "step_seconds": seconds, "median_step_seconds": step,
            "median_optimizer_seconds": statistics.median(self.optimizer_seconds[1:]),
            "tokens_per_sec_per_gpu": per_gpu, "mfu": causal * per_gpu / PEAK_FLOPS,
            "mfu_whole_sequence": whole * per_gpu / PEAK_FLOPS,
            "peak_gpu_allocated_gib": torch.cuda.max_memory_allocated() / 2**30}), flush=True)


def logged_scalars(root: Path) -> dict[str, list[float]]:
    """The throughput and memory tags of the run's TensorBoard events under ``root``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for events in sorted(root.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            if tag.startswith(("throughput/", "memory/", "model/")):
                found[tag] = [round(event.value, 4) for event in accumulator.Scalars(tag)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (the first is not timed)")
    parser.add_argument("--tokens_per_step", type=int, default=1 << 20)
    parser.add_argument("--preset", default="motif-2-12.7b", help="a file of experiments/presets, without .yaml")
    parser.add_argument("--profile_step", type=int, default=None, help="print torch.profiler's table of this step")
    parser.add_argument("--root", default="/tmp/motif-throughput")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps: use 2 or more (the first step is not timed)")
    if not (REPO / f"experiments/presets/{args.preset}.yaml").exists():
        parser.error(f"--preset: no experiments/presets/{args.preset}.yaml")
    cache = Path(args.root) / "cache"
    from lightning_motif.data.default_corpus import build_default_corpus

    build_default_corpus(cache / "embedded-corpus-v4096-3000000", 4096, 3_000_000)
    run_root = Path(args.root) / f"{args.preset}-{args.devices}gpu{'-compiled' if args.compile else ''}"
    command = fit_command(args.devices, args.compile, run_root, cache, max_steps=args.steps,
                          batch_tokens=args.tokens_per_step, preset=args.preset, callback=json.dumps(
                              {"class_path": "benchmarks.fsdp2_throughput.StepTimes",
                               "init_args": {"profile_step": args.profile_step}}))
    command.append("--trainer.callbacks+=lightning_motif.callbacks.TokenThroughputMonitor")  # the dashboard's tags
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(command, cwd=REPO, env=env)  # its output streams through, also if it is cut short
    print(f"motif fit exit {result.returncode}; {args.preset}, {args.devices} GPUs, compile {args.compile}, "
          f"{args.tokens_per_step:,} tokens per step")
    print("TENSORBOARD " + json.dumps(logged_scalars(run_root)))
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
