"""Template filters for the pages: human labels for codes stored on orders."""

from django import template
from django.utils.translation import gettext_lazy as _

from orders import normalize
from riskcontrol.services import FLAG_DELIVERY, FLAG_RISK

register = template.Library()

FLAG_LABELS = {
    normalize.FLAG_ADDRESS_AMBIGUOUS: _("Address unclear"),
    normalize.FLAG_ADDRESS_MISSING: _("No address"),
    normalize.FLAG_PHONE_INVALID: _("Phone invalid"),
    normalize.FLAG_PHONE_MISSING: _("No phone"),
    normalize.FLAG_CUSTOMER_NAME_MISSING: _("No customer name"),
    normalize.FLAG_NO_ITEMS: _("No items"),
    normalize.FLAG_AMOUNT_MISMATCH: _("Amount above items"),
    FLAG_RISK: _("Risk"),
    FLAG_DELIVERY: _("Delivery at risk"),
}


@register.filter
def flag_label(code: str) -> str:
    """The label of a flag; an unknown code (added by a later rule) shows as itself."""
    return FLAG_LABELS.get(code, code)


@register.filter
def stage_label(code: str) -> str:
    from orders.models import STAGE_LABELS
    from orders.states import Stage

    try:
        return STAGE_LABELS[Stage(code)]
    except ValueError:
        return code


CRITERION_LABELS = {
    "urgency": _("Urgency"),
    "proximity": _("Proximity"),
    "skill": _("Skill match"),
    "load": _("Load"),
    "quality": _("Quality"),
    "returning": _("Served this customer before"),
    "vip": _("VIP's dedicated agent"),
    "channel_team": _("Channel's team"),
    "round_robin": _("Round robin turn"),
    "weighted": _("Fixed share"),
}


@register.filter
def criterion_label(code: str) -> str:
    return CRITERION_LABELS.get(code, code)


@register.filter
def sorted_breakdown(breakdown: dict) -> list[tuple[str, float]]:
    """A score breakdown, largest contribution first."""
    return sorted(breakdown.items(), key=lambda kv: -abs(kv[1]))
