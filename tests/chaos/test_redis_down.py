"""Redis stopped for 30 s while orders keep arriving. Redis is the Celery broker, the channel
layer and the rate-limit cache; PostgreSQL is the truth. So while it is down the API and the
webhooks keep accepting and storing orders (no 5xx, and no slower than a request should be), the
board says it is reconnecting, and once Redis is back the worker, beat and the board come back
by themselves: every order that arrived meanwhile is offered or waits with a reason (the beat's
dispatch sweep redoes what the lost tasks would have done) and the board shows it, unreloaded.

Production shape: daphne, a Celery worker and beat as the Procfile runs them, on this test's
PostgreSQL database and a private Redis (tests/chaos/services.py) that the test stops and starts
again on the same port. The board is open in Chromium, logged in as a supervisor: what is
promised is what a supervisor sees (the banner, the cards), which a bare websocket client would
not show, and the browser costs about two seconds of the test's fifty.

Why this can fail:
- Anything in the request path that needs Redis (an enqueue that raises, a cache that does
  not fail open, a board push sent in the request) turns into 5xx or lost orders.
- Celery's default publish retry policy makes every enqueue wait ~0.6 s for a broker that is
  gone; a request enqueues once or more. The latency during the outage is bounded below.
- A worker or beat that gives up on the broker, or a board that stops retrying, never recovers:
  the outage's orders would wait "queued" (never tried) and the banner would stay. A board
  that backs off to 30 s between tries, or whose first try after the outage fails on a dead
  pooled Redis connection in daphne, stays stale for up to half a minute more.
"""

from __future__ import annotations

import io
import json
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from orders.webhooks import sign
from tests.chaos.services import PrivateRedis, private_redis, stop_all  # noqa: F401 - a fixture
from tests.chaos.test_postgres_restart import broken, process_ids, stored_orders
from tests.chaos.test_worker_kill import beat_argv, wait_ready, worker_argv
from tests.factories import PASSWORD, AgentFactory, ChannelFactory, UserFactory, order_payload, token_for
from tests.test_board_browser import make_roles
from tests.test_e2e_runtime import (  # noqa: F401 - fixtures, used by name
    BIN,
    free_port,
    http,
    production_env,
    spawn,
    wait_until,
)
from tests.test_pages_browser import browser, log_in, off_the_loop  # noqa: F401 - a fixture

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

SECRET = "s3cret-hook-key"  # tests.factories.ChannelFactory's
BEFORE = 3.0  # seconds of orders before Redis stops
OUTAGE = 30.0
AFTER = 3.0  # seconds of orders once it is back
PACE = 0.5  # one request every half second: a batch of three, a single order, a webhook, again
BATCH = 3
AGENTS, CAPACITY = 3, 10  # 30 slots: some of the outage's orders are offered, the rest wait at capacity
RECOVERY = 30.0  # after Redis is back: worker reconnected, the sweep sent and run
# A board tries again at most 10 s (±25 %) after its last try (static/js/live.js), and its
# first try once Redis is back must work.
BOARD_BACK = 16.0
PAGE = 50  # the board's first page of a column (dashboards.board_selectors.PAGE_SIZE)


@dataclass
class Sent:
    kind: str
    keys: list[str]
    started: float
    elapsed: float
    status: int  # 0: no HTTP answer
    detail: str = ""
    phase: str = ""
    outcomes: list[str] = field(default_factory=list)


class Orders(threading.Thread):
    """One integration sending at a steady pace, whatever the answers: a batch through the API,
    a single order through the API, a signed webhook, and again."""

    def __init__(self, base: str, token: str) -> None:
        super().__init__(name="orders", daemon=True)
        self.base = base
        self.session = http()
        self.session.headers.update({"Authorization": f"Token {token}", "Accept-Language": "en"})
        self.sent: list[Sent] = []
        self.stop = threading.Event()
        self.down_at = self.up_at = float("inf")

    def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            kind = ("batch", "single", "webhook")[n % 3]
            n += 1
            started = time.monotonic()
            keys, send = getattr(self, kind)(n)
            try:
                response = send()
                sent = Sent(kind, keys, started, time.monotonic() - started, response.status_code)
                if response.status_code in (200, 201):
                    sent.outcomes = outcomes_of(kind, response)
                else:
                    sent.detail = response.text[:300]
            except Exception as exc:  # recorded; the test fails on it
                sent = Sent(kind, keys, started, time.monotonic() - started, 0, repr(exc))
            sent.phase = "before" if started < self.down_at else "outage" if started < self.up_at else "after"
            self.sent.append(sent)
            next_at += PACE
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def batch(self, n: int):
        keys = [f"RB-{n:03d}-{k}" for k in range(BATCH)]
        body = {"orders": [order_payload(channel="jd", external_id=key) for key in keys]}
        return keys, lambda: self.session.post(f"{self.base}/api/orders/batch/", json=body, timeout=30)

    def single(self, n: int):
        key = f"RS-{n:03d}"
        body = order_payload(channel="jd", external_id=key)
        return [key], lambda: self.session.post(f"{self.base}/api/orders/", json=body, timeout=30)

    def webhook(self, n: int):
        key = f"RW-{n:03d}"
        payload = order_payload(external_id=key)
        payload.pop("channel")
        body = json.dumps(payload, ensure_ascii=False).encode()
        ts = str(int(time.time()))
        headers = {"X-Paidan-Timestamp": ts, "X-Paidan-Event-Id": f"evt-{key}",
                   "X-Paidan-Signature": sign(SECRET, ts, body), "Content-Type": "application/json"}  # fmt: skip
        return [key], lambda: self.session.post(
            f"{self.base}/hooks/shop/", data=body, headers=headers, timeout=30
        )


def outcomes_of(kind: str, response) -> list[str]:
    if kind == "single":
        return [response.headers["X-Paidan-Ingest"]]
    body = response.json()
    return [r["status"] for r in body["results"]] if kind == "batch" else [body["status"]]


def pool_states(url: str, keys: list[str]) -> dict[str, tuple[str, str, datetime | None]]:
    """external id → (pool entry state, wait reason, when a round last tried it)."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            """
            SELECT o.external_id, p.state, p.wait_reason, p.last_tried_at
            FROM orders_order o JOIN dispatch_poolentry p ON p.order_id = o.id
            WHERE o.external_id = ANY(%s)
            """,
            [keys],
        ).fetchall()
    return {ext: (state, reason, tried) for ext, state, reason, tried in rows}


def dispatched(state: tuple[str, str, datetime | None]) -> bool:
    """Offered to someone, or looked at by a round that said why not."""
    kind, reason, tried = state
    return tried is not None and (
        kind in ("offered", "assigned", "escalated") or reason not in ("", "queued")
    )


def first_page(url: str) -> list[int]:
    """The ids the board's pending-review column shows first (its order: due, then id)."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT id FROM orders_order WHERE stage = 'pending_review' ORDER BY due_at NULLS LAST, id LIMIT %s",
            [PAGE],
        ).fetchall()
    return [row[0] for row in rows]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


@pytest.fixture
def board_context(browser):  # noqa: F811 - the imported fixture
    contexts = []

    def open_at(base: str):
        context = browser.new_context(locale="en-US", base_url=base)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield open_at
    for context in contexts:
        context.close()


def test_with_redis_down_for_30s_orders_keep_being_stored_and_are_dispatched_and_shown_once_it_is_back(
    private_redis: PrivateRedis,  # noqa: F811
    production_env,  # noqa: F811
    spawn,  # noqa: F811
    board_context,
):
    began = time.monotonic()

    # given a supervisor, an API channel and a webhook channel, three agents online with room
    # for thirty orders, and the beat schedule
    def given() -> str:
        make_roles()
        user = UserFactory(username="chaos-sup", roles=["supervisor"])
        ChannelFactory(code="jd", name="京东", tag_prefix="JD")
        ChannelFactory(code="shop", name="Shop", tag_prefix="SH")
        for _ in range(AGENTS):
            AgentFactory(capacity=CAPACITY)
        call_command("install_schedules", stdout=io.StringIO())
        return token_for(user)

    token = off_the_loop(given)
    # and daphne, a worker and beat on this database and the private Redis
    env = {**production_env, "REDIS_URL": private_redis.url()}
    db_url = production_env["DATABASE_URL"]
    worker = spawn("worker", worker_argv("chaos-redis@%h"), env=env)
    beat = spawn("beat", beat_argv(), env=env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daphne = spawn("daphne", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                   env=env, port=port)  # fmt: skip
    wait_ready(worker, "ready.")
    wait_ready(beat, "beat: Starting")
    processes = process_ids(daphne, worker, beat)
    # and the board open in a browser
    page = board_context(base).new_page()
    log_in(page, "chaos-sup", PASSWORD)
    page.goto("/board/")
    expect(page.locator("#board")).to_have_class(re.compile(r"\bb-connected\b"))
    page.evaluate("window.notReloaded = true")
    banner = page.locator("#b-reconnecting")
    started_up = time.monotonic() - began

    # when orders arrive at a steady pace and Redis stops for 30 s in the middle
    orders = Orders(base, token)
    orders.start()
    time.sleep(BEFORE)  # orders keep arriving meanwhile, here and below
    orders.down_at = time.monotonic()
    private_redis.stop()
    # then the board says it is reconnecting
    expect(banner).to_be_visible(timeout=10_000)
    banner_after = time.monotonic() - orders.down_at
    time.sleep(max(0.0, orders.down_at + OUTAGE - time.monotonic()))
    assert banner.is_visible(), "the board stopped saying it is reconnecting while Redis was down"
    private_redis.start()
    orders.up_at, up_wall = time.monotonic(), time.time()
    worker_at_up, beat_at_up = len(worker.output()), len(beat.output())
    # and, Redis back, it stops saying so by itself
    expect(banner).to_be_hidden(timeout=BOARD_BACK * 1000)
    banner_gone = time.monotonic() - orders.up_at
    time.sleep(max(0.0, orders.up_at + AFTER - time.monotonic()))
    orders.stop.set()
    orders.join(30)
    orders.session.close()

    # then every request was answered 2xx, during the outage too, and not slowly
    sent = orders.sent
    assert [s for s in sent if s.status not in (200, 201)] == []
    assert {o for s in sent for o in s.outcomes} == {"created"}
    by_phase = {phase: [s for s in sent if s.phase == phase] for phase in ("before", "outage", "after")}
    latency = {phase: sorted(s.elapsed for s in items) for phase, items in by_phase.items()}
    outage_p50, outage_max = percentile(latency["outage"], 50), max(latency["outage"])
    assert outage_p50 < 0.3 and outage_max < 2.0, latency["outage"]
    assert len(by_phase["outage"]) >= OUTAGE / PACE * 0.8, "the orders did not keep arriving"

    # and every order is stored whole: its "received" event, its pool entry, its webhook delivery
    stored = stored_orders(db_url)
    assert set(stored) == {key for s in sent for key in s.keys}
    assert not broken(stored), broken(stored)[:5]

    # and every order that arrived during the outage is offered or waits with a reason, within
    # a bounded time and without anyone touching anything
    outage_keys = [key for s in by_phase["outage"] for key in s.keys]

    def all_dispatched() -> bool:
        states = pool_states(db_url, outage_keys)
        return len(states) == len(outage_keys) and all(dispatched(state) for state in states.values())

    wait_until(all_dispatched, timeout=RECOVERY, what="the outage's orders to be dispatched")
    states = pool_states(db_url, outage_keys)
    # (no round could run while Redis was down: the worker gets its tasks through it)
    dispatched_after = max(state[2] for state in states.values()).timestamp() - up_wall
    assert 0 < dispatched_after < RECOVERY
    offered = sum(1 for state in states.values() if state[0] == "offered")
    assert offered > 0 and offered < len(outage_keys), states  # some offered, the rest at capacity

    # and the board shows them without a reload: its first page of pending review is the
    # database's, which includes orders from the outage
    expected = first_page(db_url)
    assert {ext for ext, row in stored.items() if row["id"] in expected} & set(outage_keys)

    def shown() -> list[int]:
        return page.evaluate(
            "Array.from(document.querySelectorAll('.b-col[data-stage=\"pending_review\"] .b-card'))"
            ".map(card => Number(card.dataset.id))"
        )

    wait_until(
        lambda: sorted(shown()) == sorted(expected), timeout=10, what="the board to show the first page"
    )
    expect(page.locator('.b-col[data-stage="pending_review"] .b-count')).to_have_text(str(len(stored)))
    assert page.evaluate("window.notReloaded") is True

    # and worker and beat found the broker again by themselves: same processes, a sweep sent
    # and run after Redis came back
    assert "Sending due task sweep-dispatch-pool" in beat.output()[beat_at_up:]
    assert "sweep_pool_task" in worker.output()[worker_at_up:]
    assert process_ids(daphne, worker, beat) == processes
    stop_all(daphne, worker, beat)

    print(
        f"\nRedis down {OUTAGE:.0f} s: started up {started_up:.1f} s; requests before/during/after "
        f"{len(by_phase['before'])}/{len(by_phase['outage'])}/{len(by_phase['after'])}, all 2xx; orders "
        f"{len(stored)} stored ({len(outage_keys)} during the outage); latency p50/max before "
        f"{percentile(latency['before'], 50):.3f}/{max(latency['before']):.3f} s, during "
        f"{outage_p50:.3f}/{outage_max:.3f} s, after {percentile(latency['after'], 50):.3f}/"
        f"{max(latency['after']):.3f} s; banner shown {banner_after:.1f} s after the stop, gone "
        f"{banner_gone:.1f} s after the start; outage orders dispatched {dispatched_after:.1f} s after "
        f"({offered} offered); wall {time.monotonic() - began:.1f} s"
    )
