"""Key/value caches for decoding one token at a time: what a layer's attention computed for earlier positions.

Every attention caches each of its key heads and value heads once, after RoPE: GQA its num_kv_heads keys and
values; differential attention its (k1, k2) pairs and 2 * head_dim values; GDA its 2G keys and G value pairs
(not one entry per query head). The caches are allocated once for the whole generation (batch x length slots)
and written in place, so a decode step has the same shapes every time (a CUDA graph can replay it).

A batch of prompts of different lengths is left-padded: slot t of every row is filled at the same step, padding
slots are never attended to, and each row's tokens take positions 0, 1, ... from its first real token, so every
row computes what it would alone.
"""

from dataclasses import dataclass

import torch


class KVCache:
    """One layer's cached keys (batch, length, key_heads, key_dim) and values (batch, length, value_heads,
    value_dim)."""

    def __init__(self, batch: int, length: int, key_heads: int, key_dim: int, value_heads: int, value_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.keys = torch.zeros(batch, length, key_heads, key_dim, device=device, dtype=dtype)
        self.values = torch.zeros(batch, length, value_heads, value_dim, device=device, dtype=dtype)

    def write(self, step: "DecodeStep", keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new tokens' keys and values at the step's slots; return what the new queries attend to:
        the new keys and values alone when the step starts from an empty cache without padding (a plain causal
        attention over them), else the whole cache (with ``step.mask``)."""
        self.keys.index_copy_(1, step.slots, keys.to(self.keys.dtype))
        self.values.index_copy_(1, step.slots, values.to(self.values.dtype))
        return (keys, values) if step.mask is None else (self.keys, self.values)


@dataclass
class DecodeStep:
    """What every layer needs for one cached forward of S new tokens besides the tokens themselves."""

    slots: torch.Tensor
    """(S,) cache slots the new tokens are written to."""
    positions: torch.Tensor
    """(batch, S) position of each new token in its own row (RoPE)."""
    mask: torch.Tensor | None
    """(batch, 1, S, length) True where a new token may attend a cached slot (causal, no padding); None for a
    prefill into an empty cache with no padding (plain causal attention)."""
    caches: list[KVCache]
    """Every layer's cache, in layer order."""


class DecodingState:
    """The caches of every layer of a model and which slots hold tokens; ``step`` prepares the next forward."""

    def __init__(self, layouts: list[tuple[int, int, int, int]], batch: int, length: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.caches = [KVCache(batch, length, *layout, device, dtype) for layout in layouts]
        self.length = length
        self.filled = torch.zeros(batch, length, dtype=torch.bool, device=device)
        self.tokens_so_far = torch.zeros(batch, dtype=torch.long, device=device)
        self.next_slot = 0

    def step(self, valid: torch.Tensor) -> DecodeStep:
        """The DecodeStep for S new tokens per row; ``valid`` (batch, S) is False at left padding."""
        batch, new = valid.shape
        if self.next_slot + new > self.length:
            raise ValueError(f"the cache holds {self.length} tokens; this step would reach {self.next_slot + new}")
        slots = torch.arange(self.next_slot, self.next_slot + new, device=valid.device)
        positions = self.tokens_so_far[:, None] + valid.long().cumsum(1) - 1
        self.filled[:, slots] = valid
        plain = self.next_slot == 0 and bool(valid.all())
        mask = None
        if not plain:
            keys = torch.arange(self.length, device=valid.device)[None, :]
            causal, own = keys <= slots[:, None], keys == slots[:, None]  # (S, length)
            # a padding query attends its own slot only: no row is all masked (NaN), and no real token sees it
            mask = ((self.filled[:, None, :] | own[None]) & causal[None])[:, None]
        self.tokens_so_far += valid.long().sum(1)
        self.next_slot += new
        return DecodeStep(slots=slots, positions=positions.clamp_min(0), mask=mask, caches=self.caches)
