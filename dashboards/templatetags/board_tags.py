"""Template helpers for the board: which board links a user gets in the navigation."""

from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag
def board_nav(user) -> dict[str, bool]:
    """{"board": may open the board, "alerts": sees red-flag alerts, "reports": may open the
    reports}. Roles are read once per request (orders.actors.roles_of caches them on the user)."""
    from dashboards.board_selectors import may_see_alerts, may_use_board
    from dashboards.reports.selectors import may_see_reports

    return {"board": may_use_board(user), "alerts": may_see_alerts(user), "reports": may_see_reports(user)}
