"""``motif eval``: benchmark scores and per-domain perplexity of a checkpoint, written as JSON beside it.

    motif eval --checkpoint motif-12.7b --tasks '[hellaswag, gsm8k]' --limit 100       (lm-evaluation-harness)
    motif eval --checkpoint step=1000.ckpt --tokenizer data/my-corpus --tasks '[my_task]' --include_path my-tasks/
    motif eval --checkpoint step=1000.ckpt --tokenizer data/my-corpus --tasks '[perplexity]' --data_dir data/my-corpus

Harness tasks need the eval extra (``pip install 'lightning-motif[eval]'``); ``include_path`` adds a folder of
task YAMLs (local jsonl data work offline). ``perplexity`` is built in: the token-weighted loss and perplexity of
every domain of a prepared dataset's validation split, in windows of ``seq_len`` tokens.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from components.config_error import ConfigError
from lightning_motif.data.token_dataset import Manifest, TokenWindows
from lightning_motif.evaluation import domain_perplexity, harness_model
from lightning_motif.generate import DTYPES, load_model, resolve_device
from lightning_motif.text import TextTokenizer

PERPLEXITY = "perplexity"


@dataclass(kw_only=True)
class EvalConfig:
    """What ``motif eval`` scores and where it writes the results."""

    checkpoint: str
    """A checkpoint file, a distributed-checkpoint folder or a Hugging Face folder."""
    tasks: list[str] = field(default_factory=list)
    """lm-evaluation-harness task names (or local ones from include_path), and/or "perplexity"."""
    tokenizer: str | None = None
    """A tokenizer folder or tokenizer.json; default: the checkpoint's folder."""
    include_path: str | None = None
    """A folder of extra task YAMLs for the harness."""
    data_dir: str | None = None
    """The prepared dataset whose validation split "perplexity" reads."""
    seq_len: int = 2048
    """Window length of "perplexity" (at most the model's positions)."""
    limit: int | None = None
    """Examples per harness task (all when unset)."""
    num_fewshot: int | None = None
    """Few-shot examples per prompt (each task's default when unset)."""
    batch_size: int = 8
    device: str = "auto"
    """"auto" (the GPU when there is one), "cpu", "cuda", ..."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """"auto": bfloat16 on a GPU, float32 on the CPU."""
    output: str | None = None
    """The results JSON; default: beside the checkpoint (``<checkpoint>.eval.json``, or eval.json in a folder)."""
    seed: int = 1234


def _output_path(config: EvalConfig) -> Path:
    if config.output:
        return Path(config.output).expanduser()
    checkpoint = Path(config.checkpoint).expanduser()
    return checkpoint / "eval.json" if checkpoint.is_dir() else checkpoint.with_name(checkpoint.name + ".eval.json")


def _perplexity(config: EvalConfig, model) -> dict:
    if config.data_dir is None:
        raise ConfigError("EvalConfig", "data_dir", None, "the perplexity task reads a prepared dataset: set data_dir")
    manifest = Manifest.load(Path(config.data_dir).expanduser())
    if config.seq_len < 1 or config.seq_len > model.config.max_position_embeddings:
        raise ConfigError("EvalConfig", "seq_len", config.seq_len,
                          f"use 1 to the model's {model.config.max_position_embeddings} positions")
    windows = {domain: DataLoader(TokenWindows(str(Path(config.data_dir) / "val" / domain), config.seq_len + 1),
                                  batch_size=config.batch_size) for domain in manifest.split_domains("val")}
    if not windows:
        raise ConfigError("EvalConfig", "data_dir", config.data_dir, "the dataset has no validation split")
    return domain_perplexity(model, windows)


def _harness(config: EvalConfig, tasks: list[str], model, tokenizer: TextTokenizer) -> dict:
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("EvalConfig", "tasks", tasks, "harness tasks need the eval extra: "
                          "pip install 'lightning-motif[eval]' (or use the built-in perplexity)") from None
    manager = TaskManager(include_path=config.include_path)
    unknown = [task for task in tasks if task not in manager.all_tasks]
    if unknown:
        raise ConfigError("EvalConfig", "tasks", unknown, "unknown to lm-evaluation-harness: check the names, or set "
                          "include_path to the folder of their YAMLs")
    outcome = simple_evaluate(model=harness_model(model, tokenizer, config.batch_size), tasks=tasks,
                              num_fewshot=config.num_fewshot, limit=config.limit, task_manager=manager,
                              bootstrap_iters=0, log_samples=False, random_seed=config.seed,
                              numpy_random_seed=config.seed, torch_random_seed=config.seed,
                              fewshot_random_seed=config.seed)
    return {task: {metric: value for metric, value in metrics.items() if metric != "alias"}
            for task, metrics in outcome["results"].items()}


def run(config: EvalConfig) -> dict:
    if not config.tasks:
        raise ConfigError("EvalConfig", "tasks", [], "name at least one task (a harness task, or perplexity)")
    output = _output_path(config)
    device = resolve_device(config.device)
    dtype = DTYPES[config.dtype] if config.dtype != "auto" else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    checkpoint = Path(config.checkpoint).expanduser()
    tokenizer = TextTokenizer(config.tokenizer or (checkpoint if checkpoint.is_dir() else checkpoint.parent))
    model = load_model(config.checkpoint, device, dtype)
    harness_tasks = [task for task in config.tasks if task != PERPLEXITY]
    results: dict = {"checkpoint": str(checkpoint), "tasks": {}}
    if PERPLEXITY in config.tasks:
        results[PERPLEXITY] = _perplexity(config, model)
    if harness_tasks:
        results["tasks"] = _harness(config, harness_tasks, model, tokenizer)
    output.write_text(json.dumps(results, indent=2) + "\n")
    for name, metrics in [*results["tasks"].items(), *results.get(PERPLEXITY, {}).items()]:
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        print(f"[eval] {name}: {shown}")
    print(f"[eval] results: {output}", file=sys.stderr)
    return results
