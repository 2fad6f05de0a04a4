"""Warmup-stable-decay multipliers at the phase boundaries, for each decay shape."""

import math

import pytest
import torch

from components.optim.schedules import WarmupStableDecayLR


def lrs(steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = WarmupStableDecayLR(optimizer, **kwargs)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return values


@pytest.mark.parametrize("shape,midpoint", [("linear", 0.5), ("cosine", 0.5), ("sqrt", 1 - math.sqrt(0.5))])
def test_wsd_phases(shape, midpoint):
    values = lrs(100, total_steps=100, warmup_steps=10, decay_fraction=0.2, final_lr_ratio=0.1, decay_shape=shape)
    assert values[0] == pytest.approx(2.0 * 1 / 10)
    assert values[9] == pytest.approx(2.0)
    assert all(v == pytest.approx(2.0) for v in values[10:81])
    assert values[90] == pytest.approx(2.0 * (0.1 + 0.9 * midpoint))
    assert values[99] == pytest.approx(2.0 * (0.1 + 0.9 * {"linear": 0.05, "cosine": 0.5 * (1 + math.cos(0.95 * math.pi)), "sqrt": 1 - math.sqrt(0.95)}[shape]))
    assert all(a >= b - 1e-12 for a, b in zip(values[10:], values[11:]))


def test_wsd_without_decay_stays_at_peak():
    assert lrs(50, total_steps=50, warmup_steps=0, decay_fraction=0.0) == [2.0] * 50
