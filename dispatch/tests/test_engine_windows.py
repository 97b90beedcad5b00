import pytest

from dispatch.engine.types import PolicySpec
from dispatch.engine.windows import offer_window_seconds

POLICY = PolicySpec()  # 600 s normally; bursts over 100 offers: 300 s widening to 900 s


def test_a_normal_round_gives_every_offer_ten_minutes():
    assert [offer_window_seconds(p, 40, POLICY) for p in (0, 20, 39)] == [600, 600, 600]


def test_exactly_burst_first_offers_is_still_a_normal_round():
    assert offer_window_seconds(99, 100, POLICY) == 600


def test_a_burst_gives_the_first_100_five_minutes():
    windows = [offer_window_seconds(p, 300, POLICY) for p in range(100)]

    assert set(windows) == {300}


def test_a_burst_widens_linearly_after_the_first_100_to_fifteen_minutes_at_200():
    windows = [offer_window_seconds(p, 300, POLICY) for p in range(100, 300)]

    assert 300 < windows[0] < 310  # one step above the short window
    assert windows == sorted(windows)
    assert offer_window_seconds(150, 300, POLICY) == pytest.approx(600, abs=6)
    assert offer_window_seconds(200, 300, POLICY) == 900
    assert set(windows[100:]) == {900}


def test_burst_settings_come_from_the_policy():
    policy = PolicySpec(offer_seconds=900, burst_first=10, burst_min_seconds=120, burst_max_seconds=240)

    assert offer_window_seconds(3, 10, policy) == 900
    assert offer_window_seconds(3, 11, policy) == 120
    assert offer_window_seconds(20, 30, policy) == 240


def test_burst_first_zero_switches_bursts_off():
    assert offer_window_seconds(500, 1000, PolicySpec(burst_first=0)) == 600


def test_a_position_outside_the_round_is_refused():
    with pytest.raises(ValueError, match="outside a round of 10"):
        offer_window_seconds(10, 10, POLICY)
    with pytest.raises(ValueError, match="outside a round of 10"):
        offer_window_seconds(-1, 10, POLICY)


def test_a_round_without_offers_has_no_window():
    with pytest.raises(ValueError, match="at least one"):
        offer_window_seconds(0, 0, POLICY)
