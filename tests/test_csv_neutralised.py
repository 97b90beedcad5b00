"""Every CSV the product writes neutralises cells a spreadsheet would run as a formula: each
export, end to end, with every trigger OWASP lists (= + - @ tab CR) and the precautions beyond
it (a trigger behind spaces, full-width signs, LF, NUL). Real numbers stay numbers; text that
looks like a number ("-1" typed in a sheet) stays text. tests/test_exports.py has the basics."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from orders import services
from orders.actors import system_actor
from orders.csvsafe import neutralize_cell
from orders.models import Order
from riskcontrol.models import Rule
from tests.factories import OrderFactory, order_payload
from tests.test_imports import csv_bytes, run_import, zh_row
from tests.test_reports import RANGE, at, left_stage, rollup
from tests.test_risk_review import risk  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parent.parent

# What users can type into a text field that ends up in a CSV cell.
TRIGGERS = ["=1+1", "+86 1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "  =1", "＝1+1"]


def rows_of(response) -> list[list[str]]:
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body.removeprefix("\ufeff"))))


def page_for(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  =1+1", "'  =1+1"),  # importers that trim spaces would run it
        ("\u3000@x", "'\u3000@x"),  # an ideographic space first
        ("＝SUM(A1)", "'＝SUM(A1)"),  # full-width signs, as a Chinese input method types them
        ("＋86", "'＋86"),
        ("\n=1", "'\n=1"),
        ("\0x", "'\0x"),
        ("-1", "'-1"),  # text stays text
        (Decimal("-12.50"), "-12.50"),  # a number stays a number
        (-3, "-3"),
        ("A=1", "A=1"),
        ("王 -", "王 -"),
    ],
)
def test_neutralize_cell_also_covers_spaces_full_width_signs_lf_and_nul(value, expected):
    assert neutralize_cell(value) == expected


def _product_modules() -> list[Path]:
    skipped = {".venv", "node_modules", "tests", "migrations", ".git", "var"}
    return [
        path
        for path in ROOT.rglob("*.py")
        if not skipped.intersection(path.relative_to(ROOT).parts) and path.name != "csvsafe.py"
    ]


def test_every_csv_the_product_writes_goes_through_csvsafe():
    modules = _product_modules()
    writers = [
        str(p.relative_to(ROOT)) for p in modules if re.search(r"csv\.(Dict)?[Ww]riter\(", p.read_text())
    ]
    exports = [p for p in modules if "text/csv" in p.read_text()]
    unsafe = [str(p.relative_to(ROOT)) for p in exports if "csvsafe.iter_csv(" not in p.read_text()]

    assert writers == [], "write CSV with orders.csvsafe"
    assert len(exports) >= 3 and unsafe == []


@pytest.mark.django_db
def test_the_order_export_neutralises_every_trigger_and_keeps_amounts_numbers(jd, supervisor):
    for n, text in enumerate(TRIGGERS):
        result = services.order_ingest(
            payload=order_payload(external_id=f"T-{n}", note=text), actor=system_actor("test")
        )
        assert result.status == "created", result.errors

    rows = rows_of(page_for(supervisor).get("/orders/export.csv"))

    header, body = rows[0], rows[1:]
    notes = {r[header.index("External id")]: r[header.index("Note")] for r in body}
    stored = dict(Order.objects.values_list("external_id", "note"))
    assert len(notes) == len(TRIGGERS)
    for external_id, cell in notes.items():
        assert stored[external_id], "the note must be stored to be exported"
        assert cell == "'" + stored[external_id], (external_id, cell)
    assert {r[header.index("Amount")] for r in body} == {"599.00"}


@pytest.mark.django_db
def test_the_import_error_report_download_neutralises_every_trigger(jd, supervisor):
    bad_rows = [zh_row(f"E-{n}", amount="not money", note=text, name=text) for n, text in enumerate(TRIGGERS)]
    job = run_import(jd, csv_bytes([*bad_rows, zh_row("E-typed", amount="-1")]))
    assert job.rejected_count == len(TRIGGERS) + 1

    rows = rows_of(page_for(supervisor).get(f"/imports/{job.pk}/errors.csv"))

    # a job run from a file the server does not keep lists the row's cells by column name
    note, name, paid = (rows[0].index(c) for c in ("备注", "客户姓名", "实付金额"))
    for row, text in zip(rows[1:], TRIGGERS, strict=False):
        kept = text.strip()  # the importer trims each cell as it reads it
        assert (row[note], row[name]) == ("'" + kept, "'" + kept)
    assert rows[-1][paid] == "'-1", "a typed cell is echoed as typed: text, never a number"


@pytest.mark.django_db
def test_a_report_csv_neutralises_every_trigger(admin_client):
    for n, text in enumerate(TRIGGERS):
        order = OrderFactory(category=text, external_id=f"R-{n}")
        left_stage(order, stage="picking", to="shipping", entered=at(8), left=at(10), due=at(9))
    rollup()

    rows = rows_of(admin_client.get("/reports/sla/" + RANGE + "&format=csv&table=category"))

    firsts = {r[0] for r in rows[1:]}
    assert firsts >= {"'" + text for text in TRIGGERS}, firsts
    assert not firsts & set(TRIGGERS)


@pytest.mark.django_db
def test_the_risk_report_csv_neutralises_every_trigger(risk, supervisor):  # noqa: F811
    for text in TRIGGERS:
        Rule.objects.create(name=text, kind="round_amount", params={"multiple": 1000}, weight=10)

    month = timezone.localdate().strftime("%Y-%m")
    rows = rows_of(page_for(supervisor).get(f"/risk/report/?month={month}&format=csv"))

    names = {r[0] for r in rows[1:]}
    assert names >= {"'" + text for text in TRIGGERS}
    assert not names & set(TRIGGERS)
