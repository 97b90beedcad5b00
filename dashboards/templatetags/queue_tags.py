"""Template helpers for the queue pages: which queue links a user gets, and labels for the
reasons a pool entry waits."""

from __future__ import annotations

from django import template

from dispatch.models import WAIT_REASON_LABELS
from dispatch.selectors import MANAGER_ROLES
from orders.actors import roles_of

register = template.Library()


@register.simple_tag
def queue_nav(user) -> dict[str, bool]:
    """{"agent": has an agent profile, "manager": may dispatch by hand, "reviewer": may work
    on risk reviews}. `user.agent` raises for users without a profile, so the check is a
    query, not an attribute."""
    from agents.models import Agent
    from riskcontrol.selectors import REVIEW_ROLES

    if user is None or not user.is_authenticated:
        return {"agent": False, "manager": False, "reviewer": False}
    roles = roles_of(user)
    return {
        "agent": Agent.objects.filter(user_id=user.pk).exists(),
        "manager": bool(roles & MANAGER_ROLES),
        "reviewer": bool(roles & REVIEW_ROLES),
    }


@register.filter
def wait_reason_label(code: str) -> str:
    """A reason code as words; a code added by a later engine shows as itself."""
    return WAIT_REASON_LABELS.get(code, code)
