"""The curriculum plan: schedule values, statistics of the mixture, purity, rank/worker splits, no repeats."""

import numpy as np
import pytest

from components.config_error import ConfigError
from lightning_motif.data.curriculum import (
    CurriculumPlan,
    CurriculumSchedule,
    MixtureMilestone,
    ValueMilestone,
    permute,
)


def schedule(**overrides) -> CurriculumSchedule:
    fields = dict(
        mixture=[MixtureMilestone(tokens=0, weights={"web": 0.7, "code": 0.2, "math": 0.1}),
                 MixtureMilestone(tokens=400_000, weights={"web": 0.2, "code": 0.4, "math": 0.4}),
                 MixtureMilestone(tokens=800_000, weights={"web": 0.1, "code": 0.3, "math": 0.6})],
        seq_len=[ValueMilestone(tokens=0, value=64), ValueMilestone(tokens=300_000, value=256)],
        batch_tokens=[ValueMilestone(tokens=0, value=4096), ValueMilestone(tokens=500_000, value=16384)],
    )
    fields.update(overrides)
    return CurriculumSchedule(**fields)


def first_steps(plan: CurriculumPlan, n: int, start: int = 0):
    steps = plan.steps(start)
    return [next(steps) for _ in range(n)]


def test_schedule_values_between_milestones():
    s = schedule()
    assert s.domains == ["code", "math", "web"]
    np.testing.assert_allclose(s.weights_at(0), [0.2, 0.1, 0.7])
    np.testing.assert_allclose(s.weights_at(200_000), [0.3, 0.25, 0.45])  # halfway between the first two
    np.testing.assert_allclose(s.weights_at(5e6), [0.3, 0.6, 0.1])
    assert s.seq_len_at(299_999) == 64 and s.seq_len_at(300_000) == 256
    assert s.batch_tokens_at(250_000) == pytest.approx(10240)
    assert s.sequences_per_step(250_000) == 160 and s.sequences_per_step(1e6) == 64


def test_tokens_are_counted_exactly():
    steps = first_steps(CurriculumPlan(schedule(), {"web": 500, "code": 300, "math": 100}, seed=1), 120)
    for before, after in zip(steps, steps[1:]):
        assert after.tokens_before == before.tokens_before + before.sequences * before.seq_len
        assert after.domain_tokens_seen.sum() == after.tokens_before + after.sequences * after.seq_len
    assert {s.seq_len for s in steps} == {64, 256}


def test_mixture_follows_the_schedule_within_sampling_error():
    """Over windows of 20 steps, per-domain counts against the expected sum of per-step weights.

    Domain choices are independent draws, so X^2 = sum (observed - expected)^2 / expected is close to a
    chi-square with 2 degrees of freedom: no window may exceed its 99.99% quantile (18.4), and the mean over
    windows must be near 2 (a biased or an over-regular sampler would fail one or the other)."""
    plan = CurriculumPlan(schedule(), {"web": 10_000, "code": 10_000, "math": 10_000}, seed=7)
    steps = first_steps(plan, 400)
    statistics = []
    for window in range(0, 400, 20):
        chunk = steps[window:window + 20]
        observed = sum(np.bincount(s.domain, minlength=3) for s in chunk)
        expected = sum(s.weights * s.sequences for s in chunk)
        statistics.append(float(((observed - expected) ** 2 / expected).sum()))
    assert max(statistics) < 18.4, statistics
    assert 1.0 < np.mean(statistics) < 3.2, statistics
    assert steps[-1].weights[1] > steps[0].weights[1] * 3  # math grew: the windows really did cover a change


def test_plan_is_a_pure_function_of_seed_and_step():
    plan = CurriculumPlan(schedule(), {"web": 50, "code": 30, "math": 7}, seed=3)
    full = first_steps(plan, 90)
    resumed = first_steps(CurriculumPlan(schedule(), {"web": 50, "code": 30, "math": 7}, seed=3), 30, start=60)
    for a, b in zip(full[60:], resumed):
        assert a.step == b.step and a.tokens_before == b.tokens_before
        for name in ("domain", "page", "offset", "domain_tokens_seen"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    other_seed = first_steps(CurriculumPlan(schedule(), {"web": 50, "code": 30, "math": 7}, seed=4), 1)[0]
    assert not np.array_equal(other_seed.domain, full[0].domain)


def test_windows_stay_inside_pages_and_never_repeat_within_an_epoch():
    pages = {"web": 4000, "code": 4000, "math": 4000}
    plan = CurriculumPlan(schedule(), pages, seed=5)
    seen = set()
    for s in first_steps(plan, 150):
        assert np.all(s.offset + s.seq_len + 1 <= plan.page_tokens)
        assert np.all((s.page >= 0) & (s.page < 4000))
        for key in zip(s.domain.tolist(), s.page.tolist(), s.offset.tolist()):
            assert key not in seen
            seen.add(key)


def test_small_domain_wraps_into_new_epochs_with_new_orders():
    plan = CurriculumPlan(schedule(mixture=[MixtureMilestone(tokens=0, weights={"tiny": 1.0})],
                                   seq_len=[ValueMilestone(tokens=0, value=64)],
                                   batch_tokens=[ValueMilestone(tokens=0, value=64 * 10)]),
                          {"tiny": 5}, seed=0)
    pages = np.concatenate([s.page for s in first_steps(plan, 2)])  # one window per page: 20 windows, 4 epochs
    epochs = [tuple(pages[i:i + 5].tolist()) for i in range(0, 20, 5)]
    assert all(sorted(epoch) == [0, 1, 2, 3, 4] for epoch in epochs)
    assert len(set(epochs)) > 1


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4097])
def test_feistel_permutation_is_a_bijection(n):
    values = permute(np.arange(n), n, key=12345)
    assert sorted(values.tolist()) == list(range(n))


BAD_SCHEDULES = [
    (dict(mixture=[MixtureMilestone(tokens=10, weights={"web": 1.0})]), "CurriculumSchedule.mixture"),
    (dict(seq_len=[ValueMilestone(tokens=0, value=64), ValueMilestone(tokens=0, value=128)]), "CurriculumSchedule.seq_len"),
    (dict(batch_tokens=[]), "CurriculumSchedule.batch_tokens"),
    (dict(batch_multiple=0), "CurriculumSchedule.batch_multiple"),
]


@pytest.mark.parametrize("overrides,field", BAD_SCHEDULES, ids=[f for _, f in BAD_SCHEDULES])
def test_bad_schedule_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"^{field} = "):
        schedule(**overrides)


def test_bad_milestones_name_the_field():
    with pytest.raises(ConfigError, match=r"^MixtureMilestone.weights = "):
        MixtureMilestone(tokens=0, weights={"web": -1.0})
    with pytest.raises(ConfigError, match=r"^ValueMilestone.value = 0"):
        ValueMilestone(tokens=0, value=0)


def test_domain_without_data_is_refused():
    with pytest.raises(ConfigError, match=r"CurriculumSchedule.mixture = \['math'\]"):
        CurriculumPlan(schedule(), {"web": 5, "code": 5, "math": 0}, seed=0)
