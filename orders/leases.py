"""Claiming due rows of an outbox — notifications, outbound webhook deliveries — for one
worker: locked with SKIP LOCKED (another worker's claim in flight is passed over) and leased
by moving `next_attempt_at` past the time the sends can take, so nobody else picks them until
this worker has recorded its attempts. A worker that dies mid-batch delays its rows until the
lease runs out; it never loses them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction


def claim_due(
    model, *, now: datetime, lease: datetime, ids: list[int] | None, limit: int, related: tuple[str, ...] = ()
) -> list:
    """Up to `limit` pending rows of `model` due by `now` (of `ids` only, when given), oldest
    due first, leased until `lease`. `model` has `status` (with Status.PENDING) and
    `next_attempt_at`."""
    with transaction.atomic():
        due = model.objects.select_for_update(skip_locked=True).filter(
            status=model.Status.PENDING, next_attempt_at__lte=now
        )
        if ids is not None:
            due = due.filter(pk__in=ids)
        claimed = list(due.order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])
        if claimed:
            model.objects.filter(pk__in=claimed).update(next_attempt_at=lease)
    return list(model.objects.select_related(*related).filter(pk__in=claimed).order_by("pk"))


def sweep_due(send_batch: Callable[[], object], total, *, batch: int, max_batches: int):
    """A beat sweep: claim and send batch after batch (`send_batch()` returns a report with
    `claimed` and is added to `total`) until one comes back short or `max_batches` ran; the
    next tick carries on."""
    for _batch in range(max_batches):
        report = send_batch()
        total.add(report)
        if report.claimed < batch:
            break
    return total
