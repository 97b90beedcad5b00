"""The overdue-scan benchmark at a small size: it builds its orders server-side, runs the pass
twice (resetting between runs) and reports every figure with the plan. The figures are not
judged here: 20,000 orders on a shared test machine say nothing about speed."""

from __future__ import annotations

import pytest

from dashboards.benchmarks.board.overdue import measure_overdue_scan
from dashboards.models import Alert, Notification
from orders.models import Order, OrderEvent


@pytest.mark.django_db
def test_measure_overdue_scan_small_reports_every_figure_and_escalates_exactly_the_overdue_orders():
    result = measure_overdue_scan(total=20_000, overdue=50, runs=2)

    assert Order.objects.filter(tag__startswith="OV-").count() == 20_000
    params = result["parameters"]
    assert (params["total_orders"], params["overdue_orders"], params["runs"]) == (20_000, 50, 2)
    # besides the overdue ones: a finished ladder (level 3) and open orders not yet due
    assert params["finished_ladder_orders"] > 100 and params["open_not_due_orders"] > 1_000
    for key in ("overdue_scan_ms_1m", "claim_ms", "baseline_pk_read_ms", "claim_without_index_ms"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["target_ms"] == 100 and result["meets_target"] == (result["overdue_scan_ms_1m"] < 100)
    assert [r["run"] for r in result["runs"]] == [1, 2]
    # every run escalated the 50 overdue orders, and only them: two messages and an alert each
    assert all((r["escalated"], r["notifications"], r["alerts"]) == (50, 100, 50) for r in result["runs"])
    assert "LockRows" in result["plan"] and isinstance(result["plan_indexes"], list)
    # after the last run: the overdue orders are at L1 once, the finished ladder untouched
    assert Order.objects.filter(tag__startswith="OV-", sla_level=1).count() == 50
    assert Notification.objects.filter(order__tag__startswith="OV-").count() == 100
    assert Alert.objects.filter(order__tag__startswith="OV-").count() == 50
    # the audit lines are append-only: one per order and run
    assert OrderEvent.objects.filter(order__tag__startswith="OV-", actor="sla").count() == 100


def test_measure_overdue_scan_refuses_sizes_that_measure_nothing():
    with pytest.raises(ValueError, match="total at least 10"):
        measure_overdue_scan(total=100, overdue=50)
    with pytest.raises(ValueError, match="runs and overdue must be at least 1"):
        measure_overdue_scan(total=1000, overdue=1, runs=0)
