"""Risk review pages: the reviewers' list, one review with everything needed to decide it
(the order, the hits, the customer's history, related orders and the decision form), and the
monthly rule report as a page and as CSV."""

from __future__ import annotations

import re
from datetime import date

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from orders import csvsafe
from orders.actors import roles_of
from orders.models import Order
from riskcontrol import selectors, services
from riskcontrol.apis import visible_review
from riskcontrol.models import (
    BLACKLISTABLE,
    LIST_KIND_LABELS,
    RULE_KIND_LABELS,
    BlacklistEntry,
    Review,
    ReviewDecision,
)
from riskcontrol.serializers import BLACKLIST_DAYS_MAX, NOTE_MAX

LIST_PAGE_SIZE = 25
REPORT_YEARS = (2000, 2100)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def _refused(request: HttpRequest, *, status: int, title: str, reason: str) -> HttpResponse:
    return render(request, "riskcontrol/refused.html", {"title": title, "reason": reason}, status=status)


def _no_review_role(request: HttpRequest, title: str) -> HttpResponse | None:
    if roles_of(request.user) & selectors.REVIEW_ROLES:
        return None
    return _refused(
        request,
        status=403,
        title=title,
        reason=_("Only risk reviewers, supervisors and admins may open this page."),
    )


# --- The list ---------------------------------------------------------------------------------
@login_required
@require_GET
def review_list(request: HttpRequest) -> HttpResponse:
    refused = _no_review_role(request, _("Risk reviews"))
    if refused:
        return refused
    state = request.GET.get("state", "")
    reviews = selectors.open_first(
        selectors.reviews_visible_to(request.user).select_related("decided_by", "order__channel")
    )
    if state:
        if state not in Review.State.values:
            return _refused(
                request,
                status=400,
                title=_("Risk reviews"),
                reason=_("Unknown review state “%(state)s”. Choose one of: %(known)s.")
                % {"state": state, "known": ", ".join(Review.State.values)},
            )
        reviews = reviews.filter(state=state)
    page = Paginator(reviews, LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "riskcontrol/review_list.html",
        {"page": page, "state": state, "states": Review.State.choices},
    )


# --- One review -------------------------------------------------------------------------------
class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=ReviewDecision.Decision.choices,
        widget=forms.RadioSelect,
        error_messages={"required": gettext_lazy("Choose a decision.")},
    )
    note = forms.CharField(max_length=NOTE_MAX, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    blacklist = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    blacklist_days = forms.IntegerField(min_value=1, max_value=BLACKLIST_DAYS_MAX, required=False)

    def __init__(self, *args, order: Order, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only what this order has can be blacklisted from it.
        self.fields["blacklist"].choices = [
            (kind, LIST_KIND_LABELS[kind]) for kind, field in BLACKLISTABLE.items() if getattr(order, field)
        ]

    def clean_note(self) -> str:
        return self.cleaned_data["note"].strip()

    def clean(self) -> dict:
        data = super().clean()
        chosen = data.get("blacklist") or []
        if chosen and data.get("decision") not in (None, ReviewDecision.Decision.CONFIRMED):
            self.add_error("blacklist", _("Only confirmed fraud can be blacklisted."))
        if data.get("blacklist_days") is not None and not chosen:
            self.add_error("blacklist_days", _("An expiry only applies when something is blacklisted."))
        return data


def _blacklist_options(order: Order, form: DecisionForm) -> list[dict]:
    """The checkboxes: each value the order has, and whether it is blacklisted already."""
    now = timezone.now()
    values = {
        kind: str(getattr(order, field)) for kind, field in BLACKLISTABLE.items() if getattr(order, field)
    }
    live = set(
        BlacklistEntry.objects.filter(kind__in=list(values), value__in=list(values.values()))
        .exclude(expires_at__lte=now)
        .values_list("kind", "value")
    )
    chosen = set(form["blacklist"].value() or [])
    return [
        {
            "kind": kind,
            "label": LIST_KIND_LABELS[kind],
            "value": selectors.short_fingerprint(value) if kind == "card" else value,
            "listed": (kind, value) in live,
            "checked": kind in chosen,
        }
        for kind, value in values.items()
    ]


@login_required
@require_http_methods(["GET", "POST"])
def review_detail(request: HttpRequest, review_id: int) -> HttpResponse:
    refused = _no_review_role(request, _("Risk review"))
    if refused:
        return refused
    review = visible_review(request.user, review_id)
    order = review.order
    status = 200
    if request.method == "POST":
        form = DecisionForm(request.POST, order=order)
        if form.is_valid():
            _decide(request, review, form.cleaned_data)
            return redirect("riskcontrol:review", review_id=review.pk)  # POST/redirect/GET
        status = 400
    else:
        form = DecisionForm(order=order)
    history, history_total = selectors.customer_orders(order, limit=selectors.HISTORY_LIMIT)
    return render(
        request,
        "riskcontrol/review_detail.html",
        {
            "review": review,
            "order": order,
            "hits": list(order.rule_hits.all()),
            "decisions": [
                {"decision": d, "blacklisted": [str(LIST_KIND_LABELS.get(k, k)) for k in d.blacklisted]}
                for d in review.decisions.all()
            ],
            "history": history,
            "history_total": history_total,
            "related": selectors.related_orders(order),
            "form": form,
            "blacklist_options": _blacklist_options(order, form),
            "card_short": selectors.short_fingerprint(order.card_fingerprint),
            "note_max": NOTE_MAX,
            "days_max": BLACKLIST_DAYS_MAX,
            "limits": {
                "history": selectors.HISTORY_LIMIT,
                "related": selectors.RELATED_LIMIT,
                "days": selectors.RELATED_DAYS,
            },
        },
        status=status,
    )


def _decide(request: HttpRequest, review: Review, data: dict) -> None:
    """Call the service; every outcome becomes a message on the page it redirects to."""
    tag = review.order.tag
    try:
        services.review_decide(
            review_id=review.pk,
            user=request.user,
            decision=data["decision"],
            note=data["note"],
            blacklist=data["blacklist"],
            blacklist_days=data["blacklist_days"],
        )
    except services.ReviewError as exc:
        messages.error(request, _("Nothing was decided: %(why)s") % {"why": exc.message})
        return
    except services.ReviewNotFound as exc:
        raise Http404(str(exc)) from exc
    except DjangoValidationError as exc:
        messages.error(request, _("Nothing was decided: %(why)s") % {"why": " ".join(exc.messages)})
        return
    decision = data["decision"]
    if decision == ReviewDecision.Decision.CONFIRMED:
        text = _("%(tag)s is confirmed fraud and was cancelled.") % {"tag": tag}
        if data["blacklist"]:
            listed = ", ".join(str(LIST_KIND_LABELS[k]) for k in data["blacklist"])
            if data["blacklist_days"]:
                text += " " + _("Blacklisted for %(days)d days: %(what)s.") % {
                    "days": data["blacklist_days"],
                    "what": listed,
                }
            else:
                text += " " + _("Blacklisted: %(what)s.") % {"what": listed}
    elif decision == ReviewDecision.Decision.FALSE_POSITIVE:
        text = _("%(tag)s was a false positive; it is released to pending review.") % {"tag": tag}
    else:
        text = _("%(tag)s stays held; the review is marked as needing investigation.") % {"tag": tag}
    messages.success(request, text)


# --- The monthly report -----------------------------------------------------------------------
def parse_month(raw: str) -> date:
    """ "2026-11" → 2026-11-01; anything else raises ValueError with a reason for people."""
    match = _MONTH.match(raw.strip())
    if not match:
        raise ValueError(_("“%(month)s” is not a month: write it as YYYY-MM, e.g. 2026-11.") % {"month": raw})
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12:
        raise ValueError(_("“%(month)s” is not a month: months run from 01 to 12.") % {"month": raw})
    if not REPORT_YEARS[0] <= year <= REPORT_YEARS[1]:
        raise ValueError(
            _("The report covers the years %(first)d to %(last)d.")
            % {"first": REPORT_YEARS[0], "last": REPORT_YEARS[1]}
        )
    return date(year, month, 1)


def _shift(month: date, by: int) -> date:
    index = month.year * 12 + month.month - 1 + by
    return date(index // 12, index % 12 + 1, 1)


@login_required
@require_GET
def rule_report(request: HttpRequest) -> HttpResponse:
    refused = _no_review_role(request, _("Risk rule report"))
    if refused:
        return refused
    raw = request.GET.get("month", "")
    try:
        month = parse_month(raw) if raw else timezone.localdate().replace(day=1)
    except ValueError as exc:
        return _refused(request, status=400, title=_("Risk rule report"), reason=str(exc))
    output = request.GET.get("format", "html")
    if output not in ("html", "csv"):
        return _refused(
            request,
            status=400,
            title=_("Risk rule report"),
            reason=_("Unknown format “%(format)s”: use csv, or leave it out for the page.")
            % {"format": output},
        )
    rows = selectors.monthly_report(month)
    months = [m for m, _w in rows[0].trail] if rows else [_shift(month, -n) for n in range(5, -1, -1)]
    if output == "csv":
        response = StreamingHttpResponse(
            csvsafe.iter_csv(_report_csv(rows, months)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="risk-rules-{month:%Y-%m}.csv"'
        return response
    lo, hi = date(REPORT_YEARS[0], 1, 1), date(REPORT_YEARS[1], 12, 1)
    return render(
        request,
        "riskcontrol/report.html",
        {
            "month": month,
            "rows": rows,
            "previous": _shift(month, -1) if month > lo else None,
            "next": _shift(month, 1) if month < hi else None,
            "totals": {
                "hits": sum(r.hits for r in rows),
                "confirmed": sum(r.confirmed for r in rows),
                "false_positives": sum(r.false_positives for r in rows),
            },
        },
    )


def _report_csv(rows: list[selectors.RuleMonth], months: list[date]):
    yield [
        _("Rule"), _("Type"), _("On"), _("Hits"), _("Confirmed"), _("False positives"),
        _("Precision (%)"), _("Weight at month end"),
        *[_("Weight %(month)s") % {"month": f"{m:%Y-%m}"} for m in months],
    ]  # fmt: skip
    for r in rows:
        yield [
            r.rule.name,
            str(RULE_KIND_LABELS.get(r.rule.kind, r.rule.kind)),
            r.rule.is_active,
            r.hits,
            r.confirmed,
            r.false_positives,
            round(r.precision * 100, 1) if r.precision is not None else "",
            round(r.weight_end, 2),
            *[round(weight, 2) for _m, weight in r.trail],
        ]
