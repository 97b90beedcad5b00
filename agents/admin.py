from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from agents.models import Agent, AgentSkill, PerformanceRecord, Rating, Region, Skill, Team


class AgentSkillInline(admin.TabularInline):
    model = AgentSkill
    extra = 1


PROFILE_FIELDS = [
    "avg_handling_minutes",
    "good_rate_30d",
    "good_rate_7d",
    "on_time_rate",
    "first_fix_rate",
    "acceptance_rate",
    "ratings_30d",
    "consecutive_exceptions",
    "quality_weight",
    "profile_updated_at",
]


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "user",
        "status",
        "capacity",
        "quality_weight",
        "consecutive_exceptions",
        "backup",
    ]
    list_filter = ["status", "teams", "regions"]
    search_fields = ["display_name", "user__username"]
    filter_horizontal = ["teams", "regions", "dedicated_channels"]
    raw_id_fields = ["dedicated_customers", "backup", "supervisor", "user"]
    inlines = [AgentSkillInline]
    readonly_fields = ["status_changed_at", "last_offer_at", "location_at", *PROFILE_FIELDS]
    fieldsets = [
        (None, {"fields": ["user", "display_name", "status", "status_changed_at", "capacity"]}),
        (_("Where"), {"fields": ["regions", "service_radius_km", "latitude", "longitude", "location_at"]}),
        (_("Teams and dedication"), {"fields": ["teams", "dedicated_channels", "dedicated_customers"]}),
        (_("People"), {"fields": ["backup", "supervisor"]}),
        (_("Profile (computed)"), {"fields": ["last_offer_at", *PROFILE_FIELDS]}),
    ]


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "provinces"]
    filter_horizontal = ["supervisors"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "region"]


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "keywords", "wait_alert_seconds"]


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ["order", "agent", "score", "on_time", "fixed_first_time", "created_at"]
    list_filter = ["score"]
    readonly_fields = ["order", "agent", "score", "on_time", "fixed_first_time", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # ratings arrive through the API, which also updates the profile


@admin.register(PerformanceRecord)
class PerformanceRecordAdmin(admin.ModelAdmin):
    list_display = ["agent", "kind", "count", "at"]
    list_filter = ["kind"]
    readonly_fields = ["agent", "kind", "count", "at", "detail"]

    def has_add_permission(self, request) -> bool:
        return False
