"""The portable report rollup (the embedded SQLite default) against the PostgreSQL one: on one
history both write the same rows in every rollup table, a report page reads the same figures
from it, and the backlog page's Python grouping matches its SQL."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection

from dashboards.reports import buckets, rollup_portable, selectors
from dashboards.reports.selectors import DateRange, ReportScope
from dashboards.reports.services import backlog_snapshot_take, reports_rollup, rollup_bounds
from dispatch.models import Assignment, Inquiry, PoolEntry
from orders.models import ExceptionCase, ExceptionType, OrderEvent
from tests.factories import AgentFactory, ChannelFactory, OrderFactory, RegionFactory
from tests.test_reports import DAY, RANGE, accepted, at, client_for, left_stage

pytestmark = pytest.mark.django_db

BEFORE = DAY - timedelta(days=1)


def rollup_rows() -> dict[str, Counter]:
    """Every row of every rollup table but its id, as a multiset."""
    tables = {}
    for model in rollup_portable.ROLLUP_MODELS:
        rows = model.objects.values(*[f.attname for f in model._meta.concrete_fields if f.name != "id"])
        tables[model.__name__] = Counter(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return tables


def portable_rollup(first, last) -> None:
    rollup_portable.rollup_days(first=first, last=last, **rollup_bounds(first, last))


def offer(entry, agent, state, *, offered, responded=None, closed=None) -> Assignment:
    return Assignment.objects.create(
        entry=entry, order=entry.order, agent=agent, state=state, offered_at=offered, responded_at=responded,
        closed_at=closed,
    )  # fmt: skip


@pytest.fixture
def history(db):
    """Two local days with what the SQL has to get right: re-accepted entries (only the first
    acceptance counts), local midnight, inquiries, odd skills, stage-left facts missing or
    partial, waits on a bucket boundary and beyond the last bucket, work done across days."""
    south = RegionFactory(code="south", provinces=["广东省"])
    jd, tb = ChannelFactory(code="jd"), ChannelFactory(code="taobao")
    ann, bob = AgentFactory(), AgentFactory()
    gd = dict(province="广东省", channel=jd, category="fresh")
    zj = dict(province="浙江省", channel=tb, category="apparel")

    a = accepted(OrderFactory(**gd), ann, ready=at(9), minutes=3, skills=["repair", "repair"], region=south)
    Assignment.objects.filter(pk=a.pk).update(state="completed", closed_at=at(11, 7))
    offer(a.entry, bob, "accepted", offered=at(9, 30), responded=at(9, 31))  # a later re-acceptance
    late = accepted(OrderFactory(**zj), bob, ready=at(23, 50, day=BEFORE), minutes=25)  # next local day
    Assignment.objects.filter(pk=late.pk).update(state="completed", closed_at=at(0, 5))  # before acceptance
    e = PoolEntry.objects.create(
        kind="order", order=OrderFactory(**zj), channel=tb, ready_at=at(8), skills={}
    )
    offer(e, ann, "rejected", offered=at(8), responded=at(8, 1))
    offer(e, bob, "expired", offered=at(8, 2))
    exact = offer(e, bob, "accepted", offered=at(8, 3), responded=at(8) + timedelta(seconds=1.5625))
    exact.refresh_from_db()
    assert exact.responded_at - e.ready_at == timedelta(microseconds=1_562_500)  # 1.25**2 s exactly
    accepted(OrderFactory(**gd), ann, ready=at(1, day=BEFORE), minutes=60 * 24 * 20)  # beyond the last bucket
    PoolEntry.objects.create(
        kind="order", order=OrderFactory(**gd), channel=jd, ready_at=at(0, 0), skills=[7]
    )
    inquiry = Inquiry.objects.create(channel=jd, text="空调坏了", customer_name="王", skills=["repair"])
    entry = PoolEntry.objects.create(
        kind="inquiry",
        inquiry=inquiry,
        channel=jd,
        ready_at=at(14),
        skills=["repair", "install"],
        region=south,
    )
    offer(entry, bob, "accepted", offered=at(14), responded=at(14, 0) + timedelta(seconds=1.953125))

    picking = OrderFactory(**gd)
    left_stage(picking, stage="picking", to="shipping", entered=at(8), left=at(10), due=at(9))
    left_stage(picking, stage="shipping", to="done", entered=at(10), left=at(23, 59, day=DAY), due=at(23))
    left_stage(OrderFactory(**zj), stage="picking", to="shipping", entered=at(23, 40, day=BEFORE),
               left=at(0, 20), due=at(1))  # fmt: skip
    left_stage(OrderFactory(**zj), stage="picking", to="shipping", entered=at(12), left=at(11), due=at(13))
    boundary = OrderFactory(**gd)
    left_stage(boundary, stage="pending_review", to="picking", entered=at(7),
               left=at(7) + timedelta(seconds=1.953125), due=at(8))  # fmt: skip
    OrderEvent.objects.create(order=boundary, at=at(12), kind="transition", actor="t", from_stage="picking",
                              to_stage="exception", changes={})  # fmt: skip
    OrderEvent.objects.create(order=boundary, at=at(13), kind="transition", actor="t", from_stage="exception",
                              to_stage="picking", changes={"left": {"overdue": "yes"}})  # fmt: skip
    OrderEvent.objects.create(order=boundary, at=at(13), kind="edit", actor="t", changes={})

    stock, _ = ExceptionType.objects.get_or_create(code="t-stock", defaults={"name": "缺货"})
    for raised, resolved in ((at(22, day=BEFORE), at(2)), (at(9), at(9, 45)), (at(10), None)):
        ExceptionCase.objects.create(
            order=OrderFactory(**gd), type=stock, raised_by_name="t", raised_at=raised,
            status="resolved" if resolved else "open", resolved_at=resolved,
        )  # fmt: skip


def test_the_portable_rollup_writes_the_same_rows_as_the_postgresql_one(history):
    assert connection.vendor == "postgresql"

    reports_rollup(first=BEFORE, last=DAY)
    by_sql = rollup_rows()
    for model in rollup_portable.ROLLUP_MODELS:
        model.objects.all().delete()
    portable_rollup(BEFORE, DAY)
    by_python = rollup_rows()

    assert all(by_sql.values()), {name: len(rows) for name, rows in by_sql.items()}
    for name in by_sql:
        assert by_python[name] == by_sql[name], name


def test_the_portable_rollup_of_one_day_leaves_the_day_before_alone(history):
    reports_rollup(first=BEFORE, last=DAY)
    both = rollup_rows()

    portable_rollup(DAY, DAY)

    assert rollup_rows() == both


def test_the_portable_buckets_match_postgresql_on_and_around_the_boundaries():
    micros = [0, 999_999, 1_000_000, 1_249_999, 1_250_000, 1_562_499, 1_562_500, 1_953_125, 60_000_000]
    micros += [round(buckets.BASE**b * 1_000_000) + d for b in range(2, 64, 7) for d in (-1, 0, 1)]
    micros += [10**15]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {buckets.sql('s')} FROM unnest(%s::numeric[]) WITH ORDINALITY AS t(s, n) ORDER BY n",
            [[f"{m // 1_000_000}.{m % 1_000_000:06d}" for m in micros]],
        )
        by_sql = [b for (b,) in cursor.fetchall()]
    assert [rollup_portable._bucket(m) for m in micros] == by_sql


def test_the_first_response_page_reads_the_known_figures_from_the_portable_rollup(make_user):
    # the data of test_reports' first-response test: ready on DAY, accepted after 2, 4 and 12 minutes
    agent = AgentFactory()
    for minutes in (2, 4, 12):
        accepted(OrderFactory(), agent, ready=at(10), minutes=minutes)
    PoolEntry.objects.create(kind="order", order=OrderFactory(), channel=ChannelFactory(), ready_at=at(11))
    portable_rollup(DAY, DAY)

    response = client_for(make_user("boss", "admin")).get("/reports/response/" + RANGE)

    (row,) = response.context["tables"][0].rows
    assert row[:4] == [DAY, 4, 3, 6.0]
    assert row[4] == pytest.approx(4, rel=0.13)
    assert row[5] == pytest.approx(12, rel=0.13)


def test_the_backlog_report_groups_snapshots_the_same_in_python(monkeypatch):
    for stage in ("picking", "picking", "shipping", "pending_review"):
        OrderFactory(stage=stage, province="广东省")
    for hour in (0, 9, 23):
        backlog_snapshot_take(now=at(hour, 0))
        backlog_snapshot_take(now=at(hour, 0, day=BEFORE))
    rng = DateRange(BEFORE, DAY)
    by_sql = selectors.backlog_report(ReportScope(sees_all=True), rng)

    monkeypatch.setattr(selectors, "connection", SimpleNamespace(vendor="sqlite"))
    by_python = selectors.backlog_report(ReportScope(sees_all=True), rng)

    assert [(t.rows, t.chart, t.note) for t in by_python] == [(t.rows, t.chart, t.note) for t in by_sql]
    assert by_python[0].rows[9][1:4] == [1.0, 2.0, 1.0]
