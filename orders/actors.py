"""Who does a thing: a person with roles, or a part of the system."""

from __future__ import annotations

from dataclasses import dataclass, field

from orders.states import Role


@dataclass(frozen=True)
class Actor:
    name: str
    user: object | None = None  # django User; None for system parts
    roles: frozenset[Role] = field(default_factory=frozenset)

    @property
    def user_id(self) -> int | None:
        return getattr(self.user, "pk", None)


def system_actor(part: str) -> Actor:
    """`part` names the piece of software: webhook:jd, poller:taobao, import:42 …"""
    return Actor(name=part, user=None, roles=frozenset({Role.SYSTEM}))


def import_actor(job) -> Actor:
    """An import is run by the system on behalf of whoever uploaded the file: its events name
    both, and the uploader's regions bound which stored orders the file may change (a regional
    supervisor's sheet does not rewrite another region's order, as their API delivery does not)."""
    return Actor(name=f"import:{job.pk}", user=job.uploaded_by, roles=frozenset({Role.SYSTEM}))


def roles_of(user) -> frozenset[Role]:
    if user is None or not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_paidan_roles", None)
    if cached is not None:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    if user.is_superuser:
        names.add(Role.ADMIN)
    roles = frozenset(Role(n) for n in names if n in Role._value2member_map_)
    user._paidan_roles = roles
    return roles


def user_actor(user) -> Actor:
    return Actor(name=user.get_username(), user=user, roles=roles_of(user))
