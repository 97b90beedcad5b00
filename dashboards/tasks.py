"""Celery tasks for dashboards: thin wrappers over the notification sender."""

from celery import shared_task


@shared_task(ignore_result=True)
def send_notifications_task(ids: list[int]) -> dict[str, int]:
    """Send new notifications right after the transaction that wrote them committed. Rows
    already claimed, sent or not yet due are left alone, so a repeated task is harmless."""
    from dashboards.notify import CLAIM_BATCH, notifications_send

    totals = {"sent": 0, "retrying": 0, "failed": 0, "skipped": 0}
    for start in range(0, len(ids), CLAIM_BATCH):
        report = notifications_send(ids=ids[start : start + CLAIM_BATCH])
        for key in totals:
            totals[key] += getattr(report, key)
    return totals


@shared_task(ignore_result=True)
def send_due_notifications_task() -> dict[str, int]:
    """Every 30 s: send what is due — retries after their backoff, and anything whose task
    was lost (broker down, worker killed)."""
    from dashboards.notify import notifications_send_due

    report = notifications_send_due()
    return {"sent": report.sent, "retrying": report.retrying, "failed": report.failed}


@shared_task(ignore_result=True)
def refresh_report_rollups_task(days: int = 2) -> dict[str, object]:
    """Every few minutes: rewrite today's and yesterday's report rollups; nightly, the last
    few days (late acceptances, completions and resolutions land on their own day)."""
    from dashboards.reports.services import reports_rollup_recent

    result = reports_rollup_recent(days=days)
    return {"first": str(result.first_day), "last": str(result.last_day), "seconds": round(result.seconds, 3)}


@shared_task(ignore_result=True)
def take_backlog_snapshot_task() -> int:
    """Hourly: open orders per stage and province, for the backlog report."""
    from dashboards.reports.services import backlog_snapshot_take

    return backlog_snapshot_take()


@shared_task(ignore_result=True)
def send_weekly_summary_task() -> int:
    """Monday morning: last week's bottleneck summary to every supervisor, once each."""
    from dashboards.reports.weekly import weekly_summary_send

    return weekly_summary_send()
