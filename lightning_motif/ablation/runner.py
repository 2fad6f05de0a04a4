"""``motif ablate run``: the grid's runs as ``motif fit`` processes, side by side on the GPUs there are.

A run's folder holds its TensorBoard logs, ``fit.log`` (its output) and, once ``motif fit`` has returned,
``run.json``; a folder without run.json is an interrupted run and starts again from scratch, so the grid can be run
in parts (``start_runs_for_s``) and continued by the same command.
"""

import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning
import torch

from lightning_motif.ablation.config import AblationConfig
from lightning_motif.ablation.grid import Run, seed_runs, sweep_runs
from lightning_motif.ablation.logs import RUN_RECORD, read_run
from lightning_motif.ablation.report import write_report
from lightning_motif.ablation.results import best_learning_rates


def motif_command() -> list[str]:
    """The ``motif`` console script of this interpreter's environment (or the module, when not installed)."""
    script = Path(sys.executable).parent / "motif"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lightning_motif.cli"]


def check_files(config: AblationConfig) -> None:
    """Every config file the grid names exists (checked before any run starts)."""
    named = [("base_configs", path) for path in config.base_configs]
    named += [(f"variants.{name}.configs", path) for name, v in config.variants.items() for path in v.configs]
    named += [(f"optimizers.{name}.config", s.config) for name, s in config.optimizers.items()]
    for field_name, path in named:
        if not Path(path).is_file():
            raise config.fail(field_name, path, "no such file: give a path to a motif fit YAML config")


class GridRunner:
    def __init__(self, config: AblationConfig) -> None:
        self.config = config
        self.output = Path(config.output_dir)
        per_run = config.devices_per_run
        gpus = torch.cuda.device_count()
        groups = [",".join(str(slot * per_run + i) for i in range(per_run)) for slot in range(gpus // per_run)]
        self.slots = len(groups) or 1
        self.free: queue.Queue = queue.Queue()
        for group in groups or [None]:  # None: the CPU, one run at a time
            self.free.put(group)
        self.lock = threading.Lock()
        self.started_at = time.monotonic()
        self.stopped_early = False

    def _launch(self, run: Run, devices: str | None) -> None:
        folder = self.output / run.name
        try:
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted run starts again
            folder.mkdir(parents=True)
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            if devices is not None:
                env["CUDA_VISIBLE_DEVICES"] = devices
            command = motif_command() + run.fit_args(self.config, self.output)
            device_name = torch.cuda.get_device_name(int(devices.split(",")[0])) if devices else platform.processor()
            began = time.monotonic()
            with open(folder / "fit.log", "w") as log:
                code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            seconds = time.monotonic() - began
            record = {"exit_code": code, "seconds": round(seconds, 1), "devices": devices, "device_name": device_name,
                      "torch": torch.__version__, "lightning": lightning.__version__, "command": command}
            (folder / RUN_RECORD).write_text(json.dumps(record, indent=1))
        finally:
            self.free.put(devices)
        with self.lock:
            self.durations.append(seconds)
            done, left = len(self.durations), self.remaining - len(self.durations)
            eta = sum(self.durations) / done * left / self.slots
            status = (f"val loss {read_run(folder).final_val_loss():.4f}" if code == 0
                      else f"FAILED (exit {code}, see {folder / 'fit.log'})")
            print(f"[ablate] {run.name}: {status} in {seconds:.0f} s; {done} done, {left} left in this phase, "
                  f"about {eta / 60:.1f} min", flush=True)

    def run_all(self, runs: list[Run]) -> bool:
        """Runs those of ``runs`` that have not finished, ``slots`` at a time; False if the time limit
        (``start_runs_for_s``) left some unstarted."""
        todo = [run for run in runs if read_run(self.output / run.name) is None]
        self.remaining, self.durations = len(todo), []
        if todo:
            print(f"[ablate] {len(todo)} runs to go ({len(runs) - len(todo)} already done), {self.slots} at a time",
                  flush=True)
        limit = self.config.start_runs_for_s
        with ThreadPoolExecutor(max_workers=self.slots) as pool:
            futures = []
            for run in todo:
                devices = self.free.get()  # waits for a free GPU group
                if limit is not None and time.monotonic() - self.started_at > limit:
                    self.free.put(devices)
                    self.stopped_early = True
                    break
                futures.append(pool.submit(self._launch, run, devices))
            for future in futures:
                future.result()
        return not self.stopped_early


def run(config: AblationConfig) -> None:
    check_files(config)
    runner = GridRunner(config)
    sweeps = [run for runs in sweep_runs(config).values() for run in runs]
    print(f"[ablate] learning-rate sweeps: {len(sweeps)} runs", flush=True)
    if runner.run_all(sweeps):
        best = best_learning_rates(config)
        print(f"[ablate] best learning rates: {best}", flush=True)
        runs = seed_runs(config, best)
        print(f"[ablate] variants x seeds: {len(runs)} runs", flush=True)
        runner.run_all(runs)
    if runner.stopped_early:
        print(f"[ablate] stopped starting runs after {config.start_runs_for_s:g} s; run the same command to continue",
              flush=True)
    if config.report:
        write_report(config)
