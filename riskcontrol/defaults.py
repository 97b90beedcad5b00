"""The starting rule set: the five checks of seed 002, the composite of seed 004, and the
device, card, usual-amount and blacklist checks next to them. Installed by a data migration
on a new database; editable in admin from then on. `install_defaults` takes the model
classes so the migration can pass its historical ones."""

from __future__ import annotations

TRANSIT_WORDS = ["临时仓", "代收点", "中转仓", "集运", "转运仓"]

DEFAULT_RULES: list[dict] = [
    {"name": "中转仓/代收点地址", "kind": "address_keywords", "weight": 60,
     "params": {"keywords": TRANSIT_WORDS},
     "description": "收货地址含临时仓、代收点、中转仓、集运等关键词 (seed 002)."},
    {"name": "同一IP 5分钟3单", "kind": "ip_velocity", "weight": 60, "params": {"count": 3, "minutes": 5},
     "description": "同一IP下5分钟内生成3单以上 (seed 002)."},
    {"name": "同一设备 5分钟3单", "kind": "device_velocity", "weight": 60, "params": {"count": 3, "minutes": 5},
     "description": "IP 之外也看设备指纹 (seed 004: 黑名单仅覆盖IP和手机号,忽略设备指纹)."},
    {"name": "同卡同额多单", "kind": "card_same_amount", "weight": 60, "params": {"count": 3, "hours": 24},
     "description": "同一张信用卡下多笔相同金额订单 (seed 004: 12笔)."},
    {"name": "整千金额无留言", "kind": "round_amount", "weight": 60,
     "params": {"multiple": 1000, "require_no_note": True},
     "description": "付款金额为整千元且无留言 (seed 002)."},
    {"name": "手机归属地距发货地超2000公里", "kind": "phone_distance", "weight": 60,
     "params": {"km": 2000, "reference": "warehouse"},
     "description": "收件人电话归属地与发货地距离超2000公里 (seed 002)."},
    {"name": "新账号首单用券", "kind": "new_account_coupon", "weight": 60, "params": {"days": 7},
     "description": "使用新注册账号首次下单满减券 (seed 002)."},
    {"name": "金额超本人平时5倍", "kind": "amount_over_usual", "weight": 30,
     "params": {"k": 5.0, "basis": "customer", "min_history": 3},
     "description": "Flags for attention only."},
    {"name": "黑名单", "kind": "blacklist", "weight": 100,
     "params": {"kinds": ["address", "card", "device", "ip", "phone"]},
     "description": "IP、手机号、设备、卡、地址黑名单."},
    {"name": "新账号+大额+中转仓", "kind": "composite", "weight": 80,
     "params": {"all": [
         {"kind": "new_account", "params": {"days": 30}},
         {"kind": "amount_over_usual", "params": {"k": 3.0, "basis": "channel", "min_history": 3}},
         {"kind": "address_keywords", "params": {"keywords": TRANSIT_WORDS}},
     ]},
     "description": "新注册账号 + 单笔金额超均值3倍 + 收货地址为临时中转仓 (seed 004)."},
]  # fmt: skip

REVIEW_SKILL = {"code": "risk_review", "name": "风控审核", "keywords": []}


def install_defaults(rule_model, policy_model, skill_model=None) -> int:
    """Create the default rules, the general thresholds and the review skill where missing."""
    created = 0
    for spec in DEFAULT_RULES:
        _rule, made = rule_model.objects.get_or_create(
            name=spec["name"],
            defaults={
                "kind": spec["kind"],
                "params": spec["params"],
                "weight": spec["weight"],
                "base_weight": spec["weight"],
                "description": spec["description"],
            },
        )
        created += made
    if not policy_model.objects.filter(channel__isnull=True, is_active=True).exists():
        policy_model.objects.create(name="默认", review_threshold=30, quarantine_threshold=60)
    if skill_model is not None:
        skill_model.objects.get_or_create(code=REVIEW_SKILL["code"], defaults=REVIEW_SKILL)
    return created
