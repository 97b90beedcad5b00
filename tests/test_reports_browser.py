"""A report page in a real browser: the ECharts chart draws from the page's embedded JSON."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests import test_pages_browser as pages
from tests.factories import PASSWORD, AgentFactory, OrderFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The pages' browser fixtures: one Chromium for this module, a fresh context per test.
browser = pages.browser
page_for = pages.page_for


def _data() -> None:
    from dashboards.reports.services import reports_rollup
    from dispatch.models import Assignment, PoolEntry

    UserFactory(username="report-boss", roles=["supervisor"])
    agent = AgentFactory()
    today = timezone.localdate()
    for n, minutes in enumerate((2, 5, 9)):
        order = OrderFactory()
        ready = timezone.now() - timedelta(hours=1, minutes=n)
        entry = PoolEntry.objects.create(kind="order", order=order, channel=order.channel, ready_at=ready)
        Assignment.objects.create(entry=entry, order=order, agent=agent, state="accepted", offered_at=ready,
                                  responded_at=ready + timedelta(minutes=minutes))  # fmt: skip
    reports_rollup(first=today - timedelta(days=1), last=today)


def test_the_first_response_report_draws_its_chart(page_for, live_server):
    pages.off_the_loop(_data)
    page = page_for("en-US")
    pages.log_in(page, "report-boss", PASSWORD)

    page.goto("/reports/response/")

    chart = page.locator(".rp-chart[data-chart='chart-response']")
    expect(chart).to_have_attribute("data-drawn", "1")
    expect(chart.locator("canvas")).to_have_count(1)
    assert page.evaluate("window.echarts.getInstanceByDom(document.querySelector('.rp-chart')) !== undefined")
    expect(page.locator("#table-response tbody tr")).to_have_count(7)
