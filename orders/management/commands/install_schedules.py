"""python manage.py install_schedules: write config.schedules.BEAT_SCHEDULE into
django-celery-beat's tables, idempotently. The code is the truth; the rows mirror it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab, schedule
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from config import schedules

# Marks the rows this command owns, so an entry removed from the code is removed here too
# while tasks added by hand in the admin are left alone.
DESCRIPTION = "Installed from config/schedules.py by `manage.py install_schedules`; edit it there."


class Command(BaseCommand):
    help = "Install the periodic schedule (config/schedules.py) into django-celery-beat's database."

    def handle(self, *args, **options):
        with transaction.atomic():
            for line in install_schedules(schedules.BEAT_SCHEDULE):
                self.stdout.write(line)


def install_schedules(beat_schedule: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, entry in beat_schedule.items():
        values = {
            "task": entry["task"],
            "interval": None,
            "crontab": None,
            "args": json.dumps(entry.get("args", [])),
            "kwargs": json.dumps(entry.get("kwargs", {})),
            "queue": entry.get("options", {}).get("queue"),
            "expire_seconds": entry.get("options", {}).get("expires"),
            "enabled": True,
            "description": DESCRIPTION,
        }
        values.update(_schedule_row(name, entry["schedule"]))
        task = PeriodicTask.objects.filter(name=name).first()
        if task is None:
            PeriodicTask.objects.create(name=name, **values)
            lines.append(f"created  {name}: {values['interval'] or values['crontab']}")
            continue
        changed = [key for key, value in values.items() if getattr(task, key) != value]
        if not changed:
            lines.append(f"unchanged {name}")
            continue
        for key in changed:
            setattr(task, key, values[key])
        task.save()  # also tells a running beat to reload (PeriodicTasks.changed)
        lines.append(f"updated  {name}: {', '.join(changed)}")
    for task in PeriodicTask.objects.filter(description=DESCRIPTION).exclude(name__in=list(beat_schedule)):
        task.delete()
        lines.append(f"removed  {task.name} (no longer in config/schedules.py)")
    return lines


def _schedule_row(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int | float | timedelta):
        seconds = value.total_seconds() if isinstance(value, timedelta) else value
        return {"interval": _interval(name, seconds)}
    if isinstance(value, crontab):
        return {"crontab": _crontab(value)}
    if isinstance(value, schedule):
        return {"interval": _interval(name, value.run_every.total_seconds())}
    raise CommandError(f"{name}: cannot install a schedule of type {type(value).__name__}.")


def _interval(name: str, seconds: float) -> IntervalSchedule:
    if seconds < 1 or seconds != int(seconds):
        raise CommandError(f"{name}: an interval must be a whole number of seconds ≥ 1, not {seconds}.")
    row = (
        IntervalSchedule.objects.filter(every=int(seconds), period=IntervalSchedule.SECONDS)
        .order_by("pk")
        .first()
    )
    return row or IntervalSchedule.objects.create(every=int(seconds), period=IntervalSchedule.SECONDS)


def _crontab(value: crontab) -> CrontabSchedule:
    # In the project's zone, so "03:30" means 03:30 where the operators are, not UTC.
    spec = {
        "minute": str(value._orig_minute),
        "hour": str(value._orig_hour),
        "day_of_week": str(value._orig_day_of_week),
        "day_of_month": str(value._orig_day_of_month),
        "month_of_year": str(value._orig_month_of_year),
    }
    zone = ZoneInfo(settings.TIME_ZONE)
    for row in CrontabSchedule.objects.filter(**spec).order_by("pk"):
        if str(row.timezone) == settings.TIME_ZONE:
            return row
    return CrontabSchedule.objects.create(timezone=zone, **spec)
