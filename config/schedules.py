"""The one periodic schedule: beat in production (installed by `install_schedules`) and the
embedded scheduler run exactly this."""

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict] = {
    "poll-channels": {
        # Each channel has its own interval (default 10 minutes); this tick finds the due ones.
        "task": "orders.tasks.poll_due_channels_task",
        "schedule": 60.0,
    },
    "reconcile-channels": {
        "task": "orders.tasks.reconcile_channels_task",
        "schedule": crontab(hour=3, minute=30),
    },
}
