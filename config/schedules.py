"""The one periodic schedule: beat in production (installed by `install_schedules`) and the
embedded scheduler run exactly this."""

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict] = {
    "sweep-dispatch-pool": {
        # Events trigger matching at once; this repairs what a lost task or message missed
        # and expires offers whose countdown ran out.
        "task": "dispatch.tasks.sweep_pool_task",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
    "refresh-agent-profiles": {
        # Profiles update on every close and rating; the nightly run slides the 7/30-day windows.
        "task": "dispatch.tasks.refresh_agent_profiles_task",
        "schedule": crontab(hour=2, minute=15),
    },
    "learn-rule-weights": {
        # Reviewers' dispositions of the day re-weight the risk rules (Beta prior, bounded).
        "task": "riskcontrol.tasks.learn_rule_weights_task",
        "schedule": crontab(hour=2, minute=45),
    },
    "poll-channels": {
        # Each channel has its own interval (default 10 minutes); this tick finds the due ones.
        "task": "orders.tasks.poll_due_channels_task",
        "schedule": 60.0,
    },
    "reconcile-channels": {
        "task": "orders.tasks.reconcile_channels_task",
        "schedule": crontab(hour=3, minute=30),
    },
    "escalate-overdue-orders": {
        # The overdue ladder (L1 owner, L2 backup, L3 supervisor): one pass reads only the
        # overdue orders, through the partial index on due_at.
        "task": "orders.tasks.escalate_overdue_task",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "adjust-sla-by-history": {
        # Stretch or shrink each SLA policy's allowance towards the last 30 days' p75 stay.
        "task": "orders.tasks.adjust_sla_history_task",
        "schedule": crontab(hour=2, minute=30),
    },
    "send-due-notifications": {
        # New messages go out right after commit; this sends retries whose backoff ran out
        # and anything whose task was lost.
        "task": "dashboards.tasks.send_due_notifications_task",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    "deliver-outbound-webhooks": {
        # The same for outbound webhooks (ERP, WMS, logistics): retries over hours.
        "task": "orders.tasks.deliver_due_outbound_task",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "recover-simulations": {
        # A simulation whose worker died stays "running" and a lost task leaves one queued:
        # this sends them again (a run is tried three times at most).
        "task": "dispatch.tasks.recover_simulations_task",
        "schedule": 300.0,
        "options": {"expires": 300.0},
    },
    "refresh-report-rollups": {
        # The report pages read daily rollups; today's and yesterday's are rewritten often.
        "task": "dashboards.tasks.refresh_report_rollups_task",
        "schedule": 300.0,
        "options": {"expires": 300.0},
    },
    "refresh-report-rollups-nightly": {
        # Late facts (completions, resolutions) of the last days, and the days a beat missed.
        "task": "dashboards.tasks.refresh_report_rollups_task",
        "schedule": crontab(hour=1, minute=40),
        "kwargs": {"days": 7},
    },
    "take-backlog-snapshot": {
        "task": "dashboards.tasks.take_backlog_snapshot_task",
        "schedule": crontab(minute=0),
    },
    "send-weekly-summary": {
        # Monday 08:30 (TIME_ZONE): last week's bottleneck summary to the supervisors.
        "task": "dashboards.tasks.send_weekly_summary_task",
        "schedule": crontab(day_of_week=1, hour=8, minute=30),
    },
}
