"""Summary numbers for judging a dispatch run: load spread (Gini) and percentiles."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def gini(values: Iterable[float]) -> float:
    """Gini coefficient of non-negative amounts (e.g. items per agent): 0 when everyone has the
    same, approaching 1 when one holds everything ((n - 1) / n exactly, for n holders).
    Empty or all-zero input is perfectly equal: 0."""
    x = np.sort(np.asarray(list(values), dtype=float))
    if x.size == 0:
        return 0.0
    if np.isnan(x).any() or x[0] < 0:
        raise ValueError("gini needs non-negative numbers")
    total = x.sum()
    if total == 0:
        return 0.0
    # Sorted ascending, G = sum_i (2i - n - 1) x_i / (n * sum x), i = 1..n.
    n = x.size
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile (0..100, linear interpolation), or None for no values."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {p}")
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return None
    return float(np.percentile(x, p))
