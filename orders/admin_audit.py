"""What admins did, kept: custom admin actions write Django's LogEntry like add, change and delete
do, and the log itself is shown read-only (on PostgreSQL a trigger refuses to rewrite it too,
orders/migrations/0009_audit_refuses_truncate_and_admin_log.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

# orders.admin imports this module last, once ReadOnlyAdmin is defined.
from orders.admin import ReadOnlyAdmin


def audited_action(*, description, permissions=None) -> Callable:
    """`@admin.action` that also writes a LogEntry per selected object, naming the admin.

    An action that returns a response is showing an intermediate page (a form to confirm, a
    redirect to a read-only view) and has done nothing yet: only a finished run is logged.
    """

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(modeladmin, request, queryset):
            selected = list(queryset)  # as the admin chose them, before the action changes them
            response = func(modeladmin, request, queryset)
            if response is None and selected:
                LogEntry.objects.log_actions(
                    user_id=request.user.pk,
                    queryset=selected,
                    action_flag=CHANGE,
                    change_message=gettext("Ran the admin action “%(action)s”.") % {"action": description},
                )
            return response

        run.audited = True
        return admin.action(run, description=description, permissions=permissions)

    return decorate


@admin.register(LogEntry)
class LogEntryAdmin(ReadOnlyAdmin):
    """The admin's own history: readable, never added, changed or deleted here. Having no delete
    permission here also makes the admin refuse to delete a user who has history (LogEntry's
    foreign key to the user would cascade)."""

    list_display = ["action_time", "user", "content_type", "object_repr", "action_flag", "message"]
    list_filter = ["action_flag", "content_type"]
    search_fields = ["object_repr", "user__username", "change_message"]
    list_select_related = ["user", "content_type"]
    date_hierarchy = "action_time"
    actions = None
    deletable = False

    @admin.display(description=_("change message"))
    def message(self, obj: LogEntry) -> str:
        return obj.get_change_message()


def _audit_celery_beat_actions() -> None:
    """django-celery-beat's own actions change the schedule (enable, disable, toggle) or start
    tasks at once (run): logged the same way."""
    from django_celery_beat.admin import PeriodicTaskAdmin

    for name in ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks"):
        func = getattr(PeriodicTaskAdmin, name)
        if not getattr(func, "audited", False):
            wrapped = audited_action(description=func.short_description)(func)
            setattr(PeriodicTaskAdmin, name, wrapped)


_audit_celery_beat_actions()
