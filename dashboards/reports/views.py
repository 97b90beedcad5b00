"""The report pages: an index, one page per report (tables with charts, ?format=csv&table=…
for any table) and the weekly bottleneck summary. Supervisors and admins only; a supervisor
sees their regions' figures."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from dashboards.reports import selectors, weekly
from dashboards.reports.selectors import ReportInputError, Table
from orders import csvsafe


def _refused(request: HttpRequest, title: str) -> HttpResponse:
    return render(
        request,
        "riskcontrol/refused.html",
        {"title": title, "reason": _("Only supervisors and admins may open the reports.")},
        status=403,
    )


def _context(request: HttpRequest, *, slug: str, title: str) -> dict:
    run = selectors.last_rollup()
    return {
        "slug": slug,
        "title": title,
        "titles": selectors.report_titles(),
        "updated_at": timezone.localtime(run.finished_at) if run else None,
    }


def _csv(table: Table, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        csvsafe.iter_csv([table.columns, *table.rows]), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def _bad_format(request: HttpRequest, context: dict, output: str) -> HttpResponse:
    context["error"] = _("Unknown format “%(format)s”: use csv, or leave it out for the page.") % {
        "format": output
    }
    return render(request, "dashboards/reports/report.html", context, status=400)


@login_required
@require_GET
def report_index(request: HttpRequest) -> HttpResponse:
    if not selectors.may_see_reports(request.user):
        return _refused(request, _("Reports"))
    return render(request, "dashboards/reports/index.html", _context(request, slug="", title=_("Reports")))


@login_required
@require_GET
def report_page(request: HttpRequest, slug: str) -> HttpResponse:
    build = selectors.REPORTS.get(slug)
    if build is None:
        raise Http404("No such report")
    title = selectors.report_titles()[slug]
    if not selectors.may_see_reports(request.user):
        return _refused(request, title)
    context = _context(request, slug=slug, title=title)
    context["params"] = {"from": request.GET.get("from", ""), "to": request.GET.get("to", "")}
    try:
        rng = selectors.parse_range(request.GET)
    except ReportInputError as exc:
        context["error"] = str(exc)
        return render(request, "dashboards/reports/report.html", context, status=400)
    context["range"] = rng
    context["params"] = rng.as_params()
    output = request.GET.get("format", "html")
    if output not in ("html", "csv"):
        return _bad_format(request, context, output)
    tables = build(selectors.report_scope(request.user), rng)
    if output == "csv":
        name = request.GET.get("table", tables[0].name)
        table = next((t for t in tables if t.name == name), None)
        if table is None:
            context["error"] = _("Unknown table “%(table)s”: this report has %(known)s.") % {
                "table": name,
                "known": ", ".join(t.name for t in tables),
            }
            return render(request, "dashboards/reports/report.html", context, status=400)
        return _csv(table, f"{slug}-{table.name}-{rng.first:%Y%m%d}-{rng.last:%Y%m%d}")
    context["tables"] = tables
    return render(request, "dashboards/reports/report.html", context)


@login_required
@require_GET
def report_weekly(request: HttpRequest) -> HttpResponse:
    title = selectors.report_titles()["weekly"]
    if not selectors.may_see_reports(request.user):
        return _refused(request, title)
    context = _context(request, slug="weekly", title=title)
    context["week_param"] = request.GET.get("week", "")
    try:
        week = weekly.parse_week(request.GET.get("week", ""))
    except ReportInputError as exc:
        context["error"] = str(exc)
        return render(request, "dashboards/reports/weekly.html", context, status=400)
    output = request.GET.get("format", "html")
    if output not in ("html", "csv"):
        context["error"] = _("Unknown format “%(format)s”: use csv, or leave it out for the page.") % {
            "format": output
        }
        return render(request, "dashboards/reports/weekly.html", context, status=400)
    summary = weekly.weekly_summary(selectors.report_scope(request.user), week)
    sections = [
        ("stage", _("Stage where orders wait longest"), summary.stage),
        ("category", _("Category breaching most"), summary.category),
        ("group", _("Most overloaded group"), summary.group),
    ]
    if output == "csv":
        rows = [
            [label, rank, f.name, f.figure, f.detail]
            for _key, label, findings in sections
            for rank, f in enumerate(findings[:2], start=1)
        ]
        table = Table(
            "weekly", title, [_("Question"), _("Rank"), _("Answer"), _("Figure"), _("Detail")], rows
        )
        return _csv(table, f"weekly-{week:%Y%m%d}")
    context.update(
        {
            "week": week,
            "week_end": summary.range.last,
            "week_param": week.isoformat(),
            "sections": [(key, label, findings[:2]) for key, label, findings in sections],
            "previous": week - timedelta(days=7),
            "next": week + timedelta(days=7),
        }
    )
    return render(request, "dashboards/reports/weekly.html", context)
