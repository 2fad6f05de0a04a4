"""Does growth pay? A small model trained, grown (``motif grow``) and trained on, against the large model trained
from scratch on the same tokens in the same order, at several seeds.

    python -m lightning_motif.growth_study --config experiments/growth/study.yaml

Per seed, four steps, each skipped when done (a step's folder holds run.json once it finished; an unfinished
step's folder is cleared before it starts again), so an interrupted study continues where it stopped:

1. ``scratch-seed<s>``: ``motif fit`` of ``target_model`` for ``total_steps``;
2. ``source-seed<s>``: ``motif fit`` of ``source_model`` for ``source_steps``, with a checkpoint at its end;
3. ``grow-seed<s>``: ``motif grow`` of that checkpoint into ``target_model`` (in its ``weights`` folder);
4. ``grown-seed<s>``: ``motif fit`` of ``target_model`` from the grown weights for ``total_steps - source_steps``,
   reading the sample stream from step ``source_steps`` on (``data.init_args.start_step``), so that both arms see
   the same tokens in the same order.

Each phase runs its own learning-rate schedule from the base configs (a model trained, grown and trained again).
The report (``report_dir``: REPORT.md, summary.json, loss_vs_tokens.png) compares the final validation losses at
equal tokens (per-seed differences, 95% interval), the training FLOPs each arm spent, and how much compute the
scratch arm needed to reach the grown arm's final loss.
"""

import argparse
from argparse import ArgumentError
import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.config_error import ConfigError
from components.growth import GrowthConfig
from lightning_motif.ablation.logs import RUN_RECORD, RunLog, read_run
from lightning_motif.ablation.report import save_loss_figure
from lightning_motif.ablation.results import Spread
from lightning_motif.ablation.runner import motif_command
from lightning_motif.cli import config_error_within
from lightning_motif.presets import parse_config


@dataclass(kw_only=True)
class GrowthStudyConfig:
    base_configs: list[str]
    """``motif fit`` YAMLs every run stacks (trainer, data, optimizer, schedule), in order."""
    source_model: str
    """Model config YAML of the small model."""
    target_model: str
    """Model config YAML of the large model (trained from scratch, and grown into)."""
    total_steps: int
    """Optimizer steps of the scratch run, and of the source and grown runs together."""
    source_steps: int
    """Optimizer steps of the source model before it is grown."""
    seeds: list[int]
    growth: GrowthConfig = field(default_factory=GrowthConfig)
    output_dir: str = "runs/growth"
    report_dir: str = "experiments/growth/results"
    source_configs: list[str] = field(default_factory=list)
    """YAMLs the source runs stack on the base configs; one must save a checkpoint at the end of the run."""
    fit_args: list[str] = field(default_factory=list)
    """Extra ``motif fit`` arguments for every run."""

    def __post_init__(self) -> None:
        if not 0 < self.source_steps < self.total_steps:
            raise ConfigError("GrowthStudyConfig", "source_steps", self.source_steps,
                              "train the source for part of the run: between 1 and total_steps - 1 = "
                              f"{self.total_steps - 1}")
        for name in ("source_model", "target_model"):
            if not Path(getattr(self, name)).is_file():
                raise ConfigError("GrowthStudyConfig", name, getattr(self, name), "no such model config YAML")
        for name in ("base_configs", "source_configs"):
            for path in getattr(self, name):
                if not Path(path).is_file():
                    raise ConfigError("GrowthStudyConfig", name, path, "no such motif fit YAML")


class Study:
    def __init__(self, config: GrowthStudyConfig) -> None:
        self.config = config
        self.output = Path(config.output_dir)
        self.durations: list[float] = []

    def fit_args(self, name: str, model: str, steps: int, seed: int, *extra: str) -> list[str]:
        c = self.config
        return ["fit", *(a for path in c.base_configs for a in ("--config", path)), "--model.transformer", model,
                "--trainer.max_steps", str(steps), "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
                "--trainer.default_root_dir", str(self.output / name),
                "--trainer.logger.init_args.save_dir", str(self.output), "--trainer.logger.init_args.name", "",
                "--trainer.logger.init_args.version", name, *extra, *c.fit_args]

    def step(self, name: str, args: list[str], *, left: int) -> None:
        """Run ``motif <args>`` into ``<output>/<name>`` unless it finished before; progress with time left."""
        folder, record = self.output / name, self.output / name / RUN_RECORD
        if record.is_file() and json.loads(record.read_text())["exit_code"] == 0:
            return
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted step starts again from scratch
        folder.mkdir(parents=True)
        began = time.monotonic()
        with open(folder / "motif.log", "w") as log:
            code = subprocess.run(motif_command() + args, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
        seconds = time.monotonic() - began
        (folder / RUN_RECORD).write_text(json.dumps({"exit_code": code, "seconds": round(seconds, 1),
                                                     "command": motif_command() + args}, indent=1))
        if code != 0:
            raise SystemExit(f"[growth] {name} failed (exit {code}): see {folder / 'motif.log'}")
        self.durations.append(seconds)
        eta = sum(self.durations) / len(self.durations) * left
        print(f"[growth] {name}: done in {seconds:.0f} s; {left} steps left, about {eta / 60:.1f} min", flush=True)

    def run(self, seeds: list[int]) -> None:
        c = self.config
        steps = [(seed, arm) for seed in seeds for arm in ("scratch", "source", "grow", "grown")]
        for done, (seed, arm) in enumerate(steps, start=1):
            self.step(*self.arguments(seed, arm), left=len(steps) - done)
        write_report(c)

    def arguments(self, seed: int, arm: str) -> tuple[str, list[str]]:
        """(folder name, motif arguments) of one step of the study."""
        c, grown = self.config, f"grown-seed{seed}"
        source, weights = f"source-seed{seed}", self.output / f"grow-seed{seed}" / "weights"
        if arm == "scratch":
            return f"scratch-seed{seed}", self.fit_args(f"scratch-seed{seed}", c.target_model, c.total_steps, seed)
        if arm == "source":
            configs = [a for path in c.source_configs for a in ("--config", path)]
            return source, self.fit_args(source, c.source_model, c.source_steps, seed, *configs,
                                         "--trainer.callbacks.dirpath", str(self.output / source / "checkpoints"))
        if arm == "grow":
            final = self.output / source / "checkpoints" / "last.ckpt"
            if not final.exists():
                raise SystemExit(f"[growth] {source} left no last.ckpt: source_configs must add a checkpoint callback "
                                 "(see experiments/growth/checkpoint-at-end.yaml)")
            args = ["grow", "--source", str(final), "--target", c.target_model, "--output", str(weights),
                    "--growth.noise", repr(c.growth.noise), "--growth.seed", str(c.growth.seed)]
            if c.growth.insert_after is not None:
                args += ["--growth.insert_after", json.dumps(c.growth.insert_after)]
            return f"grow-seed{seed}", args
        return grown, self.fit_args(grown, str(weights / "model.yaml"), c.total_steps - c.source_steps, seed,
                                    "--model.init_weights_from", str(weights / "model.ckpt"),
                                    "--data.init_args.start_step", str(c.source_steps))


def _tokens_at(log: RunLog, steps: list[int]) -> np.ndarray:
    """Training tokens of the stream at each step: a line through ``curriculum/tokens_seen`` (constant batches;
    a grown run's stream starts where its source's ended)."""
    known_steps, tokens = zip(*log.scalars["curriculum/tokens_seen"])
    slope, intercept = np.polyfit(known_steps, tokens, 1)
    return slope * np.asarray(steps, dtype=float) + intercept


@dataclass
class Curve:
    """Validation loss against training tokens and training FLOPs of one arm at one seed."""

    tokens: np.ndarray
    flops: np.ndarray
    loss: np.ndarray


def _run_curve(log: RunLog, flops_before: float = 0.0, tokens_before: float = 0.0) -> Curve:
    steps, loss = zip(*log.scalars["val/loss"])
    tokens = _tokens_at(log, list(steps))
    flops = flops_before + (tokens - tokens_before) * log.last("model/flops_per_token")
    return Curve(tokens, flops, np.asarray(loss))


def curves(config: GrowthStudyConfig, seed: int) -> dict[str, Curve] | None:
    output = Path(config.output_dir)
    logs = {arm: read_run(output / f"{arm}-seed{seed}") for arm in ("scratch", "source", "grown")}
    if any(log is None for log in logs.values()):
        return None
    source = _run_curve(logs["source"])
    source_tokens = float(_tokens_at(logs["source"], [config.source_steps])[0])
    source_flops = source_tokens * logs["source"].last("model/flops_per_token")
    grown = _run_curve(logs["grown"], source_flops, source_tokens)
    return {"scratch": _run_curve(logs["scratch"]), "source": source, "grown": grown,
            "growth": Curve(*(np.concatenate([getattr(source, f), getattr(grown, f)])
                              for f in ("tokens", "flops", "loss")))}


def _flops_to_reach(curve: Curve, loss: float) -> float:
    """Training FLOPs at which ``curve`` first reaches ``loss`` (linear between validation points); inf if never."""
    below = np.nonzero(curve.loss <= loss)[0]
    if not len(below):
        return math.inf
    i = below[0]
    if i == 0:
        return float(curve.flops[0])
    x0, x1, y0, y1 = curve.flops[i - 1], curve.flops[i], curve.loss[i - 1], curve.loss[i]
    return float(x0 + (loss - y0) * (x1 - x0) / (y1 - y0))


def study_curves(config: GrowthStudyConfig) -> dict[int, dict[str, Curve]]:
    """Per seed whose three runs have finished, its arms' curves (each run's logs read once)."""
    return {seed: arms for seed in config.seeds if (arms := curves(config, seed)) is not None}


def summary(arms_by_seed: dict[int, dict[str, Curve]]) -> dict:
    per_seed = {}
    for seed, arms in arms_by_seed.items():
        scratch, growth = arms["scratch"], arms["growth"]
        per_seed[seed] = {
            "scratch_final_loss": float(scratch.loss[-1]), "growth_final_loss": float(growth.loss[-1]),
            "source_final_loss": float(arms["source"].loss[-1]), "grown_first_loss": float(arms["grown"].loss[0]),
            "scratch_flops": float(scratch.flops[-1]), "growth_flops": float(growth.flops[-1]),
            "scratch_flops_to_growth_final_loss": _flops_to_reach(scratch, float(growth.loss[-1])),
            "tokens": float(scratch.tokens[-1]),
        }
    seeds = list(per_seed.values())
    difference = Spread([s["growth_final_loss"] - s["scratch_final_loss"] for s in seeds])
    return {"seeds": per_seed, "difference_mean": difference.mean, "difference_std": difference.std,
            "difference_95_half_width": difference.half_width,
            "compute_ratio": Spread([s["growth_flops"] / s["scratch_flops"] for s in seeds]).mean,
            "compute_saved": [s["scratch_flops_to_growth_final_loss"] / s["growth_flops"] for s in seeds]}


def plot(arms_by_seed: dict[int, dict[str, Curve]], report_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_tokens, by_flops) = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    colors = {"scratch": "tab:blue", "source": "tab:orange", "grown": "tab:green"}
    for index, arms in enumerate(arms_by_seed.values()):
        for arm in ("scratch", "source", "grown"):
            label = {"scratch": "target from scratch", "source": "source (small)",
                     "grown": "grown target"}[arm] if index == 0 else None
            for axes, x in ((by_tokens, arms[arm].tokens / 1e6), (by_flops, arms[arm].flops / 1e15)):
                axes.plot(x, arms[arm].loss, color=colors[arm], alpha=0.8, marker=".", label=label)
    save_loss_figure(figure, by_tokens, by_flops, "one line per seed", report_dir / "loss_vs_tokens.png")


def markdown(numbers: dict) -> str:
    lines = ["# Growth study report", "",
             "Generated by `python -m lightning_motif.growth_study` from the runs' logs.", "",
             "| seed | scratch final loss | growth final loss | difference | source final loss | grown, first val | "
             "growth FLOPs / scratch FLOPs | scratch FLOPs to reach growth's final loss / growth FLOPs |",
             "|---|---|---|---|---|---|---|---|"]
    for seed, s in numbers["seeds"].items():
        lines.append(f"| {seed} | {s['scratch_final_loss']:.4f} | {s['growth_final_loss']:.4f} | "
                     f"{s['growth_final_loss'] - s['scratch_final_loss']:+.4f} | {s['source_final_loss']:.4f} | "
                     f"{s['grown_first_loss']:.4f} | {s['growth_flops'] / s['scratch_flops']:.3f} | "
                     f"{s['scratch_flops_to_growth_final_loss'] / s['growth_flops']:.2f} |")
    lines += ["", f"Difference (growth - scratch) at equal tokens: {numbers['difference_mean']:+.4f} ± "
              f"{numbers['difference_std']:.4f} (95% interval half-width {numbers['difference_95_half_width']:.4f}).",
              "", "![validation loss vs tokens and compute](loss_vs_tokens.png)", ""]
    return "\n".join(lines)


def write_report(config: GrowthStudyConfig) -> Path:
    report_dir = Path(config.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    arms_by_seed = study_curves(config)
    numbers = summary(arms_by_seed)
    (report_dir / "summary.json").write_text(json.dumps(numbers, indent=1))
    (report_dir / "REPORT.md").write_text(markdown(numbers))
    plot(arms_by_seed, report_dir)
    print(f"[growth] report: {report_dir / 'REPORT.md'}", flush=True)
    return report_dir


def load_config(path: str) -> GrowthStudyConfig:
    """The study's YAML, typed and checked as ``motif`` commands read theirs."""
    return parse_config(GrowthStudyConfig, Path(path).read_text())


def main(argv: list[str] | None = None) -> None:
    """The command line (``argv``: its arguments, default sys.argv); a bad config ends with one line, status 2."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the study's YAML (GrowthStudyConfig's fields)")
    parser.add_argument("--seeds", type=int, nargs="+", help="run these of the config's seeds only (e.g. one "
                        "process per seed on a large GPU); the report takes every seed that has finished")
    parser.add_argument("--report_only", action="store_true", help="write the report from the finished runs")
    args = parser.parse_args(argv)
    if not Path(args.config).is_file():
        parser.exit(2, f"growth_study: error: --config {args.config}: no such file\n")
    try:
        config = load_config(args.config)
    except (ValueError, ArgumentError) as error:  # a ConfigError, or the YAML parser's report of a field
        reason = config_error_within(error) or str(error).splitlines()[0]
        parser.exit(2, f"growth_study: error: {reason}\n")
    if args.seeds:
        unknown = sorted(set(args.seeds) - set(config.seeds))
        if unknown:
            parser.error(f"--seeds {unknown}: not among the config's seeds {config.seeds}")
    if args.report_only:
        write_report(config)
    else:
        Study(config).run(args.seeds or config.seeds)


if __name__ == "__main__":
    main()
