"""Every write to a simulation run: a supervisor's request, and the worker's execution of it
(progress, result, failure)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from dispatch.models import DispatchPolicy, SimulationRun
from dispatch.services import DispatchError

logger = logging.getLogger(__name__)

MAX_DAYS = 31
PROGRESS_EVERY_SECONDS = 1.0  # progress is called very often: write at most this often …
PROGRESS_MIN_STEP = 0.01  # … and only when it moved at least this much
# A running run writes progress at least every few seconds; ten minutes of silence is a dead
# worker. A queued run is picked up in seconds; two minutes without a start is a lost task.
STALE_AFTER = timedelta(minutes=10)
LOST_AFTER = timedelta(minutes=2)
MAX_ATTEMPTS = 3


class SimulationRefused(DispatchError):
    code = "simulation_refused"


@transaction.atomic
def simulation_request(
    *, user, policy: DispatchPolicy, start: date, end: date, seed: int = 1, today: date | None = None
) -> SimulationRun:
    """Queue a replay of the local days [start, end) under the live policies and under the live
    policies with `policy` switched on; the worker starts after commit."""
    today = today or timezone.localdate()
    if end <= start:
        raise SimulationRefused(
            _("The simulated range must end after it starts (from %(start)s to %(end)s).")
            % {"start": start.isoformat(), "end": end.isoformat()}
        )
    if (end - start).days > MAX_DAYS:
        raise SimulationRefused(
            _("A simulation covers at most %(max)d days; %(start)s to %(end)s is %(days)d.")
            % {
                "max": MAX_DAYS,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "days": (end - start).days,
            }
        )
    if end > today:
        raise SimulationRefused(
            _("Only past days can be replayed: the range runs until %(last)s, and today is %(today)s.")
            % {"last": (end - timedelta(days=1)).isoformat(), "today": today.isoformat()}
        )
    run = SimulationRun.objects.create(
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        policy=policy,
        start_date=start,
        end_date=end,
        seed=seed,
        heartbeat_at=timezone.now(),
    )
    transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    from dispatch.tasks import run_simulation_task

    run_simulation_task.delay(run_id)


def simulation_execute(*, run_id: int) -> SimulationRun | None:
    """Run a queued simulation to its end: running, then done with the comparison, or failed
    with the reason. A run that is not queued (already started, finished, or gone) is left
    alone, so a task delivered twice runs it once. Returns the run, or None when left alone."""
    now = timezone.now()
    started = SimulationRun.objects.filter(pk=run_id, status=SimulationRun.Status.QUEUED).update(
        status=SimulationRun.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        progress=0.0,
        error="",
        attempts=F("attempts") + 1,
    )
    if not started:
        logger.info("simulation %s is not queued; left alone", run_id)
        return None
    run = SimulationRun.objects.select_related("policy").get(pk=run_id)
    try:
        result = _compare(run)
    except Exception as exc:
        logger.exception("simulation %s failed", run_id)
        message = str(exc) or exc.__class__.__name__
        SimulationRun.objects.filter(pk=run_id).update(
            status=SimulationRun.Status.FAILED, error=message[:2000], finished_at=timezone.now()
        )
    else:
        SimulationRun.objects.filter(pk=run_id).update(
            status=SimulationRun.Status.DONE, progress=1.0, result=result, finished_at=timezone.now()
        )
    run.refresh_from_db()
    return run


@transaction.atomic
def simulations_recover(*, now: datetime | None = None) -> dict[str, int]:
    """The beat's repair, as the database is the truth and a task may be lost: a running run
    whose worker gave no sign of life for `STALE_AFTER` (the process died; a redelivered task
    finds it running and leaves it) goes back to the queue, or fails once it was tried
    `MAX_ATTEMPTS` times; a queued run whose task never started within `LOST_AFTER` (the
    broker lost it, or was down when it was sent) is sent again. Sending twice is harmless:
    only a queued run starts."""
    now = now or timezone.now()
    silent = Q(heartbeat_at__isnull=True)  # runs from before liveness was recorded
    stale = SimulationRun.objects.select_for_update(skip_locked=True).filter(
        silent | Q(heartbeat_at__lt=now - STALE_AFTER), status=SimulationRun.Status.RUNNING
    )
    stuck = list(stale.values_list("pk", "attempts"))
    given_up = [pk for pk, attempts in stuck if attempts >= MAX_ATTEMPTS]
    SimulationRun.objects.filter(pk__in=given_up).update(
        status=SimulationRun.Status.FAILED,
        error=_("The worker running this simulation stopped %(n)d times; it was not tried again.")
        % {"n": MAX_ATTEMPTS},
        finished_at=now,
    )
    requeued = [pk for pk, attempts in stuck if attempts < MAX_ATTEMPTS]
    SimulationRun.objects.filter(pk__in=requeued).update(status=SimulationRun.Status.QUEUED, progress=0.0)
    lost = list(
        SimulationRun.objects.select_for_update(skip_locked=True)
        .filter(silent | Q(heartbeat_at__lt=now - LOST_AFTER), status=SimulationRun.Status.QUEUED)
        .exclude(pk__in=requeued)
        .values_list("pk", flat=True)
    )
    resend = sorted(set(requeued) | set(lost))
    SimulationRun.objects.filter(pk__in=resend).update(heartbeat_at=now)
    for run_id in resend:
        transaction.on_commit(lambda run_id=run_id: _enqueue(run_id))
    return {"requeued": len(requeued), "resent": len(lost), "failed": len(given_up)}


def _compare(run: SimulationRun) -> dict:
    from dispatch.sim.history import live_policy_set, policy_set_with_draft, scenario_from_history
    from dispatch.sim.run import compare

    scenario = scenario_from_history(start=run.start_date, end=run.end_date)
    policy_sets = [live_policy_set(), policy_set_with_draft(run.policy)]
    result = compare(scenario, policy_sets, seed=run.seed, progress=_ProgressWriter(run.pk))
    result["draft"] = {"id": run.policy_id, "name": run.policy.name, "active": run.policy.is_active}
    return jsonable(result)


class _ProgressWriter:
    """The runner's progress callback: one UPDATE per second at most, whatever the call rate."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.written = 0.0
        self.at = time.monotonic()

    def __call__(self, share: float) -> None:
        share = min(1.0, max(0.0, float(share)))
        now = time.monotonic()
        if now - self.at < PROGRESS_EVERY_SECONDS or share - self.written < PROGRESS_MIN_STEP:
            return
        SimulationRun.objects.filter(pk=self.run_id, status=SimulationRun.Status.RUNNING).update(
            progress=round(share, 4), heartbeat_at=timezone.now()
        )
        self.written, self.at = share, now


def jsonable(value: object) -> object:
    """`value` as plain JSON: no NaN or infinity (PostgreSQL's jsonb refuses them), no numpy
    scalars, dates as ISO text, sets and tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return jsonable(item())
    return str(value)
