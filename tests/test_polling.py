"""Polling connectors and the daily reconciliation, against a local fake marketplace server."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone, translation

from orders.models import Channel, Order, OrderEvent, ReconciliationRun
from orders.polling import (
    PollStatus,
    channel_claim_due,
    channel_poll,
    lock_channel_for_poll,
    reconcile_channel,
)
from orders.tasks import poll_channel_task, poll_due_channels_task, reconcile_channels_task
from tests.factories import ChannelFactory
from tests.fakes.marketplace import CHANNEL_SETTINGS, FakeMarketplace

# Source times an hour ago: well inside reconciliation's 48-hour window.
BASE = int(time.time()) - 3600


@pytest.fixture(autouse=True)
def _english():
    # Errors are stored in the worker's language (zh-hans by default); assert on the English.
    with translation.override("en"):
        yield


@pytest.fixture
def market():
    with FakeMarketplace() as fake:
        yield fake


@pytest.fixture
def mall(db, market):
    return ChannelFactory(
        code="mall",
        name="Fake mall",
        tag_prefix="MALL",
        poll_url=market.url,
        poll_page_size=2,
        **CHANNEL_SETTINGS,
    )


def add_orders(market: FakeMarketplace, count: int, *, start: int = 1) -> list[str]:
    sns = [f"SN{n:04d}" for n in range(start, start + count)]
    for offset, sn in enumerate(sns):
        market.add_order(sn, update_time=BASE + offset)
    return sns


def reload(channel: Channel) -> Channel:
    channel.refresh_from_db()
    return channel


def close_to(value: datetime | None, expected: datetime, seconds: float = 5) -> bool:
    return value is not None and abs((value - expected).total_seconds()) <= seconds


# --- Polling ---------------------------------------------------------------------------


def test_a_poll_ingests_every_page_through_the_field_mapping(mall, market):
    # given five orders upstream and a page size of two
    sns = add_orders(market, 5)

    # when the channel is polled
    run = channel_poll(channel_id=mall.pk)

    # then all three pages are read and every order stored in our fields
    assert run.status == PollStatus.OK, run.error
    assert (run.pages, run.fetched, run.created, run.rejected) == (3, 5, 5, 0)
    assert sorted(Order.objects.values_list("external_id", flat=True)) == sns
    order = Order.objects.get(external_id="SN0001")
    assert order.tag.startswith("MALL-")
    assert order.customer_name == "李雷"
    assert order.customer_phone == "+8613510001000"
    assert order.customer.account_id == "u_SN0001"
    assert order.city == "深圳市"
    assert order.items == [{"sku": "DJ-001", "name": "羽绒服", "qty": 1, "price": "599.00"}]
    assert str(order.amount) == "599.00"
    assert order.source_updated_at == datetime.fromtimestamp(BASE, tz=UTC)
    assert OrderEvent.objects.get(order=order, kind="ingested").actor == "poller:mall"
    # and the pages were asked for with the page size, the first one without a cursor
    assert [r["params"].get("page_size") for r in market.requests] == ["2", "2", "2"]
    assert "cursor" not in market.requests[0]["params"]
    # and the channel records the success and is due again after its interval (10 minutes)
    mall = reload(mall)
    assert mall.poll_failures == 0
    assert close_to(mall.poll_last_success_at, timezone.now())
    assert close_to(mall.poll_next_at, timezone.now() + timedelta(minutes=10))
    assert mall.poll_last_error == ""


def test_the_cursor_is_stored_and_the_next_poll_asks_from_it(mall, market):
    # given a first poll over five orders
    add_orders(market, 5)
    channel_poll(channel_id=mall.pk)
    stored = reload(mall).poll_cursor
    # the last page said "no next page", so the cursor is the one that asked for it
    assert stored and stored == market.requests[-1]["params"]["cursor"]

    # when a new order arrives upstream and the channel is polled again
    market.add_order("SN0006", update_time=BASE + 10)
    asked_before = len(market.requests)
    run = channel_poll(channel_id=mall.pk, force=True)

    # then the second poll starts from the stored cursor and finds only what is new
    assert market.requests[asked_before]["params"]["cursor"] == stored
    assert run.status == PollStatus.OK
    assert (run.created, run.updated) == (1, 0)
    assert run.ignored == 1  # the re-read last page: harmless, idempotent
    assert Order.objects.count() == 6


def test_a_500_on_page_2_keeps_page_1_and_its_cursor_and_the_next_run_skips_nothing(mall, market):
    # given five orders and a marketplace that fails the second request
    sns = add_orders(market, 5)
    market.fail_next(1, status=500, after=1)

    # when the channel is polled
    run = channel_poll(channel_id=mall.pk)

    # then page 1 is stored, the cursor points just after it, and the error is recorded
    assert run.status == PollStatus.FAILED
    assert sorted(Order.objects.values_list("external_id", flat=True)) == sns[:2]
    mall = reload(mall)
    page_2_cursor = market.requests[1]["params"]["cursor"]
    assert mall.poll_cursor == page_2_cursor
    assert mall.poll_failures == 1
    assert "Page 2" in mall.poll_last_error
    assert "HTTP 500" in mall.poll_last_error
    assert close_to(mall.poll_last_error_at, timezone.now())
    assert mall.poll_last_success_at is None
    # and it is retried after a 1-minute backoff, not skipped
    assert close_to(mall.poll_next_at, timezone.now() + timedelta(minutes=1))

    # when the next run comes
    asked_before = len(market.requests)
    run = channel_poll(channel_id=mall.pk, force=True)

    # then it asks again for page 2 and every order is stored, none skipped
    assert run.status == PollStatus.OK
    assert market.requests[asked_before]["params"]["cursor"] == page_2_cursor
    assert sorted(Order.objects.values_list("external_id", flat=True)) == sns
    assert reload(mall).poll_failures == 0


def test_a_crash_while_storing_a_page_stores_neither_its_orders_nor_its_cursor(mall, market, monkeypatch):
    # given five orders, and a worker whose database fails while it stores page 2
    from orders import polling, services

    sns = add_orders(market, 5)
    calls = []
    real_ingest = services.order_ingest_batch

    def ingest_then_fail(**kwargs):
        calls.append(1)
        results = real_ingest(**kwargs)
        if len(calls) == 2:  # written, then lost with the transaction
            raise ConnectionError("server closed the connection unexpectedly")
        return results

    monkeypatch.setattr(polling.services, "order_ingest_batch", ingest_then_fail)

    # when the channel is polled, the crash propagates to the worker
    with pytest.raises(ConnectionError):
        channel_poll(channel_id=mall.pk)

    # then page 2 left no trace: its orders are gone with the cursor that would pass them
    assert sorted(Order.objects.values_list("external_id", flat=True)) == sns[:2]
    mall = reload(mall)
    assert mall.poll_cursor == market.requests[1]["params"]["cursor"]
    assert "Page 2" in mall.poll_last_error and "server closed the connection" in mall.poll_last_error
    assert mall.poll_failures == 1

    # when the next run comes, it re-reads page 2 and nothing is skipped
    monkeypatch.undo()
    run = channel_poll(channel_id=mall.pk, force=True)
    assert run.status == PollStatus.OK
    assert sorted(Order.objects.values_list("external_id", flat=True)) == sns


def test_failures_back_off_exponentially_up_to_the_channel_interval(mall, market):
    # given a channel polled every 3 minutes whose source keeps failing
    Channel.objects.filter(pk=mall.pk).update(poll_interval_minutes=3)
    market.fail_next(4, status=503)
    delays = []

    # when it is polled four times
    for _ in range(4):
        channel_poll(channel_id=mall.pk, force=True)
        mall = reload(mall)
        delays.append(round((mall.poll_next_at - timezone.now()).total_seconds() / 60))

    # then the waits are 1, 2, then capped at the interval
    assert delays == [1, 2, 3, 3]
    assert mall.poll_failures == 4
    assert "HTTP 503" in mall.poll_last_error


def test_the_auth_header_is_sent_and_without_it_the_401_is_recorded(mall, market):
    # given a marketplace that wants an API key
    market.require_header("X-Api-Key", "k-123")
    add_orders(market, 1)

    # when the channel has no auth header
    run = channel_poll(channel_id=mall.pk)

    # then the 401 is recorded with a hint, and nothing is stored
    assert run.status == PollStatus.FAILED
    mall = reload(mall)
    assert "HTTP 401" in mall.poll_last_error
    assert "auth header" in mall.poll_last_error
    assert Order.objects.count() == 0

    # when the admin sets the header
    Channel.objects.filter(pk=mall.pk).update(poll_auth_header="X-Api-Key: k-123")
    run = channel_poll(channel_id=mall.pk, force=True)

    # then it is sent and the poll succeeds
    assert run.status == PollStatus.OK
    assert market.requests[-1]["headers"]["x-api-key"] == "k-123"
    assert Order.objects.count() == 1


def test_a_malformed_auth_header_is_refused_before_any_request(mall, market):
    Channel.objects.filter(pk=mall.pk).update(poll_auth_header="Bearer k-123")

    run = channel_poll(channel_id=mall.pk)

    assert run.status == PollStatus.FAILED
    assert 'must look like "Name: value"' in reload(mall).poll_last_error
    assert market.requests == []


def _refused_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v2/orders"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (lambda market, channel: market.malformed_next(), "is not valid JSON"),
        (lambda market, channel: market.wrong_shape_next(), 'no order list at "data.list"'),
        (lambda market, channel: market.fail_next(status=404), "HTTP 404"),
        (lambda market, channel: market.time_out_next(seconds=1.5), "timed out"),
        (
            lambda market, channel: Channel.objects.filter(pk=channel.pk).update(poll_url=_refused_url()),
            "Could not connect",
        ),
    ],
    ids=["malformed-json", "list-path-missing", "http-404", "timeout", "connection-refused"],
)
def test_a_broken_answer_is_recorded_and_changes_nothing_stored(mall, market, settings, fault, expected):
    # given orders already polled, then one more upstream, then the source breaks
    settings.POLL_TIMEOUT_SECONDS = 0.3
    add_orders(market, 3)
    channel_poll(channel_id=mall.pk)
    market.add_order("SN0009", update_time=BASE + 9)
    cursor = reload(mall).poll_cursor
    fault(market, mall)

    # when the channel is polled
    run = channel_poll(channel_id=mall.pk, force=True)

    # then the run failed with a clear error and a backoff; the cursor and the orders are as they were
    assert run.status == PollStatus.FAILED
    mall = reload(mall)
    assert expected in mall.poll_last_error, mall.poll_last_error
    assert mall.poll_failures == 1
    assert mall.poll_cursor == cursor
    assert close_to(mall.poll_next_at, timezone.now() + timedelta(minutes=1))
    assert Order.objects.count() == 3


def test_rejected_orders_are_reported_and_do_not_hold_the_cursor(mall, market, caplog):
    # given a page with an order the source sent with a negative amount
    market.add_order("SN0001", update_time=BASE)
    market.add_order("SN0002", update_time=BASE + 1, pay_amount="-5.00")
    market.add_order("SN0003", update_time=BASE + 2)
    market.add_order("SN0004", update_time=BASE + 3)

    # when the channel is polled
    run = channel_poll(channel_id=mall.pk)

    # then the good ones are stored, the bad one is counted, logged and named on the channel
    assert run.status == PollStatus.OK
    assert (run.created, run.rejected) == (3, 1)
    assert not Order.objects.filter(external_id="SN0002").exists()
    mall = reload(mall)
    assert "1 order(s) rejected" in mall.poll_last_error
    assert "SN0002 (amount:" in mall.poll_last_error
    assert mall.poll_failures == 0
    assert any("SN0002" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    # and the cursor moved past the page that held it
    assert mall.poll_cursor == market.requests[-1]["params"]["cursor"]
    assert len(market.requests) == 2


def test_a_newer_upstream_change_updates_the_order_and_an_older_one_is_ignored(mall, market):
    # given an order already polled
    market.add_order("SN0001", update_time=BASE)
    channel_poll(channel_id=mall.pk)

    # when the buyer adds a note upstream (newer update time) and we poll
    market.modify_order("SN0001", update_time=BASE + 100, buyer_memo="请周末送货")
    run = channel_poll(channel_id=mall.pk, force=True)

    # then the order is updated and the change audited
    assert run.updated == 1
    order = Order.objects.get(external_id="SN0001")
    assert order.note == "请周末送货"
    event = OrderEvent.objects.get(order=order, kind="updated")
    assert event.actor == "poller:mall"
    assert event.changes["note"] == ["", "请周末送货"]

    # when a lagging replica serves an older version of it
    market.modify_order("SN0001", update_time=BASE + 50, buyer_memo="旧备注")
    run = channel_poll(channel_id=mall.pk, force=True)

    # then it is ignored and counted, and the order keeps the newer data
    assert run.ignored == 1
    order.refresh_from_db()
    assert order.note == "请周末送货"
    assert order.stale_deliveries == 1
    assert OrderEvent.objects.filter(order=order, kind="ignored_stale").count() == 1


def test_a_long_backlog_stops_at_the_page_limit_and_continues_on_the_next_tick(
    mall, market, django_capture_on_commit_callbacks
):
    # given seven orders (four pages) and a limit of two pages per run
    sns = add_orders(market, 7)

    # when a run hits the limit
    run = channel_poll(channel_id=mall.pk, max_pages=2)

    # then what it read is stored, and the channel is due again at once
    assert run.status == PollStatus.MORE
    assert Order.objects.count() == 4
    mall = reload(mall)
    assert mall.poll_next_at <= timezone.now()
    stopped_at = mall.poll_cursor
    assert stopped_at and stopped_at != market.requests[1]["params"]["cursor"]

    # when the beat's next tick runs
    with django_capture_on_commit_callbacks(execute=True):
        poll_due_channels_task()

    # then it carries on from where the first run stopped to the end
    assert market.requests[2]["params"]["cursor"] == stopped_at
    assert sorted(Order.objects.values_list("external_id", flat=True)) == sns
    assert close_to(reload(mall).poll_next_at, timezone.now() + timedelta(minutes=10))


@pytest.mark.django_db(transaction=True)
def test_two_polls_of_one_channel_never_run_at_once(market):
    mall = ChannelFactory(
        code="mall",
        name="Fake mall",
        tag_prefix="MALL",
        poll_url=market.url,
        poll_page_size=2,
        **CHANNEL_SETTINGS,
    )
    add_orders(market, 3)
    outcomes: dict[str, str] = {}

    def poll_in_thread(key: str, **kwargs) -> threading.Thread:
        def run() -> None:
            try:
                outcomes[key] = channel_poll(channel_id=mall.pk, **kwargs).status
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    # given a worker holding the channel row (claiming it)
    with transaction.atomic():
        assert lock_channel_for_poll(mall.pk) is not None
        # when another worker tries to poll it, even by hand
        poll_in_thread("while-locked", force=True).join(10)
    # then it skips at once without asking the source
    assert outcomes["while-locked"] == PollStatus.BUSY
    assert market.requests == []

    # given a run in progress (its first request held by the marketplace)
    release = market.hold_next()
    first = poll_in_thread("first")
    deadline = time.monotonic() + 10
    while not market.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(market.requests) == 1

    # when the beat tick and a second task look at the channel meanwhile
    claims = channel_claim_due()
    second = channel_poll(channel_id=mall.pk).status

    # then neither polls: the first run holds the lease
    assert claims == []
    assert second == PollStatus.NOT_DUE
    assert len(market.requests) == 1

    # and the first run completes normally
    release.set()
    first.join(10)
    assert outcomes["first"] == PollStatus.OK
    assert Order.objects.count() == 3


def test_poll_due_channels_polls_only_the_due_channels(db, market, django_capture_on_commit_callbacks):
    # given channels in every state, all on the same marketplace (told apart by a shop parameter)
    now = timezone.now()

    def channel(code: str, **fields) -> Channel:
        return ChannelFactory(code=code, poll_url=f"{market.url}?shop={code}", **(CHANNEL_SETTINGS | fields))

    never = channel("never-polled")
    overdue = channel("overdue", poll_next_at=now - timedelta(minutes=1))
    later = channel("later", poll_next_at=now + timedelta(minutes=5))
    channel("switched-off", is_active=False)
    ChannelFactory(code="no-url", poll_url="")
    add_orders(market, 1)

    # when the beat's tick runs
    with django_capture_on_commit_callbacks(execute=True):
        claimed = poll_due_channels_task()

    # then exactly the due channels were polled, and are scheduled after their interval
    assert claimed == 2
    assert sorted(r["params"]["shop"] for r in market.requests) == ["never-polled", "overdue"]
    for polled in (never, overdue):
        polled = reload(polled)
        assert polled.poll_last_success_at is not None
        assert close_to(polled.poll_next_at, timezone.now() + timedelta(minutes=10))
    assert reload(later).poll_next_at == later.poll_next_at

    # when the tick runs again at once, nothing is due
    with django_capture_on_commit_callbacks(execute=True):
        assert poll_due_channels_task() == 0
    assert len(market.requests) == 2


def test_a_poll_task_whose_claim_was_taken_over_does_nothing(mall, market):
    # given a claim that has since been replaced (e.g. it expired and was claimed again)
    add_orders(market, 1)
    [(channel_id, old_lease)] = channel_claim_due()
    Channel.objects.filter(pk=channel_id).update(poll_next_at=old_lease + timedelta(seconds=1))

    # when the old task finally runs
    status = poll_channel_task(channel_id, old_lease.isoformat())

    # then it does not poll
    assert status == PollStatus.SUPERSEDED
    assert market.requests == []


def test_poll_channels_command_polls_by_hand_and_fails_loudly(mall, market):
    add_orders(market, 3)
    Channel.objects.filter(pk=mall.pk).update(poll_next_at=timezone.now() + timedelta(hours=1))
    out = StringIO()

    call_command("poll_channels", "--channel", "mall", stdout=out)

    assert "mall: ok" in out.getvalue()
    assert "created=3" in out.getvalue()
    market.fail_next(status=502)
    with pytest.raises(CommandError, match="1 of 1 polls failed"):
        call_command("poll_channels", stdout=StringIO())
    with pytest.raises(CommandError, match="Unknown channel “nope”"):
        call_command("poll_channels", "--channel", "nope")
    ChannelFactory(code="plain", poll_url="")
    with pytest.raises(CommandError, match="has no poll URL"):
        call_command("poll_channels", "--channel", "plain")


# --- Reconciliation --------------------------------------------------------------------


def test_reconciliation_repairs_an_order_the_poller_missed_and_one_that_is_stale(mall, market):
    # given a channel fully polled, plus an order upstream that is older than the window
    sns = add_orders(market, 5)
    market.add_order("OLD1", update_time=int(time.time()) - 50 * 3600)
    channel_poll(channel_id=mall.pk)
    assert Order.objects.count() == 6
    # and then an order appearing upstream behind the cursor, and a change the feed never showed
    market.add_order("LATE1", update_time=BASE + 200, feed_missed=True)
    market.modify_order(sns[0], update_time=BASE + 300, buyer_memo="改送到公司", feed_missed=True)
    cursor = reload(mall).poll_cursor
    channel_poll(channel_id=mall.pk, force=True)
    assert not Order.objects.filter(external_id="LATE1").exists()  # the poller cannot see them
    assert Order.objects.get(external_id=sns[0]).note == ""

    # when the channel is reconciled over the last 48 hours
    asked_before = len(market.requests)
    run = reconcile_channel(channel_id=mall.pk, hours=48)

    # then the source was asked for everything since the window start (an ISO timestamp)
    since = datetime.fromisoformat(market.requests[asked_before]["params"]["cursor"])
    assert close_to(since, timezone.now() - timedelta(hours=48))
    # and both are repaired and reported
    assert run.error == ""
    assert (run.fetched, run.created, run.updated, run.unchanged, run.rejected) == (6, 1, 1, 4, 0)
    late = Order.objects.get(external_id="LATE1")
    assert Order.objects.get(external_id=sns[0]).note == "改送到公司"
    assert run.report["created"] == [{"external_id": "LATE1", "tag": late.tag}]
    assert [item["external_id"] for item in run.report["updated"]] == [sns[0]]
    assert close_to(run.window_start, timezone.now() - timedelta(hours=48))
    assert run.finished_at is not None
    assert OrderEvent.objects.get(order=late, kind="ingested").actor == "reconcile:mall"
    # and the poller's cursor is untouched
    assert reload(mall).poll_cursor == cursor


def test_a_reconciliation_that_fails_midway_keeps_its_repairs_and_records_the_error(mall, market):
    # given three orders upstream the poller never saw, and a source failing on page 2
    for n in range(1, 4):
        market.add_order(f"LATE{n}", update_time=BASE + n, feed_missed=True)
    market.fail_next(1, status=500, after=1)

    # when the channel is reconciled
    run = reconcile_channel(channel_id=mall.pk)

    # then page 1's repairs are kept and counted, and the run says where it stopped
    assert "Page 2" in run.error and "HTTP 500" in run.error
    assert (run.fetched, run.created) == (2, 2)
    assert Order.objects.count() == 2
    assert run.finished_at is not None
    assert reload(mall).poll_failures == 0  # the poller's own state is not its business


def test_reconcile_command_and_daily_task(mall, market):
    # given a missed order upstream and a second, non-polling channel
    market.add_order("LATE1", update_time=BASE, feed_missed=True)
    ChannelFactory(code="plain", poll_url="")

    # when the command runs
    out = StringIO()
    call_command("reconcile", "--channel", "mall", "--hours", "24", stdout=out)

    # then it prints what it fixed
    text = out.getvalue()
    assert "created 1 (missing)" in text
    assert '"external_id": "LATE1"' in text
    run = ReconciliationRun.objects.get()
    assert close_to(run.window_start, timezone.now() - timedelta(hours=24))

    # when the daily task runs, only polling channels are reconciled
    reconcile_channels_task()
    assert ReconciliationRun.objects.filter(channel=mall).count() == 2
    assert not ReconciliationRun.objects.exclude(channel=mall).exists()
    # and bad arguments are refused clearly
    with pytest.raises(CommandError, match="has no poll URL"):
        call_command("reconcile", "--channel", "plain")
    with pytest.raises(CommandError, match="--hours must be between"):
        call_command("reconcile", "--hours", "0")


# --- Schedules -------------------------------------------------------------------------


def test_install_schedules_is_idempotent_and_follows_changes(db, settings, monkeypatch):
    from celery.schedules import crontab
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    from config import schedules

    def rows():
        return sorted(
            (t.pk, t.name, t.task, t.interval_id, t.crontab_id, t.enabled) for t in PeriodicTask.objects.all()
        )

    settings.TIME_ZONE = "Asia/Hong_Kong"
    # given a periodic task an admin added by hand
    hand = PeriodicTask.objects.create(
        name="hand-made", task="orders.tasks.poll_due_channels_task",
        interval=IntervalSchedule.objects.create(every=300, period="seconds"),
    )  # fmt: skip

    # when the schedule is installed twice
    call_command("install_schedules", stdout=StringIO())
    first = rows()
    out = StringIO()
    call_command("install_schedules", stdout=out)

    # then the second run changes nothing
    assert rows() == first
    assert out.getvalue().count("unchanged") == len(schedules.BEAT_SCHEDULE)
    kinds = [entry["schedule"] for entry in schedules.BEAT_SCHEDULE.values()]
    # Entries sharing an interval or a crontab share its row; plus the hand-made 300 s one.
    intervals = {float(k) for k in kinds if isinstance(k, int | float)} | {300.0}
    assert IntervalSchedule.objects.count() == len(intervals)
    crontabs = {(str(k._orig_minute), str(k._orig_hour)) for k in kinds if isinstance(k, crontab)}
    assert CrontabSchedule.objects.count() == len(crontabs)
    poll = PeriodicTask.objects.get(name="poll-channels")
    assert poll.task == "orders.tasks.poll_due_channels_task"
    assert (poll.interval.every, poll.interval.period, poll.crontab) == (60, "seconds", None)
    daily = PeriodicTask.objects.get(name="reconcile-channels")
    assert daily.task == "orders.tasks.reconcile_channels_task"
    assert (daily.crontab.hour, daily.crontab.minute, daily.interval) == ("3", "30", None)
    # in the project's zone (here set apart from Celery's own), so 03:30 is 03:30 local time
    assert str(daily.crontab.timezone) == "Asia/Hong_Kong"

    # when the code's schedule changes (a new time, a new interval, an entry added then dropped)
    changed = {
        "poll-channels": {"task": "orders.tasks.poll_due_channels_task", "schedule": crontab(minute="*/2")},
        "reconcile-channels": {
            "task": "orders.tasks.reconcile_channels_task",
            "schedule": crontab(hour=4, minute=15),
            "kwargs": {"hours": 72},
        },
    }
    extra = {"extra": {"task": "orders.tasks.poll_due_channels_task", "schedule": 30}}
    monkeypatch.setattr(schedules, "BEAT_SCHEDULE", changed | extra)
    call_command("install_schedules", stdout=StringIO())
    monkeypatch.setattr(schedules, "BEAT_SCHEDULE", changed)
    out = StringIO()
    call_command("install_schedules", stdout=out)

    # then the same rows are updated in place, the dropped entry removed, the hand-made one kept
    assert PeriodicTask.objects.get(name="poll-channels").pk == poll.pk
    daily = PeriodicTask.objects.get(name="reconcile-channels")
    assert daily.pk == first[[r[1] for r in first].index("reconcile-channels")][0]
    assert (daily.crontab.hour, daily.crontab.minute, daily.kwargs) == ("4", "15", '{"hours": 72}')
    assert PeriodicTask.objects.get(name="poll-channels").crontab.minute == "*/2"
    assert "removed  extra" in out.getvalue()
    assert set(PeriodicTask.objects.values_list("name", flat=True)) == {
        "poll-channels", "reconcile-channels", hand.name,
    }  # fmt: skip
