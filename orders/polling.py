"""Polling connectors' writes: claiming a channel, storing its pages through the one ingest path,
advancing its cursor, recording failures with backoff, and the daily reconciliation.

Never skipping an order rests on one rule: a page's orders are committed together with the
cursor that follows them, so after any crash the next run re-reads from the last stored cursor
(re-reads are harmless: ingest is idempotent and timestamp-wins).

Two runs never advance one channel at once: a run claims the channel under
`select_for_update(skip_locked=True)` and takes a lease, which is `poll_next_at` pushed past
the run's worst-case length. Each page is stored only while the run still holds its lease, so
a run whose lease was taken over (an expired lease, a hand-started run) stops at its next page.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from orders import services
from orders.actors import system_actor
from orders.connectors import Page, PollError, fetch_page
from orders.mapping import apply_mapping
from orders.models import Channel, ReconciliationRun

logger = logging.getLogger(__name__)

MAX_PAGES_PER_RUN = 50  # a longer backlog continues on the next tick
MAX_RECONCILE_PAGES = 2000
# Longer than the worst run (50 pages at a 10 s timeout each); renewed on every page.
POLL_LEASE = timedelta(minutes=15)
MAX_REPORTED_REJECTS = 20  # in the channel's last-error text; the log has every one
MAX_REPORT_ITEMS = 1000  # per list in a reconciliation report


class PollStatus:
    OK = "ok"  # read up to the source's last page
    MORE = "more"  # stopped at the page limit; due again at once
    FAILED = "failed"  # the source failed; error and backoff recorded
    BUSY = "busy"  # another worker holds the channel right now
    NOT_DUE = "not_due"  # scheduled later, or another run holds the lease
    SUPERSEDED = "superseded"  # our lease was taken over; the other run carries on
    NOT_POLLED = "not_polled"  # switched off or no poll URL


@dataclass
class PollRun:
    channel_id: int
    status: str
    channel_code: str = ""
    pages: int = 0
    fetched: int = 0
    created: int = 0
    updated: int = 0
    ignored: int = 0
    rejected: int = 0
    cursor: str = ""
    error: str = ""
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        counts = (
            f"pages={self.pages} fetched={self.fetched} created={self.created} updated={self.updated} "
            f"ignored={self.ignored} rejected={self.rejected}"
        )
        tail = f" error: {self.error}" if self.error else ""
        return f"{self.channel_code or self.channel_id}: {self.status} {counts} cursor={self.cursor!r}{tail}"


def lock_channel_for_poll(channel_id: int) -> Channel | None:
    """The channel row, locked; None when another worker holds it (we never wait for it).

    NO KEY UPDATE: webhook and API inserts of this channel's orders take a KEY SHARE lock on
    the row through the foreign key, and must neither wait for us nor make us skip."""
    return Channel.objects.select_for_update(skip_locked=True, no_key=True).filter(pk=channel_id).first()


def _lock_channel(channel_id: int) -> Channel:
    return Channel.objects.select_for_update(no_key=True).get(pk=channel_id)


def polling_channels():
    return Channel.objects.filter(is_active=True).exclude(poll_url="")


def polling_channel_by_code(code: str) -> Channel:
    """The active polling channel `code`, or ValueError saying why it cannot be polled."""
    channel = Channel.objects.filter(code=code).first()
    if channel is None:
        known = ", ".join(polling_channels().values_list("code", flat=True)) or _("none")
        raise ValueError(
            _("Unknown channel “%(code)s”. Polling channels: %(known)s.") % {"code": code, "known": known}
        )
    if not channel.is_active:
        raise ValueError(_("Channel “%(code)s” is switched off.") % {"code": code})
    if not channel.poll_url:
        raise ValueError(_("Channel “%(code)s” has no poll URL, so it is not polled.") % {"code": code})
    return channel


def polling_channels_chosen(code: str | None) -> list[Channel]:
    """What a command was asked for: the channel `code`, or every polling channel.
    ValueError saying why when `code` cannot be polled."""
    if code:
        return [polling_channel_by_code(code)]
    return list(polling_channels())


def channel_claim_due(*, now: datetime | None = None, limit: int = 200) -> list[tuple[int, datetime]]:
    """Claim every due polling channel by pushing its `poll_next_at` to a lease; rows another
    worker holds are skipped. Returns (channel id, lease) to hand to `channel_poll(claim=…)`."""
    now = now or timezone.now()
    lease = now + POLL_LEASE
    with transaction.atomic():
        ids = list(
            polling_channels()
            .filter(Q(poll_next_at__isnull=True) | Q(poll_next_at__lte=now))
            .select_for_update(skip_locked=True, no_key=True)
            .order_by(F("poll_next_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:limit]
        )
        Channel.objects.filter(pk__in=ids).update(poll_next_at=lease)
    return [(channel_id, lease) for channel_id in ids]


def channel_poll(
    *,
    channel_id: int,
    force: bool = False,
    claim: datetime | None = None,
    max_pages: int = MAX_PAGES_PER_RUN,
) -> PollRun:
    """Read a channel's new orders page by page from its cursor and store them.

    `claim` is the lease from `channel_claim_due` (the beat path); without one the channel is
    polled only when due, unless `force` (a run started by hand). Never raises for a source's
    failure: it is recorded on the channel with a backoff."""
    now = timezone.now()
    with transaction.atomic():
        if claim is not None:
            # The claim already makes us the only beat-path run: wait out a brief lock (another
            # tick, an admin save) rather than skip and leave the channel leased for nothing.
            channel = Channel.objects.select_for_update(no_key=True).filter(pk=channel_id).first()
        else:
            channel = lock_channel_for_poll(channel_id)
        if channel is None:
            if not Channel.objects.filter(pk=channel_id).exists():
                raise Channel.DoesNotExist(f"Channel {channel_id} does not exist.")
            return PollRun(channel_id=channel_id, status=PollStatus.BUSY)
        run = PollRun(channel_id=channel_id, channel_code=channel.code, status=PollStatus.OK)
        run.cursor = channel.poll_cursor
        if not channel.is_active or not channel.poll_url:
            run.status = PollStatus.NOT_POLLED
            return run
        if claim is not None and channel.poll_next_at != claim:
            run.status = PollStatus.SUPERSEDED
            return run
        if claim is None and not force and channel.poll_next_at is not None and channel.poll_next_at > now:
            run.status = PollStatus.NOT_DUE
            return run
        lease = now + POLL_LEASE
        channel.poll_next_at = lease
        channel.save(update_fields=["poll_next_at"])

    actor = system_actor(f"poller:{channel.code}")
    cursor = channel.poll_cursor or None
    page_number = 0
    try:
        for page_number in range(1, max_pages + 1):
            try:
                page = fetch_page(channel, cursor)
            except PollError as exc:
                run.status = PollStatus.FAILED
                run.error = _page_error(page_number, cursor, exc)
                break
            # A source answering with the cursor it was asked for would loop forever: the end.
            next_cursor = page.next_cursor if page.next_cursor != cursor else None
            with transaction.atomic():
                channel = _lock_channel(channel_id)
                if channel.poll_next_at != lease or (channel.poll_cursor or None) != cursor:
                    run.status = PollStatus.SUPERSEDED
                    logger.info(
                        "poll of %s superseded by another run before page %s", channel.code, page_number
                    )
                    return run
                # The page's orders and the cursor after them commit together, or neither does.
                results = _ingest_page(channel, page, actor=actor)
                lease = timezone.now() + POLL_LEASE
                channel.poll_next_at = lease
                if next_cursor:
                    channel.poll_cursor = next_cursor
                channel.save(update_fields=["poll_cursor", "poll_next_at"])
            run.pages += 1
            _tally(run, page, results, channel=channel)
            if next_cursor is None:
                break
            cursor = next_cursor
            run.cursor = cursor
        else:
            run.status = PollStatus.MORE
    except Exception as exc:
        # A bug or a lost database: nothing of this page was stored. Say so on the channel
        # (best effort) and let the worker log the traceback.
        run.status = PollStatus.FAILED
        run.error = _page_error(page_number, cursor, f"{type(exc).__name__}: {exc}")
        try:
            _finish_run(run, lease=lease)
        except Exception:
            logger.exception("poller:%s could not record its failure", channel.code)
        raise
    _finish_run(run, lease=lease)
    return run


def _page_error(page_number: int, cursor: str | None, error: object) -> str:
    return _("Page %(page)s (cursor %(cursor)s): %(error)s") % {
        "page": page_number,
        "cursor": repr(cursor or ""),
        "error": error,
    }


def _ingest_page(channel: Channel, page: Page, *, actor) -> list[services.IngestResult]:
    payloads = [apply_mapping(channel.field_mapping, raw) for raw in page.orders]
    return services.order_ingest_batch(payloads=payloads, actor=actor, channel=channel)


def _tally(run: PollRun, page: Page, results: list[services.IngestResult], *, channel: Channel) -> None:
    run.fetched += len(page.orders)
    for result in results:
        if result.status == "created":
            run.created += 1
        elif result.status == "updated":
            run.updated += 1
        elif result.status == "ignored":
            run.ignored += 1
        else:
            run.rejected += 1
            run.rejections.append({"external_id": result.external_id or "", "errors": result.errors})
            logger.warning(
                "poller:%s rejected order %s as invalid (the cursor moves on; reconciliation "
                "reports it again while it stays in its window): %s",
                channel.code,
                _identify(result, page),
                result.errors,
            )


def _identify(result: services.IngestResult, page: Page) -> str:
    """The external id, or for an order without one a short excerpt of what the source sent."""
    if result.external_id:
        return result.external_id
    raw = json.dumps(page.orders[result.index], ensure_ascii=False, default=str)
    return f"without an external id: {raw[:300]}"


def _finish_run(run: PollRun, *, lease: datetime) -> None:
    """Record the outcome on the channel: schedule, failures and the last error."""
    now = timezone.now()
    with transaction.atomic():
        channel = _lock_channel(run.channel_id)
        if channel.poll_next_at != lease:
            run.status = PollStatus.SUPERSEDED
            return
        run.cursor = channel.poll_cursor
        interval = timedelta(minutes=max(1, channel.poll_interval_minutes))
        fields = [
            "poll_next_at",
            "poll_failures",
            "poll_last_success_at",
            "poll_last_error",
            "poll_last_error_at",
        ]
        if run.status == PollStatus.FAILED:
            channel.poll_failures += 1
            # 1, 2, 4 … minutes, never longer than the channel's own interval.
            backoff = timedelta(minutes=2 ** min(channel.poll_failures - 1, 20))
            channel.poll_next_at = now + min(backoff, interval)
            channel.poll_last_error = _error_text(run)
            channel.poll_last_error_at = now
            logger.warning(
                "poller:%s failed (%s in a row): %s", channel.code, channel.poll_failures, run.error
            )
        else:
            channel.poll_failures = 0
            channel.poll_last_success_at = now
            channel.poll_next_at = now if run.status == PollStatus.MORE else now + interval
            if run.rejected:
                channel.poll_last_error = _error_text(run)
                channel.poll_last_error_at = now
        channel.save(update_fields=fields)


def _error_text(run: PollRun) -> str:
    parts = [run.error] if run.error else []
    if run.rejected:
        shown = "; ".join(
            f"{r['external_id'] or '?'} ({_flatten_errors(r['errors'])})"
            for r in run.rejections[:MAX_REPORTED_REJECTS]
        )
        more = len(run.rejections) - MAX_REPORTED_REJECTS
        parts.append(
            _("%(count)s order(s) rejected as invalid and not stored; the cursor moved past them: %(list)s")
            % {"count": run.rejected, "list": shown + (f"; … {more} more in the log" if more > 0 else "")}
        )
    return "\n".join(parts)


def _flatten_errors(errors: Any, prefix: str = "") -> str:
    if isinstance(errors, dict):
        return ", ".join(_flatten_errors(v, f"{prefix}{k}.") for k, v in errors.items() if v)
    if isinstance(errors, list):
        if all(isinstance(e, str) for e in errors):
            return f"{prefix.rstrip('.')}: {' '.join(errors)}" if prefix else " ".join(errors)
        return ", ".join(_flatten_errors(e, f"{prefix}{i}.") for i, e in enumerate(errors) if e)
    return f"{prefix.rstrip('.')}: {errors}"


# --- Reconciliation ---------------------------------------------------------------------


def window_start_cursor(channel: Channel, start: datetime) -> str:
    """The cursor that asks the source for everything updated since `start`.

    The poller's cursor is opaque, but reconciliation assumes the source also accepts an
    ISO 8601 timestamp in the same cursor parameter (UTC, e.g. 2026-11-20T03:30:00+00:00)."""
    return start.astimezone(UTC).isoformat(timespec="seconds")


def reconcile_channel(*, channel_id: int, hours: int = 48) -> ReconciliationRun:
    """Re-read the channel's last `hours` from the source, store what is missing or stale, and
    record what was repaired. Does not touch the poller's cursor or schedule."""
    channel = Channel.objects.get(pk=channel_id)
    now = timezone.now()
    start = now - timedelta(hours=hours)
    run = ReconciliationRun.objects.create(
        channel=channel, started_at=now, window_start=start, window_end=now
    )
    cursor: str | None = window_start_cursor(channel, start)
    report: dict[str, Any] = {
        "cursor_param": channel.poll_cursor_param,
        "since": cursor,
        "pages": 0,
        "created": [],
        "updated": [],
        "rejected": [],
        "truncated": False,
    }
    actor = system_actor(f"reconcile:{channel.code}")
    for page_number in range(1, MAX_RECONCILE_PAGES + 1):
        try:
            page = fetch_page(channel, cursor)
        except PollError as exc:
            run.error = _("Page %(page)s: %(error)s") % {"page": page_number, "error": exc}
            break
        results = _ingest_page(channel, page, actor=actor)
        report["pages"] += 1
        run.fetched += len(page.orders)
        for result in results:
            if result.status == "created":
                run.created += 1
                _report(report, "created", {"external_id": result.external_id, "tag": result.tag})
            elif result.status == "updated":
                run.updated += 1
                _report(report, "updated", {"external_id": result.external_id, "tag": result.tag})
            elif result.status == "ignored":
                run.unchanged += 1
            else:
                run.rejected += 1
                _report(
                    report, "rejected", {"external_id": result.external_id or "", "errors": result.errors}
                )
                logger.warning(
                    "reconcile:%s rejected order %s: %s", channel.code, _identify(result, page), result.errors
                )
        run.report = report
        run.save(update_fields=["fetched", "created", "updated", "unchanged", "rejected", "report"])
        if not page.next_cursor or page.next_cursor == cursor:
            break
        cursor = page.next_cursor
    else:
        run.error = _("Stopped after %(pages)s pages; the window holds more.") % {
            "pages": MAX_RECONCILE_PAGES
        }
    run.finished_at = timezone.now()
    run.report = report
    run.save()
    if run.error:
        logger.warning("reconcile:%s stopped: %s", channel.code, run.error)
    logger.info(
        "reconcile:%s fetched=%s created=%s updated=%s unchanged=%s rejected=%s",
        channel.code,
        run.fetched,
        run.created,
        run.updated,
        run.unchanged,
        run.rejected,
    )
    return run


def _report(report: dict[str, Any], key: str, item: dict[str, Any]) -> None:
    if len(report[key]) < MAX_REPORT_ITEMS:
        report[key].append(item)
    else:
        report["truncated"] = True
