"""`manage.py simulate`: a generated day or a recorded range, several policies side by side, as
a table, JSON or an HTML report; every bad input refused with what was wrong."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dispatch.models import DispatchPolicy

pytestmark = pytest.mark.django_db

SMALL = ["--scenario", "normal_day", "--orders", "300", "--agents", "10", "--no-progress"]


def simulate(*args: str) -> str:
    out = StringIO()
    call_command("simulate", *args, stdout=out)
    return out.getvalue()


def test_a_generated_day_under_two_policies_prints_them_side_by_side():
    text = simulate(*SMALL)

    header = next(line for line in text.splitlines() if "smart" in line)
    assert "round_robin" in header
    assert "SLA breach rate" in text and "skill-match rate" in text
    assert "time to accept, p99 (min)" in text


def test_json_carries_every_figure_for_each_policy():
    result = json.loads(simulate(*SMALL, "--json", "--policy", "smart", "--policy", "round_robin_filtered"))

    assert [run["policy"] for run in result["runs"]] == ["smart", "round_robin_filtered"]
    smart = result["runs"][0]
    assert smart["orders"] >= 300
    assert set(smart["accept_minutes"]) == {"mean", "p50", "p90", "p99"}
    for key in ("sla_breach_rate", "abandoned", "escalated", "skill_match_rate", "mean_travel_km",
                "utilisation", "load_gini", "first_time_fix_rate"):  # fmt: skip
        assert key in smart
    assert len(smart["series"]["hours"]) == 24
    assert result["scenario"]["name"] == "normal_day"


def test_the_html_report_is_one_file_with_its_charts_library(tmp_path):
    report = tmp_path / "report.html"

    text = simulate(*SMALL, "--html", str(report))

    page = report.read_text(encoding="utf-8")
    assert f"HTML report: {report}" in text
    assert "echarts.init" in page and "Apache" in page  # the library itself, inlined from npm
    assert "<th>smart</th>" in page and "<th>round_robin</th>" in page


def test_the_agent_model_can_be_changed_for_every_agent():
    # agents who never accept anything: every order ends with the supervisor
    result = json.loads(simulate(*SMALL, "--json", "--policy", "smart", "--agent-model", "acceptance=0",
                                 "--agent-model", "acceptance_unskilled=0"))  # fmt: skip

    smart = result["runs"][0]
    assert smart["accepted"] == smart["assigned_by_hand"] > 0
    assert result["scenario"]["parameters"]["behaviour_set"] == {
        "acceptance": 0.0,
        "acceptance_unskilled": 0.0,
    }


def test_a_policy_row_from_the_database_runs_by_name():
    DispatchPolicy.objects.create(name="robin <draft>", kind="round_robin", filters=[], is_active=False)

    result = json.loads(simulate(*SMALL, "--json", "--policy", "db:robin <draft>", "--policy", "smart"))

    assert [run["policy"] for run in result["runs"]] == ["db:robin <draft>", "smart"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "greedy"], "unknown policy 'greedy'"),
        (["--policy", "db:nope"], "no dispatch policy is named 'nope'"),
        (["--policy", "smart", "--policy", "smart"], "a policy is named twice"),
        (["--orders", "0"], "--orders must be at least 1"),
        (["--agent-model", "patience=3"], "'patience=3' is not NAME=VALUE with a behaviour parameter"),
        (["--agent-model", "acceptance=high"], "acceptance must be a number, not 'high'"),
        (["--agent-model", "acceptance=1.5"], "acceptance must be a probability"),
        (["--agent-model", "level_factors=1,2"], "level_factors must be five numbers"),
    ],
)
def test_bad_options_are_refused_with_what_is_wrong(args, message):
    with pytest.raises(CommandError, match=message):
        simulate(*SMALL, *args)


def test_a_recorded_range_needs_both_ends_and_some_orders():
    with pytest.raises(CommandError, match="--from needs --to"):
        simulate("--from", "2026-11-23")
    with pytest.raises(CommandError, match="--to goes with --from"):
        simulate("--to", "2026-11-23")
    with pytest.raises(CommandError, match="'23/11/2026' is not a date"):
        simulate("--from", "23/11/2026", "--to", "2026-11-30")
    with pytest.raises(CommandError):  # an empty database has no orders to replay
        simulate("--from", "2026-11-23", "--to", "2026-11-30", "--no-progress")
