"""Which source head each head of a wider attention copies (HyperCloning, arXiv 2409.12903, Sec. 3: attention heads
are duplicated whole, head_dim unchanged), and how a plain differential head becomes a Grouped Differential
Attention group (the Motif-2-12.7B report, arXiv 2511.07464, Sec. 3: GDA introduced at the width growth from
Motif-2.6B).

Heads are described in slots of ``head_dim`` rows of q_proj, k_proj and v_proj, and in blocks of o_proj's input
(one block per output head: 2 * head_dim wide for the differential kinds, head_dim for GQA):

- grouped differential (G groups of r signal heads + 1 noise head; plain differential with as many key/value
  groups as heads is the case r = 1): target group g copies source group g // m (m = G_t / G_s); its signal head
  j copies source signal head j // c (c = r_t / r_s), its noise head the group's noise head; the group's
  (k1, k2) and (v1, v2) pairs are the source group's. Each output block is the copied head's, divided by its
  number of copies (m * c), so that o_proj sums the copies back to one.
- plain differential with key/value groups shared by several heads, and GQA: heads and key/value heads both
  m times (target head h copies h // m, key/value head k copies k // m), so each copy keeps its own keys.

Other pairs of kinds cannot compute the same function (a GDA group has one noise head; GQA has no noise branch).
"""

from dataclasses import dataclass

import torch

from components.attention import (
    AttentionConfig,
    DifferentialAttentionConfig,
    GroupedDifferentialAttentionConfig,
    GroupedQueryAttentionConfig,
)
from components.attention.differential_base import DifferentialConfig
from components.config_error import ConfigError


@dataclass(frozen=True)
class HeadMap:
    """Per target slot or block, the source one it copies."""

    q: list[int]
    """q_proj: head_dim-row slots."""
    k: list[int]
    """k_proj: head_dim-row slots."""
    v: list[int]
    """v_proj: head_dim-row slots."""
    o: list[int]
    """o_proj's input: one block per output head."""
    o_width: int
    """Columns of one o_proj input block."""


def _grouped(config: AttentionConfig) -> tuple[int, int] | None:
    """(groups, signal heads per group) of an attention that is GDA-shaped (one noise head per key/value pair)."""
    if isinstance(config, GroupedDifferentialAttentionConfig):
        return config.num_noise_heads, config.signal_noise_ratio
    if isinstance(config, DifferentialAttentionConfig) and config.num_heads == config.num_kv_heads:
        return config.num_heads, 1
    return None


def _refuse(source: AttentionConfig, target: AttentionConfig, why: str) -> ConfigError:
    return ConfigError("GrowthConfig", "target", f"{type(source).__name__} -> {type(target).__name__}", why)


def whole_multiple(target: int, source: int, what: str) -> int:
    """How many copies of each of the source's ``what`` the target holds; ConfigError unless a whole number."""
    if target < source or target % source:
        raise ConfigError("GrowthConfig", "target", f"{what} {source} -> {target}",
                          "HyperCloning copies units whole: the target needs a whole multiple of the source's")
    return target // source


def _grouped_map(source: tuple[int, int], target: tuple[int, int], head_dim: int) -> HeadMap:
    (g_s, r_s), (g_t, r_t) = source, target
    m = whole_multiple(g_t, g_s, "groups (noise heads)")
    c = whole_multiple(r_t, r_s, "signal heads per group")
    q, o = [], []
    for g in range(g_t):
        sg = g // m
        q += [sg * (r_s + 1) + j // c for j in range(r_t)] + [sg * (r_s + 1) + r_s]
        o += [sg * r_s + j // c for j in range(r_t)]
    pairs = [2 * (g // m) + branch for g in range(g_t) for branch in (0, 1)]
    return HeadMap(q=q, k=pairs, v=pairs, o=o, o_width=2 * head_dim)


def _repeated_map(heads: int, kv_heads: int, m: int, slots_per_head: int, value_slots: int, o_width: int) -> HeadMap:
    def repeat(count: int, slots: int) -> list[int]:
        return [slots * (h // m) + s for h in range(count * m) for s in range(slots)]
    return HeadMap(q=repeat(heads, slots_per_head), k=repeat(kv_heads, slots_per_head),
                   v=repeat(kv_heads, value_slots), o=[h // m for h in range(heads * m)], o_width=o_width)


def head_map(source: AttentionConfig, target: AttentionConfig) -> HeadMap:
    """The copy map from ``source``'s heads to ``target``'s; ConfigError when no copy computes the same function."""
    if source.head_dim != target.head_dim:
        raise _refuse(source, target, f"head_dim {source.head_dim} -> {target.head_dim}: heads are copied whole, "
                                      "so the target keeps the source's head_dim")
    d = source.head_dim
    grouped = isinstance(target, GroupedDifferentialAttentionConfig) or (_grouped(source) and _grouped(target))
    if grouped and _grouped(source) is None:
        raise _refuse(source, target, "a GDA group has one noise head and one (k1, k2) pair: the source needs the "
                                      "same (plain differential with num_kv_heads == num_heads, or GDA)")
    if not grouped and type(source) is not type(target):
        raise _refuse(source, target, "grow within one attention kind, or from differential to grouped differential")
    if isinstance(source, DifferentialConfig) and source.subln_eps != target.subln_eps:
        raise _refuse(source, target, f"subln_eps {source.subln_eps} -> {target.subln_eps}: the sub-norm's eps "
                                      "must stay the same")
    if grouped:
        return _grouped_map(_grouped(source), _grouped(target), d)
    m = whole_multiple(target.num_heads, source.num_heads, "heads")
    if target.num_kv_heads != m * source.num_kv_heads:
        raise _refuse(source, target, f"num_kv_heads {source.num_kv_heads} -> {target.num_kv_heads}: key/value heads "
                                      f"grow with the heads (x{m}: {m * source.num_kv_heads})")
    if isinstance(source, DifferentialAttentionConfig):
        return _repeated_map(source.num_heads, source.num_kv_heads, m, 2, 2, 2 * d)
    return _repeated_map(source.num_heads, source.num_kv_heads, m, 1, 1, d)


def rows_of(slots: list[int], width: int) -> torch.Tensor:
    """Row indices of the slots (or column indices of the blocks), ``width`` rows each."""
    return (torch.tensor(slots)[:, None] * width + torch.arange(width)).flatten()
