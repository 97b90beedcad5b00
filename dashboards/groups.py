"""Channel-layer group names: built here and nowhere else.

Boards are split by what their viewers may see, so a supervisor's socket is never told even
the ids of another region's orders: `board-all` for everyone who sees every order, one group
per region (by id: a region's code can be renamed in admin, its id cannot) for regional
supervisors, and `board-unregioned` for the orders no region covers, which every regional
supervisor sees (orders.selectors.order_visible_to)."""

from __future__ import annotations

from collections.abc import Iterable


def board_group() -> str:
    """Boards of people who see every order: admins, back-office roles, supervisors of no
    particular region."""
    return "board-all"


def region_board_group(region_id: int) -> str:
    return f"board-region-{region_id}"


def unregioned_board_group() -> str:
    """Orders delivered where no region's provinces reach, and alerts of no region."""
    return "board-unregioned"


def board_groups(*, sees_all: bool, region_ids: Iterable[int]) -> list[str]:
    """The board groups of one viewer."""
    if sees_all:
        return [board_group()]
    return [*(region_board_group(r) for r in sorted(set(region_ids))), unregioned_board_group()]


def agent_group(agent_id: int) -> str:
    return f"agent-{agent_id}"


def user_group(user_id: int) -> str:
    """One person's in-app notifications, whichever page (board or queue) they have open."""
    return f"user-{user_id}"
