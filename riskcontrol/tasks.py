"""Periodic risk-control work (scheduled in config/schedules.py)."""

from __future__ import annotations

import logging

from celery import shared_task

from riskcontrol.services import rules_learn

logger = logging.getLogger(__name__)


@shared_task
def learn_rule_weights_task() -> dict:
    """Nightly: re-weight the rules from the reviewers' dispositions."""
    report = rules_learn()
    logger.info(
        "rule learning: %d changed, %d unchanged, %d frozen",
        len(report.changed),
        report.unchanged,
        report.frozen,
    )
    return {"changed": len(report.changed), "unchanged": report.unchanged, "frozen": report.frozen}
