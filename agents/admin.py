from django.contrib import admin

from agents.models import Agent, AgentSkill, Region, Skill, Team


class AgentSkillInline(admin.TabularInline):
    model = AgentSkill
    extra = 1


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["display_name", "user", "status", "capacity", "backup"]
    list_filter = ["status", "teams", "regions"]
    search_fields = ["display_name", "user__username"]
    filter_horizontal = ["teams", "regions"]
    inlines = [AgentSkillInline]


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]
    filter_horizontal = ["supervisors"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "region"]


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "keywords"]
