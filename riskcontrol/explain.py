"""A rule hit's facts as a sentence for people ("同一IP 5分钟内第4单"), in the active language."""

from __future__ import annotations

from django.utils.translation import gettext as _

from riskcontrol.engine import RuleKind
from riskcontrol.models import LIST_KIND_LABELS


def explain(kind: str, facts: dict) -> str:
    try:
        kind = RuleKind(kind)
        return _TEXT[kind](facts)
    except (KeyError, ValueError, TypeError):
        return str(facts)  # a hit stored by an older version of a rule still shows something


def _composite(facts: dict) -> str:
    parts = " + ".join(explain(p["kind"], p["facts"]) for p in facts["parts"])
    return _("All of: %(parts)s") % {"parts": parts}


def _distance(f: dict) -> str:
    if f["reference"] == "warehouse":
        return _("Phone's home city %(city)s is %(km)s km from the ship-from warehouse %(place)s") % {
            "city": f["phone_city"], "km": f["km"], "place": f["place"],
        }  # fmt: skip
    return _("Phone's home city %(city)s is %(km)s km from the delivery city %(place)s") % {
        "city": f["phone_city"], "km": f["km"], "place": f["place"],
    }  # fmt: skip


def _usual(f: dict) -> str:
    if f["basis"] == "customer":
        return _("Amount %(amount)s is %(ratio)s× this customer's usual %(usual)s") % f
    return _("Amount %(amount)s is %(ratio)s× the channel's usual %(usual)s") % f


_TEXT = {
    RuleKind.ADDRESS_KEYWORDS: lambda f: _("Address contains “%(keyword)s”") % f,
    RuleKind.IP_VELOCITY: lambda f: _("Order %(n)s from the same IP within %(minutes)s minutes") % f,
    RuleKind.DEVICE_VELOCITY: lambda f: _("Order %(n)s from the same device within %(minutes)s minutes") % f,
    RuleKind.CARD_SAME_AMOUNT: lambda f: (
        _("Order %(n)s of %(amount)s on the same card within %(hours)s hours") % f
    ),
    RuleKind.ROUND_AMOUNT: lambda f: (
        _("Round amount %(amount)s (a multiple of %(multiple)s) with no note") % f
    ),
    RuleKind.PHONE_DISTANCE: _distance,
    RuleKind.NEW_ACCOUNT_COUPON: lambda f: (
        _("First order of a %(age_days)s-day-old account, with coupon %(coupon)s") % f
    ),
    RuleKind.NEW_ACCOUNT: lambda f: _("Account only %(age_days)s days old") % f,
    RuleKind.AMOUNT_OVER_USUAL: _usual,
    RuleKind.BLACKLIST: lambda f: (
        _("Blacklisted %(list)s %(value)s: %(reason)s")
        % {**f, "list": LIST_KIND_LABELS.get(f["list"], f["list"])}
    ),
    RuleKind.COMPOSITE: _composite,
}
