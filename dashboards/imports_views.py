"""Pages for CSV/Excel import (supervisors and admins) and the CSV export of the order list."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from orders import csvsafe, selectors
from orders.actors import roles_of
from orders.imports import (
    ALLOWED_EXTENSIONS,
    ImportFileError,
    error_report_rows,
    import_job_create,
    inspect_file,
)
from orders.models import Channel, ImportJob
from orders.states import Role
from orders.tasks import import_orders_task

IMPORT_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})


def _require_import_role(request: HttpRequest) -> None:
    if not roles_of(request.user) & IMPORT_ROLES:
        raise PermissionDenied(_("Only supervisors and admins may import orders."))


class ImportForm(forms.Form):
    channel = forms.ModelChoiceField(
        label=gettext_lazy("Channel"),
        queryset=Channel.objects.filter(is_active=True).order_by("code"),
        empty_label=None,
    )
    file = forms.FileField(
        label=gettext_lazy("File"),
        help_text=gettext_lazy("CSV (UTF-8 or GBK) or Excel .xlsx; the first row names the columns."),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if Path(upload.name).suffix.lower() not in ALLOWED_EXTENSIONS:
            raise forms.ValidationError(
                _("Only .csv and .xlsx files can be imported (got “%(name)s”); save .xls files as .xlsx.")
                % {"name": upload.name}
            )
        limit = settings.IMPORT_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                _("The file is %(size)s; the limit is %(limit)s.")
                % {"size": filesizeformat(upload.size), "limit": filesizeformat(limit)}
            )
        try:
            self.header = inspect_file(upload, upload.name)
        except ImportFileError as exc:
            raise forms.ValidationError(str(exc)) from exc
        upload.seek(0)
        return upload


def _too_large(request: HttpRequest) -> bool:
    """Refuse a huge upload from its Content-Length before Django spools it to disk."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > settings.IMPORT_MAX_UPLOAD_BYTES + 64 * 1024  # room for the form fields


@login_required
@require_http_methods(["GET", "POST"])
def import_upload(request: HttpRequest) -> HttpResponse:
    _require_import_role(request)
    status = 200
    refused = ""
    if request.method == "POST" and _too_large(request):
        form = ImportForm()
        refused = _("The file is larger than the limit of %(limit)s.") % {
            "limit": filesizeformat(settings.IMPORT_MAX_UPLOAD_BYTES)
        }
        status = 413
    elif request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            with transaction.atomic():
                job = import_job_create(
                    channel=form.cleaned_data["channel"],
                    original_name=upload.name,
                    source="upload",
                    uploaded_by=request.user,
                    file=upload,
                )
                transaction.on_commit(lambda: import_orders_task.delay(job.pk))
            return redirect("dashboards:import_detail", job_id=job.pk)
        status = 400
    else:
        form = ImportForm()
    jobs = ImportJob.objects.select_related("channel", "uploaded_by")[:20]
    return render(
        request,
        "dashboards/import_upload.html",
        {"form": form, "refused": refused, "jobs": jobs, "limit": settings.IMPORT_MAX_UPLOAD_BYTES},
        status=status,
    )


def _job_status(job: ImportJob) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "total_rows": job.total_rows,
        "processed_rows": job.processed_rows,
        "created": job.created_count,
        "updated": job.updated_count,
        "ignored": job.ignored_count,
        "rejected": job.rejected_count,
        "message": job.message,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "errors_url": reverse("dashboards:import_errors", args=[job.pk]) if job.rejected_count else None,
    }


@login_required
@require_GET
def import_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    _require_import_role(request)
    job = get_object_or_404(ImportJob.objects.select_related("channel", "uploaded_by"), pk=job_id)
    return render(request, "dashboards/import_detail.html", {"job": job, "state": _job_status(job)})


@login_required
@require_GET
def import_status(request: HttpRequest, job_id: int) -> JsonResponse:
    _require_import_role(request)
    job = get_object_or_404(ImportJob, pk=job_id)
    return JsonResponse(_job_status(job), headers={"Cache-Control": "no-store"})


@login_required
@require_GET
def import_errors(request: HttpRequest, job_id: int) -> StreamingHttpResponse:
    _require_import_role(request)
    job = get_object_or_404(ImportJob, pk=job_id)
    response = StreamingHttpResponse(
        csvsafe.iter_csv(error_report_rows(job)), content_type="text/csv; charset=utf-8"
    )
    stem = Path(job.original_name).stem or "import"
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"; ' + (
        f"filename*=UTF-8''{_quote(stem)}.errors.csv"
    )
    return response


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _local(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _export_rows(orders):
    yield [
        _("Tag"), _("Channel"), _("External id"), _("Stage"), _("Customer"), _("Phone"),
        _("Phone as sent"), _("VIP"), _("Address"), _("Province"), _("City"), _("District"),
        _("Items"), _("Amount"), _("Currency"), _("Coupon"), _("Note"), _("Category"), _("Urgency"),
        _("Kind"), _("Flags"), _("Owner"), _("Due"), _("Received"), _("Created at source"),
        _("Updated at source"),
    ]  # fmt: skip
    for o in orders.iterator(chunk_size=2000):
        items = "; ".join(
            f"{i.get('sku', '')} {i.get('name', '')} x{i.get('qty', '')} @{i.get('price', '')}"
            for i in o.items
        )
        yield [
            o.tag, o.channel.code, o.external_id, o.get_stage_display(), o.customer_name,
            o.customer_phone, o.customer_phone_raw, o.is_vip, o.address, o.province, o.city,
            o.district, items, o.amount, o.currency, o.coupon_code, o.note, o.category,
            o.get_urgency_display(), o.get_kind_display(), " ".join(o.flags),
            o.owner.get_username() if o.owner else "", _local(o.due_at), _local(o.received_at),
            _local(o.source_created_at), _local(o.source_updated_at),
        ]  # fmt: skip


@login_required
@require_GET
def order_export(request: HttpRequest) -> StreamingHttpResponse:
    """The order list as CSV with the list's filters: streamed, UTF-8 with BOM for Excel,
    every cell neutralised against formula injection."""
    orders = selectors.order_list(user=request.user, params=request.GET)
    response = StreamingHttpResponse(
        csvsafe.iter_csv(_export_rows(orders)), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="orders-{stamp}.csv"'
    return response
