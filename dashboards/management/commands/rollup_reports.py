"""`manage.py rollup_reports --days N`: rewrite the report rollups of the last N local days
(today included): the backfill after an upgrade or a data repair. The beat refreshes today
and yesterday every 5 minutes and the last 7 days nightly."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from dashboards.reports.services import reports_rollup

CHUNK_DAYS = 31  # one transaction a month: a year's backfill never holds one long lock


class Command(BaseCommand):
    help = "Rewrite the report rollups of the last N days (today included)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=2, help="How many days back, today included.")

    def handle(self, *args: object, **options: object) -> None:
        days = int(options["days"])
        if not 1 <= days <= 3660:
            raise CommandError("--days must be from 1 to 3660.")
        today = timezone.localdate()
        first = today - timedelta(days=days - 1)
        total = 0.0
        while first <= today:
            last = min(today, first + timedelta(days=CHUNK_DAYS - 1))
            result = reports_rollup(first=first, last=last)
            total += result.seconds
            self.stdout.write(f"{first} … {last}: {result.seconds:.1f} s")
            first = last + timedelta(days=1)
        self.stdout.write(f"{days} days rolled up in {total:.1f} s")
