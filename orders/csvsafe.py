"""CSV written for people to open in Excel: formula injection neutralised, streamed line by line.

Pure Python, no Django: every CSV export (order list, import error reports) goes through here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# OWASP "CSV Injection": a cell starting with one of these is read as a formula by spreadsheets.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Also neutralised, as a precaution rather than a known exploit: a trigger behind leading
# whitespace (importers that trim spaces, e.g. LibreOffice's "Trim spaces"), a line feed or NUL
# first (ASVS 5 lists NUL), and the full-width forms a Chinese input method types (＝ ＋ － ＠).
_AFTER_WHITESPACE = (*FORMULA_TRIGGERS, "＝", "＋", "－", "＠")
_ALSO_FIRST = ("\n", "\0")

# Excel only recognises UTF-8 (and shows Chinese correctly) when the file starts with a BOM.
UTF8_BOM = "\ufeff"


def neutralize_cell(value: Any) -> str:
    """The cell as text, with a leading apostrophe when a spreadsheet would run it as a formula.

    Real numbers are written as they are (a negative amount is data, not a formula); any text
    that starts with = + - @ tab or carriage return is prefixed with ' as OWASP recommends, and
    so is text like "-5" (text stays text: a typed cell echoed in an error report is shown as
    typed, never computed).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    if text.startswith(_ALSO_FIRST) or text.lstrip().startswith(_AFTER_WHITESPACE):
        return "'" + text
    return text


class _Line:
    """A write-only file for csv.writer that hands back what was written (Django's Echo)."""

    def write(self, value: str) -> str:
        return value


def iter_csv(rows: Iterable[Iterable[Any]], *, bom: bool = True) -> Iterator[str]:
    """CSV text one line at a time, every cell neutralised: for StreamingHttpResponse."""
    writer = csv.writer(_Line())
    if bom:
        yield UTF8_BOM
    for row in rows:
        yield writer.writerow([neutralize_cell(cell) for cell in row])


def write_csv(out: io.TextIOBase, rows: Iterable[Iterable[Any]], *, bom: bool = True) -> int:
    """Write neutralised CSV to an open text file (newline=""); returns the rows written."""
    written = 0
    for line in iter_csv(rows, bom=bom):
        out.write(line)
        if line != UTF8_BOM:
            written += 1
    return written
