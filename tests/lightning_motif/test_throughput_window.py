"""The dashboard's rate window: rates from the second logging point on, over at most ``size`` points."""

import pytest

from lightning_motif.callbacks.throughput import RateWindow, TokenThroughputMonitor


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
