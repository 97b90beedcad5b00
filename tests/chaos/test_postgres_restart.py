"""PostgreSQL restarted under load (`pg_ctl restart -m fast`): daphne, the Celery worker and beat
reconnect by themselves; a request the restart cut off is answered 503 with Retry-After and a
body saying the database is unavailable, never a 500 and never a half-written order.

The cluster is private (tests/chaos/services.py), a copy of this test's database, so the restart
touches nobody else. Four clients post orders back to back, before, during and after the
restart: single orders and batches through the API, signed webhooks, each from a channel of its
own. A refused request is sent again after Retry-After with the same external ids (the same
webhook event id), as an integration would. Then the database must hold exactly the orders
answered 2xx, each whole: its "received" event, its pool entry, its webhook delivery.

How the restart lands mid-transaction every time rather than by luck: the test holds a SHARE
lock on the pool table, waits until every client's ingest has written its order and waits to
write the order's pool entry, and restarts then. Those requests must roll back whole (their
retry creates the order; an order committed without its pool entry would show) and answer 503.

A second restart comes while nothing happens, so every pooled connection in daphne, the worker
and beat is dead when the next requests come: they must all succeed, at once.

Why this can fail:
- Without the 503 mapping (config/middleware.py) the cut-off requests are 500s.
- With pooled connections handed out unchecked, the first requests and tasks after a restart
  fail; with psycopg_pool's own check (CONN_HEALTH_CHECKS) the first request sleeps 1, 2, 4 …
  s past the dead ones and hit the pool's 10 s timeout (config/postgresql/base.py).
- An ingest that committed the order but not its event or pool entry shows up as not whole.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg
import pytest
import redis
from django.core.management import call_command

from orders.webhooks import sign
from tests.chaos.services import PrivatePostgres, private_postgres, stop_all  # noqa: F401 - a fixture
from tests.chaos.test_worker_kill import beat_argv, children_of, wait_ready, worker_argv
from tests.factories import AgentFactory, ChannelFactory, UserFactory, order_payload, token_for
from tests.test_e2e_runtime import (  # noqa: F401 - fixtures, used by name
    BIN,
    Spawned,
    free_port,
    http,
    production_env,
    spawn,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

DBNAME = "paidan_chaos"
SECRET = "s3cret-hook-key"  # tests.factories.ChannelFactory's
LOAD_BEFORE = 3.0  # seconds of load before the restart
LOAD_AFTER = 4.0  # and after PostgreSQL accepts connections again
BATCH = 5
GIVE_UP = 6  # attempts at one request before the client gives up (the test then fails)
QUIET_REQUESTS = 8  # more than the connections web's pool keeps after the load


@dataclass
class Attempt:
    client: str
    keys: list[str]  # external ids, or the webhook event id
    started: float
    elapsed: float
    status: int  # 0: no HTTP answer at all
    body: dict = field(default_factory=dict)
    retry_after: str | None = None
    retry: int = 0  # 0 for the first try of a request
    outcomes: list[str] = field(default_factory=list)  # created / updated / ignored / duplicate, each order


def outcomes(response) -> list[str]:
    """What the server did with each order of a 2xx answer."""
    if "X-Paidan-Ingest" in response.headers:  # a single order
        return [response.headers["X-Paidan-Ingest"].split(";")[0]]
    body = response.json()
    return [r["status"] for r in body["results"]] if "results" in body else [body["status"]]


def shopper_order(**fields: object) -> dict:
    """An order from a shopper of its own: orders of one customer take turns on the customer's
    row, and here each request must get as far as its pool entry on its own."""
    return order_payload(customer={"account_id": f"acct-{fields['external_id']}"}, **fields)


class Client(threading.Thread):
    """Posts one kind of request back to back until told to stop; a 503 is sent again, the same
    request, after Retry-After."""

    def __init__(
        self, name: str, channel: str, base: str, token: str, log: list[Attempt], stop: threading.Event
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.channel, self.base, self.log, self.stop_event = channel, base, log, stop
        self.session = http()
        self.session.headers.update({"Authorization": f"Token {token}", "Accept-Language": "en"})
        self.n = 0

    def request(self) -> tuple[list[str], callable]:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.n += 1
            keys, send = self.request()
            for retry in range(GIVE_UP):
                started = time.monotonic()
                try:
                    response = send()
                    json_body = response.headers.get("Content-Type", "").startswith("application/json")
                    body = response.json() if json_body else {"text": response.text[:500]}
                    attempt = Attempt(self.name, keys, started, time.monotonic() - started, response.status_code,
                                      body, response.headers.get("Retry-After"), retry)  # fmt: skip
                    if response.status_code in (200, 201):
                        attempt.outcomes = outcomes(response)
                except Exception as exc:  # recorded; the test fails on it
                    attempt = Attempt(self.name, keys, started, time.monotonic() - started, 0, {"error": repr(exc)},
                                      retry=retry)  # fmt: skip
                self.log.append(attempt)
                if attempt.status != 503:
                    break
                time.sleep(float(attempt.retry_after or 1))


class SingleOrders(Client):
    def request(self):
        external_id = f"{self.name}-{self.n:04d}"
        payload = shopper_order(channel=self.channel, external_id=external_id)
        return [external_id], lambda: self.session.post(f"{self.base}/api/orders/", json=payload, timeout=30)


class BatchOrders(Client):
    def request(self):
        ids = [f"{self.name}-{self.n:04d}-{k}" for k in range(BATCH)]
        body = {"orders": [shopper_order(channel=self.channel, external_id=i) for i in ids]}
        return ids, lambda: self.session.post(f"{self.base}/api/orders/batch/", json=body, timeout=30)


class Webhooks(Client):
    def request(self):
        external_id = f"{self.name}-{self.n:04d}"
        payload = shopper_order(external_id=external_id)
        payload.pop("channel")
        body = json.dumps(payload, ensure_ascii=False).encode()

        def send():
            ts = str(int(time.time()))  # signed afresh on each try, as a sender does
            headers = {"X-Paidan-Timestamp": ts, "X-Paidan-Event-Id": f"evt-{external_id}",
                       "X-Paidan-Signature": sign(SECRET, ts, body), "Content-Type": "application/json"}  # fmt: skip
            return self.session.post(
                f"{self.base}/hooks/{self.channel}/", data=body, headers=headers, timeout=30
            )

        return [external_id], send


def stored_orders(url: str) -> dict[str, dict]:
    """Every stored order with what makes it whole."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            """
            SELECT o.external_id, o.id, c.code, o.stage,
                   (SELECT count(*) FROM orders_orderevent e WHERE e.order_id = o.id AND e.kind = 'ingested'),
                   (SELECT count(*) FROM dispatch_poolentry p WHERE p.order_id = o.id AND p.kind = 'order'),
                   (SELECT count(*) FROM orders_webhookdelivery w WHERE w.order_id = o.id)
            FROM orders_order o JOIN orders_channel c ON c.id = o.channel_id
            """
        ).fetchall()
    return {
        ext: {
            "id": pk,
            "channel": code,
            "stage": stage,
            "received": events,
            "pool": pool,
            "deliveries": deliveries,
        }
        for ext, pk, code, stage, events, pool, deliveries in rows
    }


def broken(stored: dict[str, dict]) -> list[tuple[str, dict]]:
    """Orders missing their "received" event, their pool entry or their webhook delivery."""
    return [
        (ext, row)
        for ext, row in stored.items()
        if row["received"] != 1
        or row["stage"] != "pending_review"
        or row["pool"] != 1
        or (row["channel"] == "shop") != (row["deliveries"] == 1)
    ]


def process_ids(*spawned: Spawned) -> dict[str, list[int]]:
    """Each live process's id and its children's (the worker's pool)."""
    return {p.name: [p.proc.pid, *sorted(children_of(p.proc.pid))] for p in spawned if p.proc.poll() is None}


def waiting_to_write_pool_entries(url: str) -> int:
    with psycopg.connect(url) as db:
        sql = """
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND query LIKE 'INSERT INTO "dispatch_poolentry"%%'
        """
        return db.execute(sql).fetchone()[0]


def worker_idle(worker: Spawned) -> bool:
    """Nothing queued for the worker and every task it received has finished."""
    log = worker.output()
    received = set(re.findall(r"Task [\w.]+\[([\w-]+)\] received", log))
    finished = set(re.findall(r"Task [\w.]+\[([\w-]+)\] (?:succeeded|raised|failed)", log))
    return received <= finished and redis.Redis.from_url(os.environ["REDIS_URL"]).llen("celery") == 0


def offered(url: str, external_id: str) -> bool:
    with psycopg.connect(url) as db:
        sql = """
            SELECT count(*) FROM dispatch_assignment a JOIN orders_order o ON o.id = a.order_id
            WHERE o.external_id = %s AND a.state = 'offered'
        """
        row = db.execute(sql, [external_id]).fetchone()
    return row[0] > 0


def test_a_postgres_restart_under_load_gives_clear_503s_and_no_half_written_order_and_everyone_reconnects(
    private_postgres: PrivatePostgres,  # noqa: F811
    production_env,  # noqa: F811
    spawn,  # noqa: F811
):
    began = time.monotonic()
    # given a supervisor's token, four channels, agents with room for every order and the beat
    # schedule, copied into a private PostgreSQL cluster
    token = token_for(UserFactory(username="chaos-pg", roles=["supervisor"]))
    for code in ("jd", "tb", "pdd", "shop"):
        ChannelFactory(code=code, name=code, tag_prefix=code.upper())
    for _ in range(5):
        AgentFactory(capacity=200)
    call_command("install_schedules", stdout=io.StringIO())
    private_postgres.copy_test_database(DBNAME)
    # and daphne, a worker and beat as the Procfile runs them, on that cluster
    env = {**production_env, "DATABASE_URL": private_postgres.url(DBNAME)}
    worker = spawn("worker", [*worker_argv("chaos-pg@%h"), "--purge"], env=env)
    beat = spawn("beat", beat_argv(), env=env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daphne = spawn("daphne", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                   env=env, port=port)  # fmt: skip
    wait_ready(worker, "ready.")
    wait_ready(beat, "beat: Starting")
    processes = process_ids(daphne, worker, beat)
    started_up = time.monotonic() - began

    # when four clients post orders back to back and PostgreSQL restarts in the middle
    log: list[Attempt] = []
    stop = threading.Event()
    # (a channel's ingests take turns on its tag sequence row: one channel each, so that all
    # four get as far as the pool entry below)
    clients = [SingleOrders("S1", "jd", base, token, log, stop), SingleOrders("S2", "tb", base, token, log, stop),
               BatchOrders("B", "pdd", base, token, log, stop), Webhooks("W", "shop", base, token, log, stop)]  # fmt: skip
    for client in clients:
        client.start()
    time.sleep(LOAD_BEFORE)  # the load runs meanwhile
    # (when every client has written its order and waits, behind the test's lock, to write its
    # pool entry)
    url = private_postgres.url(DBNAME)
    blocker = psycopg.connect(url)
    try:
        blocker.execute("LOCK TABLE dispatch_poolentry IN SHARE MODE")
        wait_until(lambda: waiting_to_write_pool_entries(url) >= len(clients), timeout=10,
                   what="every client to wait mid-ingest")  # fmt: skip
        restart_began = time.monotonic()
        private_postgres.restart()
        restart_done = time.monotonic()  # pg_ctl -w: accepting connections again
    finally:
        blocker.close()
    time.sleep(LOAD_AFTER)
    stop.set()
    for client in clients:
        client.join(GIVE_UP * 10)
        assert not client.is_alive(), f"client {client.name} is stuck"
        client.session.close()

    # then every answer was a 2xx or a 503, and each 503 says what is wrong and when to retry
    statuses = Counter(a.status for a in log)
    assert set(statuses) <= {200, 201, 503}, [a for a in log if a.status not in (200, 201, 503)][:5]
    refused = [a for a in log if a.status == 503]
    assert len(refused) >= len(clients), "the restart did not cut off the requests waiting mid-ingest"
    for attempt in refused:
        assert attempt.body["code"] == "database_unavailable", attempt
        assert "database is unavailable" in attempt.body["detail"], attempt
        assert attempt.retry_after == "5", attempt
    # and nothing sent once PostgreSQL was back failed
    late = [a for a in refused if a.started > restart_done]
    assert not late, f"{len(late)} requests sent after the restart failed: {late[:3]}"
    # and each request was answered 2xx in the end (refused ones on a later try)
    finals = {(a.client, tuple(a.keys)): a for a in log}
    assert all(a.status in (200, 201) for a in finals.values()), [
        a for a in finals.values() if a.status == 503
    ]

    # and the database holds exactly the orders answered 2xx, each one whole
    answered = {key for a in finals.values() for key in a.keys}
    stored = stored_orders(url)
    assert set(stored) == answered
    assert not broken(stored), f"orders not whole: {broken(stored)[:5]}"
    # and a refused request was either not stored at all (its retry created it) or stored whole
    # (the commit landed, its answer was lost; the retry found it)
    retried_as = Counter(
        tuple(sorted(set(a.outcomes))) for a in log if a.retry > 0 and a.status in (200, 201)
    )
    assert set(retried_as) <= {("created",), ("ignored",), ("duplicate",)}, retried_as
    assert {o for a in log if a.retry == 0 for o in a.outcomes} == {"created"}

    # when PostgreSQL restarts again while nothing happens (the worker has run every round the
    # load asked for), leaving every pooled connection dead
    wait_until(lambda: worker_idle(worker), timeout=30, what="the worker to finish the load's rounds")
    worker_before, beat_before = len(worker.output()), len(beat.output())
    private_postgres.restart()
    quiet_done = time.monotonic()
    # then the very next requests all succeed: the pools check a connection before handing it
    # out, and replace the dead ones, rather than give a dead one to a request
    session = http()
    session.headers["Authorization"] = f"Token {token}"
    quiet_latency = []
    for n in range(QUIET_REQUESTS):
        sent = time.monotonic()
        response = session.post(
            f"{base}/api/orders/", json=shopper_order(channel="jd", external_id=f"QUIET-{n}"), timeout=30
        )
        quiet_latency.append(time.monotonic() - sent)
        assert response.status_code == 201, (n, response.status_code, response.text)
    session.close()
    # and dispatch works again: the last of them is offered by the worker
    wait_until(lambda: offered(url, f"QUIET-{QUIET_REQUESTS - 1}"), timeout=15,
               what="an order posted after the restart to be offered")  # fmt: skip
    recovered = time.monotonic() - quiet_done
    stored = stored_orders(url)
    assert len(stored) == len(answered) + QUIET_REQUESTS and not broken(stored)

    # and the worker's rounds and beat's ticks ran on live connections: nothing failed
    after = worker.output()[worker_before:]
    assert "OperationalError" not in after and "raised unexpected" not in after, after[-3000:]
    wait_until(lambda: "Sending due task sweep-dispatch-pool" in beat.output()[beat_before:],
               timeout=10, what="beat to send the sweep after the restart")  # fmt: skip
    assert "Database gave error" not in beat.output()[beat_before:], beat.output()[beat_before:][-3000:]
    # and web, worker (its pool children too) and beat are the processes that started
    assert process_ids(daphne, worker, beat) == processes
    stop_all(daphne, worker, beat)

    print(
        f"\nPG restart: started up {started_up:.1f} s; {statuses[200] + statuses[201]} 2xx and {len(refused)} 503 "
        f"({sum(len(a.keys) for a in refused)} orders, retried as {dict(retried_as)}); {len(answered)} orders "
        f"stored; restart under load {restart_done - restart_began:.2f} s; after the quiet restart "
        f"{QUIET_REQUESTS} requests 2xx (first in {quiet_latency[0]:.2f} s) and an order offered in {recovered:.1f} s; wall {time.monotonic() - began:.1f} s"
    )
