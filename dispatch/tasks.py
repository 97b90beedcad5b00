"""Celery tasks for dispatch: thin wrappers over the services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from agents.services import agent_profiles_refresh_all
from dispatch import services


@shared_task(ignore_result=True)
def dispatch_pool_task(retry: int = 0) -> dict:
    """A matching round, asked for by an event (order ready, agent free, reject …). If other
    rounds hold every waiting entry, the event that asked for this one may have come after
    their snapshot (a slot freed meanwhile): try again shortly rather than wait for the sweep."""
    report = services.dispatch_tick()
    if report.busy and retry < 3:
        dispatch_pool_task.apply_async(kwargs={"retry": retry + 1}, countdown=1)
    return {"offered": report.offered, "waiting": report.waiting, "escalated": report.escalated}


@shared_task(ignore_result=True)
def sweep_pool_task() -> dict:
    """The beat's repair round every few seconds: expires offers and matches whatever a lost
    task left waiting, then checks inquiry queue waits."""
    report = services.dispatch_tick()
    alerts = services.queue_wait_alerts()
    return {"expired": report.expired, "offered": report.offered, "alerts": alerts}


@shared_task(ignore_result=True)
def refresh_agent_profiles_task() -> int:
    return agent_profiles_refresh_all()


@shared_task(ignore_result=True)
def run_simulation_task(run_id: int) -> str | None:
    """Replay a requested simulation (minutes of CPU for a busy week); a second delivery of
    the same run finds it no longer queued and does nothing."""
    from dispatch.sim.services import simulation_execute

    run = simulation_execute(run_id=run_id)
    return run.status if run is not None else None


@shared_task(ignore_result=True)
def recover_simulations_task() -> dict:
    """The beat's repair of simulation runs whose worker died or whose task was lost."""
    from dispatch.sim.services import simulations_recover

    return simulations_recover()
