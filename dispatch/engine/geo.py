"""Great-circle distances between tasks and agents, one pair or a whole pool at once."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius

Coordinates = Sequence[float | None] | np.ndarray


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Distance in km between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lng2 - lng1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    # min(): rounding can push h a hair above 1 for antipodal points.
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def _radians(values: Coordinates) -> np.ndarray:
    # dtype=float turns None into NaN, which then propagates to every distance it touches.
    return np.radians(np.asarray(values, dtype=float))


def distance_matrix_km(
    task_lat: Coordinates, task_lng: Coordinates, agent_lat: Coordinates, agent_lng: Coordinates
) -> np.ndarray:
    """(tasks x agents) distances in km; NaN where either side has no coordinates (None or NaN).

    The haversine terms are expanded into outer products of per-point sines and cosines
    (cos(a - b) = cos a cos b + sin a sin b), so the only trigonometry on the full matrix is one
    arcsin, and the arithmetic runs in place: fresh 1.6 MB temporaries each cost page faults, and
    this halves the time of the textbook broadcast (about 3 ms vs 6 ms on 1,000 x 200 here).
    Agrees with `haversine_km` to well under a metre.
    """
    t_phi, t_lmb = _radians(task_lat), _radians(task_lng)
    a_phi, a_lmb = _radians(agent_lat), _radians(agent_lng)
    if t_phi.shape != t_lmb.shape or a_phi.shape != a_lmb.shape:
        raise ValueError("latitude and longitude arrays must have the same length")
    cos_cos = np.outer(np.cos(t_phi), np.cos(a_phi))
    h = np.outer(np.sin(t_phi), np.sin(a_phi))
    h += cos_cos  # cos(dphi)
    lng_term = np.outer(np.cos(t_lmb), np.cos(a_lmb))
    lng_term += np.outer(np.sin(t_lmb), np.sin(a_lmb))  # cos(dlambda)
    # h = sin^2(dphi/2) + cos phi1 cos phi2 sin^2(dlambda/2), with sin^2(x/2) = (1 - cos x) / 2
    np.subtract(1.0, lng_term, out=lng_term)
    lng_term *= cos_cos
    np.subtract(1.0, h, out=h)
    h += lng_term
    h *= 0.5
    # Rounding can push h a hair outside [0, 1]; NaN (missing coordinates) passes through.
    np.clip(h, 0.0, 1.0, out=h)
    np.sqrt(h, out=h)
    np.arcsin(h, out=h)
    h *= 2 * EARTH_RADIUS_KM
    return h
