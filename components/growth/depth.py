"""Depth growth by LLaMA-Pro block expansion (arXiv 2401.02415, Sec. 2.2-2.3): copies of existing blocks are
inserted, each with its attention's o_proj and its MLP's down_proj zeroed, so a new block adds nothing to the
residual stream and the deeper model computes the source's function.

Where the copies go: by default as LLaMA-Pro does it, the source's blocks split into as many equal groups as new
blocks and a copy of each group's last block inserted after it (32 -> 40 layers: a copy after every 4th block);
``insert_after`` names the source blocks to copy instead.

Differential attention's lambda_init depends on the layer index (arXiv 2410.05258, Sec. 2.1), so a block that
moves to another index would compute another function. Compensated exactly: lambda = exp(lq1 . lk1) -
exp(lq2 . lk2) + lambda_init keeps its value by moving the change of lambda_init into one of the exponentials (the
second when lambda_init grows, the first when it shrinks, so the exponential stays positive), and the output
factor (1 - lambda_init) into the sub-norm's weight.
"""

import math

import torch

from components.attention.differential_base import LambdaInitSchedule, lambda_init
from components.config_error import ConfigError

ZEROED = ("self_attn.o_proj.weight", "mlp.down_proj.weight")
"""The projections into the residual stream: zero in an inserted block (LLaMA-Pro, Sec. 2.2)."""


def layer_plan(source_layers: int, target_layers: int, insert_after: list[int] | None) -> list[tuple[int, bool]]:
    """Per target layer, (the source layer it copies, whether it is an inserted identity block)."""
    new = target_layers - source_layers
    if new < 0:
        raise ConfigError("GrowthConfig", "target", f"{source_layers} -> {target_layers} layers",
                          "depth growth only adds layers: choose a target with at least the source's layers")
    if insert_after is None:
        insert_after = [(k + 1) * source_layers // new - 1 for k in range(new)]
    elif len(insert_after) != new or not all(0 <= i < source_layers for i in insert_after):
        raise ConfigError("GrowthConfig", "insert_after", insert_after,
                          f"name {new} source layers (0 to {source_layers - 1}), one per inserted block")
    plan = []
    for i in range(source_layers):
        plan.append((i, False))
        plan += [(i, True)] * insert_after.count(i)
    return plan


def _with_dot(query: torch.Tensor, key: torch.Tensor, value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(query', key) with query' . key == ``value``: query moved along key (or, for a zero key, key along query)."""
    q, k = query.double(), key.double()
    if k.dot(k) > 0:
        return (q + (value - q.dot(k)) * k / k.dot(k)).to(query.dtype), key
    if q.dot(q) > 0:
        return query, (k + (value - q.dot(k)) * q / q.dot(q)).to(key.dtype)
    unit = torch.full_like(q, math.sqrt(abs(value) / q.numel()))
    return unit.to(query.dtype), (math.copysign(1.0, value) * unit).to(key.dtype)


def compensate_lambda_init(layer: dict[str, torch.Tensor], source_init: float, target_init: float) -> None:
    """Make a differential layer whose lambda_init changes from ``source_init`` to ``target_init`` compute what it
    did (in place, on its ``self_attn.*`` tensors)."""
    shift = source_init - target_init
    if shift == 0 or "self_attn.lambda_q1" not in layer or layer["self_attn.lambda_q1"].is_meta:
        return
    branch = "2" if shift < 0 else "1"
    query, key = layer[f"self_attn.lambda_q{branch}"], layer[f"self_attn.lambda_k{branch}"]
    exponent = query.double().dot(key.double()).item()
    wanted = math.log(math.exp(exponent) - shift) if branch == "2" else math.log(math.exp(exponent) + shift)
    layer[f"self_attn.lambda_q{branch}"], layer[f"self_attn.lambda_k{branch}"] = _with_dot(query, key, wanted)
    weight = layer["self_attn.subln.weight"]
    layer["self_attn.subln.weight"] = (weight.double() * ((1 - source_init) / (1 - target_init))).to(weight.dtype)


def grow_depth(state: dict[str, torch.Tensor], plan: list[tuple[int, bool]], source_schedule: LambdaInitSchedule | None,
               target_schedule: LambdaInitSchedule | None) -> dict[str, torch.Tensor]:
    """The layers of ``state`` laid out by ``plan`` (inserted blocks zeroed), lambda_init compensated per layer;
    schedules are None for attentions without lambda."""
    grown = {n: t for n, t in state.items() if not n.startswith("model.layers.")}
    for target, (source, inserted) in enumerate(plan):
        prefix = f"model.layers.{source}."
        layer = {n[len(prefix):]: t for n, t in state.items() if n.startswith(prefix)}  # replaced, never mutated
        for part in ZEROED if inserted else ():
            layer[part] = torch.zeros_like(layer[part])
        if source_schedule is not None:
            compensate_lambda_init(layer, lambda_init(source, source_schedule), lambda_init(target, target_schedule))
        grown.update({f"model.layers.{target}.{part}": t for part, t in layer.items()})
    return grown
