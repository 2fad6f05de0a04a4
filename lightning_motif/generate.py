"""``motif generate``: text from a checkpoint with the key/value cache.

    motif generate --checkpoint <checkpoint file | distributed-checkpoint folder | Hugging Face folder> \\
        --prompt "def fibonacci(n):" [--prompt ...] [--sampling.temperature 0.7 --sampling.top_p 0.9]
    motif generate --checkpoint motif-12.7b --prompts_file questions.jsonl --output answers.jsonl

Prompts come from ``--prompt`` (repeatable) or a jsonl file (``prompt``: text, or ``messages``: a conversation
rendered with the tokenizer's chat template; ``--chat`` renders plain prompts as one user turn). A batch of
prompts of different lengths is generated together. Generation ends at any end-of-sequence id (the tokenizer's
and generation_config.json's, or ``eos_ids``), at a stop string, or after max_new_tokens. A single prompt streams
its text; every run reports prompt and generation tokens per second.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from components.config_error import ConfigError
from components.generation import SamplingConfig, cast_for_inference, generate
from components.model import MotifForCausalLM
from lightning_motif.data.chat import template_named
from lightning_motif.initialization import load_weights, materialize
from lightning_motif.interop.weights import check_weights, open_weights
from lightning_motif.text import TextTokenizer

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(kw_only=True)
class GenerateConfig:
    """What ``motif generate`` reads and how it generates."""

    checkpoint: str
    """A checkpoint file, a distributed-checkpoint folder or a Hugging Face folder."""
    tokenizer: str | None = None
    """A tokenizer folder or tokenizer.json; default: the checkpoint's folder (an imported or exported model)."""
    prompt: list[str] = field(default_factory=list)
    """Prompts given on the command line."""
    prompts_file: str | None = None
    """A jsonl file of prompts: {"prompt": text} or {"messages": [{"role": ..., "content": ...}, ...]}."""
    chat: bool = False
    """Render plain prompts as a user turn of the tokenizer's chat template."""
    chat_template: str | None = None
    """The template for chat prompts instead of the tokenizer folder's: "chatml" (built in, as ``motif prepare``
    renders chat domains with ``chat_template: chatml``) or a Jinja template."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    eos_ids: list[int] | None = None
    """Token ids that end a generation (default: the tokenizer's end-of-sequence tokens)."""
    stop: list[str] = field(default_factory=list)
    """Strings that end a generation (the text is cut before them)."""
    device: str = "auto"
    """"auto" (the GPU when there is one), "cpu", "cuda", "cuda:1", ..."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Weights and cache dtype: "auto" is bfloat16 on a GPU, float32 on the CPU."""
    output: str | None = None
    """Write one jsonl record per prompt (prompt, text, tokens, finish reason) here."""
    cuda_graph: bool = True
    """On a GPU, replay each decode step as a CUDA graph (the launch cost of a step's kernels is what limits
    decoding a large model one token at a time)."""
    compile: bool = False
    """torch.compile each block (one graph per block shape) to fuse a step's small kernels: with cuda_graph the
    fastest decoding on a GPU (12.7B, H200: 8.9 ms per token against 11.7 without; about 10 s of compiling)."""


def _prompts(config: GenerateConfig, tokenizer: TextTokenizer) -> list[str]:
    records = [{"prompt": text} for text in config.prompt]
    if config.prompts_file:
        path = Path(config.prompts_file).expanduser()
        if not path.is_file():
            raise ConfigError("GenerateConfig", "prompts_file", config.prompts_file, "no such file")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    raise ConfigError("GenerateConfig", "prompts_file", config.prompts_file,
                                      f"line {number} is not JSON") from None
                if not isinstance(record, dict) or not ({"prompt", "messages"} & set(record)):
                    raise ConfigError("GenerateConfig", "prompts_file", config.prompts_file,
                                      f"line {number} has neither 'prompt' nor 'messages'")
                records.append(record)
    if not records:
        raise ConfigError("GenerateConfig", "prompt", [], "give --prompt text (repeatable) or --prompts_file")
    texts = []
    template = template_named(config.chat_template)
    for record in records:
        if "messages" in record:
            texts.append(tokenizer.apply_chat_template(record["messages"], template=template))
        elif config.chat:
            texts.append(tokenizer.apply_chat_template([{"role": "user", "content": record["prompt"]}], template=template))
        else:
            texts.append(record["prompt"])
    return texts


def load_model(checkpoint: str, device: torch.device, dtype: torch.dtype, field_name: str = "checkpoint") -> MotifForCausalLM:
    """The model a checkpoint holds, on ``device`` in ``dtype`` (lambda vectors fp32), in eval mode."""
    source = open_weights(checkpoint, field_name)
    check_weights(source, source.config, field_name)
    with torch.device("meta"):
        model = MotifForCausalLM(source.config)
    materialize(model, device, 0)  # allocates and fills the buffers; the weights come next
    load_weights(model, source)
    cast_for_inference(model, dtype)
    return model.eval()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run(config: GenerateConfig) -> list[dict]:
    device = resolve_device(config.device)
    dtype = DTYPES[config.dtype] if config.dtype != "auto" else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    checkpoint = Path(config.checkpoint).expanduser()
    tokenizer = TextTokenizer(config.tokenizer or (checkpoint if checkpoint.is_dir() else checkpoint.parent),
                              "tokenizer")
    texts = _prompts(config, tokenizer)
    prompts = [tokenizer.encode(text) for text in texts]
    model = load_model(config.checkpoint, device, dtype)
    if config.compile:
        for layer in model.model.layers:
            layer.compile()
    limit = model.config.max_position_embeddings
    longest = max(len(p) for p in prompts)
    if longest + config.sampling.max_new_tokens > limit:
        raise ConfigError("GenerateConfig", "prompt", f"{longest} tokens", f"with max_new_tokens "
                          f"{config.sampling.max_new_tokens} it passes the model's {limit} positions: shorten it or "
                          "lower sampling.max_new_tokens")
    if model.config.vocab_size < tokenizer.vocab_size:
        raise ConfigError("GenerateConfig", "tokenizer", str(config.tokenizer), f"has {tokenizer.vocab_size} tokens, "
                          f"the model {model.config.vocab_size}: use the model's own tokenizer")
    eos_ids = tuple(config.eos_ids) if config.eos_ids is not None else tokenizer.eos_ids

    def stop(row: int, tokens: list[int]) -> bool:
        return bool(config.stop) and any(s in tokenizer.decode(tokens) for s in config.stop)

    streamed = [0]

    def stream(tokens: list[list[int]]) -> None:
        text = tokenizer.decode(tokens[0])
        print(text[streamed[0]:], end="", flush=True)
        streamed[0] = len(text)

    result = generate(model, prompts, config.sampling, eos_ids, stop, stream if len(prompts) == 1 else None,
                      static_decode=config.cuda_graph and device.type == "cuda")
    records = []
    for text, prompt, tokens, finish in zip(texts, prompts, result.tokens, result.finished):
        output = tokenizer.decode(tokens)
        for marker in config.stop:
            output = output.split(marker)[0]
        records.append({"prompt": text, "text": output, "prompt_tokens": len(prompt), "tokens": len(tokens),
                        "finish": finish})
    if len(prompts) == 1:
        print()
    else:
        for record in records:
            print(f"--- {record['prompt']!r} ({record['finish']})\n{record['text']}")
    if config.output:
        Path(config.output).write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"[generate] prompt: {result.prompt_tokens} tokens in {result.prefill_seconds:.3f} s "
          f"({result.prompt_tokens / max(result.prefill_seconds, 1e-9):,.0f} tokens/s); generation: "
          f"{result.generated_tokens} tokens in {result.decode_seconds:.3f} s "
          f"({result.generated_tokens / max(result.decode_seconds, 1e-9):,.1f} tokens/s) on {device}, {dtype}",
          file=sys.stderr)
    return records
