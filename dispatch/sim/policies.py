"""The policies the simulator knows by name, besides those read from the database."""

from __future__ import annotations

from dispatch.engine.types import HardFilter, PolicyKind, PolicySpec
from dispatch.sim.model import PolicySet

# `smart` is the product's built-in default (dispatch.selectors.DEFAULT_POLICY): the default
# criteria, skill and area filters. `round_robin` is the classic 轮询 the seeds start from: the
# next agent in line, whatever they know and wherever they are. `round_robin_filtered` keeps
# the smart policy's filters, so its difference to `smart` is the scoring alone.
BUILTIN: dict[str, PolicySpec] = {
    "smart": PolicySpec(),
    "round_robin": PolicySpec(kind=PolicyKind.ROUND_ROBIN, filters=frozenset()),
    "round_robin_filtered": PolicySpec(
        kind=PolicyKind.ROUND_ROBIN, filters=frozenset({HardFilter.SKILL, HardFilter.AREA})
    ),
}


def builtin(name: str) -> PolicySet:
    spec = BUILTIN.get(name)
    if spec is None:
        raise ValueError(f"unknown policy {name!r}; built in: {', '.join(BUILTIN)}")
    return PolicySet.single(name, spec)
