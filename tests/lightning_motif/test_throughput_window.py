"""The dashboard's rate window (rates from the second logging point on, over at most ``size`` points) and the
model FLOPs it counts per step (packed SFT rows: each sample at its own length)."""

import pytest
import torch

from components.documents import PackedDocuments
from lightning_motif.callbacks.throughput import RateWindow, TokenThroughputMonitor, step_model_flops


def test_rates_start_at_the_second_point_and_span_the_last_points():
    window = RateWindow(3)
    assert window.add(10.0, 1, 1000, 5e12) is None
    rates = window.add(12.0, 2, 3000, 9e12)  # a large, slow step: its rate is there at once
    assert (rates.steps_per_sec, rates.tokens_per_sec, rates.flops_per_sec) == (0.5, 1000.0, 2e12)
    window.add(13.0, 3, 4000, 11e12)
    rates = window.add(17.0, 4, 8000, 19e12)  # the first point left the window: from t = 12 to 17
    assert (rates.steps_per_sec, rates.tokens_per_sec, rates.flops_per_sec) == (0.4, 1000.0, 2e12)


@pytest.mark.parametrize("size", [0, 1])
def test_a_window_that_spans_no_interval_is_refused_by_name(size):
    with pytest.raises(ValueError, match="window: .* use 2 or more"):
        TokenThroughputMonitor(window=size)


def test_a_steps_flops_count_each_packed_sample_at_its_own_length():
    def flops_per_token(length):
        return 1000 + length  # the attention share grows with the context

    windows = torch.zeros(2, 17, dtype=torch.long)
    assert step_model_flops({"tokens": windows, "micro_batch_size": 1}, flops_per_token) == 2 * 16 * (1000 + 16)
    documents = PackedDocuments.from_lengths([[5, 7, 4], [16]]).ids
    packed = {"tokens": windows, "micro_batch_size": 1, "targets": torch.zeros(2, 16), "documents": documents}
    assert step_model_flops(packed, flops_per_token) == sum(n * (1000 + n) for n in (5, 7, 4, 16))
