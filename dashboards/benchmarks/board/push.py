"""`push_p50_ms`, `push_p99_ms`: from a committed stage change to the board message arriving at
a websocket client, through real daphne and Redis, on the database the bench command prepared.

A regional supervisor's board socket is opened on daphne (session cookie, our own Origin), as a
browser opens it. This process then moves one order at a time from picking to shipping with
`orders.services.order_transition`, inside an outer transaction whose first on-commit callback
stamps the clock: that is the moment the change is committed. The product path follows: the
after-commit publish hands the id to the process's background sender, which reads the order's
region, sends `orders.changed` to `board-all` and the region's group, and daphne's consumer
forwards it to the socket, where a reader thread stamps its arrival.

Beside it, interleaved one for one so drift on a shared machine falls on both: a bare
`group_send` of the same message from this process, on an event loop kept open (no connection
set-up in the figure), to the same client (`baseline_group_send_*`): the floor of Redis and
daphne alone. The difference is the product's own cost (the routing query, the hand-over to
the sender)."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction

TARGET_P99_MS = 100.0
WARMUP = 20
PAUSE_S = 0.01  # between changes: each is its own push, not a coalesced burst
ARRIVAL_TIMEOUT_S = 5.0
START_TIMEOUT_S = 60.0


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 3)


class _Arrivals:
    """Reads the socket in a thread and stamps each id's arrival."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.seen: dict[int, float] = {}
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="bench-board-reader", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                raw = self.ws.recv()
                at = time.perf_counter()
                message = json.loads(raw)
                if message.get("type") != "orders.changed":
                    continue
                with self.condition:
                    for order_id in message["ids"]:
                        self.seen.setdefault(order_id, at)
                    self.condition.notify_all()
        except (ConnectionClosed, OSError):
            return

    def wait(self, order_id: int) -> float | None:
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        with self.condition:
            while order_id not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.condition.wait(left)
            return self.seen[order_id]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _world(count: int):
    """A region of Guangdong with its supervisor, and `count` orders in picking there."""
    from datetime import timedelta

    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from agents.models import Region
    from orders.models import Channel, Customer, Order

    region = Region.objects.create(code="bench-push", name="华南", provinces=["广东省"])
    boss = User.objects.create_user("bench-push-sup")
    boss.groups.add(Group.objects.get_or_create(name="supervisor")[0])
    region.supervisors.add(boss)
    channel = Channel.objects.create(code="bench-push", name="Bench push", tag_prefix="PU")
    customer = Customer.objects.create(channel=channel, account_key="bench-push", name="压测客户")
    now = timezone.now()
    orders = Order.objects.bulk_create(
        Order(channel=channel, external_id=f"PU-{i:06d}", tag=f"PU-{i:06d}", customer=customer,
              customer_name="压测客户", address="广东省深圳市南山区科技园", province="广东省", city="深圳市",
              amount="199.00", source_updated_at=now, stage="picking", stage_entered_at=now,
              due_at=now + timedelta(hours=4))
        for i in range(count)
    )  # fmt: skip
    return boss, region, [o.pk for o in orders]


def _daphne(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    sink = log_path.open("wb")
    proc = subprocess.Popen(  # noqa: S603 - our own daphne, arguments are ours
        [
            str(Path(sys.executable).parent / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=sink,
        stderr=subprocess.STDOUT,
    )
    sink.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CommandError(
                f"daphne exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise CommandError(f"daphne did not listen on {port} within {START_TIMEOUT_S:.0f} s")


def measure_push(*, samples: int, env: dict[str, str], log: Callable[[str], None]) -> dict:
    """Time `samples` committed stage changes to their arrival, and as many bare group sends."""
    try:
        from websockets.sync.client import connect
    except ImportError as exc:  # a development dependency (requirements-dev.txt)
        raise CommandError(
            "bench board needs the websockets package: pip install -r requirements-dev.txt"
        ) from exc
    from channels.layers import get_channel_layer
    from django.test import Client

    from dashboards.groups import region_board_group
    from orders.actors import system_actor
    from orders.services import order_transition

    if not settings.REDIS_URL:
        raise CommandError("the push benchmark needs REDIS_URL: the channel layer under test is Redis.")
    boss, region, order_ids = _world(samples + WARMUP)
    client = Client()
    client.force_login(boss)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    port = _free_port()
    log_path = Path(tempfile.mkstemp(prefix="paidan-bench-board-daphne-", suffix=".log")[1])
    proc = _daphne(env, port, log_path)
    loop = asyncio.new_event_loop()
    layer = get_channel_layer()
    group = region_board_group(region.pk)
    product: list[float] = []
    baseline: list[float] = []
    lost = {"product": 0, "baseline": 0}
    try:
        ws = connect(f"ws://127.0.0.1:{port}/ws/board/", origin=f"http://127.0.0.1:{port}",
                     additional_headers={"Cookie": cookie}, proxy=None, ping_interval=None, open_timeout=10)  # fmt: skip
        hello = json.loads(ws.recv(timeout=10))
        if hello.get("type") != "hello":
            raise CommandError(f"the board socket did not greet: {hello}")
        arrivals = _Arrivals(ws)
        log(f"Push: {samples} stage changes and {samples} bare group sends, interleaved …")
        for n, order_id in enumerate(order_ids):
            # The product: commit a stage change; the first on-commit callback is the commit.
            committed: list[float] = []
            with transaction.atomic():
                transaction.on_commit(lambda stamp=committed: stamp.append(time.perf_counter()))
                order_transition(order_id=order_id, to="shipping", actor=system_actor("bench"))
            arrived = arrivals.wait(order_id)
            warm = n >= WARMUP
            if arrived is None:
                lost["product"] += warm
            elif warm:
                product.append((arrived - committed[0]) * 1000)
            time.sleep(PAUSE_S)
            # The floor: the same message by a bare group send, to the same socket.
            marker = -(n + 1)
            started = time.perf_counter()
            loop.run_until_complete(layer.group_send(group, {"type": "orders.changed", "ids": [marker]}))
            arrived = arrivals.wait(marker)
            if arrived is None:
                lost["baseline"] += warm
            elif warm:
                baseline.append((arrived - started) * 1000)
            time.sleep(PAUSE_S)
        ws.close()
    finally:
        loop.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    if lost["product"] or lost["baseline"]:
        log(f"  lost on the way: {lost} (daphne log: {log_path})")
    else:
        log_path.unlink(missing_ok=True)
    return {
        "push_p50_ms": percentile(product, 50),
        "push_p99_ms": percentile(product, 99),
        "push_max_ms": round(max(product), 3) if product else None,
        "push_mean_ms": round(statistics.fmean(product), 3) if product else None,
        "baseline_group_send_p50_ms": percentile(baseline, 50),
        "baseline_group_send_p99_ms": percentile(baseline, 99),
        "push_samples": len(product),
        "push_lost": lost,
        "push_measured": "order_transition commit (first on-commit callback) → orders.changed read "
        "from a regional supervisor's /ws/board/ socket on daphne; baseline: a bare group_send "
        "of the same message to the region's group, interleaved",
        "channel_layer_capacity": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("capacity"),
    }
