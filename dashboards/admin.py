from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.template import Context, TemplateSyntaxError
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from dashboards.backends import describe_target
from dashboards.login_limits import LimitedAdminAuthenticationForm
from dashboards.models import Alert, Notification, NotificationTemplate
from dashboards.notify import compile_template, notifications_resend, render
from orders.admin import ReadOnlyAdmin
from orders.admin_audit import audited_action

# The admin's login counts failed attempts like the site's (dashboards/login_limits.py).
admin.site.login_form = LimitedAdminAuthenticationForm


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "level", "message", "region", "acknowledged_at", "acknowledged_by"]
    list_filter = ["kind", "level", "region", ("acknowledged_at", admin.EmptyFieldListFilter)]
    readonly_fields = [f.name for f in Alert._meta.fields]
    actions = ["acknowledge"]

    def has_add_permission(self, request) -> bool:
        return False

    @audited_action(description=_("Acknowledge"))
    def acknowledge(self, request, queryset):
        queryset.filter(acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )


# Every key the seed templates use (dashboards/defaults.py), with made-up values: what the
# preview renders. A template that names a key not here previews it as empty.
SAMPLE_PAYLOAD = {
    "order": {
        "id": 42,
        "tag": "JD-20261122-007",
        "stage_label": "拣货中",
        "due_at": "2026-11-22 16:30",
        "url": "https://paidan.example.com/orders/42/",
    },
    "owner": "张三",
    "backup": "李四",
    "minutes_over": 25,
    "score": 87,
    "type": "缺货",
    "note": "仓库 A 无库存",
    "customer": "王先生",
    "resolution": "已从仓库 B 补发",
    "delay_until": "2026-11-25 18:00",
}


class NotificationTemplateForm(forms.ModelForm):
    class Meta:
        model = NotificationTemplate
        fields = ["code", "channel", "subject", "body", "is_active"]

    def clean_subject(self) -> str:
        return self._compiles(self.cleaned_data.get("subject", ""))

    def clean_body(self) -> str:
        return self._compiles(self.cleaned_data.get("body", ""))

    @staticmethod
    def _compiles(text: str) -> str:
        try:
            compiled = compile_template(text)
        except TemplateSyntaxError as exc:
            raise ValidationError(
                _("This is not a valid template: %(error)s"), code="template_syntax", params={"error": exc}
            ) from exc
        # Some tags fail only when rendered ({% url %} of an unknown name): try the sample.
        try:
            compiled.render(Context(SAMPLE_PAYLOAD))
        except Exception as exc:
            raise ValidationError(
                _("This template fails when rendered: %(error)s"),
                code="template_render",
                params={"error": exc},
            ) from exc
        return text


@admin.register(NotificationTemplate)
class NotificationTemplateAdmin(admin.ModelAdmin):
    form = NotificationTemplateForm
    list_display = ["code", "channel", "subject", "is_active"]
    list_filter = ["channel", "is_active"]
    search_fields = ["code", "subject", "body"]
    readonly_fields = ["preview"]
    fields = ["code", "channel", "subject", "body", "is_active", "preview"]

    @admin.display(description=_("preview with a sample payload"))
    def preview(self, obj: NotificationTemplate) -> str:
        if obj is None or obj.pk is None:
            return _("Save to see a preview.")
        try:
            subject, body = render(obj, SAMPLE_PAYLOAD)
        except Exception as exc:  # a filter can fail at render time; show why
            return format_html('<span class="errornote">{}</span>', exc)
        return format_html(
            '<div><strong>{}</strong></div><pre style="white-space:pre-wrap">{}</pre>'
            '<div class="help">{}</div>',
            subject,
            body,
            _(
                "Payload keys: order.id, order.tag, order.stage_label, order.due_at, order.url, owner, "
                "backup, minutes_over, score, type, note, customer, resolution, delay_until."
            ),
        )


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """Every message and what became of it; given-up ones can be sent again."""

    deletable = False
    list_display = [
        "created_at",
        "template",
        "channel",
        "recipient",
        "order",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "short_error",
    ]
    list_filter = ["channel", "status", "template"]
    search_fields = ["template", "target", "user__username", "order__tag"]
    list_select_related = ["user", "order"]
    actions = ["send_again"]

    @admin.display(description=_("recipient"))
    def recipient(self, obj: Notification) -> str:
        return describe_target(obj)

    @admin.display(description=_("last error"))
    def short_error(self, obj: Notification) -> str:
        return obj.last_error[:120]

    @audited_action(description=_("Send again (given-up ones; attempts are kept)"))
    def send_again(self, request, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        queued = notifications_resend(ids=ids)
        if queued:
            self.message_user(
                request,
                ngettext(
                    "%(count)d notification will be sent again.",
                    "%(count)d notifications will be sent again.",
                    len(queued),
                )
                % {"count": len(queued)},
                messages.SUCCESS,
            )
        if len(queued) < len(ids):
            self.message_user(
                request,
                _("%(count)d not given up (pending or sent): left as they are.")
                % {"count": len(ids) - len(queued)},
                messages.WARNING,
            )
