"""How a notification leaves the building: one backend per channel, each with
`send(notification) -> None` that returns when the message was accepted and raises
`SendError` (or anything else) when it was not. Retries, backoff and bookkeeping are the
caller's (`dashboards.tasks`); a backend only talks to the outside world, with short timeouts.

SMS goes through the class named by the `SMS_BACKEND` setting: `LoggingSmsBackend` (the
embedded default: writes the text to the log) or `HttpGatewaySmsBackend` (POSTs JSON to
`SMS_GATEWAY_URL` with `SMS_GATEWAY_TOKEN` as a bearer token), or any class of your own with
the same `send(notification)`.

WeCom group robots get `{"msgtype": "text", "text": {"content": …, "mentioned_mobile_list": …}}`;
the mobiles come from the notification's payload key `mentioned_mobile_list` (a list of phone
numbers, E.164 or national; "@all" mentions everyone)."""

from __future__ import annotations

import logging
from functools import cache
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage
from django.utils.module_loading import import_string

from dashboards.models import Notification

logger = logging.getLogger(__name__)

# (connect, read) seconds: a slow robot or gateway costs a retry, never a stuck worker.
HTTP_TIMEOUT = (3.05, 10)
USER_AGENT = "Paidan-Notify/0.1"
# WeCom robots refuse text over 2,048 bytes (UTF-8).
WECOM_MAX_BYTES = 2048


class SendError(Exception):
    """The channel refused or could not take the message; the text says why."""


class Backend(Protocol):
    def send(self, notification: Notification) -> None: ...


def mask_phone(phone: str) -> str:
    """+8613510001000 → +86135****1000: enough to tell numbers apart in an audit line."""
    phone = phone.strip()
    if len(phone) < 8:
        return "****"
    return f"{phone[:-8]}****{phone[-4:]}"


def mask_url(url: str) -> str:
    """A robot webhook URL carries its key in the query: keep its first four characters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "****"
    query = [(k, f"{v[:4]}****" if v else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="*"), ""))


def describe_target(notification: Notification) -> str:
    """The address in words fit for the audit trail and logs: phones and robot keys masked."""
    if notification.channel == Notification.Channel.SMS:
        return mask_phone(notification.target)
    if notification.channel == Notification.Channel.WECOM:
        return mask_url(notification.target)
    if notification.channel == Notification.Channel.IN_APP:
        user = notification.user
        return user.get_username() if user is not None else "-"
    return notification.target


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class InAppBackend:
    """The inbox is the rows themselves: sending tells the person's open pages to refresh."""

    def send(self, notification: Notification) -> None:
        from dashboards.events import publish_notifications_created

        if notification.user_id is None:
            raise SendError("An in-app notification needs a user.")
        publish_notifications_created({notification.user_id: [notification.pk]})


class EmailBackend:
    """Plain-text mail through Django's EMAIL_BACKEND (SMTP in production, console when embedded)."""

    def send(self, notification: Notification) -> None:
        if not notification.target:
            raise SendError("No e-mail address.")
        message = EmailMessage(
            subject=notification.subject or notification.template,
            body=notification.body,
            to=[notification.target],
        )
        if message.send(fail_silently=False) != 1:
            raise SendError("The mail backend did not accept the message.")


def _wecom_mobile(phone: str) -> str:
    phone = phone.strip()
    return phone[3:] if phone.startswith("+86") else phone


class WeComRobotBackend:
    """A WeCom (企业微信) group robot: JSON to its webhook URL; 200 with errcode 0 is success."""

    def send(self, notification: Notification) -> None:
        if not notification.target.startswith(("https://", "http://")):
            raise SendError("The robot webhook URL must be an http(s) URL.")
        content = notification.body.encode()[:WECOM_MAX_BYTES].decode(errors="ignore")
        text: dict[str, object] = {"content": content}
        mobiles = notification.payload.get("mentioned_mobile_list") if notification.payload else None
        if isinstance(mobiles, list):
            text["mentioned_mobile_list"] = [_wecom_mobile(str(m)) for m in mobiles if str(m).strip()]
        try:
            response = requests.post(
                notification.target,
                json={"msgtype": "text", "text": text},
                timeout=HTTP_TIMEOUT,
                headers={"User-Agent": USER_AGENT},
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise SendError(f"WeCom robot unreachable: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code != 200:
            raise SendError(f"WeCom robot answered HTTP {response.status_code}: {_short(response.text)}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise SendError(
                f"WeCom robot answered something that is not JSON: {_short(response.text)}"
            ) from exc
        errcode = answer.get("errcode") if isinstance(answer, dict) else None
        if errcode != 0:
            errmsg = answer.get("errmsg", "") if isinstance(answer, dict) else ""
            raise SendError(f"WeCom robot refused the message: errcode {errcode}: {errmsg}")


class LoggingSmsBackend:
    """Writes the text to the log instead of sending it: the embedded default, for trying
    Paidan without an SMS contract."""

    def send(self, notification: Notification) -> None:
        if not notification.target:
            raise SendError("No phone number.")
        logger.info("SMS to %s: %s", mask_phone(notification.target), notification.body)


class HttpGatewaySmsBackend:
    """A generic HTTP SMS gateway: POST {"to", "text"} as JSON with a bearer token; any 2xx
    answer means the gateway took the message."""

    def send(self, notification: Notification) -> None:
        url = settings.SMS_GATEWAY_URL
        if not url:
            raise SendError("SMS_GATEWAY_URL is not set.")
        if not notification.target:
            raise SendError("No phone number.")
        headers = {"User-Agent": USER_AGENT}
        if settings.SMS_GATEWAY_TOKEN:
            headers["Authorization"] = f"Bearer {settings.SMS_GATEWAY_TOKEN}"
        try:
            response = requests.post(
                url,
                json={"to": notification.target, "text": notification.body},
                headers=headers,
                timeout=HTTP_TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise SendError(f"SMS gateway unreachable: {exc.__class__.__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise SendError(f"SMS gateway answered HTTP {response.status_code}: {_short(response.text)}")


@cache
def _sms_backend_class(path: str) -> type:
    return import_string(path)


def sms_backend() -> Backend:
    return _sms_backend_class(settings.SMS_BACKEND)()


def backend_for(channel: str) -> Backend:
    """The backend of a channel; SMS is read from the settings each time (tests switch it)."""
    if channel == Notification.Channel.IN_APP:
        return InAppBackend()
    if channel == Notification.Channel.EMAIL:
        return EmailBackend()
    if channel == Notification.Channel.WECOM:
        return WeComRobotBackend()
    if channel == Notification.Channel.SMS:
        return sms_backend()
    raise SendError(f"Unknown channel {channel!r}.")
