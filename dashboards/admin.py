from django.contrib import admin
from django.utils import timezone

from dashboards.models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "level", "message", "region", "acknowledged_at", "acknowledged_by"]
    list_filter = ["kind", "level", "region", ("acknowledged_at", admin.EmptyFieldListFilter)]
    readonly_fields = [f.name for f in Alert._meta.fields]
    actions = ["acknowledge"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Acknowledge")
    def acknowledge(self, request, queryset):
        queryset.filter(acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
