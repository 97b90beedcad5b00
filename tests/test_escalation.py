"""The overdue ladder on PostgreSQL: L1 tells the owner (in-app and their team's WeCom robot,
mentioning their phone), L2 five minutes later hands the order to the backup, L3 five minutes
after that e-mails and texts the supervisor. No level is ever told twice — not by a second
pass, not by a stale read, not by two scanners at once — a stage change starts the ladder
again, and closed orders are never read."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent, UserContact
from dashboards.models import Alert, Notification
from dispatch.models import Assignment
from dispatch.services import order_assign
from orders.actors import system_actor
from orders.escalation import lock_overdue, overdue_orders, sla_scan
from orders.models import Order, OrderEvent
from orders.services import order_ingest, order_ingest_batch, order_transition
from orders.tasks import escalate_overdue_task
from tests.factories import AgentFactory, ChannelFactory, RegionFactory, UserFactory, order_payload

STEP = timedelta(minutes=5)


# --- A WeCom group robot on 127.0.0.1 ----------------------------------------------------------
class FakeRobot:
    """Answers like a WeCom robot (errcode 0) and keeps what each path received."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                robot.received.append((self.path, json.loads(body)))
                answer = b'{"errcode": 0, "errmsg": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _site_in_english(settings):
    # The ladder writes its alerts and audit lines in the site's language; these tests read
    # them in English (the Chinese texts come from the same msgids).
    settings.LANGUAGE_CODE = "en"


@pytest.fixture
def robot():
    fake = FakeRobot()
    yield fake
    fake.close()


def person(username: str, *roles: str, phone: str = "", email: str = ""):
    user = UserFactory(username=username, roles=list(roles), email=email)
    if phone:
        UserContact.objects.create(user=user, phone=phone)
    return user


@pytest.fixture
def world(db, jd, robot):
    """South China: a region with a supervisor and a robot, an after-sales team with its own
    robot, an owner and their backup (both with phones) reporting to a team lead."""
    region_sup = person("rsup", "supervisor", phone="+8613800000009", email="rsup@example.com")
    region = RegionFactory(
        code="south", name="华南", provinces=["广东省"], wecom_webhook_url=f"{robot.url}/region"
    )
    region.supervisors.add(region_sup)
    from agents.models import Team

    team = Team.objects.create(
        code="aftersales", name="售后", region=region, wecom_webhook_url=f"{robot.url}/team"
    )
    boss = person("boss", "supervisor", phone="+8613800000003", email="boss@example.com")
    backup = AgentFactory(
        user=person("backup", "agent", phone="+8613510002222"), display_name="备岗小李", supervisor=boss
    )
    owner = AgentFactory(
        user=person("owner", "agent", phone="+8613510001111"),
        display_name="客服小王",
        supervisor=boss,
        backup=backup,
    )
    owner.teams.add(team)
    backup.teams.add(team)
    return {
        "region": region,
        "region_sup": region_sup,
        "team": team,
        "boss": boss,
        "owner": owner,
        "backup": backup,
    }


def ingest(external_id: str, **overrides) -> Order:
    result = order_ingest(
        payload=order_payload(external_id=external_id, **overrides), actor=system_actor("test")
    )
    assert result.status == "created", result.errors
    return result.order


def owned_by(order: Order, agent: Agent) -> Order:
    order_assign(order_id=order.pk, agent_id=agent.pk, actor=system_actor("test"), force=True)
    return Order.objects.select_related("owner").get(pk=order.pk)


def fresh(order: Order) -> Order:
    return Order.objects.select_related("owner").get(pk=order.pk)


def notes(order: Order, **filters) -> list[Notification]:
    return list(Notification.objects.filter(order=order, **filters).order_by("pk"))


def counts(order: Order) -> tuple[int, int, int]:
    return (
        Notification.objects.filter(order=order).count(),
        Alert.objects.filter(order=order).count(),
        OrderEvent.objects.filter(order=order, kind="notification", actor="sla").count(),
    )


# --- The ladder --------------------------------------------------------------------------------
@pytest.mark.django_db
def test_l1_then_l2_reassigns_to_the_backup_then_l3_mails_and_texts_the_supervisor(
    world, robot, django_capture_on_commit_callbacks
):
    owner, backup, boss = world["owner"], world["backup"], world["boss"]
    order = owned_by(ingest("SLA-1"), owner)
    assert order.owner == owner.user and order.sla_level == 0
    t0 = order.due_at + timedelta(minutes=1)

    # not yet due: nothing happens
    with time_machine.travel(order.due_at - timedelta(seconds=1), tick=False):
        assert sla_scan().selected == 0

    # L1: the beat task finds it one minute past due; the owner is told in-app and on the team robot
    with time_machine.travel(t0, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert escalate_overdue_task() == 1
    order = fresh(order)
    assert (order.sla_level, order.sla_level_at) == (1, t0)
    in_app = notes(order, channel="in_app")
    assert [(n.template, n.user) for n in in_app] == [("sla_overdue", owner.user)]
    assert in_app[0].status == "sent" and order.tag in in_app[0].body
    assert in_app[0].payload["minutes_over"] == 1
    assert [path for path, _ in robot.received] == ["/team"]
    text = robot.received[0][1]["text"]
    assert text["mentioned_mobile_list"] == ["13510001111"]  # the owner's phone, as WeCom wants it
    assert order.tag in text["content"] and "客服小王" in text["content"]
    alert = Alert.objects.get(order=order)
    assert (alert.kind, alert.level, alert.region, alert.agent) == ("sla_overdue", 1, world["region"], owner)
    event = OrderEvent.objects.get(order=order, kind="notification", actor="sla")
    assert event.actor == "sla" and event.changes["sla_level"] == [0, 1] and "L1" in event.reason

    # four minutes later: still only L1, nothing told again
    before = counts(order)
    with time_machine.travel(t0 + timedelta(minutes=4, seconds=59), tick=False):
        assert sla_scan().selected == 0
    assert counts(order) == before

    # L2 five minutes after L1: handed to the backup, who is told
    with time_machine.travel(t0 + STEP, tick=False):
        report = sla_scan()
    assert (report.l2, report.reassigned) == ([order.pk], 1)
    order = fresh(order)
    assert (order.sla_level, order.owner) == (2, backup.user)
    live = Assignment.objects.get(order=order, state__in=["offered", "accepted"])
    assert (live.agent, live.state, live.manual) == (backup, "accepted", True)
    assert Assignment.objects.filter(order=order, agent=owner, state="released").exists()
    assert [(n.template, n.channel, n.user) for n in notes(order, template="sla_backup")] == [
        ("sla_backup", "in_app", backup.user),
        ("sla_backup", "wecom", None),
    ]
    wecom = notes(order, template="sla_backup", channel="wecom")[0]
    assert wecom.target == f"{robot.url}/team" and wecom.payload["mentioned_mobile_list"] == [
        "+8613510002222"
    ]
    l2 = Alert.objects.get(order=order, kind="sla_l2")
    assert l2.level == 2 and "客服小王" in l2.message and "备岗小李" in l2.message

    # L3 five minutes after L2: the supervisor by e-mail, SMS and in-app
    with time_machine.travel(t0 + 2 * STEP, tick=False), django_capture_on_commit_callbacks(execute=True):
        report = sla_scan()
    assert report.l3 == [order.pk]
    assert fresh(order).sla_level == 3
    assert [m.to for m in mail.outbox] == [["boss@example.com"]]
    assert order.tag in mail.outbox[0].subject and "L3" in mail.outbox[0].subject
    sup = notes(order, template="sla_supervisor")
    assert sorted((n.channel, n.target, n.user, n.status) for n in sup) == [
        ("email", "boss@example.com", boss, "sent"),
        ("in_app", "", boss, "sent"),
        ("sms", "+8613800000003", boss, "sent"),
    ]
    assert Alert.objects.get(order=order, kind="sla_l3").level == 3

    # and never again: the order left the partial index
    before = counts(order)
    with time_machine.travel(t0 + timedelta(hours=6), tick=False):
        assert sla_scan().selected == 0
    assert counts(order) == before == (7, 3, 3)
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_scanner_reading_a_stale_level_cannot_tell_anyone_twice(world):
    order = owned_by(ingest("SLA-STALE"), world["owner"])
    now = order.due_at + timedelta(minutes=1)
    sla_scan(now=now)
    told = (Notification.objects.filter(order=order).count(), Alert.objects.filter(order=order).count())
    assert told == (2, 1)
    # as if another scanner had read the row before the first committed its level
    Order.objects.filter(pk=order.pk).update(sla_level=0, sla_level_at=None)
    sla_scan(now=now + timedelta(seconds=30))
    assert (
        Notification.objects.filter(order=order).count(),
        Alert.objects.filter(order=order).count(),
    ) == told


@pytest.mark.django_db
def test_an_order_without_owner_goes_to_the_region_supervisors_and_l2_asks_them_to_reassign(world, robot):
    order = ingest("SLA-NOBODY")
    assert order.owner is None
    now = order.due_at + timedelta(minutes=3)

    sla_scan(now=now)
    assert [(n.channel, n.user) for n in notes(order)] == [("in_app", world["region_sup"]), ("wecom", None)]
    assert notes(order, channel="wecom")[0].target == f"{robot.url}/region"

    report = sla_scan(now=now + STEP)
    assert (report.l2, report.reassigned) == ([order.pk], 0)
    order = fresh(order)
    assert (order.sla_level, order.owner) == (2, None)
    l2 = Alert.objects.get(order=order, kind="sla_l2")
    assert "no owner" in l2.message and "rsup" in l2.message and l2.region == world["region"]

    # L3: no owner, so no agent supervisor: the region's supervisors
    sla_scan(now=now + 2 * STEP)
    assert {(n.channel, n.target) for n in notes(order, template="sla_supervisor")} == {
        ("email", "rsup@example.com"),
        ("sms", "+8613800000009"),
        ("in_app", ""),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("why", ["no backup", "backup offline"])
def test_l2_without_a_usable_backup_leaves_the_owner_and_alerts_the_supervisors(world, why):
    owner = world["owner"]
    if why == "no backup":
        Agent.objects.filter(pk=owner.pk).update(backup=None)
    else:
        Agent.objects.filter(pk=world["backup"].pk).update(status="offline")
    order = owned_by(ingest("SLA-NOBACKUP"), owner)
    now = order.due_at + timedelta(minutes=1)
    sla_scan(now=now)

    report = sla_scan(now=now + STEP)

    assert (report.l2, report.reassigned) == ([order.pk], 0)
    assert fresh(order).owner == owner.user
    assert not Assignment.objects.filter(order=order, agent=world["backup"]).exists()
    message = Alert.objects.get(order=order, kind="sla_l2").message
    assert ("has no backup" if why == "no backup" else "is offline") in message
    assert [n.user for n in notes(order, template="sla_overdue", channel="in_app")][-1] == world["region_sup"]


@pytest.mark.django_db
def test_an_order_no_region_covers_goes_to_the_supervisor_group(world):
    lone = person("lonesup", "supervisor")
    order = ingest("SLA-BJ", address="北京市朝阳区建国路88号")
    assert order.province == "北京市"
    sla_scan(now=order.due_at + timedelta(minutes=1))
    told = {n.user.username for n in notes(order, channel="in_app")}
    assert told == {"rsup", "boss", lone.username}  # every active user in the supervisor group
    assert not notes(order, channel="wecom")  # no region robot for Beijing


@pytest.mark.django_db
def test_a_stage_change_resets_the_ladder_and_a_new_stay_climbs_it_again(world):
    order = owned_by(ingest("SLA-MOVE"), world["owner"])
    now = order.due_at + timedelta(minutes=1)
    sla_scan(now=now)
    sla_scan(now=now + STEP)
    assert fresh(order).sla_level == 2

    with time_machine.travel(now + STEP + timedelta(minutes=1), tick=False):
        order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
    order = fresh(order)
    assert (order.stage, order.sla_level, order.sla_level_at) == ("picking", 0, None)
    before = Notification.objects.filter(order=order, template="sla_overdue").count()

    # L2 no longer applies: the next rung is L1 of the new stay, once it is overdue
    assert sla_scan(now=order.due_at - timedelta(minutes=1)).selected == 0
    report = sla_scan(now=order.due_at + timedelta(minutes=1))
    assert report.l1 == [order.pk]
    assert Notification.objects.filter(order=order, template="sla_overdue").count() > before
    assert Alert.objects.filter(order=order, kind="sla_overdue").count() == 2


@pytest.mark.django_db
def test_closed_orders_are_never_scanned_even_with_a_stale_due_time(world):
    done = ingest("SLA-DONE")
    for stage in ("picking", "shipping", "done"):
        order_transition(order_id=done.pk, to=stage, actor=system_actor("test"))
    cancelled = ingest("SLA-CANCEL")
    order_transition(order_id=cancelled.pk, to="cancelled", actor=system_actor("test"))
    assert Order.objects.get(pk=done.pk).due_at is None
    # a due time left behind by mistake does not bring them back
    past = done.due_at - timedelta(days=1)
    Order.objects.filter(pk__in=[done.pk, cancelled.pk]).update(due_at=past)

    report = sla_scan(now=past + timedelta(days=2))

    assert report.selected == 0
    assert not Notification.objects.filter(order__in=[done, cancelled]).exists()


@pytest.mark.django_db
def test_a_pass_costs_the_same_queries_for_3_or_12_overdue_orders(world, jd):
    agents = [AgentFactory(backup=world["backup"]) for _ in range(4)]
    for agent in agents:
        agent.teams.add(world["team"])

    def queries_for(prefix: str, n: int) -> int:
        orders = [owned_by(ingest(f"{prefix}{i}"), agents[i % len(agents)]) for i in range(n)]
        now = max(o.due_at for o in orders) + timedelta(minutes=1)
        with CaptureQueriesContext(connection) as ctx:
            report = sla_scan(now=now)
        assert len(report.l1) == n
        Order.objects.filter(pk__in=[o.pk for o in orders]).update(sla_level=3)  # out of the way
        return len(ctx.captured_queries)

    assert queries_for("Q3-", 3) == queries_for("Q12-", 12)


@pytest.mark.django_db
def test_the_scan_reads_the_partial_index_on_due_at(world):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    order = ingest("SLA-PLAN")
    plan = overdue_orders(now=order.due_at, step=STEP).explain()
    assert "order_sla_climbing" in plan, plan


# --- Two scanners at once -----------------------------------------------------------------------
@pytest.fixture
def installed(transactional_db):
    """A transactional test starts from an empty database: install what migrations seed."""
    from dashboards.defaults import install_defaults as install_templates
    from dashboards.models import NotificationTemplate
    from orders.defaults import install_defaults as install_orders
    from orders.models import ExceptionType, SlaPolicy
    from orders.sla_policies import clear_sla_cache

    install_templates(NotificationTemplate)
    install_orders(SlaPolicy, ExceptionType)
    clear_sla_cache()


def _in_thread(target, *args, name: str | None = None):
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = target(*args)
        except BaseException as exc:  # reported to the test below
            out["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, out


@pytest.mark.django_db(transaction=True)
def test_two_scanners_share_the_work_and_each_level_is_told_exactly_once(installed, monkeypatch):
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    sup = person("sup2", "supervisor", email="sup2@example.com", phone="+8613800000001")
    backup = AgentFactory(user=person("bk", "agent"))
    owner = AgentFactory(user=person("ow", "agent"), backup=backup, supervisor=sup)
    results = order_ingest_batch(
        payloads=[order_payload(external_id=f"PAR-{i}") for i in range(30)], actor=system_actor("test")
    )
    orders = [r.order for r in results]
    for order in orders[:15]:  # half owned (L2 hands them over), half not (L2 tells the supervisors)
        order_assign(order_id=order.pk, agent_id=owner.pk, actor=system_actor("test"), force=True)
    now = max(o.due_at for o in orders) + timedelta(minutes=1)

    # L1: scanner A claims 20 and holds its transaction open until B has claimed; B must skip
    # A's locked rows (SKIP LOCKED) and take the other 10 instead of waiting or re-reading them.
    a_claimed, b_claimed = threading.Event(), threading.Event()
    real_lock = lock_overdue
    claims: dict[str, list[int]] = {}

    def lock_in_turn(*, now, step, limit):
        if threading.current_thread().name == "A":
            rows = real_lock(now=now, step=step, limit=limit)
            claims["A"] = [o.pk for o in rows]
            a_claimed.set()
            assert b_claimed.wait(20), "scanner B never claimed: it waited on A's locks"
            return rows
        assert a_claimed.wait(20)
        rows = real_lock(now=now, step=step, limit=limit)
        claims["B"] = [o.pk for o in rows]
        b_claimed.set()
        return rows

    monkeypatch.setattr("orders.escalation.lock_overdue", lock_in_turn)
    threads = []
    # the clock at the scan's time (ticking: the threads wait on each other), so the messages
    # written are due and the after-commit send delivers them
    with time_machine.travel(now, tick=True):
        for name, limit in (("A", 20), ("B", 2000)):
            threads.append(_in_thread(lambda limit=limit: sla_scan(now=now, limit=limit), name=name))
        for thread, out in threads:
            thread.join(60)
            assert "error" not in out, out.get("error")
    assert len(claims["A"]) == 20 and len(claims["B"]) == 10
    assert not set(claims["A"]) & set(claims["B"])
    assert sum(len(out["value"].l1) for _, out in threads) == 30
    monkeypatch.setattr("orders.escalation.lock_overdue", real_lock)

    # L2 and L3: two scanners started together, no help from the test
    for at in (now + STEP, now + 2 * STEP):
        barrier = threading.Barrier(2)

        def scan(at=at, barrier=barrier):
            barrier.wait(10)
            return sla_scan(now=at)

        with time_machine.travel(at, tick=True):
            pair = [_in_thread(scan) for _ in range(2)]
            for thread, out in pair:
                thread.join(60)
                assert "error" not in out, out.get("error")
        assert sum(out["value"].escalated for _, out in pair) == 30

    ids = [o.pk for o in orders]
    assert set(Order.objects.filter(pk__in=ids).values_list("sla_level", flat=True)) == {3}
    events = OrderEvent.objects.filter(order_id__in=ids, kind="notification", actor="sla")
    assert events.count() == 90  # one per order and level
    assert Alert.objects.filter(order_id__in=ids).count() == 90
    for kind in ("sla_overdue", "sla_l2", "sla_l3"):
        assert Alert.objects.filter(order_id__in=ids, kind=kind).count() == 30
    # the 15 owned orders went to the backup exactly once
    handed = Assignment.objects.filter(order_id__in=ids[:15], agent=backup, state="accepted")
    assert handed.count() == 15
    # one supervisor e-mail per order at L3, whoever ran it
    emails = Notification.objects.filter(order_id__in=ids, channel="email")
    assert emails.count() == 30 and set(emails.values_list("status", flat=True)) == {"sent"}
    assert len(mail.outbox) == 30
    assert sorted(m.subject for m in mail.outbox) == sorted(
        f"【超时升级 L3】订单 {o.tag} 仍未处理" for o in orders
    )
