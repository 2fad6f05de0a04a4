"""Start-up of the 12.7B preset under FSDP2: seconds from ``motif fit`` launch to the end of the first optimizer
step, and peak host memory (RSS) per process.

    python -m benchmarks.fsdp2_startup --devices 2 [--compile]

Builds the embedded corpus first (not timed), then launches ``motif fit`` with the quickstart's data and
MuonClip, the 12.7B preset (``experiments/presets/motif-2-12.7b.yaml``), FSDP2 over ``--devices`` GPUs with
activation checkpointing per block (``experiments/strategies/fsdp2-large.yaml``; compile per block with
``--compile``), sequences of 4,096 tokens, one per GPU, and no checkpoint callback. A callback of this module
prints each rank's numbers after its first optimizer step. Run from the repository root (with the repository on
PYTHONPATH, which Lightning's launcher hands to the other ranks).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
LAUNCH_TIME = "MOTIF_BENCH_LAUNCH_TIME"


class FirstStepReport(Callback):
    """Prints ``FIRST_STEP {...}`` on every rank when its first optimizer step ends."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step != 1:
            return
        torch.cuda.synchronize()
        report = {
            "rank": trainer.global_rank,
            "seconds_from_launch": time.time() - float(os.environ[LAUNCH_TIME]),
            "peak_host_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "peak_gpu_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
        }
        print("FIRST_STEP " + json.dumps(report), flush=True)


def fit_command(devices: int, compile_blocks: bool, root: Path, cache: Path, max_steps: int, batch_tokens: int,
                callback: str, preset: str = "motif-2-12.7b") -> list[str]:
    """``motif fit`` of a preset (the 12.7B by default) under FSDP2 (activation checkpointing per block, compile
    per block if asked) on the embedded corpus in ``cache``: sequences of 4,096 tokens, one per GPU per forward
    pass, ``batch_tokens`` per optimizer step (accumulated), no validation or checkpoints, ``callback`` reporting."""
    return [
        sys.executable, "-m", "lightning_motif.cli", "fit",
        "--config", str(REPO / "experiments/quickstart.yaml"),
        "--config", str(REPO / "experiments/strategies/fsdp2-large.yaml"),
        "--model.transformer", str(REPO / f"experiments/presets/{preset}.yaml"),
        f"--model.parallelism.compile={str(compile_blocks).lower()}",
        "--trainer.accelerator=gpu", f"--trainer.devices={devices}", f"--trainer.max_steps={max_steps}",
        "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=1",
        "--trainer.callbacks=[]", f"--trainer.callbacks+={callback}",
        "--trainer.enable_checkpointing=false", "--model.lr_scheduler.init_args.warmup_steps=0",
        f"--trainer.default_root_dir={root}", f"--trainer.logger.init_args.save_dir={root}",
        f"--data.init_args.cache_dir={cache}", "--data.init_args.micro_batch_tokens=4096",
        "--data.init_args.val_seq_len=4096", f"--data.init_args.schedule.batch_multiple={devices}",
        "--data.init_args.schedule.seq_len=[{tokens: 0, value: 4096}]",
        f"--data.init_args.schedule.batch_tokens=[{{tokens: 0, value: {batch_tokens}}}]",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--root", default="/tmp/motif-startup")
    args = parser.parse_args()
    cache = Path(args.root) / "cache"
    from lightning_motif.data.default_corpus import build_default_corpus

    build_default_corpus(cache / "embedded-corpus-v4096-3000000", 4096, 3_000_000)
    command = fit_command(args.devices, args.compile, Path(args.root), cache, max_steps=1,
                          batch_tokens=4096 * args.devices, callback="benchmarks.fsdp2_startup.FirstStepReport")
    env = {**os.environ, LAUNCH_TIME: repr(time.time()), "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    print(result.stdout[-3000:] + result.stderr[-6000:])
    print(f"motif fit exit {result.returncode}, {time.perf_counter() - started:.1f} s in all; "
          f"compile {args.compile}, {args.devices} GPUs")


if __name__ == "__main__":
    main()
