"""python manage.py import_orders FILE --channel CODE: import a CSV/xlsx file with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from tqdm import tqdm

from orders import csvsafe
from orders.imports import ImportFileError, error_report_rows, import_job_create, import_job_run, inspect_file
from orders.models import Channel, ImportJob


class Command(BaseCommand):
    help = "Import orders from a CSV (UTF-8, UTF-8 with BOM or GBK) or Excel .xlsx file into one channel."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to a .csv or .xlsx file; the first row is the header.")
        parser.add_argument("--channel", required=True, help="Code of the channel every row belongs to.")
        parser.add_argument(
            "--errors",
            help="Where to write the per-row error report (default: FILE.errors.csv, only when rows fail).",
        )
        parser.add_argument("--no-progress", action="store_true", help="Do not show the progress bar.")

    def handle(self, *args, **options):
        path = Path(options["file"])
        channel = Channel.objects.filter(code=options["channel"]).first()
        if channel is None:
            known = ", ".join(Channel.objects.values_list("code", flat=True)) or _("none")
            raise CommandError(
                _("Unknown channel “%(code)s”. Known channels: %(known)s.")
                % {"code": options["channel"], "known": known}
            )
        if not channel.is_active:
            raise CommandError(_("Channel “%(code)s” is switched off.") % {"code": channel.code})
        try:
            binary = path.open("rb")
        except OSError as exc:
            raise CommandError(
                _("Cannot read %(path)s: %(error)s") % {"path": path, "error": exc.strerror or exc}
            ) from exc

        with binary:
            try:
                header = inspect_file(binary, path.name)
            except ImportFileError as exc:
                raise CommandError(
                    _("%(path)s was not imported: %(error)s") % {"path": path, "error": exc}
                ) from exc
            job = import_job_create(channel=channel, original_name=path.name, source="command")
            bar = tqdm(
                total=None,
                unit=_("rows"),
                desc=path.name,
                file=sys.stderr,
                disable=True if options["no_progress"] else None,
            )

            def progress(processed: int, total: int | None) -> None:
                if total is not None and bar.total != total:
                    bar.total = total
                    bar.refresh()
                bar.update(processed - bar.n)

            with bar:
                job = import_job_run(job_id=job.pk, binary=binary, on_progress=progress)

        self.stdout.write(
            _("Import %(id)d of %(name)s into %(channel)s: %(message)s")
            % {"id": job.pk, "name": path.name, "channel": channel.code, "message": job.message}
        )
        if job.rejected_count:
            report = (
                Path(options["errors"]) if options["errors"] else path.with_name(path.name + ".errors.csv")
            )
            with report.open("w", encoding="utf-8", newline="") as out:
                csvsafe.write_csv(out, error_report_rows(job, columns=header.names))
            self.stdout.write(
                _("%(count)d rejected rows; the error report is in %(report)s")
                % {"count": job.rejected_count, "report": report}
            )
        if job.status != ImportJob.Status.DONE:
            raise CommandError(_("The import did not finish: %(message)s") % {"message": job.message})
