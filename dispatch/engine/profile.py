"""An agent's quality weight, blended from the rates their profile keeps."""

from __future__ import annotations

# What we believe about an agent we know nothing about: halfway. A new agent is neither favoured
# over proven ones nor buried under them.
PRIOR_RATE = 0.5
# Beta smoothing strength, in pseudo-ratings: a rate from n ratings counts n / (n + 8) and the
# prior the rest, so 2 good ratings out of 2 read as 0.6, not 1.0, while 40 of 40 read as 0.92.
PRIOR_STRENGTH = 8.0
# How much each rate counts. The 30-day good rate is the steadiest signal; the 7-day one catches a
# recent slide; on-time and first-time-fix are what customers complain about (seed 000 feeds them
# back into the weight); acceptance says whether offers to this agent stick.
BLEND = {
    "good_rate_30d": 0.30,
    "good_rate_7d": 0.15,
    "on_time_rate": 0.20,
    "first_fix_rate": 0.20,
    "acceptance_rate": 0.15,
}
# Each consecutive exception (reject, expiry, going dark) multiplies the weight by this: three in a
# row, the L3 threshold, leave about 42% of it.
EXCEPTION_FACTOR = 0.75
MIN_WEIGHT = 0.05  # never zero: a struggling agent still gets work when no one else can take it
MAX_WEIGHT = 1.0
# The 7-day rate rests on about a quarter of the 30-day ratings; shrink it accordingly.
SEVEN_DAY_SHARE = 7 / 30


def good_rate(good: int, total: int) -> float | None:
    """Share of good ratings, or None when there are no ratings to judge by."""
    if total < 0 or good < 0:
        raise ValueError(f"rating counts cannot be negative (good={good}, total={total})")
    if good > total:
        raise ValueError(f"good ratings ({good}) cannot exceed all ratings ({total})")
    return good / total if total else None


def _smoothed(rate: float | None, evidence: float) -> float:
    if rate is None:
        return PRIOR_RATE
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a rate must be between 0 and 1, not {rate}")
    return (rate * evidence + PRIOR_RATE * PRIOR_STRENGTH) / (evidence + PRIOR_STRENGTH)


def quality_weight(
    *,
    good_rate_7d: float | None,
    good_rate_30d: float | None,
    on_time_rate: float | None,
    first_fix_rate: float | None,
    acceptance_rate: float | None,
    consecutive_exceptions: int,
    ratings_30d: int,
) -> float:
    """The agent's weight in [0.05, 1.0]: a weighted blend (`BLEND`) of their rates, each shrunk
    towards `PRIOR_RATE` by Beta smoothing over the ratings behind it (a missing rate is the prior),
    times `EXCEPTION_FACTOR` per consecutive exception, clamped to [MIN_WEIGHT, MAX_WEIGHT].

    `ratings_30d` is the evidence for every rate: on-time and first-time-fix come with each
    rating, and acceptance is smoothed on the same count so a handful of offers cannot make it
    decisive either.
    """
    if ratings_30d < 0:
        raise ValueError(f"ratings_30d cannot be negative, got {ratings_30d}")
    if consecutive_exceptions < 0:
        raise ValueError(f"consecutive_exceptions cannot be negative, got {consecutive_exceptions}")
    rates = {
        "good_rate_30d": _smoothed(good_rate_30d, ratings_30d),
        "good_rate_7d": _smoothed(good_rate_7d, ratings_30d * SEVEN_DAY_SHARE),
        "on_time_rate": _smoothed(on_time_rate, ratings_30d),
        "first_fix_rate": _smoothed(first_fix_rate, ratings_30d),
        "acceptance_rate": _smoothed(acceptance_rate, ratings_30d),
    }
    blend = sum(BLEND[name] * value for name, value in rates.items())
    # Capped exponent: past 20 the factor is far below MIN_WEIGHT anyway.
    blend *= EXCEPTION_FACTOR ** min(consecutive_exceptions, 20)
    return min(MAX_WEIGHT, max(MIN_WEIGHT, blend))
