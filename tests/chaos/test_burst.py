"""A Double 11 burst on the production shape: 10,000 orders through the batch API from four
concurrent integration clients while 20 boards watch over websockets, on daphne, a Celery
worker (prefork, two processes, as the Procfile runs it) and beat, on this test's PostgreSQL
database and Redis.

Afterwards every order sent is stored once and is in exactly one place: offered to an agent,
accepted by one, or waiting in the pool with the reason the last round gave it (or "queued",
not yet reached: a round takes on the oldest 1,000 waiting, and agents are full); no order or pool
entry ever had two live assignments and no agent more than their capacity (sampled while it ran,
and checked at the end); every agent is full while orders wait (nothing was lost between the
ingest, the rounds and beat's sweep); and every board was told of every order it may see and of
no other region's, and again of each offer the worker made (regional boards once missed them
all: Celery closed the connection pool under the board sender, see dashboards/events.py).

Push latency runs from each order's commit to the first board message naming it, on one
machine's clock. PostgreSQL here does not record commit times (track_commit_timestamp is off),
so a session of the test's own sees them: every 5 ms it asks which batches' first orders are
visible, and a batch commits in one transaction. The figure is within about one poll of the
truth. Beside it, for comparison: from the order's `received_at` (stamped by daphne inside the
ingest transaction, before the insert: it adds the rest of that transaction, with its wait for
the channel's tag counter, which makes one channel's batches commit one after another), and from the
batch's HTTP answer reaching the integration (after the commit; a push may beat it, so this
one can be negative).

The figures are printed and written to var/reliability/burst.json for docs/reliability.md."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import queue
import re
import signal
import statistics
import threading
import time
from collections import Counter, defaultdict

import psycopg
import pytest
import redis
from django.db import connection
from django.db.models import Count
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import config.settings as configured
from agents.models import Agent
from config import schedules
from config.celery import app as celery_app
from dashboards.benchmarks.board.push import percentile
from dashboards.events import ORDERS_CHANGED
from dashboards.groups import board_group
from dispatch.engine.types import WaitReason
from dispatch.models import LIVE_STATES, Assignment, PoolEntry
from orders.management.commands.install_schedules import install_schedules
from orders.models import Order
from orders.selectors import order_visible_to
from riskcontrol.defaults import install_defaults
from riskcontrol.models import RiskPolicy, Rule
from tests.factories import (
    AgentFactory,
    ChannelFactory,
    RegionFactory,
    SkillFactory,
    UserFactory,
    order_payload,
    token_for,
)
from tests.test_dispatch_concurrency import Watcher, conninfo
from tests.test_e2e_runtime import (  # noqa: F401 - daphne, production_env and spawn are fixtures
    BIN,
    ROOT,
    START_TIMEOUT,
    daphne,
    http,
    production_env,
    session_cookie,
    spawn,
    stop,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

ORDERS = 10_000
BATCH = 500
SENDERS = 4
CAPACITY = 20
ACCEPT_EACH = 8  # offers each accepting agent takes while the burst runs; the rest stay offered
PUSH_TIMEOUT = 30.0  # after the last batch's answer, for every board to hear of every order
QUIET_TIMEOUT = 60.0
REPORT = ROOT / "var" / "reliability" / "burst.json"

# Delivery provinces in turn: three regions with their own supervisors and agents, and one
# province no region covers (every regional supervisor sees those).
PROVINCES = {
    "south": "广东省深圳市南山区科技园南区{n}栋",
    "east": "浙江省杭州市西湖区文三路{n}号",
    "north": "北京市朝阳区建国路{n}号",
    None: "四川省成都市武侯区人民南路四段{n}号",
}
# Every tenth order asks for a skill only an offline agent holds: it waits, "none online".
APPAREL = {"sku": "DJ-001", "name": "羽绒服", "qty": 1, "price": "599.00"}
APPLIANCE = {"sku": "DF-002", "name": "电饭煲", "qty": 1, "price": "599.00"}
AGENTS_PER_AREA = {"south": 8, "east": 8, "north": 4, None: 4}  # None: covers every region

# 20 boards: ten that see everything, ten regional supervisors (of one region, or of two).
ALL_SEEING = [("supervisor", ())] * 4 + [("admin", ())] * 3 + [("customer_service", ())] * 3
REGIONAL = [("supervisor", ("south",))] * 4 + [("supervisor", ("east",))] * 3
REGIONAL += [("supervisor", ("north",))] * 2 + [("supervisor", ("south", "east"))]

SWEEP_DONE = re.compile(r"Task dispatch\.tasks\.sweep_pool_task\[[\w-]+\] succeeded")
LOG_TROUBLE = ("Traceback", "ERROR/", "IntegrityError", "deadlock detected", "raised unexpected")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def burst_payloads() -> list[dict]:
    areas = list(PROVINCES)
    payloads = []
    for n in range(ORDERS):
        area = areas[n % len(areas)]
        item = APPLIANCE if n % 10 == 9 else APPAREL
        payloads.append(
            order_payload(
                external_id=f"BURST-{n:05d}",
                # Each order its own shopper, as a marketplace's stream is.
                customer={"name": f"顾客{n}", "account_id": f"burst_u_{n}", "phone": f"135{n:08d}"},
                address=PROVINCES[area].format(n=n % 97 + 1),
                items=[item],
                category="appliance" if item is APPLIANCE else "apparel",
            )
        )
    return payloads


class Boards(threading.Thread):
    """20 board sockets on one event loop of their own: each stamps, on the machine's clock,
    the moment it first hears of each order id."""

    def __init__(self, host: str, cookies: dict[str, str]) -> None:
        super().__init__(name="burst-boards", daemon=True)
        self.host, self.cookies = host, cookies
        self.seen: dict[str, dict[int, float]] = {name: {} for name in cookies}
        # How many messages named each id: its arrival, its offer, its acceptance.
        self.mentions: dict[str, Counter[int]] = {name: Counter() for name in cookies}
        self.messages: Counter[str] = Counter()
        self.closed: dict[str, str] = {}
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop, self._closing = asyncio.get_running_loop(), asyncio.Event()
        sockets = {}
        for name, cookie in self.cookies.items():
            ws = await ws_connect(
                f"ws://{self.host}/ws/board/",
                origin=f"http://{self.host}",
                additional_headers={"Cookie": cookie},
                proxy=None,
                ping_interval=None,
                open_timeout=10,
            )
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert hello["type"] == "hello", hello
            sockets[name] = ws
        readers = [asyncio.create_task(self._read(name, ws)) for name, ws in sockets.items()]
        self.ready.set()
        await self._closing.wait()
        for ws in sockets.values():
            await ws.close()
        await asyncio.gather(*readers)

    async def _read(self, name: str, ws) -> None:
        seen, mentions = self.seen[name], self.mentions[name]
        try:
            async for raw in ws:
                at = time.time()
                message = json.loads(raw)
                self.messages[name] += 1
                if message["type"] == ORDERS_CHANGED:
                    for order_id in message["ids"]:
                        seen.setdefault(order_id, at)
                    mentions.update(message["ids"])
        except ConnectionClosed as exc:
            if not self._closing.is_set():
                self.closed[name] = repr(exc)

    def close(self) -> None:
        if self._loop is not None and self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)
        self.join(15)


class Accepter(threading.Thread):
    """Agents answering their queue through the API while the burst runs: each accepting
    agent lists their open offers and accepts up to ACCEPT_EACH of them."""

    def __init__(self, base: str, tokens: dict[int, str]) -> None:
        super().__init__(name="burst-accepter", daemon=True)
        self.base, self.tokens = base, tokens
        self.accepted: Counter[int] = Counter()
        self.accepted_at: list[float] = []
        self.refused: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            sessions = {}
            for agent_id, token in self.tokens.items():
                sessions[agent_id] = http()
                sessions[agent_id].headers["Authorization"] = f"Token {token}"
            while not self.stop.is_set() and any(self.accepted[a] < ACCEPT_EACH for a in sessions):
                for agent_id, session in sessions.items():
                    wanted = ACCEPT_EACH - self.accepted[agent_id]
                    if wanted <= 0:
                        continue
                    listed = session.get(
                        f"{self.base}/api/assignments/", params={"mine": "1", "state": "offered"}, timeout=30
                    )
                    assert listed.status_code == 200, listed.text
                    for offer in listed.json()["results"][:wanted]:
                        answer = session.post(
                            f"{self.base}/api/assignments/{offer['id']}/accept/", timeout=30
                        )
                        if answer.status_code == 200:
                            self.accepted[agent_id] += 1
                            self.accepted_at.append(time.time())
                        else:
                            self.refused.append((answer.status_code, answer.text[:300]))
                self.stop.wait(0.2)
        except BaseException as exc:
            self.error = exc


class CommitClock(threading.Thread):
    """Stamps the moment each batch becomes visible to another PostgreSQL session, polling
    every 5 ms for the batches' first orders (one transaction per batch: the first order is
    visible exactly when the other 499 are)."""

    def __init__(self, conninfo: str, channel_id: int, firsts: dict[str, int]) -> None:
        super().__init__(name="burst-commit-clock", daemon=True)
        self.conninfo, self.channel_id, self.firsts = conninfo, channel_id, firsts
        self.committed: dict[int, float] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        pending = set(self.firsts)
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as db:
                while pending and not self.stop.is_set():
                    asked_at = time.time()  # a batch seen now committed since the last poll
                    rows = db.execute(
                        "SELECT external_id FROM orders_order WHERE channel_id = %s AND external_id = ANY(%s)",
                        [self.channel_id, sorted(pending)],
                    ).fetchall()
                    for (external_id,) in rows:
                        self.committed[self.firsts[external_id]] = asked_at
                        pending.discard(external_id)
                    time.sleep(0.005)
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc


def send_burst(base: str, token: str, bodies: list[bytes]) -> tuple[list[dict], float, float]:
    """SENDERS threads, each with a keep-alive session, taking batches off one queue as an
    integration's workers would. Returns each batch's answer with when it arrived."""
    work: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
    for number, body in enumerate(bodies):
        work.put((number, body))
    answers: list[dict] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def sender() -> None:
        session = http()
        session.headers.update({"Authorization": f"Token {token}", "Content-Type": "application/json"})
        try:
            while True:
                try:
                    number, body = work.get_nowait()
                except queue.Empty:
                    return
                sent_at = time.time()
                response = session.post(f"{base}/api/orders/batch/", data=body, timeout=120)
                answered_at = time.time()
                with lock:
                    answers.append(
                        {
                            "batch": number,
                            "status": response.status_code,
                            "sent_at": sent_at,
                            "answered_at": answered_at,
                            "body": response.json() if response.status_code == 200 else response.text[:2000],
                        }
                    )
        except BaseException as exc:
            errors.append(exc)

    started = time.time()
    threads = [threading.Thread(target=sender, name=f"burst-sender-{i}") for i in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = time.time()
    assert not errors, errors
    return sorted(answers, key=lambda a: a["batch"]), started, finished


def broker_idle(store: redis.Redis) -> bool:
    """Nothing queued and nothing reserved by a worker (acks_late: a task in progress or held
    for its countdown stays in `unacked` until it is done)."""
    return store.llen("celery") == 0 and store.hlen("unacked") == 0


def test_a_burst_of_10000_orders_is_stored_placed_and_pushed_whole(production_env, daphne, spawn, tmp_path):  # noqa: F811
    test_started = time.monotonic()
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    store.ping()
    # A clean broker: this test's Redis database, nothing left over from an earlier run.
    celery_app.control.purge()
    store.delete("unacked", "unacked_index")

    # given the production rule set and schedule, a channel, three regions, agents for each
    # region and for everywhere (capacity 20), and one offline agent who alone sells appliances
    install_defaults(Rule, RiskPolicy)
    install_schedules(schedules.BEAT_SCHEDULE)
    channel = ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    regions = {
        "south": RegionFactory(code="south", provinces=["广东省"]),
        "east": RegionFactory(code="east", provinces=["浙江省"]),
        "north": RegionFactory(code="north", provinces=["北京市"]),
    }
    SkillFactory(code="apparel", keywords=["羽绒服"])
    SkillFactory(code="appliance", keywords=["电饭煲"])
    agents: list[Agent] = []
    for area, count in AGENTS_PER_AREA.items():
        for n in range(count):
            agents.append(
                AgentFactory(
                    user__username=f"agent-{area or 'any'}-{n}",
                    capacity=CAPACITY,
                    skills={"apparel": 3},
                    regions=[regions[area]] if area else [],
                )
            )
    AgentFactory(user__username="agent-appliance-offline", status="offline", skills={"appliance": 4})
    accepting = {a.pk: token_for(a.user) for a in agents[::2]}
    integration = UserFactory(username="erp", roles=["customer_service"])

    # and 20 people with the board open, each by their own session
    viewers = {}
    for n, (role, supervised) in enumerate(ALL_SEEING + REGIONAL):
        user = UserFactory(username=f"board-{role}-{'-'.join(supervised) or 'all'}-{n}", roles=[role])
        for code in supervised:
            regions[code].supervisors.add(user)
        viewers[user.username] = user

    # and the Procfile's worker (prefork, two processes) and beat on this database and Redis
    argv = [str(BIN / "celery"), "-A", "config", "worker", "--concurrency", "2", "--loglevel", "info"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--purge"]
    argv += ["--hostname", f"burst-{os.getpid()}@%h"]
    worker = spawn("celery-worker", argv, env=production_env)
    argv = [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "info"]
    argv += ["--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "-s", str(tmp_path / "beat")]
    beat = spawn("celery-beat", argv, env=production_env)
    for process, sign in ((worker, "ready."), (beat, "beat: Starting")):
        wait_until(lambda p=process, s=sign: s in p.output() or p.proc.poll() is not None,
                   timeout=START_TIMEOUT, what=f"{process.name} to start")  # fmt: skip
        assert process.proc.poll() is None, process.output()

    boards = Boards(daphne, {name: session_cookie(user) for name, user in viewers.items()})
    boards.start()
    assert boards.ready.wait(30) and boards.error is None, boards.error
    inbox = _daphne_inbox(store)
    inbox_peak = {"messages": 0}
    payloads = burst_payloads()
    bodies = [json.dumps({"orders": chunk}).encode() for chunk in _chunks(payloads, BATCH)]
    base = f"http://{daphne}"
    watcher = Watcher(conninfo())
    watcher.start()
    clock = CommitClock(
        conninfo(), channel.pk, {payloads[b * BATCH]["external_id"]: b for b in range(len(bodies))}
    )
    clock.start()
    accepter = Accepter(base, accepting)
    sampling = threading.Event()

    def sample_inbox() -> None:
        while not sampling.is_set():
            inbox_peak["messages"] = max(inbox_peak["messages"], store.zcard(inbox))
            time.sleep(0.02)

    threading.Thread(target=sample_inbox, name="burst-inbox", daemon=True).start()

    try:
        # when an integration sends 10,000 orders in batches of 500 from four clients at once,
        # while agents accept offers through the API
        accepter.start()
        answers, burst_started, burst_finished = send_burst(base, token_for(integration), bodies)
        burst_seconds = burst_finished - burst_started
        bad = [(a["batch"], a["status"], a["body"]) for a in answers if a["status"] != 200]
        assert not bad, bad[:2]
        answered_at: dict[int, float] = {}
        batch_of: dict[int, int] = {}
        for answer in answers:
            for result in answer["body"]["results"]:
                answered_at[result["id"]] = answer["answered_at"]
                batch_of[result["id"]] = answer["batch"]
        sent_ids = set(answered_at)

        # then every board hears of every order it may see (waited for, bounded)
        visible = {
            name: set(order_visible_to(user).filter(pk__in=sent_ids).values_list("pk", flat=True))
            for name, user in viewers.items()
        }

        def boards_complete() -> bool:
            return all(visible[name] <= boards.seen[name].keys() for name in viewers)

        push_deadline = time.monotonic() + PUSH_TIMEOUT
        while not boards_complete() and time.monotonic() < push_deadline and not boards.closed:
            time.sleep(0.25)

        # and once the agents have answered, the workers are idle and a beat sweep has run after it all
        accepter.stop.set()
        accepter.join(30)
        sweeps_before = len(SWEEP_DONE.findall(worker.output()))

        def quiet() -> bool:
            return broker_idle(store) and not time.sleep(0.5) and broker_idle(store)

        wait_until(quiet, timeout=QUIET_TIMEOUT, what="the workers to finish the burst's rounds")
        wait_until(lambda: len(SWEEP_DONE.findall(worker.output())) > sweeps_before and quiet(),
                   timeout=QUIET_TIMEOUT, what="a beat sweep after the burst")  # fmt: skip
        stop(beat.proc, signal.SIGTERM)
        wait_until(quiet, timeout=QUIET_TIMEOUT, what="the last sweep to finish")
    finally:
        sampling.set()
        clock.stop.set()
        watcher.stop.set()
        watcher.join(5)
        accepter.stop.set()
        boards.close()
        celery_app.control.purge()

    # The figures, written before they are judged: a failing run is recorded too.
    stored = Order.objects.filter(channel__code="jd", external_id__startswith="BURST-")
    stored_ids = set(stored.values_list("pk", flat=True))
    entries = {e.order_id: e for e in PoolEntry.objects.filter(order_id__in=stored_ids)}
    live: dict[int, list[str]] = defaultdict(list)
    for order_id, state in Assignment.objects.filter(
        order_id__in=stored_ids, state__in=LIVE_STATES
    ).values_list("order_id", "state"):
        live[order_id].append(state)
    buckets: dict[int, str] = {}
    for order_id in stored_ids:
        buckets[order_id] = _bucket(entries.get(order_id), live.get(order_id, []))
    outcome = Counter(buckets.values())
    waiting_by_reason = Counter(
        entries[i].wait_reason or "(none)" for i, bucket in buckets.items() if bucket == "waiting"
    )
    double_per_order = _doubles("order_id")
    double_per_entry = _doubles("entry_id")
    load = dict(
        Assignment.objects.filter(state__in=LIVE_STATES)
        .values("agent_id")
        .annotate(n=Count("id"))
        .values_list("agent_id", "n")
    )
    over_capacity = {a.pk: load.get(a.pk, 0) for a in Agent.objects.all() if load.get(a.pk, 0) > a.capacity}
    idle_slots = {a.pk: a.capacity - load.get(a.pk, 0) for a in agents if load.get(a.pk, 0) < a.capacity}
    received_at = {pk: at.timestamp() for pk, at in stored.values_list("pk", "received_at")}
    latency, from_received, from_answer = [], [], []
    missing, foreign, offers_unheard = {}, {}, {}
    placed = {i for i, bucket in buckets.items() if bucket in {"offered", "accepted"}}
    for name in viewers:
        seen = boards.seen[name]
        missing[name] = len(visible[name] - seen.keys())
        foreign[name] = len((seen.keys() & sent_ids) - visible[name])
        # An offer changes the card (owner-to-be, countdown): a second message must name it.
        offers_unheard[name] = sum(1 for i in placed & visible[name] if boards.mentions[name][i] < 2)
        for order_id in visible[name] & seen.keys():
            if batch_of[order_id] in clock.committed:
                latency.append((seen[order_id] - clock.committed[batch_of[order_id]]) * 1000)
            from_received.append((seen[order_id] - received_at[order_id]) * 1000)
            from_answer.append((seen[order_id] - answered_at[order_id]) * 1000)
    created = sum(a["body"]["created"] for a in answers)
    firsts = [boards.seen[name][i] for name in viewers for i in visible[name] & boards.seen[name].keys()]
    last_push = max(firsts, default=None)
    figures = {
        "run_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "shape": "daphne ×1, celery worker prefork ×2, celery beat (DatabaseScheduler), PostgreSQL, Redis",
        "sent": len(payloads),
        "batches": f"{len(bodies)} × {BATCH} from {SENDERS} concurrent clients",
        "created": created,
        "stored": len(stored_ids),
        "burst_seconds": round(burst_seconds, 2),
        "orders_per_s": round(len(stored_ids) / burst_seconds, 1),
        "offered": outcome["offered"],
        "accepted": outcome["accepted"],
        "waiting": outcome["waiting"],
        "waiting_by_reason": dict(waiting_by_reason.most_common()),
        "other": {k: v for k, v in outcome.items() if k not in {"offered", "accepted", "waiting"}},
        "accepted_through_api": sum(accepter.accepted.values()),
        "accepted_while_sending": sum(1 for at in accepter.accepted_at if at <= burst_finished),
        "accept_refusals": len(accepter.refused),
        "agents": len(agents),
        "slots": sum(a.capacity for a in agents),
        "idle_slots_while_orders_wait": sum(idle_slots.values()),
        "double_assignments": {"orders": double_per_order, "entries": double_per_entry},
        "max_live_per_order_sampled": watcher.max_order_live,
        "max_live_per_agent_sampled": watcher.max_agent_live,
        "agents_over_capacity": len(over_capacity),
        "board_clients": len(viewers),
        "push_deliveries": len(latency),
        "push_missing": sum(missing.values()),
        "push_foreign": sum(foreign.values()),
        "offer_pushes_unheard": sum(offers_unheard.values()),
        "push_p50_ms": percentile(latency, 50),
        "push_p99_ms": percentile(latency, 99),
        "push_max_ms": round(max(latency), 1) if latency else None,
        "push_mean_ms": round(statistics.fmean(latency), 1) if latency else None,
        "push_measured": "batch commit (seen by a PostgreSQL session polling every 5 ms) → first "
        "orders.changed naming the order read on each of the 20 board sockets",
        "push_from_received_at_p50_ms": percentile(from_received, 50),
        "push_from_received_at_p99_ms": percentile(from_received, 99),
        "push_from_http_answer_p50_ms": percentile(from_answer, 50),
        "push_from_http_answer_p99_ms": percentile(from_answer, 99),
        "commit_to_http_answer_p50_ms": percentile(
            [
                (a["answered_at"] - clock.committed[a["batch"]]) * 1000
                for a in answers
                if a["batch"] in clock.committed
            ],
            50,
        ),
        "last_push_after_last_answer_s": round(last_push - burst_finished, 2) if last_push else None,
        "batch_answer_s": {
            "p50": percentile([a["answered_at"] - a["sent_at"] for a in answers], 50),
            "max": round(max(a["answered_at"] - a["sent_at"] for a in answers), 2),
        },
        "daphne_inbox_peak": inbox_peak["messages"],
        "channel_capacity": configured.CHANNEL_LAYERS["default"]["CONFIG"]["capacity"],
        "board_sockets_closed": boards.closed,
        "beat_sweeps_run": len(SWEEP_DONE.findall(worker.output())),
        "test_wall_s": round(time.monotonic() - test_started, 1),
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n")
    print(json.dumps(figures, ensure_ascii=False, indent=2))

    # then orders sent = stored = offered + accepted + waiting, each in exactly one place
    errors = {
        "boards": boards.error,
        "accepter": accepter.error,
        "watcher": watcher.error,
        "clock": clock.error,
    }
    assert not any(errors.values()), errors
    assert len(clock.committed) == len(bodies)
    assert created == ORDERS and len(sent_ids) == ORDERS
    assert stored_ids == sent_ids
    assert figures["other"] == {}, [
        (i, b) for i, b in buckets.items() if b not in {"offered", "accepted", "waiting"}
    ][:5]
    assert outcome["offered"] + outcome["accepted"] + outcome["waiting"] == ORDERS
    # a waiting order says why: the engine's reason, or "queued" for those behind the oldest
    # 1,000 that each round takes on
    assert set(waiting_by_reason) <= {r.value for r in WaitReason} | {"queued"}, waiting_by_reason
    assert waiting_by_reason[WaitReason.ALL_AT_CAPACITY] and waiting_by_reason[WaitReason.NONE_ONLINE]
    # and agents accepted through the API while orders kept coming
    assert outcome["accepted"] == figures["accepted_through_api"]
    assert figures["accepted_while_sending"] > 0, accepter.accepted_at
    assert not accepter.refused, accepter.refused[:3]

    # and no order or entry ever had two live assignments, no agent ever over capacity
    assert _live_constraints() == {"assignment_one_live_per_entry", "assignment_one_live_per_order"}
    assert double_per_order == double_per_entry == 0
    assert watcher.samples > 20 and watcher.max_order_live == 1
    assert watcher.max_agent_live <= CAPACITY and not over_capacity, over_capacity
    # and none sits idle while orders it could take wait: nothing fell between ingest and rounds
    assert not idle_slots, idle_slots

    # and every board heard of every order it may see, and of no other region's
    assert not boards.closed, boards.closed
    assert not any(foreign.values()), foreign
    assert not any(missing.values()), missing
    # and of every offer the worker processes made
    assert not any(offers_unheard.values()), offers_unheard

    # and no process logged a failure
    logs = {"worker": worker.output(), "beat": beat.output(), "daphne": (tmp_path / "daphne.log").read_text()}
    for name, log in logs.items():
        for sign in LOG_TROUBLE:
            assert sign not in log, f"{name}: {sign}\n{log[-4000:]}"


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _daphne_inbox(store: redis.Redis) -> bytes:
    """The Redis sorted set holding daphne's undelivered messages (channels-redis: one per
    process), found from a board socket's channel name in the `board-all` group."""
    member = store.zrange(f"asgi:group:{board_group()}", -1, -1)[0]
    return b"asgi" + member[: member.index(b"!") + 1]


def _bucket(entry: PoolEntry | None, live: list[str]) -> str:
    if entry is None:
        return "no pool entry"
    if entry.state == PoolEntry.State.OFFERED and live == ["offered"]:
        return "offered"
    if entry.state == PoolEntry.State.ASSIGNED and live == ["accepted"]:
        return "accepted"
    if entry.state == PoolEntry.State.WAITING and not live and entry.wait_reason:
        return "waiting"
    return f"{entry.state} with live {sorted(live)} reason {entry.wait_reason!r}"


def _doubles(column: str) -> int:
    """Orders or entries holding more than one live assignment, by a GROUP BY of their own."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT {column} FROM dispatch_assignment "
            f"WHERE state IN ('offered', 'accepted') GROUP BY {column} HAVING count(*) > 1) AS doubles"
        )
        return cursor.fetchone()[0]


def _live_constraints() -> set[str]:
    """The partial unique indexes that hold one live assignment per order and per entry, as
    PostgreSQL has them (not only as the model declares them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'dispatch_assignment' "
            "AND indexname LIKE %s AND indexdef LIKE %s",
            ["assignment_one_live_per_%", "CREATE UNIQUE INDEX%"],
        )
        return {row[0] for row in cursor.fetchall()}
