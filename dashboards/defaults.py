"""Seed notification templates, installed by a data migration and edited in admin after.

Each template renders with Django's template language over the notification's payload; the
payload keys each message gets are listed with it. Texts are in the site's language, Chinese."""

from __future__ import annotations

# (code, channel, subject, body)
TEMPLATES = [
    # order{id,tag,stage_label,due_at,url}, owner, minutes_over
    (
        "sla_overdue",
        "in_app",
        "订单 {{ order.tag }} 已超时",
        "{{ order.tag }} 在「{{ order.stage_label }}」已超时 {{ minutes_over }} 分钟，请尽快处理。",
    ),
    (
        "sla_overdue",
        "wecom",
        "",
        "【超时提醒】{{ order.tag }} 在「{{ order.stage_label }}」已超时 {{ minutes_over }} 分钟，负责人：{{ owner }}。",
    ),
    # order, owner, backup
    (
        "sla_backup",
        "in_app",
        "订单 {{ order.tag }} 转给你处理",
        "{{ owner }} 超时未处理 {{ order.tag }}（{{ order.stage_label }}），已转交给你。",
    ),
    (
        "sla_backup",
        "wecom",
        "",
        "【超时升级 L2】{{ order.tag }} 超时未处理，已由 {{ owner }} 转交 {{ backup }}。",
    ),
    # order, owner, backup, minutes_over
    (
        "sla_supervisor",
        "email",
        "【超时升级 L3】订单 {{ order.tag }} 仍未处理",
        "订单 {{ order.tag }} 在「{{ order.stage_label }}」已超时 {{ minutes_over }} 分钟。\n负责人：{{ owner }}；备份：{{ backup }}。\n查看：{{ order.url }}",
    ),
    (
        "sla_supervisor",
        "sms",
        "",
        "【派单】订单{{ order.tag }}超时{{ minutes_over }}分钟仍未处理，请主管介入。",
    ),
    (
        "sla_supervisor",
        "in_app",
        "订单 {{ order.tag }} 超时升级",
        "{{ order.tag }} 超时 {{ minutes_over }} 分钟仍未处理（L3）。",
    ),
    # order, score
    (
        "risk_quarantine",
        "in_app",
        "订单 {{ order.tag }} 被风控拦截",
        "{{ order.tag }} 风险分 {{ score }}，已进入待核实。",
    ),
    (
        "risk_quarantine",
        "wecom",
        "",
        "【风控拦截】{{ order.tag }} 风险分 {{ score }}，已暂停履约，等待核实。",
    ),
    ("risk_quarantine", "sms", "", "【派单】订单{{ order.tag }}风险分{{ score }}，已拦截待核实。"),
    # order, type, note
    ("exception_raised", "in_app", "异常：{{ type }}", "{{ order.tag }}：{{ type }}。{{ note }}"),
    (
        "exception_raised",
        "email",
        "【异常】{{ type }}：{{ order.tag }}",
        "订单 {{ order.tag }} 登记了异常「{{ type }}」。\n说明：{{ note }}\n查看：{{ order.url }}",
    ),
    ("exception_raised", "wecom", "", "【异常】{{ order.tag }}：{{ type }}。{{ note }}"),
    # order, customer, type, resolution
    (
        "exception_resolved_customer",
        "sms",
        "",
        "【派单】{{ customer }}您好，您的订单{{ order.tag }}（{{ type }}）已处理：{{ resolution }}",
    ),
    # agent, detail, url (the agent's admin page)
    ("agent_l3", "email", "【派单】L3：{{ agent }} 需要关注", "{{ detail }}\n查看：{{ url }}"),
    ("agent_l3", "in_app", "L3：{{ agent }} 需要关注", "{{ detail }}"),
    # order, customer, delay_until
    (
        "exception_delay_customer",
        "sms",
        "",
        "【派单】{{ customer }}您好，您的订单{{ order.tag }}已按您的要求延期至{{ delay_until }}。",
    ),
    # week, week_end, stage/category/group{name, figure, runner_up}, url (dashboards.reports.weekly)
    (
        "weekly_summary",
        "email",
        "【派单】每周瓶颈小结 {{ week }} 至 {{ week_end }}",
        "上周（{{ week }} 至 {{ week_end }}）的瓶颈：\n"
        "· 等待最久的阶段：{{ stage.name }}，{{ stage.figure }}；其次：{{ stage.runner_up }}\n"
        "· 超时最多的品类：{{ category.name }}，{{ category.figure }}；其次：{{ category.runner_up }}\n"
        "· 负载最重的小组：{{ group.name }}，{{ group.figure }}；其次：{{ group.runner_up }}\n"
        "查看报表：{{ url }}",
    ),
]


def install_defaults(NotificationTemplate) -> None:
    for code, channel, subject, body in TEMPLATES:
        NotificationTemplate.objects.get_or_create(
            code=code, channel=channel, defaults={"subject": subject, "body": body}
        )
