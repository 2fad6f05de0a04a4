"""Steady-state training throughput of the 12.7B preset under FSDP2 at a real batch: tokens/s per GPU, MFU and
peak GPU memory, through ``motif fit`` as a user runs it.

    python -m benchmarks.fsdp2_throughput --devices 2 [--compile] [--steps 4] [--tokens_per_step 1048576]

The run of ``benchmarks.fsdp2_startup`` (12.7B preset, FSDP2 with activation checkpointing per block, MuonClip
with Parallel Muon, bf16, sequences of 4,096 tokens, one per GPU per forward pass), with ``--tokens_per_step``
accumulated per optimizer step. A callback of this module times each optimizer step on every rank (the GPU
synchronised at its end) and prints, for the steps after the first: seconds per step, tokens/s per GPU, MFU
against 989 TFLOP/s (H100/H200 dense bf16) with the FLOPs of ``components.model_size`` (the count of the
dashboard's ``throughput/mfu``; causal half, and the whole-sequence count in brackets) and peak GPU memory.
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
    """Prints ``STEP_TIMES {...}`` on every rank when training ends."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times, self.tokens = [time.perf_counter()], []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        windows, _ = step_tokens(batch)
        self.tokens.append(windows.shape[0] * (windows.shape[1] - 1))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = [b - a for a, b in zip(self.times, self.times[1:])][1:]  # the first step compiles and warms up
        step = statistics.median(seconds)
        per_gpu = statistics.median(self.tokens[1:]) / step
        config = pl_module.transformer_config
        causal, whole = (model_size(config, SEQ, causal=c).flops_per_token for c in (True, False))
        print("STEP_TIMES " + json.dumps({
            "rank": trainer.global_rank, "step_seconds": seconds, "median_step_seconds": step,
            "tokens_per_sec_per_gpu": per_gpu, "mfu": causal * per_gpu / PEAK_FLOPS,
            "mfu_whole_sequence": whole * per_gpu / PEAK_FLOPS,
            "peak_gpu_allocated_gib": torch.cuda.max_memory_allocated() / 2**30}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps (the first is not timed)")
    parser.add_argument("--tokens_per_step", type=int, default=1 << 20)
    parser.add_argument("--root", default="/tmp/motif-throughput")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps: use 2 or more (the first step is not timed)")
    cache = Path(args.root) / "cache"
    from lightning_motif.data.default_corpus import build_default_corpus

    build_default_corpus(cache / "embedded-corpus-v4096-3000000", 4096, 3_000_000)
    command = fit_command(args.devices, args.compile, Path(args.root), cache, max_steps=args.steps,
                          batch_tokens=args.tokens_per_step, callback="benchmarks.fsdp2_throughput.StepTimes")
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    print(result.stdout[-4000:] + result.stderr[-4000:])
    print(f"motif fit exit {result.returncode}; {args.devices} GPUs, compile {args.compile}, "
          f"{args.tokens_per_step:,} tokens per step")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
