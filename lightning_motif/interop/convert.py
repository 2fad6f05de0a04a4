"""``motif convert``: the released Motif-2 checkpoints (Hugging Face layout) to this project's checkpoints and back.

    motif convert import --source <Hugging Face folder> --output <folder>
    motif convert export --source <checkpoint file or distributed-checkpoint folder> --output <folder>

import: config.json and the safetensors weights (one file, or shards with model.safetensors.index.json) become
``<output>/model.ckpt``, a checkpoint that ``motif fit`` (``--model.init_weights_from``), ``validate`` and ``test``
(``--ckpt_path``) accept, and ``<output>/model.yaml``, its model config (``--model.transformer``); tokenizer and
generation files are copied. Weights keep their stored dtypes (bf16, lambda vectors fp32); rotary inv_freq
buffers are dropped. A config field this project cannot honour, a missing, extra or misshapen tensor, or a dtype
that is not a float stops it with one line naming the field or the tensor.

export: the released layout: config.json (model_type, architectures, every field), bf16 safetensors shards of at
most ``max_shard_bytes`` with model.safetensors.index.json (the lambda vectors stay fp32), and the tokenizer and
generation files found beside the source (or in ``tokenizer``). Tensors are read and written one at a time
(a checkpoint file is memory-mapped, a distributed checkpoint read tensor by tensor), so host memory stays
near one shard. export then import gives back the same bits.

Nothing is written to ``output`` until the conversion is whole: it is built in ``<output>.partial`` and renamed.
"""

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from components.config_error import ConfigError
from lightning_motif.data.token_dataset import TOKENIZER, TOKENIZER_COMPANIONS
from lightning_motif.interop.hf_config import model_config_dict, model_config_yaml, to_config_json
from lightning_motif.interop.weights import HF_CONFIG, HF_INDEX, HF_SINGLE, WeightSource, check_weights, open_weights

TOKENIZER_FILES = (TOKENIZER, *TOKENIZER_COMPANIONS, "generation_config.json")
IMPORTED_CHECKPOINT = "model.ckpt"
IMPORTED_CONFIG = "model.yaml"
FP32_TENSORS = ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2")


@dataclass(kw_only=True)
class ConvertConfig:
    """What ``motif convert import|export`` reads and writes."""

    source: str
    """import: a Hugging Face folder; export: a checkpoint file or a distributed-checkpoint folder of ``motif fit``."""
    output: str
    """A new folder for the result (refused if it exists)."""
    tokenizer: str | None = None
    """export: a tokenizer folder (or tokenizer.json) to ship with the weights, when none is beside the source."""
    max_shard_bytes: int = 5_000_000_000
    """export: the largest safetensors shard (the released checkpoints use 5 GB)."""
    verbose: bool = True
    """Show progress with an estimate of the time left."""


Direction = Literal["import", "export"]


def _fail(field: str, value: object, fix: str) -> ConfigError:
    return ConfigError("ConvertConfig", field, value, fix)


def _staging(config: ConvertConfig) -> tuple[Path, Path]:
    output = Path(config.output).expanduser()
    if output.exists():
        raise _fail("output", config.output, "exists: give a new folder (nothing is overwritten)")
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted conversion
    partial.mkdir(parents=True)
    return output, partial


def copy_tokenizer_files(folders: list[Path], target: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        for folder in folders:
            if (folder / name).is_file() and name not in copied:
                shutil.copyfile(folder / name, target / name)
                copied.append(name)
    return copied


def _bytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return int(torch.Size(shape).numel()) * torch.empty((), dtype=dtype).element_size()


def convert(direction: Direction, config: ConvertConfig) -> Path:
    """Run one conversion; returns the output folder."""
    if direction == "import" and not (Path(config.source).expanduser() / HF_CONFIG).is_file():
        raise _fail("source", config.source, "import reads a Hugging Face folder (config.json and safetensors)")
    source = open_weights(config.source, "source")
    check_weights(source, source.config)
    return _import(source, config) if direction == "import" else _export(source, config)


def _import(source: WeightSource, config: ConvertConfig) -> Path:
    output, partial = _staging(config)
    names = source.names()
    state = {}
    for name in tqdm(names, desc="[convert] reading", unit="tensor", disable=not config.verbose):
        state[f"net.{name}"] = source.tensor(name)
    import lightning

    checkpoint = {"state_dict": state, "hyper_parameters": {"transformer": model_config_dict(source.config)},
                  "pytorch-lightning_version": lightning.__version__, "motif_converted_from": str(config.source)}
    torch.save(checkpoint, partial / IMPORTED_CHECKPOINT)
    (partial / IMPORTED_CONFIG).write_text(model_config_yaml(source.config))
    copy_tokenizer_files([Path(config.source)], partial)
    os.replace(partial, output)
    return output


def _export_dtype(name: str) -> torch.dtype:
    return torch.float32 if name.endswith(FP32_TENSORS) else torch.bfloat16


def _export(source: WeightSource, config: ConvertConfig) -> Path:
    model_json = to_config_json(source.config)  # refuses a model the released layout cannot express
    if config.max_shard_bytes < 1:
        raise _fail("max_shard_bytes", config.max_shard_bytes, "use a positive size, e.g. 5_000_000_000")
    tokenizer = Path(config.tokenizer).expanduser() if config.tokenizer else None
    if tokenizer is not None and not tokenizer.exists():
        raise _fail("tokenizer", config.tokenizer, "no such tokenizer folder or file")
    output, partial = _staging(config)
    from safetensors.torch import save_file

    names = [n for n in source.names() if not (source.config.tie_word_embeddings and n == "lm_head.weight")]
    sizes = {n: _bytes(source.shape_and_dtype(n)[0], _export_dtype(n)) for n in names}
    shards: list[list[str]] = [[]]
    for name in names:  # consecutive tensors, a new shard when the next one would pass the limit
        if shards[-1] and sum(sizes[n] for n in shards[-1]) + sizes[name] > config.max_shard_bytes:
            shards.append([])
        shards[-1].append(name)
    files = [HF_SINGLE] if len(shards) == 1 else \
        [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    progress = tqdm(total=sum(sizes.values()), desc="[convert] writing", unit="B", unit_scale=True,
                    disable=not config.verbose)
    for file, members in zip(files, shards):
        tensors = {}
        for name in members:
            tensors[name] = source.tensor_as(name, _export_dtype(name))
            progress.update(sizes[name])
        save_file(tensors, str(partial / file), metadata={"format": "pt"})
        del tensors
    progress.close()
    if len(files) > 1:
        index = {"metadata": {"total_size": sum(sizes.values())},
                 "weight_map": {name: file for file, members in zip(files, shards) for name in members}}
        (partial / HF_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    (partial / HF_CONFIG).write_text(json.dumps(model_json, indent=2) + "\n")
    origin = Path(config.source).expanduser()
    beside = [origin if origin.is_dir() else origin.parent]
    if tokenizer is not None:
        beside.insert(0, tokenizer if tokenizer.is_dir() else tokenizer.parent)
        if tokenizer.is_file():
            shutil.copyfile(tokenizer, partial / "tokenizer.json")
    copy_tokenizer_files(beside, partial)
    os.replace(partial, output)
    return output
