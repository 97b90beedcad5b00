"""Dispatch under real concurrency: four Celery worker processes on Redis matching one pool of
2,000 orders for 50 agents on PostgreSQL at the same time, while agents accept, reject and
finish work from another process.

Why this test can fail (it is not a demonstration that always passes):

- Claims. Each round claims waiting entries with `SELECT … FOR UPDATE SKIP LOCKED` (1,000 at a
  time), so two rounds that start together split the pool instead of both matching the same
  entries. Were the claim a plain SELECT, two overlapping rounds would offer the same order to
  two agents: the partial unique constraint `assignment_one_live_per_order` would then raise
  IntegrityError in a worker (the worker logs are checked for it and for any failed task), and
  without that constraint the order would hold two live assignments (checked directly).
- Capacity. A round decides from a snapshot of every agent's live count taken before it locks
  anything; two overlapping rounds see the same free slots. Only `_within_capacity` re-counting
  under `SELECT … FOR UPDATE` on the chosen agents (in id order) makes the second round wait for
  the first to commit and see its offers. The first wave below starts with 2,000 orders against
  250 free slots and every agent qualified for every order, so the two rounds that claim the
  pool both want every free slot; without the lock the second one's count would be read before
  the first commits and each agent would end with up to twice their capacity (checked directly,
  and sampled every 20 ms during the run). A watcher also has to see, in pg_stat_activity, a
  round blocked on that `SELECT … FROM agents_agent … FOR UPDATE` while another round held the
  agents, and the workers' own logs have to show rounds that matched entries running at the
  same time on different workers: a run where the rounds happened to take turns cannot pass
  for one that exercised the locks, and with the lock removed there is nothing to wait on.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg
import pytest
import redis
from django.db import connection
from django.db.models import Count

from config.celery import app as celery_app
from dispatch.engine.types import WaitReason
from dispatch.models import LIVE_STATES, Assignment, PoolEntry
from dispatch.services import OfferNotOpen, assignment_accept, assignment_reject
from dispatch.tasks import dispatch_pool_task, sweep_pool_task
from orders.actors import system_actor
from orders.services import order_ingest_batch, order_transition
from tests.factories import AgentFactory, ChannelFactory, order_payload
from tests.test_e2e_runtime import (  # noqa: F401 - fixtures, used by name
    BIN,
    START_TIMEOUT,
    Spawned,
    not_eager,
    production_env,
    spawn,
    wait_until,
)

WORKERS = 4
AGENTS = 50
CAPACITY = 5
ORDERS = 2_000
BATCH = 500
ROUNDS = 40  # enqueued at once when every worker is ready, half event rounds, half sweeps
CHURN_WAVES = 3
ANSWERS_PER_WAVE = 20
CLOSES_PER_WAVE = 8
QUIET_TIMEOUT = 60.0

LOG_LINE = re.compile(
    r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/[\w-]+\] "
    r"Task (?P<task>[\w.]+)\[(?P<id>[\w-]+)\] (?P<what>received|succeeded in (?P<secs>[\d.]+)s: (?P<result>.*)|.*)$"
)


@dataclass(frozen=True)
class Round:
    worker: str
    task: str
    started: float
    ended: float
    worked: bool  # it claimed entries: something was offered, left waiting or escalated


def parse_rounds(worker: str, log: str) -> tuple[list[Round], int]:
    """(finished dispatch rounds, messages received) from a worker's log."""
    rounds, received = [], 0
    for line in log.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        if m["what"] == "received":
            received += 1
        elif m["secs"] is not None:
            ended = datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            numbers = [int(n) for n in re.findall(r"'(?:offered|waiting|escalated)': (\d+)", m["result"])]
            rounds.append(Round(worker, m["task"], ended - float(m["secs"]), ended, sum(numbers) > 0))
    return rounds, received


def overlapping_worked_rounds(rounds: list[Round]) -> list[tuple[Round, Round]]:
    """Pairs of event rounds that both matched entries, on different workers, at the same time.
    Sweeps report no waiting count, so only `dispatch_pool_task` rounds are judged."""
    worked = sorted(
        (r for r in rounds if r.worked and r.task.endswith("dispatch_pool_task")), key=lambda r: r.started
    )
    pairs = []
    for i, a in enumerate(worked):
        for b in worked[i + 1 :]:
            if b.started >= a.ended:
                break
            if b.worker != a.worker:
                pairs.append((a, b))
    return pairs


class Watcher(threading.Thread):
    """Samples the database every 20 ms from its own connection while the workers run: the
    most live items any agent holds, the most live assignments any order holds, and rounds
    waiting on an agent's row lock (another round holds it)."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.stop = threading.Event()
        self.max_agent_live = 0
        self.max_order_live = 0
        self.agent_lock_waits = 0
        self.samples = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as db:
                while not self.stop.wait(0.02):
                    self.sample(db)
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc

    def sample(self, db: psycopg.Connection) -> None:
        live = "state IN ('offered', 'accepted')"
        agent = db.execute(
            f"SELECT count(*) FROM dispatch_assignment WHERE {live} GROUP BY agent_id ORDER BY 1 DESC LIMIT 1"
        ).fetchone()
        order = db.execute(
            f"SELECT count(*) FROM dispatch_assignment WHERE {live} GROUP BY order_id ORDER BY 1 DESC LIMIT 1"
        ).fetchone()
        waits = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE '%FROM \"agents_agent\"%FOR UPDATE%'"
        ).fetchone()
        self.max_agent_live = max(self.max_agent_live, agent[0] if agent else 0)
        self.max_order_live = max(self.max_order_live, order[0] if order else 0)
        self.agent_lock_waits += waits[0]
        self.samples += 1


def conninfo() -> str:
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=db["NAME"],
        user=db["USER"] or "postgres",
        password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1",
        port=str(db["PORT"] or 5432),
        application_name="paidan-concurrency-watcher",
    )


def start_workers(start, env: dict[str, str]) -> list[Spawned]:
    """Four worker processes, one task at a time each, as separate deployments would run them."""
    workers = []
    for n in range(1, WORKERS + 1):
        argv = [str(BIN / "celery"), "-A", "config", "worker", "--pool", "solo", "--concurrency", "1"]
        argv += ["--loglevel", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["--hostname", f"dispatch{n}-{os.getpid()}@%h"]
        workers.append(start(f"worker{n}", argv, env=env))
    for worker in workers:
        wait_until(
            lambda w=worker: "ready." in w.output() or w.proc.poll() is not None,
            timeout=START_TIMEOUT,
            what=f"{worker.name} to be ready",
        )
        assert worker.proc.poll() is None, worker.output()
    return workers


def queued() -> int:
    return redis.Redis.from_url(os.environ["REDIS_URL"]).llen("celery")


def churn(rng: random.Random, *, accepted: list[Assignment], closed: set[int], rejected: list[int]) -> int:
    """Agents answer some open offers and finish some accepted work: a reject or a finished order
    frees a slot and asks for a new round (an accept keeps the slot). Returns the actions taken."""
    actions = 0
    offers = list(Assignment.objects.filter(state="offered").select_related("agent__user"))
    for offer in rng.sample(offers, min(ANSWERS_PER_WAVE, len(offers))):
        try:
            if rng.random() < 0.25 and offer.round == 1:
                assignment_reject(assignment_id=offer.pk, agent=offer.agent, reason="太远了")
                rejected.append(offer.order_id)
            else:
                accepted.append(assignment_accept(assignment_id=offer.pk, agent=offer.agent))
            actions += 1
        except OfferNotOpen:
            pass  # answered or expired meanwhile; a real agent's tap would be refused the same way
    actor = system_actor("test-warehouse")
    finishing = [a for a in accepted if a.order_id not in closed]
    for a in rng.sample(finishing, min(CLOSES_PER_WAVE, len(finishing))):
        for stage in ("picking", "shipping", "done"):
            order_transition(order_id=a.order_id, to=stage, actor=actor)
        closed.add(a.order_id)
        actions += 1
    return actions


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_four_workers_dispatching_one_pool_never_double_assign_or_overfill(
    production_env,  # noqa: F811
    spawn,  # noqa: F811
    not_eager,  # noqa: F811
    settings,
):
    # given Redis answering (missing, this fails: the test needs the real broker) and an empty queue
    redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
    celery_app.control.purge()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    agents = [AgentFactory(capacity=CAPACITY) for _ in range(AGENTS)]
    # and 2,000 orders ingested the fast way, every one qualified for every agent
    for start in range(0, ORDERS, BATCH):
        results = order_ingest_batch(
            payloads=[order_payload(external_id=f"C{n:05d}") for n in range(start, start + BATCH)],
            actor=system_actor("test"),
        )
        assert {r.status for r in results} == {"created"}
    assert PoolEntry.objects.filter(state="waiting").count() == ORDERS

    # when four worker processes start and, all ready, get 40 rounds at once
    workers = start_workers(spawn, production_env)
    watcher = Watcher(conninfo())
    watcher.start()
    try:
        for n in range(ROUNDS):
            (dispatch_pool_task if n % 2 == 0 else sweep_pool_task).delay()
        # and meanwhile agents answer offers and finish work, each answer asking for a round
        rng = random.Random(3)
        accepted: list[Assignment] = []
        closed: set[int] = set()
        rejected: list[int] = []
        actions = 0
        for _wave in range(CHURN_WAVES):
            wait_until(
                lambda: Assignment.objects.filter(state="offered").exists(),
                timeout=30,
                what="offers to answer",
            )
            actions += churn(rng, accepted=accepted, closed=closed, rejected=rejected)
            time.sleep(0.5)

        assert rejected and closed, "the churn neither rejected nor finished anything"

        # until the pool is quiet: the queue drained and every message received was finished,
        # twice half a second apart (a message just popped is not logged as received yet)
        def drained() -> bool:
            logs = [parse_rounds(w.name, w.output()) for w in workers]
            finished = sum(len(rounds) for rounds, _received in logs)
            return not queued() and sum(received for _rounds, received in logs) == finished

        def quiet() -> bool:
            return drained() and not time.sleep(0.5) and drained()

        wait_until(quiet, timeout=QUIET_TIMEOUT, what="the workers to drain the queue")
        # then beat's next sweep, alone: a round that found every entry claimed by another
        # returns without matching, so a slot freed meanwhile waits for this repair (every 5 s)
        sweep_pool_task.delay()
        wait_until(quiet, timeout=QUIET_TIMEOUT, what="the last sweep")
    finally:
        watcher.stop.set()
        watcher.join(5)
        celery_app.control.purge()
    assert watcher.error is None, watcher.error

    # then no worker crashed or failed a task: no IntegrityError, deadlock or traceback
    for worker in workers:
        log = worker.output()
        for sign in ("IntegrityError", "deadlock detected", "Traceback", "raised unexpected", "ERROR/"):
            assert sign not in log, f"{worker.name}: {sign}\n{log[-4000:]}"
        assert worker.proc.poll() is None, log[-4000:]

    # and the rounds really ran in parallel: every worker ran some, and rounds that matched
    # entries overlapped in time on different workers
    rounds = [r for w in workers for r in parse_rounds(w.name, w.output())[0]]
    per_worker = Counter(r.worker for r in rounds)
    assert set(per_worker) == {w.name for w in workers}, per_worker
    overlaps = overlapping_worked_rounds(rounds)
    print(  # the evidence, for whoever reads the log (pytest -s or a failure's captured output)
        f"rounds per worker {dict(per_worker)}, {len(overlaps)} overlapping matching rounds, "
        f"{watcher.agent_lock_waits} samples with a round waiting on an agent lock, "
        f"{actions} answers/closes"
    )
    assert overlaps, f"no two matching rounds overlapped: {sorted(rounds, key=lambda r: r.started)}"
    assert len(rounds) >= ROUNDS + ORDERS // BATCH, len(rounds)

    # and no order ever had two live assignments, no agent ever more than their capacity
    assert watcher.samples > 20
    # Rounds were seen blocked on `SELECT … FROM agents_agent … FOR UPDATE` while another round
    # held those agents: the capacity re-check really was contended (without that lock this fails).
    assert watcher.agent_lock_waits > 0
    assert watcher.max_order_live <= 1
    assert watcher.max_agent_live <= CAPACITY
    per_order = Assignment.objects.filter(state__in=LIVE_STATES).values("order_id").annotate(n=Count("id"))
    assert max(row["n"] for row in per_order) == 1
    per_agent = dict(
        Assignment.objects.filter(state__in=LIVE_STATES)
        .values("agent_id")
        .annotate(n=Count("id"))
        .values_list("agent_id", "n")
    )
    assert all(per_agent.get(a.pk, 0) <= a.capacity for a in agents), per_agent
    # every slot is taken again after the churn: 2,000 orders wait for 250 slots
    assert sum(per_agent.values()) == AGENTS * CAPACITY

    # and every order is offered, accepted, finished, or waits with the reason the last round gave
    live = defaultdict(set)
    for order_id, state in Assignment.objects.filter(state__in=LIVE_STATES).values_list("order_id", "state"):
        live[order_id].add(state)
    engine_reasons = {r.value for r in WaitReason}
    outcomes = Counter()
    for entry in PoolEntry.objects.all():
        if entry.state == "offered":
            assert live[entry.order_id] == {"offered"}, entry
        elif entry.state == "assigned":
            assert live[entry.order_id] == {"accepted"}, entry
        elif entry.state == "closed":
            assert entry.order_id in closed and not live[entry.order_id], entry
        elif entry.state == "waiting":
            assert entry.wait_reason in engine_reasons and not live[entry.order_id], entry
        else:
            assert entry.state == "escalated", entry
            assert entry.wait_reason not in {"", "queued"} and not live[entry.order_id], entry
        outcomes[entry.state] += 1
    assert sum(outcomes.values()) == ORDERS
    assert outcomes["closed"] == len(closed) > 0
    assert outcomes["assigned"] + outcomes["offered"] == AGENTS * CAPACITY
    # a rejected order is never offered to the agent who refused it again
    refused = set(Assignment.objects.filter(state="rejected").values_list("order_id", "agent_id"))
    again = Assignment.objects.filter(state__in=[*LIVE_STATES, "completed"]).values_list(
        "order_id", "agent_id"
    )
    assert not refused & set(again)
    print(f"outcomes {dict(outcomes)}")


def test_the_log_parser_reads_celery_task_lines():
    # given the lines a solo worker logs for a round that matched and one that found nothing
    log = (
        "[2026-11-22 05:00:00,100: INFO/MainProcess] Task dispatch.tasks.dispatch_pool_task[a-1] received\n"
        "[2026-11-22 05:00:01,600: INFO/MainProcess] Task dispatch.tasks.dispatch_pool_task[a-1] "
        "succeeded in 1.5s: {'offered': 3, 'waiting': 997, 'escalated': 0}\n"
        "[2026-11-22 05:00:01,700: INFO/MainProcess] Task dispatch.tasks.dispatch_pool_task[b-2] received\n"
        "[2026-11-22 05:00:01,750: INFO/MainProcess] Task dispatch.tasks.dispatch_pool_task[b-2] "
        "succeeded in 0.05s: {'offered': 0, 'waiting': 0, 'escalated': 0}\n"
    )
    # when it is parsed
    rounds, received = parse_rounds("w1", log)
    # then both rounds are read with their times, and only the first matched anything
    assert received == 2
    assert [r.worked for r in rounds] == [True, False]
    assert rounds[0].ended - rounds[0].started == pytest.approx(1.5)
    # and two matching rounds on different workers that overlap are found, on one worker not
    other = Round("w2", rounds[0].task, rounds[0].started + 0.5, rounds[0].ended + 0.5, True)
    assert overlapping_worked_rounds([rounds[0], other]) == [(rounds[0], other)]
    assert overlapping_worked_rounds([rounds[0], replace(other, worker="w1")]) == []
