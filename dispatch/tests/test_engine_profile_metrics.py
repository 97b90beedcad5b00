import pytest

from dispatch.engine.metrics import gini, percentile
from dispatch.engine.profile import PRIOR_RATE, good_rate, quality_weight

NEUTRAL = {
    "good_rate_7d": None,
    "good_rate_30d": None,
    "on_time_rate": None,
    "first_fix_rate": None,
    "acceptance_rate": None,
    "consecutive_exceptions": 0,
    "ratings_30d": 0,
}


def rates(value: float, *, ratings: int, exceptions: int = 0) -> dict:
    return {
        "good_rate_7d": value,
        "good_rate_30d": value,
        "on_time_rate": value,
        "first_fix_rate": value,
        "acceptance_rate": value,
        "consecutive_exceptions": exceptions,
        "ratings_30d": ratings,
    }


def test_good_rate_is_good_over_total_or_none_without_ratings():
    assert good_rate(9, 10) == 0.9
    assert good_rate(0, 0) is None


def test_good_rate_refuses_impossible_counts():
    with pytest.raises(ValueError, match="cannot exceed"):
        good_rate(5, 4)
    with pytest.raises(ValueError, match="negative"):
        good_rate(-1, 4)


def test_an_agent_we_know_nothing_about_gets_the_prior():
    assert quality_weight(**NEUTRAL) == pytest.approx(PRIOR_RATE)


def test_missing_rates_fall_back_to_the_prior_not_to_zero():
    partial = {**NEUTRAL, "good_rate_30d": 0.95, "ratings_30d": 50}

    assert PRIOR_RATE < quality_weight(**partial) < 0.95


def test_perfect_rates_on_few_ratings_are_shrunk_towards_the_prior():
    few = quality_weight(**rates(1.0, ratings=2))
    many = quality_weight(**rates(1.0, ratings=200))

    assert PRIOR_RATE < few < 0.7
    assert many > 0.95
    assert quality_weight(**rates(0.0, ratings=2)) > quality_weight(**rates(0.0, ratings=200))


def test_better_rates_give_a_higher_weight():
    assert quality_weight(**rates(0.95, ratings=40)) > quality_weight(**rates(0.7, ratings=40))


def test_consecutive_exceptions_pull_the_weight_down():
    steady = quality_weight(**rates(0.95, ratings=40))
    three = quality_weight(**rates(0.95, ratings=40, exceptions=3))

    assert three == pytest.approx(steady * 0.75**3)


def test_weight_stays_within_bounds_at_the_extremes():
    assert quality_weight(**rates(0.0, ratings=10_000, exceptions=50)) == 0.05
    assert quality_weight(**rates(1.0, ratings=10_000)) <= 1.0
    assert quality_weight(**rates(1.0, ratings=10_000)) > 0.99


def test_quality_weight_refuses_a_rate_outside_zero_to_one():
    with pytest.raises(ValueError, match="between 0 and 1"):
        quality_weight(**{**NEUTRAL, "on_time_rate": 1.2})
    with pytest.raises(ValueError, match="ratings_30d cannot be negative"):
        quality_weight(**{**NEUTRAL, "ratings_30d": -1})


def test_gini_is_zero_for_equal_loads_and_near_one_when_one_holds_all():
    assert gini([3, 3, 3, 3]) == 0.0
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)  # (n - 1) / n
    assert gini([0] * 99 + [5]) == pytest.approx(0.99)


def test_gini_of_a_known_spread():
    # Mean absolute difference over all pairs / (2 * mean): for 1, 2, 3, 4 that is 1.25 / 5.
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)


def test_gini_of_nothing_is_zero_and_negative_amounts_are_refused():
    assert gini([]) == 0.0
    assert gini([0, 0]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        gini([1, -1])


def test_percentile_interpolates_and_is_none_without_values():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(range(101), 95) == 95.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1], 101)
