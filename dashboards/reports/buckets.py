"""Fixed log-scale buckets for durations in seconds, so percentiles survive summing days.

Pure Python, no Django. Bucket 0 holds everything under BASE seconds; bucket b ≥ 1 holds
[BASE**b, BASE**(b+1)); the last bucket holds everything longer. A percentile read back is
the bucket's geometric middle: within ±12% of the true value with BASE 1.25."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal

BASE = 1.25
COUNT = 64  # 1.25**64 s ≈ 18 days: longer waits all land in the last bucket

# The same arithmetic for PostgreSQL, over a column or expression of seconds.
SQL = f"LEAST({COUNT - 1}, GREATEST(0, FLOOR(LN(GREATEST(%s, 1)) / LN({BASE}))))::int"


def bucket(seconds: float) -> int:
    if seconds < BASE:
        return 0
    return min(COUNT - 1, math.floor(math.log(seconds) / math.log(BASE)))


def sql(expression: str) -> str:
    return SQL % expression


def bucket_as_sql(microseconds: int) -> int:
    """SQL's bucket of a duration PostgreSQL holds as numeric seconds with 6 decimals (an
    interval's EXTRACT(EPOCH …)), digit for digit: PostgreSQL rounds LN and the quotient to
    16 or so decimals, so a duration on a boundary (1.5625 s = BASE**2) falls below it, where
    bucket() puts it above. The rollup computed outside PostgreSQL uses this one."""
    if microseconds < 1_250_000:
        return 0  # below BASE; LN(GREATEST(s, 1)) / LN(BASE) stays under 1 at any rounding
    seconds = Decimal(microseconds).scaleb(-6)
    ratio = _pg_div(_pg_ln(seconds, scale=6), _pg_ln(Decimal("1.25"), scale=2))
    return min(COUNT - 1, int(ratio.to_integral_value(rounding=ROUND_FLOOR)))


_EXACT = Context(prec=80)


def _pg_ln(x: Decimal, *, scale: int) -> Decimal:
    """numeric LN(x) for x > 1.1: rounded to 16 decimals less the estimated decimal weight
    of the result (PostgreSQL's estimate_ln_dweight), at least the argument's scale."""
    digits, dweight = _nbase_lead(x)
    ln_dweight = int(math.log10(abs(math.log(digits) + dweight * 2.302585092994046)))
    rscale = max(16 - ln_dweight, scale, 0)
    return x.ln(_EXACT).quantize(Decimal(1).scaleb(-rscale), rounding=ROUND_HALF_UP)


def _pg_div(a: Decimal, b: Decimal) -> Decimal:
    """numeric a / b for positive a and b: rounded to PostgreSQL's select_div_scale."""
    (w1, d1), (w2, d2) = _nbase_first(a), _nbase_first(b)
    qweight = w1 - w2 - (1 if d1 <= d2 else 0)
    rscale = max(16 - qweight * 4, -a.as_tuple().exponent, -b.as_tuple().exponent, 0)
    return _EXACT.divide(a, b).quantize(Decimal(1).scaleb(-rscale), rounding=ROUND_HALF_UP)


def _nbase_digits(x: Decimal) -> tuple[int, list[int]]:
    """x > 0 as PostgreSQL stores numeric: base-10000 digits and the weight of the first,
    leading and trailing zero digits stripped."""
    whole, fraction = f"{x:f}".partition(".")[::2]
    whole = whole.lstrip("0")
    whole = "0" * (-len(whole) % 4) + whole
    fraction += "0" * (-len(fraction) % 4)
    groups = [int(whole[i : i + 4]) for i in range(0, len(whole), 4)]
    groups += [int(fraction[i : i + 4]) for i in range(0, len(fraction), 4)]
    weight = len(whole) // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    return weight, groups


def _nbase_lead(x: Decimal) -> tuple[int, int]:
    weight, groups = _nbase_digits(x)
    if len(groups) > 1:
        return groups[0] * 10_000 + groups[1], (weight - 1) * 4
    return groups[0], weight * 4


def _nbase_first(x: Decimal) -> tuple[int, int]:
    weight, groups = _nbase_digits(x)
    return weight, groups[0]


def merge(histograms: Iterable[Mapping[str, int]], into: dict[int, int] | None = None) -> dict[int, int]:
    """Sum histograms stored as {"bucket": count} (JSON keys are text)."""
    total = into if into is not None else {}
    for histogram in histograms:
        for key, count in (histogram or {}).items():
            b = int(key)
            total[b] = total.get(b, 0) + int(count)
    return total


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-th quantile (0 < q ≤ 1) in seconds, or None for an empty histogram."""
    n = sum(histogram.values())
    if n == 0:
        return None
    rank = q * n
    seen = 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen >= rank:
            return _middle(b)
    return _middle(max(histogram))


def _middle(b: int) -> float:
    if b == 0:
        return BASE / 2
    return BASE ** (b + 0.5)
