"""Template helpers for the queue pages: which queue links a user gets, and labels for the
reasons a pool entry waits."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext_lazy as _

from dispatch.engine.types import WaitReason
from orders.actors import roles_of
from orders.states import Role

register = template.Library()

_MANAGERS = frozenset({Role.SUPERVISOR, Role.ADMIN})

WAIT_REASON_LABELS = {
    "queued": _("Queued"),
    "returned": _("Returned to the pool"),
    WaitReason.NO_QUALIFIED_AGENT: _("No agent can take it"),
    WaitReason.NONE_ONLINE: _("No qualified agent is online"),
    WaitReason.ALL_AT_CAPACITY: _("Every qualified agent is at capacity"),
    WaitReason.OUTRANKED: _("Free agents went to more urgent items"),
}


@register.simple_tag
def queue_nav(user) -> dict[str, bool]:
    """{"agent": has an agent profile, "manager": may dispatch by hand}. `user.agent` raises
    for users without a profile, so the check is a query, not an attribute."""
    from agents.models import Agent

    if user is None or not user.is_authenticated:
        return {"agent": False, "manager": False}
    return {
        "agent": Agent.objects.filter(user_id=user.pk).exists(),
        "manager": bool(roles_of(user) & _MANAGERS),
    }


@register.filter
def wait_reason_label(code: str) -> str:
    """A reason code as words; a code added by a later engine shows as itself."""
    return WAIT_REASON_LABELS.get(code, code)
