"""CSV and Excel (xlsx) order import: streaming readers, the header map, rows → order payloads
through the one ingest service in chunks, job progress, and the per-row error report."""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from orders import services
from orders.actors import import_actor
from orders.models import ImportJob, ImportRowError, Order
from orders.normalize import normalize_external_id

logger = logging.getLogger(__name__)

CHUNK_ROWS = 500
SAMPLE_BYTES = 64 * 1024
ALLOWED_EXTENSIONS = (".csv", ".xlsx")
REQUIRED_FIELDS = ("external_id", "amount")

# Our field → the column names people use for it (Chinese marketplace exports and English).
# Compared after _header_key(): NFKC, lower case, no spaces/_/-/*, "(元)"-style units dropped.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": ("订单号", "订单编号", "外部单号", "外部订单号", "平台订单号", "原始单号", "单号",
                    "external_id", "order_id", "order_no", "order_number"),
    "customer.name": ("客户姓名", "客户", "客户名称", "姓名", "收货人", "收件人", "收货人姓名", "买家",
                      "买家姓名", "customer_name", "customer", "name", "buyer", "consignee"),
    "customer.phone": ("手机", "手机号", "手机号码", "电话", "联系电话", "收货人手机", "收货人电话",
                       "phone", "mobile", "tel", "telephone"),
    "customer.account_id": ("账号", "账户", "买家账号", "会员账号", "用户id", "买家id", "account_id",
                            "account", "buyer_id", "user_id"),
    "customer.account_created_at": ("注册时间", "账号注册时间", "account_created_at"),
    "customer.is_vip": ("会员", "vip", "是否vip", "是否会员", "is_vip"),
    "address": ("地址", "收货地址", "详细地址", "收件地址", "收货人地址", "address", "shipping_address"),
    "items.sku": ("sku", "商品编码", "商品编号", "货号", "sku编码", "item_sku"),
    "items.name": ("商品", "商品名称", "商品名", "宝贝名称", "宝贝标题", "product", "product_name", "item",
                   "item_name"),
    "items.qty": ("数量", "购买数量", "商品数量", "qty", "quantity"),
    "items.price": ("单价", "价格", "商品单价", "price", "unit_price"),
    "amount": ("金额", "实付金额", "订单金额", "实付款", "支付金额", "应付金额", "总金额", "amount",
               "total", "paid"),
    "currency": ("币种", "货币", "currency"),
    "coupon_code": ("优惠券", "优惠券码", "优惠码", "coupon", "coupon_code"),
    "note": ("备注", "买家备注", "订单备注", "留言", "买家留言", "note", "remark", "comment"),
    "category": ("类目", "品类", "商品类目", "服务类型", "category", "service_type"),
    "urgency": ("加急", "是否加急", "紧急程度", "urgency", "urgent", "expedited"),
    "kind": ("类型", "订单类型", "kind", "order_type"),
    "source_created_at": ("下单时间", "创建时间", "订单创建时间", "source_created_at", "created_at",
                          "order_time"),
    "source_updated_at": ("更新时间", "修改时间", "最后更新时间", "source_updated_at", "updated_at"),
    "client_ip": ("ip", "ip地址", "下单ip", "client_ip"),
    "device_id": ("设备", "设备号", "设备id", "设备指纹", "device", "device_id"),
    "card_fingerprint": ("卡指纹", "支付卡指纹", "银行卡指纹", "card_fingerprint"),
}  # fmt: skip

_TRUE = {"1", "true", "yes", "y", "是", "真", "对", "vip", "会员", "√", "✓"}
_FALSE = {"0", "false", "no", "n", "否", "假", "不是", "非会员", "普通", "×"}
_URGENCY = {"加急": "expedited", "是": "expedited", "紧急": "expedited", "urgent": "expedited",
            "true": "expedited", "1": "expedited", "expedited": "expedited",
            "普通": "normal", "否": "normal", "不加急": "normal", "false": "normal", "0": "normal",
            "normal": "normal"}  # fmt: skip
_KIND = {"补发": "reshipment", "补寄": "reshipment", "reshipment": "reshipment",
         "换货": "exchange", "售后换货": "exchange", "exchange": "exchange",
         "普通": "normal", "正常": "normal", "normal": "normal"}  # fmt: skip
_DATE_SLASHES = re.compile(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})")
_UNIT_SUFFIX = re.compile(r"\(.*?\)")


class ImportFileError(Exception):
    """The file cannot be imported at all (format, encoding, header); the message is for people."""


def _header_key(name: str) -> str:
    text = unicodedata.normalize("NFKC", name).strip().lower()
    text = _UNIT_SUFFIX.sub("", text)
    return re.sub(r"[\s_\-*:：]", "", text)


_ALIAS_TO_FIELD = {_header_key(alias): ours for ours, aliases in HEADER_ALIASES.items() for alias in aliases}


def _cell_text(value: Any) -> str:
    """A cell as the text a person sees; numbers from Excel without a spurious '.0'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value).strip()


@dataclass
class Header:
    """The file's first row and what each column means to us."""

    names: list[str]  # unique display names, in file order (duplicates get " (2)")
    fields: dict[int, str]  # column index → our field
    ignored: list[str]

    @property
    def labels(self) -> dict[str, str]:
        """Our field → the column name it came from, for error messages people understand."""
        return {ours: self.names[index] for index, ours in self.fields.items()}

    @property
    def missing(self) -> list[str]:
        return [f for f in REQUIRED_FIELDS if f not in self.fields.values()]


def map_header(cells: Sequence[Any]) -> Header:
    names: list[str] = []
    seen: dict[str, int] = {}
    fields: dict[int, str] = {}
    ignored: list[str] = []
    for index, cell in enumerate(cells):
        name = _cell_text(cell) or f"#{index + 1}"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
        ours = _ALIAS_TO_FIELD.get(_header_key(name)) if _cell_text(cell) else None
        if ours is None or ours in fields.values():
            if _cell_text(cell):
                ignored.append(names[-1])
            continue
        fields[index] = ours
    return Header(names=names, fields=fields, ignored=ignored)


def check_header(header: Header) -> None:
    if header.missing:
        required = " / ".join(HEADER_ALIASES[f][0] + f" ({f})" for f in header.missing)
        found = ", ".join(n for n in header.names if not n.startswith("#")) or _("none")
        raise ImportFileError(
            _("The header row has no column for: %(required)s. Columns found: %(found)s.")
            % {"required": required, "found": found}
        )


# --- Readers ------------------------------------------------------------------------------


@dataclass
class Table:
    header: Header
    header_row: int  # 1-based row of the header in the sheet
    rows: Iterator[tuple[int, Sequence[Any]]]  # (row number as the sheet shows it, cells)
    total_rows: int | None  # data rows after the header, when cheaply known
    encoding: str = ""


def detect_encoding(sample: bytes) -> str:
    """UTF-8 with or without BOM, UTF-16 with BOM, else GB18030 (a superset of the GBK that
    Chinese Excel saves). The sample may end mid-character, so decoding is not final."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        return encoding
    raise ImportFileError(_("The file's text encoding is not UTF-8 or GBK; save it as CSV UTF-8 and retry."))


def _first_non_blank(rows: Iterable[Sequence[Any]]) -> tuple[int, Sequence[Any]]:
    for number, cells in enumerate(rows, start=1):
        if any(_cell_text(c) for c in cells):
            return number, cells
    raise ImportFileError(_("The file is empty: there is no header row."))


@contextmanager
def _text_stream(binary: IO[bytes], encoding: str) -> Iterator[io.TextIOWrapper]:
    wrapper = io.TextIOWrapper(binary, encoding=encoding, newline="")
    try:
        yield wrapper
    finally:
        wrapper.detach()  # the caller owns (and closes) the binary file


def _csv_records(text: io.TextIOWrapper, delimiter: str) -> Iterator[list[str]]:
    try:
        yield from csv.reader(text, delimiter=delimiter)
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            _("The file is not valid %(encoding)s text past its beginning; save it as CSV UTF-8 and retry.")
            % {"encoding": text.encoding}
        ) from exc
    except csv.Error as exc:
        raise ImportFileError(_("The CSV file cannot be read: %(error)s.") % {"error": exc}) from exc


@contextmanager
def _open_csv(binary: IO[bytes], *, count_rows: bool) -> Iterator[Table]:
    sample = binary.read(SAMPLE_BYTES)
    encoding = detect_encoding(sample)
    first_line = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample).split("\n", 1)[0]
    delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
    total = None
    if count_rows and binary.seekable():
        # A first streaming pass so the progress bar has a denominator.
        binary.seek(0)
        with _text_stream(binary, encoding) as text:
            records = _csv_records(text, delimiter)
            header_row, _cells = _first_non_blank(records)
            total = sum(1 for _record in records)
    binary.seek(0)
    with _text_stream(binary, encoding) as text:
        records = enumerate(_csv_records(text, delimiter), start=1)
        header_row, header_cells = _first_non_blank(cells for _n, cells in records)
        yield Table(
            header=map_header(header_cells),
            header_row=header_row,
            rows=records,
            total_rows=total,
            encoding=encoding,
        )


@contextmanager
def _open_xlsx(binary: IO[bytes]) -> Iterator[Table]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(binary, read_only=True, data_only=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
        raise ImportFileError(_("The file is not a readable Excel .xlsx workbook.")) from exc
    try:
        sheet = workbook.worksheets[0]
        declared = sheet.max_row
        # A wrong <dimension> would cut rows off: read every row, use the size only for progress.
        sheet.reset_dimensions()
        records = enumerate(sheet.iter_rows(values_only=True), start=1)
        header_row, header_cells = _first_non_blank(cells for _n, cells in records)
        total = max(declared - header_row, 0) if declared else None
        yield Table(header=map_header(header_cells), header_row=header_row, rows=records, total_rows=total)
    finally:
        workbook.close()


@contextmanager
def open_table(binary: IO[bytes], name: str, *, count_rows: bool = True) -> Iterator[Table]:
    """The header and a row iterator of a .csv or .xlsx file, read in bounded memory."""
    extension = Path(name).suffix.lower()
    # Django's File and UploadedFile proxy a real file object; csv and zipfile want that one.
    while not isinstance(binary, io.IOBase) and hasattr(binary, "file"):
        binary = binary.file
    if extension not in ALLOWED_EXTENSIONS:
        raise ImportFileError(
            _("Only .csv and .xlsx files can be imported (got “%(name)s”); save .xls files as .xlsx.")
            % {"name": name}
        )
    binary.seek(0)
    is_zip = binary.read(4) == b"PK\x03\x04"
    binary.seek(0)
    if extension == ".csv" and is_zip:
        raise ImportFileError(_("This .csv file is really an Excel workbook; rename it to .xlsx."))
    if extension == ".xlsx":
        if not is_zip:
            raise ImportFileError(_("The file is not a readable Excel .xlsx workbook."))
        with _open_xlsx(binary) as table:
            yield table
    else:
        with _open_csv(binary, count_rows=count_rows) as table:
            yield table


def inspect_file(binary: IO[bytes], name: str) -> Header:
    """Refuse a file up front (ImportFileError) unless its header has what an order needs."""
    with open_table(binary, name, count_rows=False) as table:
        check_header(table.header)
        return table.header


# --- Rows → order payloads ----------------------------------------------------------------


def _decimal_text(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _cell_text(value)
    text = _cell_text(value)
    return text.lstrip("¥￥").replace(",", "").strip() if text else text


def _datetime_text(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value if timezone.is_aware(value) else timezone.make_aware(value)
        return moment.isoformat()
    if isinstance(value, date):
        return timezone.make_aware(datetime.combine(value, time())).isoformat()
    return _DATE_SLASHES.sub(r"\1-\2-\3", _cell_text(value))


def _bool_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = _cell_text(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return text  # the serializer says it is not a valid boolean


def _choice(mapping: dict[str, str], value: Any) -> str:
    text = _cell_text(value)
    return mapping.get(text.lower(), text)


def _unit_price(amount: str, qty: str) -> str | None:
    """When a sheet has no unit price, the line is the whole amount."""
    try:
        return str((Decimal(amount) / Decimal(qty or "1")).quantize(Decimal("0.01")))
    except (InvalidOperation, ZeroDivisionError):
        return None


def row_to_payload(header: Header, cells: Sequence[Any]) -> dict[str, Any]:
    """One sheet row as the order JSON contract; empty cells are left out so that the
    serializer's defaults and its 'required' errors apply."""
    values: dict[str, Any] = {}
    for index, ours in header.fields.items():
        cell = cells[index] if index < len(cells) else None
        if ours in {"amount", "items.price"}:
            text: Any = _decimal_text(cell)
        elif ours in {"source_created_at", "source_updated_at", "customer.account_created_at"}:
            text = _datetime_text(cell)
        elif ours == "customer.is_vip":
            text = _bool_value(cell) if _cell_text(cell) else ""
        elif ours == "urgency":
            text = _choice(_URGENCY, cell)
        elif ours == "kind":
            text = _choice(_KIND, cell)
        else:
            text = _cell_text(cell)
        if text != "":
            values[ours] = text

    payload: dict[str, Any] = {}
    customer: dict[str, Any] = {}
    item: dict[str, Any] = {}
    for ours, value in values.items():
        if ours.startswith("customer."):
            customer[ours.split(".", 1)[1]] = value
        elif ours.startswith("items."):
            item[ours.split(".", 1)[1]] = value
        else:
            payload[ours] = value
    # Always an object: its fields' defaults only apply when one is given.
    payload["customer"] = customer
    if item:
        # Many sheets carry only the product name: it then stands for the SKU.
        item.setdefault("sku", item.get("name", ""))
        item.setdefault("qty", "1")
        if "price" not in item and "amount" in payload:
            price = _unit_price(payload["amount"], item["qty"])
            if price is not None:
                item["price"] = price
        payload["items"] = [item]
    return payload


def _flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as {"customer.phone": [...], "items.price": [...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            for name, messages in _flatten_errors(value, f"{prefix}.{key}" if prefix else str(key)).items():
                out.setdefault(name, []).extend(messages)
    elif isinstance(errors, list | tuple):
        for value in errors:
            if isinstance(value, dict | list | tuple):
                for name, messages in _flatten_errors(value, prefix).items():
                    out.setdefault(name, []).extend(messages)
            else:
                out.setdefault(prefix or "non_field_errors", []).append(str(value))
    elif errors:
        out[prefix or "non_field_errors"] = [str(errors)]
    return out


# A line's SKU is its product name when the sheet has no SKU column, and its price comes from
# the amount when there is no price column: an error in them is shown on that column.
_DERIVED_FROM = {"items.sku": "items.name", "items.price": "amount"}


def row_errors_for_people(header: Header, errors: dict) -> dict[str, list[str]]:
    """Errors keyed by the column name in the user's sheet where there is one."""
    labels = header.labels
    out: dict[str, list[str]] = {}
    for name, messages in _flatten_errors(errors).items():
        field_name = re.sub(r"\.\d+(?=\.)", "", name)  # "items.0.qty": a row holds one line
        label = labels.get(field_name) or labels.get(_DERIVED_FROM.get(field_name, ""), name)
        if name == "non_field_errors":
            label = _("row")
        said = out.setdefault(label, [])
        said.extend(m for m in messages if m not in said)
    return out


def _raw_row(header: Header, cells: Sequence[Any]) -> dict[str, str]:
    return {
        name: _cell_text(cells[index]) if index < len(cells) else ""
        for index, name in enumerate(header.names)
    }


def _storable(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL: a cell with one (the reason its row was
    rejected) shows it as U+FFFD in the report instead of failing the whole import."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


# --- Running a job ------------------------------------------------------------------------


@dataclass
class _Row:
    number: int
    payload: dict[str, Any]
    cells: Sequence[Any]


@dataclass
class ImportSummary:
    total_rows: int = 0
    created: int = 0
    updated: int = 0
    ignored: int = 0
    rejected: int = 0
    blank: int = 0
    ignored_columns: list[str] = field(default_factory=list)

    def as_counts(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "ignored": self.ignored,
            "rejected": self.rejected,
        }


ProgressCallback = Callable[[int, int | None], None]  # (rows processed so far, total or None)


def import_job_create(*, channel, original_name: str, source: str, uploaded_by=None, file=None) -> ImportJob:
    """A queued import; the caller starts it (a Celery task after commit, or the command)."""
    job = ImportJob(
        channel=channel, original_name=original_name[:255], source=source, uploaded_by=uploaded_by
    )
    if file is not None:
        job.file.save(Path(original_name).name[-100:] or "upload", file, save=False)
    job.save()
    return job


def import_job_claim(*, job_id: int) -> bool:
    """Move a queued job to running; False when someone else already has it (task retries,
    duplicate deliveries): the update is the lock, never check-then-act."""
    return bool(
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.RUNNING, started_at=timezone.now()
        )
    )


def import_job_run(
    *, job_id: int, binary: IO[bytes] | None = None, on_progress: ProgressCallback | None = None
) -> ImportJob | None:
    """Claim and run one import. Returns the finished job, or None when it was not queued.

    `binary` is the open file for command-line imports; uploads read the job's stored file.
    A file that cannot be read marks the job failed with a message; rows already stored stay.
    """
    if not import_job_claim(job_id=job_id):
        logger.info("import %s is not queued; skipping", job_id)
        return None
    job = ImportJob.objects.select_related("channel").get(pk=job_id)
    try:
        if binary is not None:
            summary = _run(job, binary, on_progress)
        else:
            with job.file.open("rb") as stored:
                summary = _run(job, stored, on_progress)
    except ImportFileError as exc:
        message = str(exc)
        done = ImportJob.objects.filter(pk=job_id).values_list("processed_rows", flat=True).first()
        if done:
            message += " " + _(
                "The first %(rows)d rows were imported and are kept; fix the file and import it "
                "again (rows already stored are ignored)."
            ) % {"rows": done}
        _finish(job, ImportJob.Status.FAILED, message)
    except Exception as exc:
        logger.exception("import %s failed", job_id)
        _finish(job, ImportJob.Status.FAILED, _("The import stopped: %(error)s") % {"error": exc})
        raise
    else:
        _finish(job, ImportJob.Status.DONE, _summary_message(summary))
    job.refresh_from_db()
    return job


def _finish(job: ImportJob, status: str, message: str) -> None:
    ImportJob.objects.filter(pk=job.pk).update(status=status, message=message, finished_at=timezone.now())


def _summary_message(summary: ImportSummary) -> str:
    parts = [
        _("%(created)d created, %(updated)d updated, %(ignored)d ignored, %(rejected)d rejected.")
        % summary.as_counts()
    ]
    if summary.blank:
        parts.append(_("%(blank)d blank rows skipped.") % {"blank": summary.blank})
    if summary.ignored_columns:
        parts.append(
            _("Columns not imported: %(columns)s.") % {"columns": ", ".join(summary.ignored_columns)}
        )
    return " ".join(parts)


def _run(job: ImportJob, binary: IO[bytes], on_progress: ProgressCallback | None) -> ImportSummary:
    summary = ImportSummary()
    with open_table(binary, job.original_name or getattr(binary, "name", "")) as table:
        check_header(table.header)
        summary.ignored_columns = table.header.ignored
        ImportJob.objects.filter(pk=job.pk).update(total_rows=table.total_rows)
        if on_progress:
            on_progress(0, table.total_rows)
        actor = import_actor(job)
        chunk: list[_Row] = []
        processed = 0
        uncounted = 0  # rows read (blank ones too) not yet added to processed_rows
        for number, cells in table.rows:
            uncounted += 1
            if not any(_cell_text(c) for c in cells):
                summary.blank += 1
                continue
            chunk.append(_Row(number=number, payload=row_to_payload(table.header, cells), cells=cells))
            if len(chunk) >= CHUNK_ROWS:
                _ingest_chunk(job, table.header, chunk, uncounted, summary, actor)
                processed += uncounted
                chunk, uncounted = [], 0
                if on_progress:
                    on_progress(processed, table.total_rows)
        if chunk or uncounted:
            _ingest_chunk(job, table.header, chunk, uncounted, summary, actor)
            processed += uncounted
        summary.total_rows = processed
        # The declared size may have counted trailing empty rows: the bar ends full.
        ImportJob.objects.filter(pk=job.pk).update(total_rows=processed)
        if on_progress:
            on_progress(processed, processed)
    return summary


def _date_undated_rows(job: ImportJob, chunk: list[_Row]) -> None:
    """A row without any source time cannot prove it is newer than what we hold: it takes
    the stored order's time (so it is ignored, and re-importing a file adds nothing) or,
    for a new order, the time the file was received."""
    undated = [
        r
        for r in chunk
        if "source_updated_at" not in r.payload
        and "source_created_at" not in r.payload
        and isinstance(r.payload.get("external_id"), str)
    ]
    if not undated:
        return
    ids = {normalize_external_id(r.payload["external_id"]) for r in undated}
    held = dict(
        Order.objects.filter(channel=job.channel, external_id__in=ids).values_list(
            "external_id", "source_updated_at"
        )
    )
    for row in undated:
        moment = held.get(normalize_external_id(row.payload["external_id"]), job.created_at)
        row.payload["source_updated_at"] = moment.isoformat()


def _ingest_chunk(
    job: ImportJob, header: Header, chunk: list[_Row], rows_read: int, summary: ImportSummary, actor
) -> None:
    counts = {"created": 0, "updated": 0, "ignored": 0, "rejected": 0}
    with transaction.atomic():
        failures: list[ImportRowError] = []
        if chunk:
            _date_undated_rows(job, chunk)
            results = services.order_ingest_batch(
                payloads=[r.payload for r in chunk], actor=actor, channel=job.channel
            )
            for result in results:
                counts[result.status] += 1
                if result.status == "rejected":
                    row = chunk[result.index]
                    failures.append(
                        ImportRowError(
                            job=job,
                            row_number=row.number,
                            external_id=_storable((result.external_id or "")[:200]),
                            errors=_storable(row_errors_for_people(header, result.errors)),
                            raw=_storable(_raw_row(header, row.cells)),
                        )
                    )
        ImportRowError.objects.bulk_create(failures)
        ImportJob.objects.filter(pk=job.pk).update(
            processed_rows=F("processed_rows") + rows_read,
            created_count=F("created_count") + counts["created"],
            updated_count=F("updated_count") + counts["updated"],
            ignored_count=F("ignored_count") + counts["ignored"],
            rejected_count=F("rejected_count") + counts["rejected"],
        )
    summary.created += counts["created"]
    summary.updated += counts["updated"]
    summary.ignored += counts["ignored"]
    summary.rejected += counts["rejected"]


# --- The per-row error report -------------------------------------------------------------


def _report_columns(job: ImportJob) -> list[str] | None:
    """The file's columns in their order (JSON objects in PostgreSQL do not keep it)."""
    if not job.file:
        return None
    try:
        with job.file.open("rb") as stored, open_table(stored, job.original_name, count_rows=False) as table:
            return table.header.names
    except (ImportFileError, OSError):
        return None


def error_report_rows(job: ImportJob, *, columns: list[str] | None = None) -> Iterator[list[Any]]:
    """Header then one line per rejected row: row number, external id, the errors, and the
    row's own cells — so the report can be fixed and imported again. Cells are not yet
    neutralised: write them with orders.csvsafe."""
    errors = job.row_errors.order_by("row_number", "pk")
    first = errors.first()
    if columns is None:
        columns = _report_columns(job) or (sorted(first.raw) if first else [])
    yield [_("Row"), _("External id"), _("Errors"), *columns]
    for error in errors.iterator(chunk_size=2000):
        described = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.errors.items())
        yield [error.row_number, error.external_id, described, *(error.raw.get(c, "") for c in columns)]
