"""Supervisors' reports: each report's numbers on small known data through the rollups,
region scoping, refusals, bad input, CSV neutralisation, the weekly summary and its Monday
e-mail, the backlog snapshot, and the stage-left facts on the transition event."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from agents.models import Team
from dashboards.models import BacklogSnapshot, Notification, NotificationTemplate, ReportOrderDay, ReportRun
from dashboards.reports import buckets
from dashboards.reports.selectors import ReportScope
from dashboards.reports.services import reports_rollup
from dashboards.reports.weekly import last_week, weekly_summary, weekly_summary_send
from dispatch.models import Assignment, PoolEntry
from orders.actors import system_actor, user_actor
from orders.models import ExceptionCase, ExceptionType, Order, OrderEvent
from orders.services import order_ingest, order_transition
from tests.factories import AgentFactory, ChannelFactory, OrderFactory, RegionFactory, order_payload

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()
DAY = TODAY - timedelta(days=2)
RANGE = f"?from={DAY:%Y-%m-%d}&to={DAY:%Y-%m-%d}"


def at(hour: int, minute: int = 0, *, day=DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.get_current_timezone())


def accepted(order: Order, agent, *, ready: datetime, minutes: float, skills=(), region=None) -> Assignment:
    entry = PoolEntry.objects.create(
        kind="order", order=order, channel=order.channel, category=order.category, state="assigned",
        ready_at=ready, waiting_since=ready, skills=list(skills), region=region,
    )  # fmt: skip
    return Assignment.objects.create(
        entry=entry, order=order, agent=agent, state="accepted", offered_at=ready,
        responded_at=ready + timedelta(minutes=minutes),
    )  # fmt: skip


def left_stage(
    order: Order, *, stage: str, to: str, entered: datetime, left: datetime, due: datetime
) -> None:
    OrderEvent.objects.create(
        order=order, at=left, kind="transition", actor="test", from_stage=stage, to_stage=to,
        changes={"left": {"entered_at": entered.isoformat(), "due_at": due.isoformat(), "overdue": left > due}},
    )  # fmt: skip


def rollup(first=DAY, last=DAY) -> None:
    reports_rollup(first=first, last=last)


@pytest.fixture
def regions(db):
    return RegionFactory(code="south", provinces=["广东省"]), RegionFactory(code="east", provinces=["浙江省"])


@pytest.fixture
def south_sup(make_user, regions):
    user = make_user("south-sup", "supervisor", email="south@example.com")
    regions[0].supervisors.add(user)
    return user


def client_for(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def admin_client(make_user):
    return client_for(make_user("boss", "admin"))


# --- The transition event carries the stage left --------------------------------------------------
def test_a_transition_event_records_when_the_stage_left_was_entered_and_due(jd, supervisor):
    # given an order in pending review whose due time has passed
    result = order_ingest(payload=order_payload(external_id="LEFT-1"), actor=system_actor("t"))
    order = Order.objects.get(pk=result.id)
    entered, due = order.stage_entered_at, timezone.now() - timedelta(minutes=5)
    Order.objects.filter(pk=order.pk).update(due_at=due)

    # when it moves on
    order_transition(order_id=order.pk, to="picking", actor=user_actor(supervisor))

    # then the event says when the stage it left began, when it was due, and that it was late
    event = OrderEvent.objects.filter(order=order, kind="transition").latest("at")
    assert event.changes["left"] == {
        "entered_at": entered.isoformat(),
        "due_at": due.isoformat(),
        "overdue": True,
    }


# --- 1. First response --------------------------------------------------------------------------------
def test_first_response_report_counts_and_times_per_day(admin_client):
    # given three orders ready on DAY and accepted after 2, 4 and 12 minutes, one never accepted
    agent = AgentFactory()
    for minutes in (2, 4, 12):
        accepted(OrderFactory(), agent, ready=at(10), minutes=minutes)
    PoolEntry.objects.create(kind="order", order=OrderFactory(), channel=ChannelFactory(), ready_at=at(11))
    rollup()

    # when the report is opened for that day
    response = admin_client.get("/reports/response/" + RANGE)

    # then the day shows 4 ready, 3 accepted, mean 6 minutes and bucketed percentiles
    assert response.status_code == 200
    (table,) = response.context["tables"]
    (row,) = table.rows
    assert row[:4] == [DAY, 4, 3, 6.0]
    assert row[4] == pytest.approx(4, rel=0.13)
    assert row[5] == pytest.approx(12, rel=0.13)
    assert 'id="chart-response"' in response.content.decode()


def test_a_second_rollup_of_the_same_day_gives_the_same_rows(admin_client):
    accepted(OrderFactory(), AgentFactory(), ready=at(9), minutes=3)
    rollup()
    first = list(ReportOrderDay.objects.values_list("day", "ready", "accepted"))
    rollup()
    assert list(ReportOrderDay.objects.values_list("day", "ready", "accepted")) == first == [(DAY, 1, 1)]
    assert ReportRun.objects.count() == 2


# --- 2. SLA breaches ------------------------------------------------------------------------------------
def test_sla_report_counts_late_exits_and_still_overdue_orders_by_category_and_channel(admin_client):
    # given cold-chain exits (2 late of 3), one apparel exit on time, and an apparel order still overdue
    jd, tb = ChannelFactory(code="jd", name="京东"), ChannelFactory(code="taobao", name="淘宝")
    for late, channel in ((True, jd), (True, tb), (False, jd)):
        order = OrderFactory(category="cold_chain", channel=channel)
        left_stage(
            order, stage="picking", to="shipping", entered=at(8), left=at(10 if late else 8, 30), due=at(9)
        )
    left_stage(OrderFactory(category="apparel", channel=jd), stage="picking", to="shipping",
               entered=at(8), left=at(8, 10), due=at(9))  # fmt: skip
    OrderFactory(category="apparel", channel=tb, stage="picking", due_at=at(12))
    rollup()

    # when the SLA report is opened
    response = admin_client.get("/reports/sla/" + RANGE)

    # then per category and channel: exits, late exits, rate, still overdue
    tables = {t.name: t for t in response.context["tables"]}
    assert tables["category"].rows == [["cold_chain", 3, 2, 66.7, 0], ["apparel", 1, 0, 0.0, 1]]
    assert sorted(tables["channel"].rows) == [["京东", 3, 1, 33.3, 0], ["淘宝", 1, 1, 100.0, 1]]
    assert tables["stage"].rows == [["Picking", 4, 2, 50.0]]


# --- 3. Backlog ------------------------------------------------------------------------------------------
def test_backlog_snapshot_counts_open_orders_once_an_hour_and_the_report_averages_by_hour(admin_client):
    from dashboards.tasks import take_backlog_snapshot_task

    # given two orders picking, one shipping, one done
    for stage in ("picking", "picking", "shipping", "done"):
        OrderFactory(stage=stage)

    # when the hourly task runs twice in the same hour
    take_backlog_snapshot_task.delay()
    take_backlog_snapshot_task.delay()

    # then one snapshot per stage was kept, and the report shows it at its hour
    assert sorted(BacklogSnapshot.objects.values_list("stage", "count")) == [("picking", 2), ("shipping", 1)]
    now = timezone.localtime()
    response = admin_client.get(f"/reports/backlog/?from={now:%Y-%m-%d}&to={now:%Y-%m-%d}")
    (table,) = response.context["tables"]
    row = table.rows[now.hour]
    assert row[0] == f"{now.hour:02d}:00"
    assert row[1:4] == [0.0, 2.0, 1.0]  # pending review, picking, shipping


# --- 4. Skills and waiting inquiries -------------------------------------------------------------------
def test_skills_report_shows_items_waits_and_waiting_inquiries(admin_client):
    from dispatch.models import Inquiry

    agent = AgentFactory()
    accepted(OrderFactory(), agent, ready=at(10), minutes=4, skills=["repair"])
    accepted(OrderFactory(), agent, ready=at(11), minutes=8, skills=["repair", "install"])
    channel = ChannelFactory(code="wx", name="微信")
    inquiry = Inquiry.objects.create(
        channel=channel, text="=1+1 空调坏了", customer_name="王", skills=["repair"]
    )
    PoolEntry.objects.create(kind="inquiry", inquiry=inquiry, channel=channel, skills=["repair"])
    rollup()

    response = admin_client.get("/reports/skills/" + RANGE)

    tables = {t.name: t for t in response.context["tables"]}
    assert [r[1:] for r in tables["skills"].rows] == [["repair", 2, 2, 6.0, 1], ["install", 1, 1, 8.0, 0]]
    (row,) = tables["inquiries"].rows
    assert row[0] == inquiry.pk and row[1] == "微信"


# --- 5. Exceptions -------------------------------------------------------------------------------------
def test_exceptions_report_counts_raised_open_and_time_to_resolve(admin_client):
    stock, _ = ExceptionType.objects.get_or_create(code="t-stock", defaults={"name": "缺货"})
    for resolved_after in (30, 90, None):
        ExceptionCase.objects.create(
            order=OrderFactory(), type=stock, raised_by_name="t", raised_at=at(9),
            status="resolved" if resolved_after else "open",
            resolved_at=at(9) + timedelta(minutes=resolved_after) if resolved_after else None,
        )  # fmt: skip
    rollup()

    response = admin_client.get("/reports/exceptions/" + RANGE)

    (table,) = response.context["tables"]
    assert table.rows == [["缺货", 3, 1, 2, 60.0]]


# --- 6. Agents --------------------------------------------------------------------------------------------
def test_agents_report_counts_offers_by_outcome_and_live_load(admin_client):
    agent = AgentFactory(display_name="小李", capacity=4, good_rate_30d=0.95, quality_weight=0.8)
    a = accepted(OrderFactory(), agent, ready=at(10), minutes=2)
    Assignment.objects.filter(pk=a.pk).update(state="completed", closed_at=at(10, 32))
    for state in ("rejected", "expired", "accepted"):
        order = OrderFactory()
        entry = PoolEntry.objects.create(kind="order", order=order, channel=order.channel, ready_at=at(11))
        Assignment.objects.create(entry=entry, order=order, agent=agent, state=state, offered_at=at(11),
                                  responded_at=at(11, 1))  # fmt: skip
    rollup()

    response = admin_client.get("/reports/agents/" + RANGE)

    (table,) = response.context["tables"]
    (row,) = table.rows
    # offers, accepted, rejected, expired, acceptance %, completed, live load, capacity, handling
    assert row[:10] == ["小李", 4, 2, 1, 1, 50.0, 1, 1, 4, 30.0]
    assert row[11:] == [95.0, 0.8]


# --- 7. Risk rules ---------------------------------------------------------------------------------------
def test_risk_report_shows_the_monthly_rule_figures_for_the_months_of_the_range(admin_client):
    from riskcontrol.models import Rule

    rule = Rule.objects.create(name="临时仓地址", kind="address_keywords", params={"keywords": ["临时仓"]})
    response = admin_client.get("/reports/risk/" + RANGE)
    (table,) = response.context["tables"]
    assert [f"{DAY:%Y-%m}", rule.name, 0, 0, 0, None] in table.rows
    assert 'href="/risk/report/"' in response.content.decode()


# --- Scoping, roles, input -------------------------------------------------------------------------------
def test_a_supervisor_sees_their_regions_and_uncovered_provinces_but_not_another_region(south_sup):
    agent = AgentFactory()
    for province in ("广东省", "浙江省", "四川省"):
        accepted(OrderFactory(province=province), agent, ready=at(10), minutes=2)
    rollup()

    response = client_for(south_sup).get("/reports/response/" + RANGE)

    (row,) = response.context["tables"][0].rows
    assert row[1:3] == [2, 2]  # 广东省 (theirs) and 四川省 (nobody's), not 浙江省


@pytest.mark.parametrize("role", ["agent", "warehouse", "customer_service", "risk_reviewer"])
def test_other_roles_are_refused_the_reports(make_user, role):
    client = client_for(make_user(f"u-{role}", role))
    for path in ("/reports/", "/reports/sla/", "/reports/weekly/"):
        response = client.get(path)
        assert response.status_code == 403
        assert "Only supervisors and admins" in response.content.decode()


def test_anonymous_visitors_are_sent_to_log_in(db):
    response = Client().get("/reports/sla/")
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?from=2026-13-01", "is not a date for “from”"),
        ("?from=yesterday", "is not a date for “from”"),
        ("?from=2026-11-10&to=2026-11-01", "starts (2026-11-10) after it ends (2026-11-01)"),
        ("?from=2020-01-01&to=2026-01-01", "a report covers at most 400"),
        ("?format=xlsx", "Unknown format “xlsx”"),
    ],
)
def test_bad_input_gives_a_clear_message_and_writes_nothing(admin_client, query, message):
    runs = ReportRun.objects.count()
    response = admin_client.get("/reports/response/" + query)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert ReportRun.objects.count() == runs


def test_a_week_that_does_not_start_on_monday_is_refused_clearly(admin_client):
    monday = last_week(TODAY)
    response = admin_client.get(f"/reports/weekly/?week={monday + timedelta(days=2):%Y-%m-%d}")
    assert response.status_code == 400
    assert f"a week starts on a Monday, e.g. {monday:%Y-%m-%d}" in response.content.decode()


def test_csv_export_neutralises_formulas(admin_client):
    order = OrderFactory(category='=HYPERLINK("http://x")')
    left_stage(order, stage="picking", to="shipping", entered=at(8), left=at(10), due=at(9))
    rollup()

    response = admin_client.get("/reports/sla/" + RANGE + "&format=csv&table=category")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text


def test_one_report_page_reads_with_a_fixed_number_of_queries(admin_client, django_assert_max_num_queries):
    agent = AgentFactory()
    for n in range(5):
        accepted(OrderFactory(category=f"c{n}"), agent, ready=at(10), minutes=n + 1)
    rollup()
    with django_assert_max_num_queries(12):
        response = admin_client.get("/reports/sla/" + RANGE)
    assert response.status_code == 200


# --- 8. The weekly summary ---------------------------------------------------------------------------------
@pytest.fixture
def week_data(regions):
    """Last week: picking stays of 3 h (2 late, fresh), shipping stays of 1 h; the fresh
    category breaches twice, apparel once; team A accepts 6 items on capacity 2, team B 2 on 4."""
    monday = last_week(TODAY)
    tue = monday + timedelta(days=1)
    for n, (category, stage, hours, late) in enumerate(
        [("fresh", "picking", 3, True), ("fresh", "picking", 3, True), ("apparel", "shipping", 1, True),
         ("apparel", "shipping", 1, False)]
    ):  # fmt: skip
        entered = at(8, day=tue)
        left_stage(OrderFactory(category=category, external_id=f"W{n}"), stage=stage, to="done",
                   entered=entered, left=entered + timedelta(hours=hours),
                   due=entered + timedelta(hours=hours - 1 if late else hours + 1))  # fmt: skip
    team_a, team_b = Team.objects.create(code="a", name="A"), Team.objects.create(code="b", name="B")
    busy, idle = AgentFactory(capacity=2), AgentFactory(capacity=4)
    busy.teams.add(team_a)
    idle.teams.add(team_b)
    for n in range(8):
        accepted(OrderFactory(), busy if n < 6 else idle, ready=at(9, n, day=tue), minutes=1)
    reports_rollup(first=monday, last=monday + timedelta(days=6))
    return monday


def test_weekly_summary_picks_the_slowest_stage_the_most_breaching_category_and_busiest_group(week_data):
    summary = weekly_summary(ReportScope(sees_all=True), week_data)

    assert [f.name for f in summary.stage[:2]] == ["Picking", "Shipping"]
    assert summary.stage[0].value == pytest.approx(180)
    assert [(f.name, f.value) for f in summary.category[:2]] == [("fresh", 2), ("apparel", 1)]
    assert [f.name for f in summary.group[:2]] == ["Team A", "Team B"]
    assert summary.group[0].value == pytest.approx(6 / 7 / 2)


def test_weekly_page_shows_each_answer_with_its_runner_up(admin_client, week_data):
    response = admin_client.get(f"/reports/weekly/?week={week_data:%Y-%m-%d}")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<strong>Picking</strong>" in html and "Runner-up: Shipping" in html
    assert "<strong>fresh</strong>" in html and "<strong>Team A</strong>" in html


def test_the_monday_email_goes_once_to_each_supervisor_even_when_the_task_runs_twice(
    week_data, south_sup, make_user, django_capture_on_commit_callbacks
):
    from dashboards.defaults import install_defaults
    from dashboards.tasks import send_weekly_summary_task

    install_defaults(NotificationTemplate)  # a transactional test before may have flushed it
    make_user("all-sup", "supervisor", email="all@example.com")
    make_user("no-mail-sup", "supervisor")

    # when the Monday task runs twice
    with django_capture_on_commit_callbacks():
        send_weekly_summary_task.delay()
        send_weekly_summary_task.delay()

    # then each supervisor with an address has one e-mail, keyed by week and person
    mails = Notification.objects.filter(template="weekly_summary", channel="email")
    assert sorted(mails.values_list("target", flat=True)) == ["all@example.com", "south@example.com"]
    mail = mails.get(target="all@example.com")
    assert mail.dedupe_key == f"weekly-summary:{week_data:%Y-%m-%d}:{mail.user_id}"
    assert "fresh" in mail.body and "Picking" not in mail.subject
    assert str(week_data) in mail.subject


def test_weekly_summary_send_is_a_no_op_the_second_time(week_data, south_sup):
    from dashboards.defaults import install_defaults

    install_defaults(NotificationTemplate)
    assert weekly_summary_send(week=week_data) == 1
    assert weekly_summary_send(week=week_data) == 0


# --- Plumbing --------------------------------------------------------------------------------------------
def test_the_schedule_refreshes_rollups_snapshots_hourly_and_mails_on_monday_morning():
    from config.schedules import BEAT_SCHEDULE

    snapshot = BEAT_SCHEDULE["take-backlog-snapshot"]
    assert snapshot["task"] == "dashboards.tasks.take_backlog_snapshot_task"
    assert snapshot["schedule"]._orig_minute == 0 and snapshot["schedule"]._orig_hour == "*"
    weekly = BEAT_SCHEDULE["send-weekly-summary"]["schedule"]
    assert (weekly._orig_day_of_week, weekly._orig_hour, weekly._orig_minute) == (1, 8, 30)
    assert BEAT_SCHEDULE["refresh-report-rollups"]["schedule"] <= 600


def test_rollup_command_backfills_days(db):
    accepted(OrderFactory(), AgentFactory(), ready=at(10), minutes=1)
    call_command("rollup_reports", "--days", "3", stdout=StringIO())
    assert ReportOrderDay.objects.get(day=DAY).accepted == 1


def test_buckets_read_back_within_their_resolution():
    histogram = buckets.merge([{str(buckets.bucket(s)): 1} for s in (60, 120, 600)])
    assert buckets.percentile(histogram, 0.5) == pytest.approx(120, rel=0.13)
    assert buckets.percentile({}, 0.5) is None


def test_reports_link_shows_for_supervisors_only(admin_client, make_user, south_sup):
    assert 'href="/reports/"' in admin_client.get("/").content.decode()
    assert 'href="/reports/"' in client_for(south_sup).get("/").content.decode()
    agent = make_user("ag-nav", "agent")
    assert 'href="/reports/"' not in client_for(agent).get("/").content.decode()
