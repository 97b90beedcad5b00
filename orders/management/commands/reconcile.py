"""python manage.py reconcile [--channel CODE] [--hours 48]: re-read polling channels' recent
orders, repair what is missing or stale, and print what was fixed."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from orders.polling import polling_channels_chosen, reconcile_channel


class Command(BaseCommand):
    help = "Re-read the last N hours of polling channels and repair missing or stale orders."

    def add_arguments(self, parser):
        parser.add_argument(
            "--channel", help="Code of the one channel to reconcile (default: all polling ones)."
        )
        parser.add_argument("--hours", type=int, default=48, help="How far back to re-read (default 48).")

    def handle(self, *args, **options):
        hours = options["hours"]
        if not 1 <= hours <= 24 * 31:
            raise CommandError(_("--hours must be between 1 and 744 (31 days)."))
        try:
            channels = polling_channels_chosen(options["channel"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not channels:
            self.stdout.write(_("No active channel has a poll URL."))
            return
        failed = 0
        for channel in channels:
            run = reconcile_channel(channel_id=channel.pk, hours=hours)
            self.stdout.write(
                _(
                    "%(code)s %(start)s → %(end)s: fetched %(fetched)s, created %(created)s (missing), "
                    "updated %(updated)s (stale), unchanged %(unchanged)s, rejected %(rejected)s"
                )
                % {
                    "code": channel.code,
                    "start": run.window_start.isoformat(timespec="seconds"),
                    "end": run.window_end.isoformat(timespec="seconds"),
                    "fetched": run.fetched,
                    "created": run.created,
                    "updated": run.updated,
                    "unchanged": run.unchanged,
                    "rejected": run.rejected,
                }
            )
            if run.error:
                failed += 1
                self.stdout.write(_("  error: %(error)s") % {"error": run.error})
            self.stdout.write(json.dumps(run.report, ensure_ascii=False, indent=2))
        if failed:
            raise CommandError(
                _("%(failed)s of %(total)s reconciliations stopped early; see the errors above.")
                % {"failed": failed, "total": len(channels)}
            )
