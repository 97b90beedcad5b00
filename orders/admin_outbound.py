"""Admin for outbound webhooks: subscriptions, and every delivery with its attempts, which
can be replayed."""

from __future__ import annotations

import secrets

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from orders.admin import ReadOnlyAdmin, ReadOnlyInline
from orders.admin_audit import audited_action
from orders.models import OutboundAttempt, OutboundDelivery, WebhookSubscription
from orders.outbound import EVENT_TYPE_CHOICES, REPLAY_INLINE_MAX, outbound_replay

MIN_SECRET_LENGTH = 16

EVENT_TYPES_HELP = _(
    "Which events to send; none ticked: all of them. Each request is a POST of JSON "
    '{"id", "type", "occurred_at", "order": {"id", "tag", "channel", "external_id", "stage", '
    '"owner", "due_at"}, "event": {"from", "to", "reason", "actor"}} with the headers X-Paidan-Event, '
    "X-Paidan-Delivery (the same on every retry) and X-Paidan-Signature: t=<unix seconds>,"
    'v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the signing secret>. Any 2xx answer is success; '
    "anything else is retried after 1 min, 5 min, 15 min, 1 h, 3 h, 6 h and 12 h, then given up."
)


class WebhookSubscriptionForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        label=_("event types"),
        choices=EVENT_TYPE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=EVENT_TYPES_HELP,
    )
    # Write-only: the stored secret is never sent back to the browser.
    secret = forms.CharField(
        label=_("signing secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        # MIN_SECRET_LENGTH is 16; written out so the text stays lazy (translated per request).
        help_text=_(
            "At least 16 characters. Leave empty to keep the current secret; for a new "
            "subscription, empty generates one that is shown once after saving."
        ),
    )

    class Meta:
        model = WebhookSubscription
        fields = ["name", "url", "event_types", "secret", "is_active"]

    def clean_url(self) -> str:
        url = self.cleaned_data.get("url", "")
        if url and not url.lower().startswith(("https://", "http://")):
            raise ValidationError(_("The URL must start with https:// (or http://)."))
        return url

    def clean_secret(self) -> str:
        value = self.cleaned_data.get("secret", "")
        self.generated_secret = ""
        if value:
            if len(value) < MIN_SECRET_LENGTH:
                raise ValidationError(
                    _("A signing secret needs at least %(min)d characters; this one has %(count)d.")
                    % {"min": MIN_SECRET_LENGTH, "count": len(value)}
                )
            return value
        if self.instance.pk and self.instance.secret:
            return self.instance.secret
        self.generated_secret = secrets.token_urlsafe(32)
        return self.generated_secret


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = WebhookSubscriptionForm
    list_display = ["name", "url", "events", "is_active", "pending", "given_up", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "url"]
    readonly_fields = ["secret_hint", "created_at"]
    fields = ["name", "url", "event_types", "secret", "secret_hint", "is_active", "created_at"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending_count=Count(
                    "deliveries", filter=Q(deliveries__status=OutboundDelivery.Status.PENDING)
                ),
                failed_count=Count("deliveries", filter=Q(deliveries__status=OutboundDelivery.Status.FAILED)),
            )
        )

    @admin.display(description=_("event types"))
    def events(self, obj: WebhookSubscription) -> str:
        return ", ".join(obj.event_types) if obj.event_types else _("all")

    @admin.display(description=_("pending"), ordering="pending_count")
    def pending(self, obj: WebhookSubscription) -> int:
        return obj.pending_count

    @admin.display(description=_("given up"), ordering="failed_count")
    def given_up(self, obj: WebhookSubscription) -> int:
        return obj.failed_count

    @admin.display(description=_("current secret"))
    def secret_hint(self, obj: WebhookSubscription) -> str:
        if not obj.secret:
            return "-"
        return _("ends in …%(tail)s (%(count)d characters)") % {
            "tail": obj.secret[-4:],
            "count": len(obj.secret),
        }

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if getattr(form, "generated_secret", ""):
            self.message_user(
                request,
                _(
                    "The signing secret of %(name)s is %(secret)s — give it to the receiving system "
                    "now: it is not shown again."
                )
                % {"name": obj.name, "secret": form.generated_secret},
                messages.WARNING,
            )


class OutboundAttemptInline(ReadOnlyInline):
    model = OutboundAttempt
    fields = ["at", "status_code", "duration_ms", "error"]
    readonly_fields = fields


@admin.register(OutboundDelivery)
class OutboundDeliveryAdmin(ReadOnlyAdmin):
    """Every delivery and every attempt; nothing here is edited or deleted, only replayed."""

    deletable = False
    list_display = [
        "created_at",
        "event_type",
        "subscription",
        "order",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "short_error",
    ]
    list_filter = ["status", "event_type", "subscription"]
    search_fields = ["event_id", "order__tag", "subscription__name"]
    list_select_related = ["subscription", "order"]
    inlines = [OutboundAttemptInline]
    actions = ["replay"]

    @admin.display(description=_("last error"))
    def short_error(self, obj: OutboundDelivery) -> str:
        return obj.last_error[:120]

    @audited_action(description=_("Replay now (delivered ones too; each try is a new attempt)"))
    def replay(self, request, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        replayed, report = outbound_replay(ids=ids)
        if report is not None:
            self.message_user(
                request,
                _("Replayed %(count)d: %(delivered)d delivered, %(failed)d failed (see their attempts).")
                % {
                    "count": len(replayed),
                    "delivered": report.delivered,
                    "failed": report.retrying + report.failed,
                },
                messages.SUCCESS if not (report.retrying or report.failed) else messages.WARNING,
            )
        elif replayed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d delivery queued to be sent now (more than %(max)d are sent in the background).",
                    "%(count)d deliveries queued to be sent now (more than %(max)d are sent in the background).",
                    len(replayed),
                )
                % {"count": len(replayed), "max": REPLAY_INLINE_MAX},
                messages.SUCCESS,
            )
        if len(replayed) < len(ids):
            self.message_user(
                request,
                _("%(count)d not replayed: their subscription is switched off.")
                % {"count": len(ids) - len(replayed)},
                messages.WARNING,
            )

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in OutboundDelivery._meta.fields]
