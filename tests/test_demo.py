"""`manage.py load_demo` on PostgreSQL: realistic, complete, and a second run changes nothing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import Count, Sum
from django.utils import timezone, translation

from agents.models import Agent, AgentSkill, Region, Skill, Team
from dashboards.models import BacklogSnapshot, ReportOrderDay, ReportRun
from dispatch.models import Assignment
from orders.management.commands.load_demo import plan_orders
from orders.models import Channel, Customer, ExceptionCase, Order, OrderEvent, TagSequence
from orders.states import Stage
from riskcontrol.models import Review, RuleHit
from tests.factories import ChannelFactory, UserFactory

DEMO_USERS = ["admin", "supervisor", *[f"agent{n}" for n in range(1, 16)], "warehouse", "reviewer", "cs"]


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    # PBKDF2 costs ~0.3 s a check; the demo's logic does not depend on the hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def load_demo() -> str:
    out = StringIO()
    with translation.override("en"):
        call_command("load_demo", stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    """Everything the demo writes, counted, plus each order's stage and last change."""
    return {
        "users": User.objects.count(),
        "memberships": User.groups.through.objects.count(),
        "channels": list(Channel.objects.values_list("code", "name", "webhook_secret")),
        "regions": Region.objects.count(),
        "teams": Team.objects.count(),
        "skills": Skill.objects.count(),
        "agents": list(Agent.objects.values_list("user__username", "status", "capacity", "backup_id")),
        "agent_skills": AgentSkill.objects.count(),
        "customers": list(Customer.objects.values_list("account_key", "order_count")),
        "orders": list(Order.objects.order_by("pk").values_list("tag", "stage", "updated_at")),
        "events": OrderEvent.objects.count(),
        "tag_sequences": list(TagSequence.objects.values_list("channel_id", "day", "last")),
    }


def test_load_demo_twice_loads_a_realistic_demo_once(db, client):
    first_output = load_demo()
    first = snapshot()
    runs = ReportRun.objects.count()

    second_output = load_demo()

    assert snapshot() == first
    assert ReportRun.objects.count() == runs == 1
    assert "already loaded" in second_output and "nothing changed" in second_output
    assert "Demo loaded" in first_output
    for output in (first_output, second_output):
        assert "http://127.0.0.1:8000/" in output and "paidan-demo" in output and "agent1 … agent15" in output

    # ~300 orders over the last three days, in every stage, from the four channels.
    orders = Order.objects.all()
    assert orders.count() == 300
    by_stage = dict(orders.values_list("stage").annotate(n=Count("id")))
    assert set(by_stage) == {s.value for s in Stage}, by_stage
    assert all(n >= 5 for n in by_stage.values()), by_stage
    assert set(orders.values_list("channel__code", flat=True)) == {"taobao", "jd", "douyin", "miniapp"}
    now = timezone.now()
    oldest = orders.order_by("received_at").first().received_at
    assert now - timedelta(hours=73) < oldest < now - timedelta(hours=48)
    assert orders.filter(received_at__gte=now - timedelta(hours=2)).exists()

    # Real-looking data parsed by the real services: names, E.164 phones, parsed addresses.
    parsed = orders.exclude(city="")
    assert parsed.count() >= 290
    assert orders.filter(customer_phone__startswith="+861").count() >= 290
    assert all(2 <= len(name) <= 3 for name in orders.values_list("customer_name", flat=True))
    assert orders.filter(is_returning=True).exists() and orders.filter(is_vip=True).exists()
    assert orders.filter(urgency="expedited").exists()
    assert {"reshipment", "exchange"} <= set(orders.values_list("kind", flat=True))

    # Dirty data is flagged; risky patterns are there for risk control to find.
    flagged = orders.filter(is_flagged=True)
    assert flagged.filter(flags__contains=["address_ambiguous"]).exists()
    assert flagged.filter(flags__contains=["phone_invalid"]).exists()
    assert orders.filter(address__regex="临时仓|代收点|中转仓").count() >= 3
    assert orders.filter(client_ip="39.144.23.87").count() >= 5
    card = orders.exclude(card_fingerprint="").values("card_fingerprint", "amount").annotate(n=Count("id"))
    assert max(row["n"] for row in card) >= 8
    assert orders.filter(amount=5000, note="").exists()

    # Every stage change is audited with its reason, at the time it happened.
    moves = OrderEvent.objects.filter(kind=OrderEvent.Kind.TRANSITION)
    assert moves.count() > 300 and not moves.filter(reason="").exists()
    assert {"cs", "warehouse", "reviewer"} <= set(moves.values_list("actor", flat=True))

    # Exceptions were raised by type and routed to their teams; some are resolved.
    cases = ExceptionCase.objects.all()
    assert {"address_ambiguous", "out_of_stock", "customer_delay"} <= set(
        cases.values_list("type__code", flat=True)
    )
    assert cases.filter(status="open", owner__isnull=False).exists()
    assert cases.filter(status="resolved").exists()
    assert set(cases.filter(status="open").values_list("order__stage", flat=True)) == {"exception"}
    assert OrderEvent.objects.filter(kind=OrderEvent.Kind.INGESTED).count() == 300
    assert OrderEvent.objects.filter(kind=OrderEvent.Kind.EDIT).exists()
    assert OrderEvent.objects.filter(kind=OrderEvent.Kind.IGNORED_STALE).exists()

    # Risk screening caught them as they arrived; the reviewer decided some on the review desk.
    held = orders.filter(stage="quarantined")
    assert held.count() >= 5
    assert Review.objects.filter(state="open").count() == held.count()
    assert (
        Review.objects.filter(state="confirmed").exists()
        and Review.objects.filter(state="false_positive").exists()
    )
    assert (
        RuleHit.objects.filter(outcome="confirmed").exists()
        and RuleHit.objects.filter(outcome="false_positive").exists()
    )
    assert Assignment.objects.filter(review__isnull=False, agent__user__username="reviewer").exists()

    # People and configuration: fifteen field agents and the risk desk.
    assert Agent.objects.count() == 16
    field = Agent.objects.exclude(user__username="reviewer")
    assert set(field.values_list("status", flat=True)) == {"online", "busy", "break", "offline"}
    assert not field.filter(backup=None).exists()
    assert not field.filter(latitude=None).exists()
    assert all(3 <= c <= 8 for c in Agent.objects.values_list("capacity", flat=True))
    assert Agent.objects.get(user__username="reviewer").skills.filter(code="risk_review").exists()
    assert Channel.objects.get(code="douyin").field_mapping["external_id"] == "order_sn"
    assert all(Channel.objects.values_list("webhook_secret", flat=True))
    assert User.objects.get(username="admin").is_superuser

    # Everyone logs in with the published password; the supervisor sees the demo orders.
    users = User.objects.filter(username__in=DEMO_USERS)
    assert users.count() == len(DEMO_USERS)
    assert all(check_password("paidan-demo", u.password) for u in users)
    response = client.post("/login/", {"username": "supervisor", "password": "paidan-demo"})
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert Order.objects.order_by("-received_at").first().tag in page.content.decode()

    # The reports have figures at once: the demo's days rolled up, a backlog snapshot an hour.
    days = ReportOrderDay.objects.values("day").annotate(exits=Sum("exits"), accepted=Sum("accepted"))
    assert len(days) >= 3 and all(d["exits"] for d in days[1:]) and any(d["accepted"] for d in days)
    hours = BacklogSnapshot.objects.values("taken_at").distinct().count()
    assert 48 <= hours <= 74
    sla = client.get("/reports/sla/")
    assert sla.status_code == 200 and sla.context["tables"][0].rows


def test_the_demo_plans_the_same_orders_whenever_it_runs():
    morning = timezone.now().replace(hour=1, minute=5)
    next_evening = morning + timedelta(days=1, hours=20, minutes=17)

    first, later = plan_orders(now=morning), plan_orders(now=next_evening)

    assert [(p.channel, p.external_id) for p in first] == [(p.channel, p.external_id) for p in later]
    assert len({p.external_id for p in first}) == len(first) == 300

    def content(plan):
        # Everything but the times, which move with `now`.
        return [
            (p.steps[0].payload["customer"]["name"], p.steps[0].payload["customer"]["phone"],
             p.steps[0].payload["address"], p.steps[0].payload["items"], p.steps[0].payload["amount"])
            for p in plan
        ]  # fmt: skip

    assert content(first) == content(later)


def test_load_demo_leaves_what_already_exists_alone(db):
    ChannelFactory(code="jd", name="京东自营旗舰店", tag_prefix="JDZY", webhook_secret="kept-secret")
    UserFactory(username="admin", roles=["admin"])  # an admin the operator already made
    UserFactory(username="cs")  # a same-named account outside customer service
    admin_password = User.objects.get(username="admin").password

    output = load_demo()

    jd = Channel.objects.get(code="jd")
    assert (jd.name, jd.tag_prefix, jd.webhook_secret) == ("京东自营旗舰店", "JDZY", "kept-secret")
    assert User.objects.get(username="admin").password == admin_password
    assert "3 channels" in output and "18 users" in output
    assert not User.objects.get(username="cs").groups.exists()
    assert not OrderEvent.objects.filter(actor="cs").exists()
    assert OrderEvent.objects.filter(actor="supervisor", kind=OrderEvent.Kind.EDIT).exists()  # stood in
    assert Order.objects.filter(channel=jd, tag__startswith="JDZY-").count() > 50
    assert Order.objects.count() == 300
