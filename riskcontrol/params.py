"""Typed parameters per rule type: defaults, bounds and the message when they are wrong.

`clean_params` is what the admin form, the API of the future and the data migration call:
it returns the parameters with defaults filled in, or raises a ValidationError that says
which parameter is wrong and what it must be."""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from orders.normalize import hash_card_fingerprint, normalize_phone
from riskcontrol.engine import ListKind, RuleKind


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    default: int | None = None


@dataclass(frozen=True)
class Num:
    low: float
    high: float
    default: float | None = None


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    default: str | None = None


@dataclass(frozen=True)
class Words:
    default: tuple[str, ...] | None = None
    most: int = 200
    longest: int = 40


@dataclass(frozen=True)
class Subset:
    options: tuple[str, ...]
    default: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Flag:
    default: bool


TRANSIT_WORDS = ("临时仓", "代收点", "中转仓", "集运", "转运仓", "代收")
LISTS = tuple(k.value for k in ListKind)

SPECS: dict[RuleKind, dict[str, Any]] = {
    RuleKind.ADDRESS_KEYWORDS: {"keywords": Words(default=TRANSIT_WORDS)},
    RuleKind.IP_VELOCITY: {"count": Int(2, 10_000, 3), "minutes": Int(1, 10_080, 5)},
    RuleKind.DEVICE_VELOCITY: {"count": Int(2, 10_000, 3), "minutes": Int(1, 10_080, 5)},
    RuleKind.CARD_SAME_AMOUNT: {"count": Int(2, 10_000, 3), "hours": Int(1, 8_760, 24)},
    RuleKind.ROUND_AMOUNT: {"multiple": Int(1, 10_000_000, 1000), "require_no_note": Flag(True)},
    RuleKind.PHONE_DISTANCE: {
        "km": Int(1, 20_000, 2000),
        "reference": Choice(("warehouse", "delivery"), "warehouse"),
    },
    RuleKind.NEW_ACCOUNT_COUPON: {"days": Int(0, 3650, 7)},
    RuleKind.NEW_ACCOUNT: {"days": Int(0, 3650, 30)},
    RuleKind.AMOUNT_OVER_USUAL: {
        "k": Num(1.0, 1000.0, 3.0),
        "basis": Choice(("customer", "channel"), "customer"),
        "min_history": Int(1, 1000, 3),
    },
    RuleKind.BLACKLIST: {"kinds": Subset(LISTS, LISTS)},
}
COMPOSITE_MOST = 6


def clean_params(kind: str, params: Any, *, inside_composite: bool = False) -> dict:
    try:
        kind = RuleKind(kind)
    except ValueError:
        raise ValidationError(_("'%(kind)s' is not a rule type.") % {"kind": kind}) from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValidationError(_("Parameters must be a JSON object."))
    if kind == RuleKind.COMPOSITE:
        if inside_composite:
            raise ValidationError(_("A composite rule cannot contain another composite rule."))
        return _clean_composite(params)
    spec = SPECS[kind]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ValidationError(
            _("Unknown parameters: %(names)s. This type takes: %(known)s.")
            % {"names": ", ".join(unknown), "known": ", ".join(spec)}
        )
    return {name: _clean_value(name, rule, params.get(name)) for name, rule in spec.items()}


def _clean_value(name: str, rule: Any, value: Any) -> Any:
    if value is None:
        if rule.default is None:
            raise ValidationError(_("'%(name)s' is required.") % {"name": name})
        if isinstance(rule, Subset):  # the same form as a value given (sorted), so cleaning is stable
            return sorted(rule.default)
        return list(rule.default) if isinstance(rule.default, tuple) else rule.default
    if isinstance(rule, Int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(_("'%(name)s' must be a whole number.") % {"name": name})
        if not rule.low <= value <= rule.high:
            raise ValidationError(
                _("'%(name)s' must be from %(low)s to %(high)s; got %(value)s.")
                % {"name": name, "low": rule.low, "high": rule.high, "value": value}
            )
        return value
    if isinstance(rule, Num):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(_("'%(name)s' must be a number.") % {"name": name})
        if not rule.low <= value <= rule.high:
            raise ValidationError(
                _("'%(name)s' must be from %(low)s to %(high)s; got %(value)s.")
                % {"name": name, "low": rule.low, "high": rule.high, "value": value}
            )
        return float(value)
    if isinstance(rule, Flag):
        if not isinstance(value, bool):
            raise ValidationError(_("'%(name)s' must be true or false.") % {"name": name})
        return value
    if isinstance(rule, Choice):
        if value not in rule.options:
            raise ValidationError(
                _("'%(name)s' must be one of: %(options)s.")
                % {"name": name, "options": ", ".join(rule.options)}
            )
        return value
    if isinstance(rule, Subset):
        if not isinstance(value, list) or not value or any(v not in rule.options for v in value):
            raise ValidationError(
                _("'%(name)s' must be a non-empty list drawn from: %(options)s.")
                % {"name": name, "options": ", ".join(rule.options)}
            )
        return sorted(set(value))
    if isinstance(rule, Words):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(_("'%(name)s' must be a list of words.") % {"name": name})
        words = [v.strip() for v in value if v.strip()]
        if not words:
            raise ValidationError(_("'%(name)s' needs at least one word.") % {"name": name})
        if len(words) > rule.most:
            raise ValidationError(_("'%(name)s' holds at most %(n)d words.") % {"name": name, "n": rule.most})
        # PostgreSQL's jsonb refuses NUL and lone surrogates (a 500 on save); no keyword needs a
        # control character either.
        unusable = [w for w in words if any(unicodedata.category(c) in ("Cc", "Cs") for c in w)]
        if unusable:
            raise ValidationError(
                _("Words in '%(name)s' cannot hold control characters: %(word)s")
                % {"name": name, "word": ascii(unusable[0])}
            )
        too_long = [w for w in words if len(w) > rule.longest]
        if too_long:
            raise ValidationError(
                _("Words in '%(name)s' are at most %(n)d characters: %(word)s")
                % {"name": name, "n": rule.longest, "word": too_long[0]}
            )
        return list(dict.fromkeys(words))
    raise AssertionError(rule)  # pragma: no cover - every spec type is handled above


def _clean_composite(params: dict) -> dict:
    unknown = sorted(set(params) - {"all"})
    if unknown:
        raise ValidationError(
            _("Unknown parameters: %(names)s. This type takes: %(known)s.")
            % {"names": ", ".join(unknown), "known": "all"}
        )
    conditions = params.get("all")
    if not isinstance(conditions, list) or not 2 <= len(conditions) <= COMPOSITE_MOST:
        raise ValidationError(
            _(
                'A composite rule needs "all": a list of 2 to %(n)d conditions, each {"kind": …, "params": {…}}.'
            )
            % {"n": COMPOSITE_MOST}
        )
    cleaned = []
    for position, condition in enumerate(conditions, start=1):
        if not isinstance(condition, dict) or "kind" not in condition or set(condition) - {"kind", "params"}:
            raise ValidationError(
                _('Condition %(n)d must be an object with "kind" and optional "params".') % {"n": position}
            )
        try:
            inner = clean_params(condition["kind"], condition.get("params"), inside_composite=True)
        except ValidationError as exc:
            raise ValidationError(
                _("Condition %(n)d: %(problem)s") % {"n": position, "problem": " ".join(exc.messages)}
            ) from None
        cleaned.append({"kind": condition["kind"], "params": inner})
    return {"all": cleaned}


def clean_list_value(kind: str, value: str) -> str:
    """The stored form of a blacklist value, so it compares equal with what orders store."""
    value = (value or "").strip()
    if not value:
        raise ValidationError(_("The value cannot be empty."))
    if kind == ListKind.IP:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValidationError(_("'%(value)s' is not an IP address.") % {"value": value}) from None
    if kind == ListKind.PHONE:
        phone = normalize_phone(value)
        if not phone.valid:
            raise ValidationError(_("'%(value)s' is not a valid phone number.") % {"value": value})
        return phone.e164
    if kind == ListKind.CARD:
        return hash_card_fingerprint(value)
    if kind == ListKind.ADDRESS and len(value) < 2:
        raise ValidationError(_("An address fragment needs at least 2 characters."))
    return value[:200]
