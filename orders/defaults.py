"""Seed configuration installed by a data migration; admins change it afterwards."""

from __future__ import annotations

import datetime

# (stage, category, minutes allowed, evening rule, adjust by history)
SLA_POLICIES = [
    ("pending_review", "", 120, True, True),
    ("picking", "", 240, True, True),
    ("shipping", "", 24 * 60, False, True),
    ("quarantined", "", 240, False, False),
    ("exception", "", 8 * 60, True, False),
    # Cold chain (生鲜/冷链, category "fresh_food") moves faster, as seed 004 asks.
    ("pending_review", "fresh_food", 30, True, True),
    ("picking", "fresh_food", 60, True, True),
    ("shipping", "fresh_food", 6 * 60, False, True),
]
EVENING_AFTER = datetime.time(20, 0)
EVENING_EXTRA_MINUTES = 60

# (code, name, route, customer template)
EXCEPTION_TYPES = [
    ("address_ambiguous", "地址不明确", "reconfirm", "exception_resolved_customer"),
    ("out_of_stock", "缺货", "stock_lock", "exception_resolved_customer"),
    ("customer_delay", "客户要求延期", "reschedule", "exception_delay_customer"),
    ("damaged", "商品破损", "hold", "exception_resolved_customer"),
    # What a plain drag into the exception lane opens (settings.EXCEPTION_DEFAULT_TYPE).
    ("other", "其他异常", "hold", "exception_resolved_customer"),
]


def install_defaults(SlaPolicy, ExceptionType) -> None:
    for stage, category, minutes, evening, history in SLA_POLICIES:
        SlaPolicy.objects.get_or_create(
            stage=stage,
            category=category,
            defaults={
                "allowance_minutes": minutes,
                "evening_after": EVENING_AFTER if evening else None,
                "evening_extra_minutes": EVENING_EXTRA_MINUTES,
                "adjust_by_history": history,
            },
        )
    for code, name, route, template in EXCEPTION_TYPES:
        ExceptionType.objects.get_or_create(
            code=code, defaults={"name": name, "route": route, "customer_template": template}
        )
