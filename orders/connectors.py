"""The generic REST/JSON connector: fetches one page of a channel's orders over HTTP and says
clearly what was wrong when it cannot. Reads only; storing pages is `orders.polling`'s job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.utils.translation import gettext as _

from orders.mapping import _MISSING, get_path
from orders.models import Channel

# Seconds to wait for the source to connect and for each read; overridable in settings.
DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "Paidan-poller/1.0"


class PollError(Exception):
    """The source could not give us a page; the message is meant for the admin."""


@dataclass(frozen=True)
class Page:
    orders: list[Any]  # the source's own order objects, not yet mapped
    next_cursor: str | None  # None: the source says there is no next page


def auth_header(channel: Channel) -> dict[str, str]:
    """The channel's "Name: value" auth header as a requests header dict."""
    raw = channel.poll_auth_header.strip()
    if not raw:
        return {}
    name, sep, value = raw.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise PollError(
            _('The poll auth header must look like "Name: value", e.g. "Authorization: Bearer …".')
        )
    return {name.strip(): value.strip()}


def fetch_page(channel: Channel, cursor: str | None) -> Page:
    """GET one page from the channel's poll URL, starting at `cursor` (None: from the start)."""
    params: dict[str, Any] = {}
    if channel.poll_page_size_param:
        params[channel.poll_page_size_param] = channel.poll_page_size
    if cursor:
        params[channel.poll_cursor_param] = cursor
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **auth_header(channel)}
    timeout = float(getattr(settings, "POLL_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))
    url = channel.poll_url
    try:
        response = requests.get(url, params=params, headers=headers, timeout=timeout)
    except requests.Timeout:
        raise PollError(
            _("No answer from %(url)s within %(seconds)s s (timed out).") % {"url": url, "seconds": timeout}
        ) from None
    except requests.ConnectionError as exc:
        raise PollError(
            _("Could not connect to %(url)s: %(detail)s") % {"url": url, "detail": _root_cause(exc)}
        ) from None
    except requests.RequestException as exc:
        raise PollError(_("Request to %(url)s failed: %(detail)s") % {"url": url, "detail": exc}) from None

    if response.status_code >= 400 or response.status_code < 200:
        hint = ""
        if response.status_code in (401, 403):
            hint = " " + _("The source refused our credentials: check the channel's poll auth header.")
        raise PollError(
            _("HTTP %(status)s %(reason)s from %(url)s.%(hint)s Answer: %(body)s")
            % {
                "status": response.status_code,
                "reason": response.reason or "",
                "url": url,
                "hint": hint,
                "body": _excerpt(response.text),
            }
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise PollError(
            _("The answer from %(url)s (HTTP %(status)s) is not valid JSON (%(detail)s). It starts: %(body)s")
            % {"url": url, "status": response.status_code, "detail": exc, "body": _excerpt(response.text)}
        ) from None
    return parse_page(channel, body)


def parse_page(channel: Channel, body: Any) -> Page:
    """Find the order list and the next cursor in a decoded answer, by the channel's paths."""
    orders = get_path(body, channel.poll_list_path) if channel.poll_list_path else body
    if orders is _MISSING:
        keys = ", ".join(sorted(map(str, body))) if isinstance(body, dict) else type(body).__name__
        raise PollError(
            _('The answer has no order list at "%(path)s" (the channel\'s path to the list). Found: %(keys)s')
            % {"path": channel.poll_list_path, "keys": keys}
        )
    if not isinstance(orders, list):
        raise PollError(
            _('The value at "%(path)s" should be a list of orders but is a %(type)s.')
            % {"path": channel.poll_list_path or "(whole answer)", "type": type(orders).__name__}
        )
    next_cursor: Any = None
    if channel.poll_next_cursor_path:
        next_cursor = get_path(body, channel.poll_next_cursor_path)
    if next_cursor is _MISSING or next_cursor is None or next_cursor == "" or next_cursor is False:
        return Page(orders=orders, next_cursor=None)
    if isinstance(next_cursor, bool) or not isinstance(next_cursor, str | int):
        raise PollError(
            _('The next cursor at "%(path)s" should be a string or a number but is a %(type)s.')
            % {"path": channel.poll_next_cursor_path, "type": type(next_cursor).__name__}
        )
    next_cursor = str(next_cursor)
    if len(next_cursor) > Channel._meta.get_field("poll_cursor").max_length:
        raise PollError(_("The next cursor is longer than the 200 characters we can store."))
    return Page(orders=orders, next_cursor=next_cursor)


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return (text[:limit] + "…") if len(text) > limit else (text or _("(empty)"))


def _root_cause(exc: BaseException) -> str:
    # requests nests urllib3's reason several levels deep; the innermost one is the readable one.
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return str(exc) or type(exc).__name__
