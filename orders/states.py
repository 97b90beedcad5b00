"""The order state machine: stages, legal transitions and which roles may make them.

Pure Python, no Django: the services, the board and the simulator all read this one table.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    PENDING_REVIEW = "pending_review"
    PICKING = "picking"
    SHIPPING = "shipping"
    DONE = "done"
    QUARANTINED = "quarantined"
    EXCEPTION = "exception"
    CANCELLED = "cancelled"


class Role(StrEnum):
    """Group names, created by a data migration; `system` is the software itself."""

    CUSTOMER_SERVICE = "customer_service"
    WAREHOUSE = "warehouse"
    AGENT = "agent"
    RISK_REVIEWER = "risk_reviewer"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    SYSTEM = "system"


BOARD_STAGES = (Stage.PENDING_REVIEW, Stage.PICKING, Stage.SHIPPING, Stage.DONE)
OPEN_STAGES = frozenset(
    {Stage.PENDING_REVIEW, Stage.PICKING, Stage.SHIPPING, Stage.QUARANTINED, Stage.EXCEPTION}
)
TERMINAL_STAGES = frozenset({Stage.DONE, Stage.CANCELLED})

# from → allowed targets. Leaving `exception` goes back to the stage it was held in (checked
# by `check_transition` against `held_stage`) or to cancelled.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.PENDING_REVIEW: frozenset({Stage.PICKING, Stage.QUARANTINED, Stage.EXCEPTION, Stage.CANCELLED}),
    Stage.PICKING: frozenset({Stage.SHIPPING, Stage.EXCEPTION, Stage.CANCELLED}),
    Stage.SHIPPING: frozenset({Stage.DONE, Stage.EXCEPTION}),
    Stage.QUARANTINED: frozenset({Stage.PENDING_REVIEW, Stage.CANCELLED}),
    Stage.EXCEPTION: frozenset({Stage.PENDING_REVIEW, Stage.PICKING, Stage.SHIPPING, Stage.CANCELLED}),
    Stage.DONE: frozenset(),
    Stage.CANCELLED: frozenset(),
}

_ANY = None  # a role that may make every legal transition

# Which (from, to) pairs each role may make. Warehouse moves only picking and shipping;
# customer service reviews, raises and resolves exceptions; risk reviewers release or cancel
# quarantined orders; supervisors, admins and the system may make any legal move.
ROLE_TRANSITIONS: dict[Role, frozenset[tuple[Stage, Stage]] | None] = {
    Role.SYSTEM: _ANY,
    Role.ADMIN: _ANY,
    Role.SUPERVISOR: _ANY,
    Role.WAREHOUSE: frozenset(
        {
            (Stage.PICKING, Stage.SHIPPING),
            (Stage.SHIPPING, Stage.DONE),
            (Stage.PICKING, Stage.EXCEPTION),
            (Stage.SHIPPING, Stage.EXCEPTION),
        }
    ),
    Role.CUSTOMER_SERVICE: frozenset(
        {
            (Stage.PENDING_REVIEW, Stage.PICKING),
            (Stage.PENDING_REVIEW, Stage.EXCEPTION),
            (Stage.PENDING_REVIEW, Stage.CANCELLED),
            (Stage.PICKING, Stage.EXCEPTION),
            (Stage.SHIPPING, Stage.EXCEPTION),
            (Stage.EXCEPTION, Stage.PENDING_REVIEW),
            (Stage.EXCEPTION, Stage.PICKING),
            (Stage.EXCEPTION, Stage.SHIPPING),
        }
    ),
    Role.AGENT: frozenset(
        {
            (Stage.PENDING_REVIEW, Stage.PICKING),
            (Stage.PENDING_REVIEW, Stage.EXCEPTION),
            (Stage.PICKING, Stage.EXCEPTION),
            (Stage.EXCEPTION, Stage.PENDING_REVIEW),
            (Stage.EXCEPTION, Stage.PICKING),
        }
    ),
    Role.RISK_REVIEWER: frozenset(
        {(Stage.QUARANTINED, Stage.PENDING_REVIEW), (Stage.QUARANTINED, Stage.CANCELLED)}
    ),
}


class TransitionError(Exception):
    """Base for refusals; `code` is stable for API clients."""

    code = "transition_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IllegalTransition(TransitionError):
    code = "illegal_transition"


class RoleMayNotTransition(TransitionError):
    code = "role_forbidden"


def check_transition(
    *, current: Stage, target: Stage, roles: frozenset[Role], held_stage: Stage | None = None
) -> None:
    """Raise if `roles` may not move an order from `current` to `target`; return otherwise."""
    if target == current:
        raise IllegalTransition(f"The order is already in stage '{current}'.")
    allowed = TRANSITIONS[current]
    if target not in allowed:
        choices = ", ".join(sorted(allowed)) or "none, it is final"
        raise IllegalTransition(
            f"An order cannot move from '{current}' to '{target}'. Allowed from '{current}': {choices}."
        )
    if (
        current == Stage.EXCEPTION
        and target != Stage.CANCELLED
        and held_stage is not None
        and target != held_stage
    ):
        raise IllegalTransition(
            f"This exception was raised in stage '{held_stage}'; resolving it returns the order "
            f"to '{held_stage}', not '{target}'."
        )
    if not role_may(roles=roles, current=current, target=target):
        names = ", ".join(sorted(roles)) or "no role"
        raise RoleMayNotTransition(
            f"Your role ({names}) may not move an order from '{current}' to '{target}'."
        )


def role_may(*, roles: frozenset[Role], current: Stage, target: Stage) -> bool:
    for role in roles:
        pairs = ROLE_TRANSITIONS.get(role, frozenset())
        if pairs is _ANY or (current, target) in pairs:
            return True
    return False
