"""Text generation with a key/value cache: a batch of prompts of different lengths is prefilled at once
(left-padded), then extended one token per step by greedy choice or by sampling with temperature, top-k and
top-p from a seeded generator, until each row meets an end-of-sequence id, a stop condition or the token limit.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from components.config_error import require
from components.kv_cache import DecodeStep, DecodingState


@dataclass(kw_only=True)
class SamplingConfig:
    """How the next token is chosen."""

    max_new_tokens: int = 256
    """Tokens to generate at most per prompt."""
    temperature: float = 0.0
    """0: greedy (the most likely token); else logits / temperature are sampled."""
    top_k: int = 0
    """Sample among the k most likely tokens only (0: all)."""
    top_p: float = 1.0
    """Sample among the most likely tokens whose probabilities sum to top_p (nucleus sampling; 1: all)."""
    seed: int = 0
    """Seed of the sampling generator: the same seed, prompts and model give the same tokens."""

    def __post_init__(self) -> None:
        require(self.max_new_tokens >= 1, self, "max_new_tokens", "generate at least one token")
        require(self.temperature >= 0, self, "temperature", "use 0 (greedy) or a positive temperature")
        require(self.top_k >= 0, self, "top_k", "use 0 (no limit) or a positive number of tokens")
        require(0 < self.top_p <= 1, self, "top_p", "use a probability mass in (0, 1]")


def next_tokens(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """The next token of each row of ``logits`` (batch, vocab)."""
    if sampling.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k:
        kth = logits.topk(min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        outside = probs.cumsum(-1) - probs > sampling.top_p  # the mass before a token already reaches top_p
        logits = logits.scatter(-1, order, ordered.masked_fill(outside, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@dataclass
class Generation:
    """Generated token ids per prompt (without the end-of-sequence id) and timings."""

    tokens: list[list[int]]
    prompt_tokens: int
    prefill_seconds: float
    decode_seconds: float
    finished: list[str] = field(default_factory=list)
    """Per prompt: "eos", "stop" or "length"."""

    @property
    def generated_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class StaticDecodeStep:
    """One decode step (one new token per row) with every input in a fixed buffer, so that its shapes and
    addresses never change: on a GPU it is captured once as a CUDA graph and replayed (no per-kernel launch cost,
    which dominates decoding a large model one token at a time); elsewhere it runs the same buffers eagerly."""

    def __init__(self, model, state: DecodingState, batch: int) -> None:
        device = model.lm_head.weight.device
        self.model = model
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.step = DecodeStep(slots=torch.zeros(1, dtype=torch.long, device=device),
                               positions=torch.zeros(batch, 1, dtype=torch.long, device=device),
                               mask=torch.zeros(batch, 1, 1, state.length, dtype=torch.bool, device=device),
                               caches=state.caches)
        self.graph = None
        self.logits: torch.Tensor | None = None

    def _forward(self) -> torch.Tensor:
        return self.model(self.tokens, step=self.step)[:, -1]

    def __call__(self, tokens: torch.Tensor, step: DecodeStep) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.step.slots.copy_(step.slots)
        self.step.positions.copy_(step.positions)
        self.step.mask.copy_(step.mask)
        if self.tokens.device.type != "cuda":
            return self._forward()
        if self.graph is None:  # warm up on a side stream (kernel compilation, allocator), then capture
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._forward()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self._forward()
        self.graph.replay()
        return self.logits


@torch.no_grad()
def generate(model, prompts: list[list[int]], sampling: SamplingConfig, eos_ids: tuple[int, ...] = (),
             stop: Callable[[int, list[int]], bool] | None = None,
             on_step: Callable[[list[list[int]]], None] | None = None, static_decode: bool = False) -> Generation:
    """Continue every prompt of ``prompts`` (token ids) with ``model`` (a MotifForCausalLM in eval mode).

    ``stop(row, tokens)`` ends a row early (stop strings); ``on_step(tokens)`` sees the tokens so far after each
    step (streaming); ``static_decode`` runs the decode steps through a StaticDecodeStep (a CUDA graph on a GPU).
    ValueError when the longest prompt plus max_new_tokens passes the model's positions.
    """
    if not prompts or not all(prompts):
        raise ValueError("give at least one prompt, none of them empty")
    device = model.lm_head.weight.device
    batch, longest = len(prompts), max(len(p) for p in prompts)
    state = model.decoding_state(batch, longest + sampling.max_new_tokens)
    ids = torch.zeros(batch, longest, dtype=torch.long, device=device)
    valid = torch.zeros(batch, longest, dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):  # left padding: every row's last prompt token is in the last column
        ids[row, longest - len(prompt):] = torch.tensor(prompt, device=device)
        valid[row, longest - len(prompt):] = True
    generator = torch.Generator(device).manual_seed(sampling.seed) if sampling.temperature > 0 else None
    started = _now(device)
    logits = model(ids, step=state.step(valid))[:, -1]
    prefilled = _now(device)
    tokens: list[list[int]] = [[] for _ in prompts]
    finished = [""] * batch
    every_row = torch.ones(batch, 1, dtype=torch.bool, device=device)
    decode = StaticDecodeStep(model, state, batch) if static_decode else \
        (lambda chosen_tokens, step: model(chosen_tokens, step=step)[:, -1])
    for count in range(sampling.max_new_tokens):
        chosen = next_tokens(logits, sampling, generator)
        for row, token in enumerate(chosen.tolist()):
            if finished[row]:
                continue
            if token in eos_ids:
                finished[row] = "eos"
                continue
            tokens[row].append(token)
            if stop is not None and stop(row, tokens[row]):
                finished[row] = "stop"
        if on_step is not None:
            on_step(tokens)
        if all(finished) or count == sampling.max_new_tokens - 1:
            break
        logits = decode(chosen[:, None], state.step(every_row))
    done = _now(device)
    return Generation(tokens, sum(len(p) for p in prompts), prefilled - started, done - prefilled,
                      [reason or "length" for reason in finished])


def cast_for_inference(model, dtype: torch.dtype) -> None:
    """Weights in ``dtype`` for decoding, except what the model keeps in fp32 whatever the compute dtype (the
    differential attention's lambda vectors and lambda_init)."""
    model.to(dtype)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if "lambda_" in name.rsplit(".", 1)[-1]:
            tensor.data = tensor.data.float()
