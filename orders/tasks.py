"""Celery tasks for orders: thin wrappers that call services."""

from celery import shared_task


@shared_task(ignore_result=True)
def import_orders_task(job_id: int) -> None:
    """Run one queued CSV/Excel import; a job that is not queued (already run) is skipped."""
    from orders.imports import import_job_run

    import_job_run(job_id=job_id)


@shared_task(ignore_result=True)
def poll_due_channels_task() -> int:
    """Every minute: claim the polling channels that are due (the claim is a lease on
    `poll_next_at`, so a slow queue never polls one channel twice) and poll each."""
    from functools import partial

    from django.db import transaction

    from orders.polling import channel_claim_due

    with transaction.atomic():
        claims = channel_claim_due()
        for channel_id, lease in claims:
            transaction.on_commit(partial(poll_channel_task.delay, channel_id, lease.isoformat()))
    return len(claims)


@shared_task(ignore_result=True)
def poll_channel_task(channel_id: int, claim: str | None = None) -> str:
    """Poll one channel; with `claim` only while that lease is still ours, else only if due.
    A lost task only delays the poll: the lease expires and the channel is due again."""
    from datetime import datetime

    from orders.polling import channel_poll

    lease = datetime.fromisoformat(claim) if claim else None
    return channel_poll(channel_id=channel_id, claim=lease).status


@shared_task(ignore_result=True)
def reconcile_channels_task(hours: int = 48) -> int:
    """Daily: re-read the last `hours` of every polling channel, one task per channel."""
    from orders.polling import polling_channels

    ids = list(polling_channels().values_list("pk", flat=True))
    for channel_id in ids:
        reconcile_channel_task.delay(channel_id, hours)
    return len(ids)


@shared_task(ignore_result=True)
def reconcile_channel_task(channel_id: int, hours: int = 48) -> int:
    """Reconcile one channel; the run and what it repaired are a ReconciliationRun row."""
    from orders.polling import reconcile_channel

    return reconcile_channel(channel_id=channel_id, hours=hours).pk


@shared_task(ignore_result=True)
def escalate_overdue_task(max_passes: int = 25) -> int:
    """Every minute: climb the overdue ladder for the orders whose due time has passed, in
    passes of `ESCALATION_BATCH` orders (each its own transaction) until none is left or
    `max_passes` ran; the next minute picks up what remains. Returns the orders escalated."""
    from orders.escalation import ESCALATION_BATCH, sla_scan

    escalated = 0
    for _pass in range(max_passes):
        report = sla_scan()
        escalated += report.escalated
        if report.selected < ESCALATION_BATCH:
            break
    return escalated


@shared_task(ignore_result=True)
def adjust_sla_history_task() -> int:
    """Nightly: move each SLA policy's history factor towards the p75 of real stays."""
    from orders.sla_policies import sla_history_adjust

    return sum(a.factor is not None for a in sla_history_adjust())


@shared_task(ignore_result=True)
def deliver_outbound_task(ids: list[int]) -> int:
    """Send new outbound webhook deliveries right after the events' transaction committed;
    rows already claimed, delivered or not yet due are left alone."""
    from orders.outbound import CLAIM_BATCH, outbound_deliver

    delivered = 0
    for start in range(0, len(ids), CLAIM_BATCH):
        delivered += outbound_deliver(ids=ids[start : start + CLAIM_BATCH]).delivered
    return delivered


@shared_task(ignore_result=True)
def deliver_due_outbound_task() -> int:
    """Every minute: retries whose backoff ran out, and deliveries whose task was lost."""
    from orders.outbound import outbound_deliver_due

    return outbound_deliver_due().delivered
