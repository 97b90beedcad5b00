"""Reads about people: who supervises what, and how to reach them outside the app."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth import get_user_model

from orders.states import Role


def region_supervisors(region_ids: set[int | None]) -> dict[int | None, list]:
    """The supervisors to tell about something in each region (one query per call). The key
    None — no region — gets every active supervisor: someone must hear of it."""
    User = get_user_model()
    out: dict[int | None, list] = defaultdict(list)
    wanted = {r for r in region_ids if r is not None}
    if wanted:
        through = User.supervised_regions.through
        rows = through.objects.filter(region_id__in=wanted, user__is_active=True).select_related("user")
        for row in rows:
            out[row.region_id].append(row.user)
    if None in region_ids or any(not out[r] for r in wanted):
        everyone = list(User.objects.filter(groups__name=Role.SUPERVISOR, is_active=True).distinct())
        out[None] = everyone
        for r in wanted:
            if not out[r]:
                out[r] = everyone  # a region with no supervisor set falls back to all of them
    return dict(out)


def phones_of(user_ids: set[int]) -> dict[int, str]:
    from agents.models import UserContact

    return dict(
        UserContact.objects.filter(user_id__in=user_ids).exclude(phone="").values_list("user_id", "phone")
    )
