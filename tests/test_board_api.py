"""The board's page and JSON API: columns and lanes, keyset pages, counts, filters, cards by
id, the drawer's timeline, alerts and their acknowledgement, and who sees what (a supervisor
their regions' orders, an agent no board at all). Every bad input is a 400 that names it."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dashboards.board_selectors import PAGE_SIZE
from dashboards.events import ALERTS_ACKNOWLEDGED
from dashboards.groups import board_group
from dashboards.models import Alert
from orders.actors import system_actor
from orders.exceptions import exception_raise
from orders.models import ExceptionCase, Order
from orders.services import order_ingest_batch, order_transition
from tests.factories import AgentFactory, RegionFactory, order_payload, token_for

pytestmark = pytest.mark.django_db

SZ = "广东省深圳市南山区科技园南区8栋1203"
HZ = "浙江省杭州市西湖区文三路478号"
BJ = "北京市朝阳区建国路88号"  # no region covers 北京


def ingest(*specs: tuple[str, str], channel: str = "jd", **overrides) -> list[Order]:
    """Orders from (external id, address) pairs, each with its own customer."""
    payloads = [
        order_payload(channel=channel, external_id=ext, address=address,
                      customer={"account_id": f"acct-{ext}", "name": f"客户{ext}"}, **overrides)
        for ext, address in specs
    ]  # fmt: skip
    results = order_ingest_batch(payloads=payloads, actor=system_actor("test"))
    assert [r.status for r in results] == ["created"] * len(specs), [r.errors for r in results]
    return list(Order.objects.filter(pk__in=[r.id for r in results]).order_by("pk"))


def move(order: Order, *stages: str) -> Order:
    for stage in stages:
        order_transition(order_id=order.pk, to=stage, actor=system_actor("test"), reason="t")
    return Order.objects.get(pk=order.pk)


def client_for(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Seven accounts a test: the default hasher's deliberate slowness is not under test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(jd, tb, make_user):
    south = RegionFactory(code="south", name="华南", provinces=["广东省"])
    east = RegionFactory(code="east", name="华东", provinces=["浙江省"])
    south_boss = make_user("south_boss", "supervisor")
    south.supervisors.add(south_boss)
    east_boss = make_user("east_boss", "supervisor")
    east.supervisors.add(east_boss)
    agent = AgentFactory(user__username="xiaowang", display_name="小王")
    sz, hz, bj = ingest(("W-SZ", SZ), ("W-HZ", HZ), ("W-BJ", BJ))
    return {
        "south": south,
        "east": east,
        "south_boss": south_boss,
        "east_boss": east_boss,
        "chief": make_user("chief", "supervisor"),  # supervises no region in particular
        "cs": make_user("cs", "customer_service"),
        "warehouse": make_user("wh", "warehouse"),
        "agent": agent,
        "sz": sz,
        "hz": hz,
        "bj": bj,
    }


def ids_of(cards: list[dict]) -> list[int]:
    return [c["id"] for c in cards]


# --- Columns, pages, counts ----------------------------------------------------------------
def test_every_column_and_lane_comes_in_one_answer_most_urgent_first(world):
    # given orders in every board stage; one done a day and a half ago; one cancelled
    now = timezone.now()
    picking = [move(o, "picking") for o in ingest(("P1", SZ), ("P2", SZ), ("P3", SZ))]
    Order.objects.filter(pk=picking[0].pk).update(due_at=now + timedelta(hours=3))
    Order.objects.filter(pk=picking[1].pk).update(due_at=now - timedelta(minutes=5))  # overdue
    Order.objects.filter(pk=picking[2].pk).update(due_at=None)  # no due time: last
    shipping = move(world["sz"], "picking", "shipping")
    done_now, done_old = (move(o, "picking", "shipping", "done") for o in ingest(("D1", SZ), ("D2", SZ)))
    Order.objects.filter(pk=done_old.pk).update(stage_entered_at=now - timedelta(hours=36))
    exception = move(ingest(("E1", SZ))[0], "exception")
    quarantined = move(ingest(("Q1", SZ))[0], "quarantined")
    cancelled = move(ingest(("C1", SZ))[0], "cancelled")

    # when the all-seeing supervisor reads the board
    body = client_for(world["chief"]).get("/api/board/").json()

    # then each stage is its own column, open ones by due time (none last), done by latest
    columns = body["columns"]
    assert set(columns) == {"pending_review", "picking", "shipping", "done", "exception", "quarantined"}
    assert ids_of(columns["picking"]["cards"]) == [picking[1].pk, picking[0].pk, picking[2].pk]
    assert ids_of(columns["shipping"]["cards"]) == [shipping.pk]
    assert ids_of(columns["done"]["cards"]) == [done_now.pk]  # the last 24 hours only
    assert ids_of(columns["exception"]["cards"]) == [exception.pk]
    assert ids_of(columns["quarantined"]["cards"]) == [quarantined.pk]
    everywhere = {c["id"] for col in columns.values() for c in col["cards"]}
    assert cancelled.pk not in everywhere and done_old.pk not in everywhere
    assert body["counts"] == {
        "pending_review": 2, "picking": 3, "shipping": 1, "done": 1, "exception": 1, "quarantined": 1,
    }  # fmt: skip
    # and a card carries what the board shows: tag, customer, amount, owner, due, flags, lateness
    late = columns["picking"]["cards"][0]
    assert late["tag"] == picking[1].tag and late["customer"] == "客户P2" and late["amount"] == "599.00"
    assert late["late"] is True and late["owner"] is None and late["channel_name"] == "京东"
    assert columns["picking"]["cards"][1]["late"] is False


def test_an_order_sitting_in_its_stage_over_two_hours_is_red_even_before_it_is_due(world):
    now = timezone.now()
    Order.objects.filter(pk=world["sz"].pk).update(
        stage_entered_at=now - timedelta(hours=2, minutes=1), due_at=now + timedelta(hours=5)
    )
    Order.objects.filter(pk=world["hz"].pk).update(
        stage_entered_at=now - timedelta(minutes=119), due_at=now + timedelta(hours=5)
    )
    cards = {
        c["id"]: c
        for c in client_for(world["chief"]).get("/api/board/").json()["columns"]["pending_review"]["cards"]
    }
    assert cards[world["sz"].pk]["late"] is True
    assert cards[world["hz"].pk]["late"] is False


def test_keyset_pages_walk_a_column_without_gaps_or_repeats(world):
    # given 120 orders in picking, many sharing one due time and some with none
    orders = ingest(*((f"K{i:03d}", SZ) for i in range(120)))
    now = timezone.now()
    for i, order in enumerate(orders):
        due = None if i % 10 == 0 else now + timedelta(minutes=i % 7)
        Order.objects.filter(pk=order.pk).update(stage="picking", due_at=due)
    api = client_for(world["chief"])

    # when the column is read page by page
    seen, cursor, pages = [], None, 0
    while True:
        params = {"stage": "picking", **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/board/", params).json()
        pages += 1
        seen += ids_of(page["cards"])
        cursor = page["next"]
        if not cursor:
            break

    # then every order comes exactly once, in the column's order
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120
    expected = list(
        Order.objects.filter(stage="picking").order_by("due_at", "id").values_list("id", flat=True)
    )  # PostgreSQL sorts NULL last ascending, as the board does
    assert seen == expected
    # and the first page of the all-columns answer is the same first page
    assert ids_of(api.get("/api/board/").json()["columns"]["picking"]["cards"]) == expected[:PAGE_SIZE]
    # and a reconnecting board can re-read a column as deep as it had scrolled
    deep = api.get("/api/board/", {"stage": "picking", "limit": 110}).json()
    assert ids_of(deep["cards"]) == expected[:110] and deep["next"]


def test_the_done_column_pages_from_the_latest(world):
    now = timezone.now()
    orders = ingest(*((f"DN{i:03d}", SZ) for i in range(60)))
    for i, order in enumerate(orders):
        Order.objects.filter(pk=order.pk).update(stage="done", due_at=None,
                                                 stage_entered_at=now - timedelta(minutes=i // 2))  # fmt: skip
    api = client_for(world["chief"])
    first = api.get("/api/board/", {"stage": "done"}).json()
    second = api.get("/api/board/", {"stage": "done", "cursor": first["next"]}).json()
    seen = ids_of(first["cards"]) + ids_of(second["cards"])
    assert second["next"] is None
    assert seen == list(
        Order.objects.filter(stage="done").order_by("-stage_entered_at", "-id").values_list("id", flat=True)
    )


def test_counts_come_from_one_query_and_follow_the_filters(world, django_assert_num_queries):
    move(world["sz"], "picking")
    api = client_for(world["chief"])
    assert api.get("/api/board/counts/").json()["counts"]["pending_review"] == 2
    assert api.get("/api/board/counts/", {"channel": "taobao"}).json()["counts"] == {
        "pending_review": 0, "picking": 0, "shipping": 0, "done": 0, "exception": 0, "quarantined": 0,
    }  # fmt: skip
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        api.get("/api/board/counts/")
    grouped = [q["sql"] for q in queries.captured_queries if "orders_order" in q["sql"]]
    assert len(grouped) == 1 and "GROUP BY" in grouped[0]


# --- Filters ----------------------------------------------------------------------------------
def test_each_filter_narrows_the_columns_and_the_counts(world):
    from agents.models import Team

    team = Team.objects.create(code="after-sales", name="售后")
    world["agent"].teams.add(team)
    (tb_order,) = ingest(("T-1", HZ), channel="taobao")
    Order.objects.filter(pk=world["hz"].pk).update(owner=world["agent"].user)
    Order.objects.filter(pk=world["bj"].pk).update(is_flagged=True, flags=["risk"])
    Order.objects.filter(pk=world["sz"].pk).update(due_at=timezone.now() - timedelta(minutes=1))
    api = client_for(world["chief"])

    def pending(**params) -> set[int]:
        body = api.get("/api/board/", params).json()
        assert body["counts"]["pending_review"] == len(body["columns"]["pending_review"]["cards"])
        return set(ids_of(body["columns"]["pending_review"]["cards"]))

    assert pending() == {world["sz"].pk, world["hz"].pk, world["bj"].pk, tb_order.pk}
    assert pending(channel="taobao") == {tb_order.pk}
    assert pending(region="east") == {world["hz"].pk, tb_order.pk}
    assert pending(team="after-sales") == {world["hz"].pk}
    assert pending(agent="xiaowang") == {world["hz"].pk}
    assert pending(flagged="1") == {world["bj"].pk}
    assert pending(flagged="0") == {world["sz"].pk, world["hz"].pk, tb_order.pk}
    assert pending(overdue="1") == {world["sz"].pk}
    assert pending(q=world["hz"].tag) == {world["hz"].pk}
    assert pending(q="客户W-BJ") == {world["bj"].pk}
    assert pending(q="文三路") == {world["hz"].pk, tb_order.pk}


def test_an_open_exception_shows_its_type_and_owner_and_its_team_and_owner_filter_it(world):
    from agents.models import Team

    team = Team.objects.create(code="cs-team", name="客服组")
    order = move(world["sz"], "picking")
    exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("test"), note="外箱压坏")
    ExceptionCase.objects.filter(order=order).update(team=team, owner=world["agent"])
    api = client_for(world["chief"])
    (card,) = api.get("/api/board/", {"stage": "exception"}).json()["cards"]
    assert card["exception"] == {"type": "商品破损", "owner": "小王", "team": "客服组"}
    assert card["held_stage"] == "picking"
    assert ids_of(api.get("/api/board/", {"stage": "exception", "team": "cs-team"}).json()["cards"]) == [
        order.pk
    ]
    assert ids_of(api.get("/api/board/", {"stage": "exception", "agent": "xiaowang"}).json()["cards"]) == [
        order.pk
    ]
    # other lanes' cards carry no exception
    assert api.get("/api/board/", {"stage": "pending_review"}).json()["cards"][0]["exception"] is None


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"channel": "nope"}, {"channel": "There is no channel with the code 'nope'."}),
        ({"region": "mars"}, {"region": "There is no region with the code 'mars'."}),
        ({"team": "ghosts"}, {"team": "There is no team with the code 'ghosts'."}),
        ({"agent": "nobody"}, {"agent": "There is no user named 'nobody'."}),
        ({"flagged": "maybe"}, {"flagged": "'maybe' is not a yes/no value: use 1 or 0."}),
        ({"overdue": "2"}, {"overdue": "'2' is not a yes/no value: use 1 or 0."}),
        ({"q": "x" * 101}, {"q": "Search for at most 100 characters."}),
        ({"stage": "cancelled"}, {"stage": "'cancelled' is not a board column; use one of pending_review, picking, shipping, done, exception, quarantined."}),
        ({"limit": "0"}, {"limit": "limit is a whole number from 1 to 500."}),
        ({"limit": "501"}, {"limit": "limit is a whole number from 1 to 500."}),
        ({"stage": "picking", "cursor": "not-a-cursor"}, {"cursor": "This cursor was not given out by the board; start again without it."}),
        ({"stage": "done", "cursor": "WyJ4IiwgMV0"}, {"cursor": "This cursor was not given out by the board; start again without it."}),
        ({"cursor": "WyJ4IiwgMV0"}, {"cursor": "A cursor pages one column: give its stage too."}),
        ({"channel": "nope", "stage": "nope"}, {"channel": "There is no channel with the code 'nope'.", "stage": "'nope' is not a board column; use one of pending_review, picking, shipping, done, exception, quarantined."}),
    ],
)  # fmt: skip
def test_bad_board_parameters_are_a_400_naming_each_and_change_nothing(world, params, bad):
    before = list(Order.objects.order_by("pk").values_list("pk", "stage", "updated_at"))
    response = client_for(world["chief"]).get("/api/board/", params)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameters"
    assert response.json()["errors"] == bad
    assert list(Order.objects.order_by("pk").values_list("pk", "stage", "updated_at")) == before


@pytest.mark.parametrize(
    ("ids", "bad"),
    [
        ("", "Give the order ids, comma-separated, e.g. ids=12,15."),
        ("1,x", "Ids are whole numbers, comma-separated, e.g. ids=12,15."),
        ("-3", "Ids are whole numbers, comma-separated, e.g. ids=12,15."),
        (",".join(str(i) for i in range(1, 502)), "At most 500 ids at a time."),
    ],
)
def test_bad_card_ids_are_a_400(world, ids, bad):
    response = client_for(world["chief"]).get("/api/board/cards/", {"ids": ids})
    assert response.status_code == 400
    assert response.json()["errors"] == {"ids": bad}


# --- Who sees what ---------------------------------------------------------------------------
def test_a_regional_supervisor_sees_only_their_regions_and_what_no_region_covers(world):
    api = client_for(world["south_boss"])
    body = api.get("/api/board/").json()
    assert set(ids_of(body["columns"]["pending_review"]["cards"])) == {world["sz"].pk, world["bj"].pk}
    assert body["counts"]["pending_review"] == 2
    # even when asked for the other region's orders by id, by filter or by timeline
    cards = api.get("/api/board/cards/", {"ids": f"{world['sz'].pk},{world['hz'].pk}"}).json()["cards"]
    assert ids_of(cards) == [world["sz"].pk]
    assert api.get("/api/board/", {"region": "east"}).json()["counts"]["pending_review"] == 0
    assert api.get(f"/api/orders/{world['hz'].pk}/timeline/").status_code == 404
    assert api.get(f"/api/orders/{world['sz'].pk}/timeline/").status_code == 200
    # and they cannot move it either: the transition API says it does not exist
    response = api.post(f"/api/orders/{world['hz'].pk}/transition/", {"to": "picking"}, format="json")
    assert response.status_code == 404
    assert Order.objects.get(pk=world["hz"].pk).stage == "pending_review"


@pytest.mark.parametrize("who", ["chief", "cs", "warehouse"])
def test_back_office_roles_and_supervisors_of_no_region_see_every_order(world, who):
    body = client_for(world[who]).get("/api/board/").json()
    assert body["counts"]["pending_review"] == 3


def test_an_agent_has_no_board_but_reads_the_timeline_of_their_own_orders(world):
    agent = world["agent"]
    Order.objects.filter(pk=world["sz"].pk).update(owner=agent.user)
    api = client_for(agent.user)
    for path in ("/api/board/", "/api/board/counts/", f"/api/board/cards/?ids={world['sz'].pk}"):
        response = api.get(path)
        assert response.status_code == 403, path
        assert "agents have their queue page" in response.json()["detail"]
    assert api.get(f"/api/orders/{world['sz'].pk}/timeline/").status_code == 200
    assert api.get(f"/api/orders/{world['hz'].pk}/timeline/").status_code == 404
    assert api.get("/api/alerts/").status_code == 403


def test_anonymous_callers_are_refused(world):
    assert APIClient().get("/api/board/").status_code in (401, 403)
    assert APIClient().get(f"/api/orders/{world['sz'].pk}/timeline/").status_code in (401, 403)


# --- Moves: the server decides ------------------------------------------------------------------
def test_refused_moves_say_why_with_a_stable_code_and_change_nothing(world):
    order = world["sz"]
    # an illegal move, by a supervisor (who may make any legal move)
    response = client_for(world["chief"]).post(
        f"/api/orders/{order.pk}/transition/", {"to": "done"}, format="json"
    )
    assert response.status_code == 409
    assert response.json() == {
        "code": "illegal_transition",
        "detail": "An order cannot move from 'pending_review' to 'done'. Allowed from 'pending_review': "
        "cancelled, exception, picking, quarantined.",
    }
    # a legal move the role may not make: warehouse moves only picking and shipping
    response = client_for(world["warehouse"]).post(
        f"/api/orders/{order.pk}/transition/", {"to": "picking"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden"
    assert "warehouse" in response.json()["detail"]
    fresh = Order.objects.get(pk=order.pk)
    assert (fresh.stage, fresh.stage_entered_at) == ("pending_review", order.stage_entered_at)
    assert not fresh.events.filter(kind="transition").exists()
    # and a legal one goes through, and the card is in its new column
    moved = client_for(world["warehouse"]).post(
        f"/api/orders/{move(order, 'picking').pk}/transition/", {"to": "shipping"}, format="json"
    )
    assert moved.status_code == 200
    cards = client_for(world["chief"]).get("/api/board/cards/", {"ids": order.pk}).json()["cards"]
    assert [(c["id"], c["stage"]) for c in cards] == [(order.pk, "shipping")]


def test_cards_by_id_leave_out_what_left_the_board_and_bring_fresh_counts(world):
    cancelled = move(world["hz"], "cancelled")
    body = (
        client_for(world["chief"])
        .get("/api/board/cards/", {"ids": f"{world['sz'].pk},{cancelled.pk},999999"})
        .json()
    )
    assert ids_of(body["cards"]) == [world["sz"].pk]
    assert body["counts"]["pending_review"] == 2
    # and under a filter, a card that no longer matches it is left out too
    body = (
        client_for(world["chief"])
        .get("/api/board/cards/", {"ids": world["sz"].pk, "channel": "taobao"})
        .json()
    )
    assert body["cards"] == []


# --- The drawer -----------------------------------------------------------------------------
def test_the_timeline_lists_every_event_with_labels_and_actors(world):
    order = move(world["sz"], "picking", "exception")
    body = client_for(world["chief"]).get(f"/api/orders/{order.pk}/timeline/").json()
    assert body["order"]["tag"] == order.tag and body["order"]["stage_label"] == "Exception"
    assert body["order"]["customer"] == "客户W-SZ" and body["order"]["province"] == "广东省"
    events = [(e["kind_label"], e["actor"], e["from_label"], e["to_label"]) for e in body["events"]]
    assert events == [
        ("Received", "test", "", "Pending review"),
        ("Stage change", "test", "Pending review", "Picking"),
        ("Stage change", "test", "Picking", "Exception"),
    ]
    # in the caller's language
    zh = APIClient(HTTP_ACCEPT_LANGUAGE="zh-hans")
    zh.credentials(HTTP_AUTHORIZATION=f"Token {token_for(world['chief'])}")
    assert zh.get(f"/api/orders/{order.pk}/timeline/").json()["events"][1]["to_label"] == "待配货"
    assert client_for(world["chief"]).get("/api/orders/999999/timeline/").status_code == 404


# --- The page ----------------------------------------------------------------------------------
def test_the_board_page_renders_counts_and_first_pages_in_at_most_15_queries(
    world, client, django_assert_max_num_queries
):
    move(world["sz"], "picking")
    client.force_login(world["south_boss"])
    with django_assert_max_num_queries(15):
        response = client.get("/board/")
    assert response.status_code == 200
    html = response.content.decode()
    initial = json.loads(
        re.search(r'<script id="b-initial" type="application/json">(.*?)</script>', html, re.S).group(1)
    )
    assert ids_of(initial["columns"]["picking"]["cards"]) == [world["sz"].pk]
    assert ids_of(initial["columns"]["pending_review"]["cards"]) == [world["bj"].pk]  # not east's
    assert initial["counts"]["picking"] == 1
    assert "/static/vendor/sortablejs/Sortable.min.js" in html and "/static/js/board.js" in html
    assert 'data-ws="/ws/board/"' in html
    # the region menu lists the supervisor's own regions
    assert ">华南</option>" in html and ">华东</option>" not in html
    # and the board is the navigation's first link
    nav = re.search(r"<nav>(.*?)</nav>", html, re.S).group(1)
    assert re.findall(r'href="([^"]+)"', nav)[0] == "/board/"


def test_the_board_page_filters_from_its_url_and_says_which_filter_it_could_not_use(world, client):
    client.force_login(world["chief"])
    html = client.get("/board/?channel=taobao").content.decode()
    initial = json.loads(
        re.search(r'id="b-initial" type="application/json">(.*?)</script>', html, re.S).group(1)
    )
    assert initial["filters"] == {"channel": "taobao"} and initial["counts"]["pending_review"] == 0
    html = client.get("/board/?channel=nope").content.decode()
    assert "There is no channel with the code" in html or "没有代码为" in html or "nope" in html
    initial = json.loads(
        re.search(r'id="b-initial" type="application/json">(.*?)</script>', html, re.S).group(1)
    )
    assert initial["filters"] == {} and initial["counts"]["pending_review"] == 3


def test_agents_get_a_403_page_and_anonymous_visitors_the_login(world, client):
    assert client.get("/board/").status_code == 302
    client.force_login(world["agent"].user)
    response = client.get("/board/")
    assert response.status_code == 403
    assert b'href="/queue/"' in response.content
    assert b'href="/board/"' not in response.content  # no board link for them either


# --- Alerts --------------------------------------------------------------------------------------
@pytest.fixture
def alerts(world):
    now = timezone.now()

    def make(key: str, region, order=None, level: int = 2) -> Alert:
        return Alert.objects.create(kind=Alert.Kind.SLA_OVERDUE, level=level, message=f"alert {key}",
                                    dedupe_key=key, region=region, order=order, created_at=now)  # fmt: skip

    return {
        "south": make("a-south", world["south"], world["sz"], level=3),
        "east": make("a-east", world["east"], world["hz"]),
        "none": make("a-none", None),
    }


def test_alerts_are_listed_for_their_regions_supervisors(world, alerts):
    south = client_for(world["south_boss"]).get("/api/alerts/", {"open": "1"}).json()
    assert {a["id"] for a in south["results"]} == {alerts["south"].pk, alerts["none"].pk}
    assert south["open_count"] == 2
    first = next(a for a in south["results"] if a["id"] == alerts["south"].pk)
    assert first["order"] == {"id": world["sz"].pk, "tag": world["sz"].tag}
    assert first["region"] == "华南" and first["level"] == 3 and first["kind_label"] == "Order overdue (L1)"
    chief = client_for(world["chief"]).get("/api/alerts/").json()
    assert chief["open_count"] == 3
    assert (
        client_for(world["chief"]).get("/api/alerts/", {"ids": alerts["east"].pk}).json()["results"][0]["id"]
        == alerts["east"].pk
    )
    assert client_for(world["cs"]).get("/api/alerts/").status_code == 403
    bad = client_for(world["chief"]).get("/api/alerts/", {"open": "perhaps", "ids": "x"})
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"open"}


def test_acknowledging_an_alert_once_and_telling_the_other_boards(
    world, alerts, django_capture_on_commit_callbacks
):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(board_group(), channel)
    alert = alerts["south"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world["south_boss"]).post(f"/api/alerts/{alert.pk}/ack/")
    assert response.status_code == 200
    assert response.json()["acknowledged_by"] == "south_boss"
    alert.refresh_from_db()
    assert alert.acknowledged_by == world["south_boss"] and alert.acknowledged_at is not None
    assert async_to_sync(layer.receive)(channel) == {"type": ALERTS_ACKNOWLEDGED, "ids": [alert.pk]}
    # a second acknowledgement is refused and says by whom; nothing changes
    again = client_for(world["chief"]).post(f"/api/alerts/{alert.pk}/ack/")
    assert again.status_code == 409
    assert again.json()["code"] == "already_acknowledged"
    assert "south_boss" in again.json()["detail"]
    alert.refresh_from_db()
    assert alert.acknowledged_by == world["south_boss"]


def test_an_alert_of_another_region_cannot_be_acknowledged(world, alerts):
    response = client_for(world["south_boss"]).post(f"/api/alerts/{alerts['east'].pk}/ack/")
    assert response.status_code == 404
    assert client_for(world["cs"]).post(f"/api/alerts/{alerts['east'].pk}/ack/").status_code == 403
    assert client_for(world["chief"]).post("/api/alerts/999999/ack/").status_code == 404
    assert Alert.objects.filter(acknowledged_at__isnull=False).count() == 0


def test_the_alerts_page_lists_and_acknowledges(world, alerts, client):
    client.force_login(world["south_boss"])
    html = client.get("/alerts/").content.decode()
    assert "alert a-south" in html and "alert a-none" in html and "alert a-east" not in html
    response = client.post(f"/alerts/{alerts['south'].pk}/ack/", follow=True)
    assert response.status_code == 200
    assert Alert.objects.get(pk=alerts["south"].pk).acknowledged_by == world["south_boss"]
    response = client.post(f"/alerts/{alerts['east'].pk}/ack/", follow=True)
    assert Alert.objects.get(pk=alerts["east"].pk).acknowledged_at is None
    client.force_login(world["cs"])
    assert client.get("/alerts/").status_code == 403


def test_the_board_counts_open_alerts_for_those_who_see_them(world, alerts):
    assert client_for(world["south_boss"]).get("/api/board/counts/").json()["open_alerts"] == 2
    assert client_for(world["cs"]).get("/api/board/counts/").json()["open_alerts"] is None
