"""`board_ms_5000`, `board_queries_5000`: the server's time and queries to render the board with
5,000 open orders, in the database the bench command prepared.

The orders: `open_orders` open ones spread over the columns and lanes as a busy afternoon has
them (30 % pending review, 25 % picking, 25 % shipping, 10 % exception with an open case and
its owner, 10 % quarantined; one in seven up to four hours late, the others due within a day;
three in five owned by one of 50 agents, one in twenty flagged), a tenth as many done in the last 24 hours, and ten
times as many done or cancelled before that (the history the board must not read), in 16
provinces and 5 channels. The viewer is the supervisor of a region listing every province:
every order is visible and the region-scoped path (and its queries) is taken.

Requests go through the whole Django stack in this process (the test client: middleware,
session, auth, templates), as the browser makes them:
- `board_ms_5000`, `board_queries_5000`: GET /board/, the page: shell, filter menus, counts and
  the first page (50 cards) of each of the six columns and lanes;
- `reread_ms_5000`, `reread_queries_5000`: GET /api/board/, the re-read the page makes once its
  socket is open (every column's first page and the counts again, so nothing committed between
  the render and the subscription is missed);
- `next_page_ms`: GET /api/board/?stage=picking&cursor=…, a scroll to the second page;
- `counts_ms`: GET /api/board/counts/.
Baseline in the same run: a bare `SELECT * … LIMIT 50` of picking orders on a cursor
(`baseline_select50_ms`): the floor of reading one page at all. Figures are medians over
`runs` × 5 requests after two warm-up rounds."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

TARGET_MS = 300.0
TARGET_QUERIES = 15
REPEAT = 5
AGENTS = 50
SEED = 20251222
OPEN_MIX = (
    ("pending_review", 0.30),
    ("picking", 0.25),
    ("shipping", 0.25),
    ("exception", 0.10),
    ("quarantined", 0.10),
)
CHANNELS = (("jd", "京东", "JD"), ("taobao", "淘宝", "TB"), ("douyin", "抖音小店", "DY"), ("mini", "自有小程序", "MP"),
            ("wechat", "微信", "WX"))  # fmt: skip
NAMES = "王芳 李娜 张伟 刘洋 陈静 杨磊 黄敏 赵强 吴艳 周杰 徐娟 孙涛 马超 朱霞 胡平 郭刚 何文 高辉 林鑫 罗宇".split()  # noqa: SIM905


def _world(open_orders: int, log: Callable[[str], None]):
    from django.contrib.auth.models import Group, User

    from agents.models import Agent, Region, Team
    from dashboards.management.commands.bench import PLACES
    from orders.models import Channel, Customer, ExceptionCase, ExceptionType, Order

    r = random.Random(SEED)  # noqa: S311 - test data
    now = timezone.now()
    provinces = sorted({p[0] for p in PLACES})
    region = Region.objects.create(code="bench-render", name="全国", provinces=provinces)
    boss = User.objects.create_user("bench-render-sup")
    boss.groups.add(Group.objects.get_or_create(name="supervisor")[0])
    region.supervisors.add(boss)
    teams = [Team.objects.create(code=f"bench-team-{i}", name=f"客服{i}组") for i in range(5)]
    agent_group = Group.objects.get_or_create(name="agent")[0]
    agents = []
    for i in range(AGENTS):
        user = User.objects.create_user(f"bench-agent-{i:02d}")
        user.groups.add(agent_group)
        agent = Agent.objects.create(user=user, display_name=f"{NAMES[i % len(NAMES)]}{i}", status="online")
        agent.teams.add(teams[i % len(teams)])
        agents.append(agent)
    channels = []
    for code, name, prefix in CHANNELS:
        channel = Channel.objects.create(code=f"bench-{code}", name=name, tag_prefix=prefix)
        channels.append((channel, Customer.objects.create(channel=channel, account_key=f"bench-{code}")))

    stages: list[str] = []
    for stage, share in OPEN_MIX:
        stages += [stage] * round(open_orders * share)
    stages = stages[:open_orders] + ["pending_review"] * max(0, open_orders - len(stages))
    done_today = open_orders // 10
    history = open_orders * 10
    rows = []
    for n in range(open_orders + done_today + history):
        channel, customer = channels[n % len(channels)]
        province, city, district, streets = PLACES[n % len(PLACES)]
        if n < open_orders:
            stage = stages[n]
            entered = now - timedelta(minutes=r.randint(1, 300))
            # One in seven late; the others due two hours or more ahead, so that none falls
            # due while the benchmark runs (see sla_level below).
            late = r.random() < 0.15
            due = now + timedelta(minutes=-r.randint(1, 240) if late else r.randint(120, 1440))
        elif n < open_orders + done_today:
            stage, entered, due = "done", now - timedelta(minutes=r.randint(1, 1400)), None
        else:
            stage = "done" if r.random() < 0.9 else "cancelled"
            entered, due = now - timedelta(days=r.randint(2, 90), minutes=r.randint(0, 1400)), None
        owned = stage in ("picking", "shipping", "exception", "done") and r.random() < 0.6
        flagged = r.random() < 0.05
        rows.append(
            Order(
                channel=channel, external_id=f"RD-{n:07d}", tag=f"{channel.tag_prefix}-B{n:07d}", customer=customer,
                customer_name=r.choice(NAMES), customer_phone=f"+86138{n:08d}", address=f"{province}{city}{district}{streets[0]}{n % 300}号",
                province=province, city=city, district=district, amount=Decimal(r.randint(2000, 200000)) / 100,
                source_updated_at=entered, received_at=entered, stage=stage, stage_entered_at=entered, due_at=due,
                held_stage="picking" if stage == "exception" else "", owner=agents[n % AGENTS].user if owned else None,
                flags=["risk"] if flagged or stage == "quarantined" else [], is_flagged=flagged or stage == "quarantined",
                urgency="expedited" if r.random() < 0.1 else "normal", is_vip=r.random() < 0.05,
                # Overdue ones have climbed the whole ladder: the overdue scan measured after
                # this, in the same database, must find only its own orders.
                sla_level=3 if due is not None and due <= now else 0,
            )
        )  # fmt: skip
    log(f"Render: writing {len(rows):,} orders ({open_orders:,} open) …")
    Order.objects.bulk_create(rows, batch_size=2000)
    types = list(ExceptionType.objects.filter(is_active=True))
    held = Order.objects.filter(channel__code__startswith="bench-", stage="exception").values_list(
        "id", flat=True
    )
    ExceptionCase.objects.bulk_create(
        ExceptionCase(order_id=order_id, type=types[i % len(types)], held_stage="picking", team=teams[i % len(teams)],
                      owner=agents[i % AGENTS], raised_by_name="bench")
        for i, order_id in enumerate(held)
    )  # fmt: skip
    with connection.cursor() as cursor:
        # As autovacuum leaves a live database: the planner knows every table's size.
        cursor.execute("ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)")
    return boss


def _timed(client, path: str) -> tuple[float, int, object]:
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = client.get(path)
        ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.content[:300]!r}")
    return ms, len(queries.captured_queries), response


def _baseline_ms() -> float:
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("SELECT * FROM orders_order WHERE stage = 'picking' ORDER BY id LIMIT 50")
        cursor.fetchall()
        return (time.perf_counter() - started) * 1000


def measure_render(*, open_orders: int, runs: int, log: Callable[[str], None]) -> dict:
    from django.test import Client

    started = time.perf_counter()
    boss = _world(open_orders, log)
    build_seconds = round(time.perf_counter() - started, 1)
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.force_login(boss)
    samples: dict[str, list[float]] = {k: [] for k in ("page", "reread", "next", "counts", "baseline")}
    queries: dict[str, list[int]] = {k: [] for k in ("page", "reread", "next", "counts")}
    counts = {}
    for round_no in range(2 + runs * REPEAT):
        warm = round_no >= 2
        page_ms, page_q, page = _timed(client, "/board/")
        reread_ms, reread_q, reread = _timed(client, "/api/board/")
        cursor = reread.json()["columns"]["picking"]["next"]
        next_ms, next_q, _ = _timed(client, f"/api/board/?stage=picking&cursor={cursor}")
        counts_ms, counts_q, counted = _timed(client, "/api/board/counts/")
        counts = counted.json()["counts"]
        baseline = _baseline_ms()
        if warm:
            for key, ms, q in (("page", page_ms, page_q), ("reread", reread_ms, reread_q), ("next", next_ms, next_q),
                               ("counts", counts_ms, counts_q)):  # fmt: skip
                samples[key].append(ms)
                queries[key].append(q)
            samples["baseline"].append(baseline)
    shown = sum(counts[s] for s in ("pending_review", "picking", "shipping", "exception", "quarantined"))
    if shown != open_orders:
        raise RuntimeError(f"the board counts {shown} open orders, {open_orders} were written")
    cards = sum(len(c["cards"]) for c in reread.json()["columns"].values())

    def median(key: str) -> float:
        return round(statistics.median(samples[key]), 2)

    page_ms = median("page")
    page_queries = max(queries["page"])
    return {
        "board_ms_5000": page_ms,
        "board_queries_5000": page_queries,
        "board_p90_ms": round(sorted(samples["page"])[int(len(samples["page"]) * 0.9) - 1], 2),
        "reread_ms_5000": median("reread"),
        "reread_queries_5000": max(queries["reread"]),
        "next_page_ms": median("next"),
        "next_page_queries": max(queries["next"]),
        "counts_ms": median("counts"),
        "counts_queries": max(queries["counts"]),
        "baseline_select50_ms": median("baseline"),
        "board_bytes": len(page.content),
        "cards_on_first_pages": cards,
        "counts": counts,
        "render_samples": len(samples["page"]),
        "render_parameters": {
            "open_orders": open_orders,
            "done_last_24h": open_orders // 10,
            "history_orders": open_orders * 10,
            "agents": AGENTS,
            "viewer": "supervisor of a region listing every province",
            "build_seconds": build_seconds,
        },
        "render_meets": {
            "board_ms_5000": page_ms < TARGET_MS,
            "board_queries_5000": page_queries <= TARGET_QUERIES,
        },
    }
