import numpy as np
import pytest

from dispatch.engine import scoring
from dispatch.engine.types import Criterion, PolicySpec


def test_default_weights_halve_down_the_list_so_each_outweighs_the_rest():
    weights = scoring.default_weights(["skill", "load", "proximity"])

    assert weights == ((Criterion.SKILL, 4.0), (Criterion.LOAD, 2.0), (Criterion.PROXIMITY, 1.0))


def test_default_weights_refuse_a_criterion_listed_twice_or_unknown():
    with pytest.raises(ValueError, match="listed twice"):
        scoring.default_weights(["skill", "skill"])
    with pytest.raises(ValueError, match="is not a valid Criterion"):
        scoring.default_weights(["charisma"])


def test_a_policy_without_criteria_uses_every_criterion_urgency_first():
    criteria = scoring.policy_criteria(PolicySpec())

    assert criteria == scoring.DEFAULT_CRITERIA
    assert {c for c, _ in criteria} == set(Criterion)
    assert criteria[0][0] == Criterion.URGENCY


def test_policy_criteria_refuse_negative_or_nan_weights_and_repeats():
    with pytest.raises(ValueError, match="non-negative"):
        scoring.policy_criteria(PolicySpec(criteria=((Criterion.SKILL, -1.0),)))
    with pytest.raises(ValueError, match="non-negative"):
        scoring.policy_criteria(PolicySpec(criteria=((Criterion.SKILL, float("nan")),)))
    with pytest.raises(ValueError, match="listed twice"):
        scoring.policy_criteria(PolicySpec(criteria=((Criterion.SKILL, 1.0), (Criterion.SKILL, 2.0))))


def test_urgency_ranks_expedited_over_repeat_repair_over_aged_over_fresh():
    expedited, repeat, aged, fresh = scoring.urgency_scores(
        np.array([1.0, 0, 0, 0]),
        np.array([0.0, 1, 0, 0]),
        np.array([0.0, 0, 3600, 0]),
        np.array([0.0, 0, 0, 0]),
    )

    assert expedited > repeat > aged > fresh == 0.0
    assert aged == pytest.approx(scoring.AGING_MAX)  # capped: an hour is past the half hour that maxes it


def test_urgency_ages_with_failed_rounds_and_never_passes_one():
    one_round, everything = scoring.urgency_scores(
        np.array([0.0, 1]), np.array([0.0, 1]), np.array([0.0, 1e9]), np.array([1.0, 50])
    )

    assert one_round == pytest.approx(scoring.AGING_MAX / 3)
    assert everything == 1.0


# Skills: 0 = ac_install, 1 = heater. Agent 0 holds ac_install at 5 and heater at 2; agent 1 only heater at 4.
LEVELS = np.array([[5.0, 2.0], [0.0, 4.0]])
NEEDS = np.array([[0, -1], [0, 1], [-1, -1]])  # task 0: ac only; task 1: both; task 2: none
GRID = (np.arange(2)[None, :], np.arange(3)[:, None])  # every (task, agent)


def test_pair_levels_gathers_each_agents_level_in_each_needed_skill():
    levels = scoring.pair_levels(LEVELS, NEEDS, *GRID)

    assert levels.shape == (3, 2, 2)
    assert levels[1, 0].tolist() == [5.0, 2.0]
    assert levels[0, 1, 0] == 0.0 and np.isnan(levels[0, 1, 1])


def test_skill_score_is_the_mean_level_over_five_and_neutral_without_skills():
    scores = scoring.skill_scores(scoring.pair_levels(LEVELS, NEEDS, *GRID))

    assert scores[0].tolist() == [1.0, 0.0]
    assert scores[1].tolist() == pytest.approx([(1.0 + 0.4) / 2, (0.0 + 0.8) / 2])
    assert scores[2].tolist() == [scoring.NEUTRAL, scoring.NEUTRAL]


def test_skill_scores_of_pairs_equal_the_grid():
    pairs = scoring.pair_levels(LEVELS, NEEDS, np.array([1, 0]), np.array([1, 0]))

    assert scoring.skill_scores(pairs).tolist() == pytest.approx([0.4, 1.0])


def test_skill_coverage_needs_every_skill_the_task_calls_for():
    covered = scoring.skill_coverage(scoring.pair_levels(LEVELS, NEEDS, *GRID))

    assert covered.tolist() == [[True, False], [True, False], [True, True]]


def test_proximity_is_one_within_five_km_then_decays_and_neutral_without_coordinates():
    scores = scoring.proximity_scores(np.array([0.0, 4.9, 5.0, 10.0, 50.0, np.nan]))

    assert scores.tolist() == [1.0, 1.0, 1.0, 0.5, 0.1, scoring.NEUTRAL]


def test_load_prefers_fewer_than_two_active_then_falls_by_one_over_capacity():
    scores = scoring.load_scores(np.array([0, 1, 2, 3, 5, 6]), np.array([5, 5, 5, 5, 5, 5]))

    assert scores.tolist() == pytest.approx([1.0, 1.0, 0.8, 0.6, 0.2, 0.0])


def test_quality_is_one_at_ninety_percent_this_week_else_blends_the_profile_weight():
    scores = scoring.quality_scores(np.array([0.95, 0.9, 0.6, np.nan]), np.array([0.2, 0.2, 0.8, 0.3]))

    assert scores.tolist() == pytest.approx([1.0, 1.0, 0.7, 0.3])


def test_returning_scores_the_last_agent_only():
    scores = scoring.returning_scores(np.array([7, 7, 0]), np.array([True, True, False]), np.array([3, 7, 0]))

    assert scores.tolist() == [0.0, 1.0, 0.0]


def test_vip_prefers_dedicated_agents_else_quality_and_ignores_non_vips():
    # Pairs: a VIP with a dedicated agent (theirs, then another), a VIP without one, a non-VIP.
    scores = scoring.vip_scores(
        vip=np.array([True, True, True, False]),
        dedicated=np.array([True, False, False, True]),
        has_dedicated=np.array([True, True, False, True]),
        quality=np.array([0.4, 0.9, 0.9, 0.9]),
    )

    assert scores.tolist() == [1.0, 0.0, 0.9, 0.0]


def test_channel_team_scores_members():
    assert scoring.channel_team_scores(np.array([True, False])).tolist() == [1.0, 0.0]
