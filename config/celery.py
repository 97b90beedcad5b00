"""The Celery application; its periodic schedule is declared once in config.schedules."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("paidan")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    """The embedded scheduler reads the schedule from here. django-celery-beat's database
    scheduler reads the rows `install_schedules` wrote: given `beat_schedule` as well, it would
    rewrite those rows at every start, dropping each entry's expiry (it knows `expire_seconds`,
    not `expires`) and any change made in the admin."""
    from django.conf import settings

    from config.schedules import BEAT_SCHEDULE

    if not settings.CELERY_BEAT_SCHEDULER.startswith("django_celery_beat."):
        sender.conf.beat_schedule = BEAT_SCHEDULE
