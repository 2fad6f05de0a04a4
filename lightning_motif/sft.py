"""``motif sft``: the report's three supervised fine-tuning stages (Motif-2, arXiv 2511.07464, Sec. 5) as one
command, each stage a ``motif fit`` that starts from the previous stage's final weights (weights only: a fresh
optimizer, schedule and data stream).

    motif sft --config experiments/sft/chain.yaml

Per stage, in order: its pruning step (stage 3: ``lightning_motif.data.prune`` on the stage-2 conversations),
``motif prepare`` of its data (skipped when up to date), ``motif fit`` into ``<output_dir>/<stage>/``, then a few
generations from its final checkpoint and ``motif eval`` on ``eval_tasks``, printed and logged to the
stage's TensorBoard (text and eval/<task>/<metric>). ``stage.json`` in
the stage's folder records the final checkpoint, the time taken and the generations; a stage that has one is
not run again, so the same command continues an interrupted chain (the unfinished stage starts over). Every
stage's checkpoints are kept. With ``demo_data`` the offline demo conversations (``lightning_motif.data.demo_chat``)
are written first, so the whole chain runs on a CPU in minutes.
"""

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components.config_error import ConfigError
from components.generation import SamplingConfig
from lightning_motif.ablation.runner import motif_command
from lightning_motif.data.chat import CHATML_MARKERS
from lightning_motif.data.demo_chat import write_demo_chat, write_demo_task
from lightning_motif.data.prune import PruneConfig, prune
from lightning_motif.evaluate import EvalConfig
from lightning_motif.evaluate import run as evaluate
from lightning_motif.generate import GenerateConfig
from lightning_motif.generate import run as generate

STAGE_RECORD = "stage.json"


class StageFailed(RuntimeError):
    """A stage's ``motif`` command failed; the message names the stage's log."""


@dataclass(kw_only=True)
class SFTStage:
    """One stage: its data (pruned and prepared first if asked) and its ``motif fit`` config."""

    name: str
    """The stage's folder under output_dir (letters, digits, '-', '_')."""
    fit_config: str
    """A ``motif fit`` config (model, optimizer, schedule, SFTDataModule)."""
    prepare_config: str | None = None
    """A ``motif prepare`` config that makes this stage's dataset (its output_dir holds the tokenizer the
    generations use); unset: the data is prepared already and ``tokenizer`` names its tokenizer."""
    prune: PruneConfig | None = None
    """Run before preparing (stage 3: the stage-2 conversations without redundant or low-value ones)."""
    tokenizer: str | None = None
    """The tokenizer for the generations when there is no prepare_config."""
    fit_args: list[str] = field(default_factory=list)
    """More ``motif fit`` flags, e.g. ["--trainer.max_steps", "100"]."""


@dataclass(kw_only=True)
class SFTChainConfig:
    """The stages and what the chain starts from."""

    stages: list[SFTStage]
    output_dir: str = "runs/sft"
    init_weights_from: str | None = None
    """The first stage's starting weights (a checkpoint, distributed-checkpoint folder or Hugging Face folder,
    e.g. an imported Motif-2 model); unset: the first stage starts from a fresh initialisation."""
    demo_data: str | None = None
    """Write the offline demo conversations here first (broad.jsonl, reasoning.jsonl)."""
    demo_examples: int = 600
    """Conversations per demo file (before its near-duplicates and low-value records)."""
    prompts: list[str] = field(default_factory=lambda: ["Ana has 12 apples and buys 5 more. How many apples does Ana have now?"])
    """User turns answered after each stage."""
    chat_template: str | None = "chatml"
    """The template the generations render prompts with ("chatml", a Jinja template, or null: the tokenizer's)."""
    max_new_tokens: int = 48
    eval_tasks: list[str] = field(default_factory=list)
    """``motif eval`` tasks scored on each stage's final checkpoint (harness tasks, local ones from
    eval_include_path, "perplexity"); empty: none. The scores go into stage.json and the stage's TensorBoard
    (eval/<task>/<metric>)."""
    eval_include_path: str | None = None
    """A folder of local task YAMLs (the demo writes one into demo_data/tasks)."""
    eval_limit: int | None = None
    """Examples per task (all when unset)."""


def _check(config: SFTChainConfig) -> None:
    """Every stage is well formed and every file it names exists, before anything runs."""
    if not config.stages:
        raise ConfigError("SFTChainConfig", "stages", [], "name at least one stage")
    names = [stage.name for stage in config.stages]
    if len(set(names)) != len(names):
        raise ConfigError("SFTChainConfig", "stages", names, "stage names must differ (each is a folder)")
    for i, stage in enumerate(config.stages):
        if not stage.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError("SFTStage", "name", stage.name, "use letters, digits, '-' and '_' (it is a folder)")
        for key in ("fit_config", "prepare_config"):
            path = getattr(stage, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError("SFTStage", key, path, f"no such file (stage {stage.name}): fix the path")
        if stage.prepare_config is None and stage.tokenizer is None:
            raise ConfigError("SFTStage", "tokenizer", None, f"stage {stage.name} has no prepare_config: name the "
                              "tokenizer of its data for the generations")


def _tokenizer(stage: SFTStage) -> str:
    if stage.prepare_config is None:
        return stage.tokenizer
    return yaml.safe_load(Path(stage.prepare_config).read_text())["output_dir"]


def _run(args: list[str], log: Path) -> None:
    """One ``motif`` command, its output appended to ``log``; a failure stops the chain naming the log."""
    with log.open("a") as handle:
        handle.write(f"$ motif {' '.join(args)}\n")
        handle.flush()
        result = subprocess.run(motif_command() + args, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise StageFailed(f"motif {args[0]} failed (exit {result.returncode}): see {log}")


def _final_checkpoint(folder: Path) -> Path:
    links = sorted(folder.rglob("checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not links:
        raise StageFailed(f"the stage's motif fit wrote no checkpoint under {folder}: keep a MotifCheckpoint "
                           "callback in its fit_config")
    return links[-1].resolve()


def _log_results(folder: Path, generations: list[dict], scores: dict) -> None:
    """The stage's generations (as text) and eval scores in its TensorBoard folder."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder / "tensorboard" / "after-stage")) as writer:
        for i, item in enumerate(generations):
            writer.add_text(f"generation/{i}", f"**{item['prompt']}**\n\n{item['text']}", 0)
        for task, metrics in scores.items():
            for metric, value in metrics.items():
                if isinstance(value, (int, float)):
                    writer.add_scalar(f"eval/{task}/{metric}", value, 0)


def run(config: SFTChainConfig) -> list[dict]:
    """Run the stages not yet done; return every stage's record."""
    _check(config)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if config.demo_data is not None:
        for kind in ("broad", "reasoning"):
            write_demo_chat(Path(config.demo_data) / f"{kind}.jsonl", kind, config.demo_examples)
        write_demo_task(Path(config.demo_data) / "tasks")
    records, previous, started = [], config.init_weights_from, time.time()
    for i, stage in enumerate(config.stages):
        folder = output / stage.name
        record_path = folder / STAGE_RECORD
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            print(f"[sft] stage {i + 1}/{len(config.stages)} {stage.name}: done before ({record['checkpoint']})")
        else:
            record = _run_stage(config, stage, folder, previous)
            record_path.write_text(json.dumps(record, indent=2) + "\n")
            elapsed = time.time() - started
            left = len(config.stages) - i - 1
            print(f"[sft] stage {i + 1}/{len(config.stages)} {stage.name}: {record['seconds']:.0f} s; "
                  f"{left} stage(s) left, about {elapsed / (i + 1) * left:.0f} s more at this pace", flush=True)
        records.append(record)
        previous = record["checkpoint"]
    return records


def _run_stage(config: SFTChainConfig, stage: SFTStage, folder: Path, start_from: str | None) -> dict:
    began = time.time()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "chain.log"
    record = {"stage": stage.name, "started_from": start_from}
    if stage.prune is not None:
        record["prune"] = prune(stage.prune)["counts"]
        print(f"[sft] {stage.name}: pruned to {record['prune']['kept']} conversations ({record['prune']})", flush=True)
    if stage.prepare_config is not None:
        _run(["prepare", "--config", stage.prepare_config], log)
    for stale in folder.glob("tensorboard/version_*"):  # an interrupted attempt: this stage starts over
        shutil.rmtree(stale)
    args = ["fit", "--config", stage.fit_config, "--trainer.default_root_dir", str(folder),
            "--trainer.logger.init_args.save_dir", str(folder), *stage.fit_args]
    if start_from is not None:
        args += ["--model.init_weights_from", str(start_from)]
    print(f"[sft] {stage.name}: motif fit (log: {log})", flush=True)
    _run(args, log)
    checkpoint, tokenizer = _final_checkpoint(folder), _tokenizer(stage)
    generations = generate(GenerateConfig(
        checkpoint=str(checkpoint), tokenizer=tokenizer, prompt=list(config.prompts), chat=True,
        chat_template=config.chat_template, sampling=SamplingConfig(max_new_tokens=config.max_new_tokens),
        stop=list(CHATML_MARKERS[1:]) if config.chat_template == "chatml" else []))  # ChatML's end of turn
    scores = {}
    if config.eval_tasks:
        scores = evaluate(EvalConfig(checkpoint=str(checkpoint), tokenizer=tokenizer, tasks=list(config.eval_tasks),
                                     include_path=config.eval_include_path, limit=config.eval_limit,
                                     output=str(folder / "eval.json")))["tasks"]
    _log_results(folder, generations, scores)
    record.update(checkpoint=str(checkpoint), seconds=time.time() - began, generations=generations, eval=scores)
    return record
