"""Signed webhooks in: POST /hooks/{channel}/ with an HMAC-SHA256 over timestamp + "." + body.

401 for a bad, missing or stale signature; 429 with Retry-After past the channel's rate
(WEBHOOK_RATE, orders/throttles.py); 200 with nothing changed for a replayed event id;
the body goes through the channel's field mapping and the one ingest service.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orders import services
from orders.actors import system_actor
from orders.mapping import apply_mapping
from orders.models import Channel, WebhookDelivery
from orders.throttles import ChannelWebhookThrottle


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _refuse(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


@csrf_exempt
@require_POST
def receive_webhook(request: HttpRequest, channel_code: str) -> JsonResponse:
    channel = Channel.objects.filter(code=channel_code, is_active=True).first()
    if channel is None:
        return _refuse(404, "unknown_channel", f"No active channel '{channel_code}'.")
    try:
        body = request.body
    except RequestDataTooBig:
        return _refuse(413, "too_large", "The request body is larger than this server accepts.")
    timestamp = request.headers.get("X-Paidan-Timestamp", "")
    signature = request.headers.get("X-Paidan-Signature", "")
    event_id = request.headers.get("X-Paidan-Event-Id", "").strip()
    if not channel.webhook_secret:
        return _refuse(401, "no_secret", "This channel has no webhook secret; webhooks are refused.")
    if not timestamp or not signature:
        return _refuse(401, "signature_missing", "X-Paidan-Timestamp and X-Paidan-Signature are required.")
    if not (timestamp.isascii() and timestamp.isdigit()):  # "²".isdigit() is true; int() refuses it
        return _refuse(401, "bad_timestamp", "X-Paidan-Timestamp must be unix seconds.")
    skew = abs(time.time() - int(timestamp))
    if skew > settings.WEBHOOK_TOLERANCE_SECONDS:
        return _refuse(
            401,
            "stale_timestamp",
            f"The timestamp is {int(skew)} s away from our clock; at most "
            f"{settings.WEBHOOK_TOLERANCE_SECONDS} s is accepted.",
        )
    expected = sign(channel.webhook_secret, timestamp, body)
    if not hmac.compare_digest(expected, signature):
        return _refuse(401, "bad_signature", "The signature does not match the body and timestamp.")
    throttle = ChannelWebhookThrottle(channel.code)
    if not throttle.allow_request(request, None):
        # A brake, not a guarantee (orders/throttles.py); the sender retries after Retry-After.
        wait = max(1, math.ceil(throttle.wait() or throttle.duration))
        response = _refuse(
            429,
            "rate_limited",
            f"Channel '{channel.code}' sent more than {settings.WEBHOOK_RATE} webhooks; "
            f"nothing was stored, retry after {wait} s.",
        )
        response["Retry-After"] = str(wait)
        return response
    if not event_id or len(event_id) > 128:
        return _refuse(400, "event_id_missing", "X-Paidan-Event-Id is required (at most 128 characters).")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _refuse(400, "malformed_json", f"The body is not valid JSON: {exc}")
    return _ingest_once(channel, event_id, payload)


def _ingest_once(channel: Channel, event_id: str, payload: object) -> JsonResponse:
    try:
        with transaction.atomic():
            # The unique (channel, event id) row is the replay guard: a concurrent copy of the
            # same event waits on it and then fails here, changing nothing.
            delivery = WebhookDelivery.objects.create(channel=channel, event_id=event_id, outcome="")
            result = services.order_ingest(
                payload=apply_mapping(channel.field_mapping, payload),
                actor=system_actor(f"webhook:{channel.code}"),
                channel=channel,
            )
            if result.status == "rejected":
                # Roll back the delivery row too, so the sender may fix and resend the event.
                transaction.set_rollback(True)
                return _refuse_invalid(result)
            delivery.outcome = result.status
            delivery.order_id = result.id
            delivery.save(update_fields=["outcome", "order"])
    except IntegrityError:
        return JsonResponse({"status": "duplicate", "detail": f"Event {event_id} was already received."})
    return JsonResponse(
        {"status": result.status, "id": result.id, "tag": result.tag, "reason": result.reason}
    )


def _refuse_invalid(result: services.IngestResult) -> JsonResponse:
    return JsonResponse(
        {"code": "invalid", "detail": "The order was not stored.", "errors": result.errors}, status=400
    )
