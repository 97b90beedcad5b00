"""python manage.py poll_channels [--channel CODE]: poll channels by hand, due or not."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from orders.polling import PollStatus, channel_poll, polling_channels_chosen


class Command(BaseCommand):
    help = "Poll polling channels now (all active ones with a poll URL, or one), whether due or not."

    def add_arguments(self, parser):
        parser.add_argument("--channel", help="Code of the one channel to poll.")

    def handle(self, *args, **options):
        try:
            channels = polling_channels_chosen(options["channel"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not channels:
            self.stdout.write(_("No active channel has a poll URL."))
            return
        failed = 0
        for channel in channels:
            run = channel_poll(channel_id=channel.pk, force=True)
            self.stdout.write(run.summary())
            for rejection in run.rejections:
                self.stdout.write(f"  rejected {rejection['external_id'] or '?'}: {rejection['errors']}")
            if run.status == PollStatus.FAILED:
                failed += 1
        if failed:
            raise CommandError(
                _("%(failed)s of %(total)s polls failed; the error is on each channel.")
                % {"failed": failed, "total": len(channels)}
            )
