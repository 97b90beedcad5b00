"""Failed sign-ins limited per username and per client address, on the login page and the admin's.

Every attempt first takes a slot with an atomic cache increment (Redis INCR through django-redis,
or LocMem's locked increment in the embedded default) for its username and for its address; an
attempt that finds either count past its limit is refused without checking the password and
gives its slots back, and so does a correct password. What stays counted is exactly the failed
password checks of the current fixed window, and because the slot is taken before the check,
concurrent guesses cannot slip past the limit together: at most `limit` password checks can fail
per key and window. (Checking the count first and adding the failure afterwards would let a
burst of parallel guesses all pass the check.)

The cache is Redis in production. If Redis is down django-redis answers "nothing" and the
limit fails open: nobody is locked out by an outage, and nobody is limited during it either.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils.translation import ngettext

# Seconds a counter outlives its window, so an increment at the window's last second still
# finds the key it added.
_EXPIRY_MARGIN = 5


@dataclass
class LoginAttempt:
    """The slots one attempt holds; `refused` with `retry_after` seconds when over a limit."""

    keys: list[str] = field(default_factory=list)
    refused: bool = False
    retry_after: int = 0

    def give_back(self) -> None:
        for key in self.keys:
            # ValueError: the window ended and its counter expired, nothing to give back.
            with contextlib.suppress(ValueError):
                cache.decr(key)
        self.keys = []


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, IPv6 widened to its /64 (one host usually holds the whole /64).

    Behind a reverse proxy this is the proxy unless daphne runs with --proxy-headers (the
    Procfile does), and the proxy must overwrite X-Forwarded-For, not append to it: daphne
    takes the header's first address, which a client could otherwise choose.
    """
    raw = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return str(address)


def _take_slot(kind: str, value: str, window: int, now: float) -> tuple[str, int | None]:
    """Adds one to this window's counter of `kind`/`value`; returns the key and the new count
    (None when the cache did not answer)."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    index = int(now // window)
    key = f"login-failures:{kind}:{digest}:{index}"
    cache.add(key, 0, timeout=window + _EXPIRY_MARGIN)
    try:
        return key, cache.incr(key)
    except ValueError:
        return key, None  # expired between add and incr, or the cache is down: fail open


def login_attempt_begin(request: HttpRequest, username: str) -> LoginAttempt:
    """Takes this attempt's slots; refused (slots given back) when a limit is already reached."""
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    now = time.time()
    attempt = LoginAttempt()
    limits = [
        ("username", username.strip().casefold(), settings.LOGIN_FAILURES_PER_USERNAME),
        ("address", client_address(request), settings.LOGIN_FAILURES_PER_IP),
    ]
    for kind, value, limit in limits:
        key, count = _take_slot(kind, value, window, now)
        if count is None:
            continue
        attempt.keys.append(key)
        if count > limit:
            attempt.refused = True
    if attempt.refused:
        attempt.give_back()
        attempt.retry_after = max(1, math.ceil(window - now % window))
    return attempt


class LoginLimitMixin:
    """An AuthenticationForm that refuses, without checking the password, once the username or
    the address has used up its failed attempts; only failures stay counted."""

    rate_limited = False
    retry_after = 0

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return self.cleaned_data
        attempt = login_attempt_begin(self.request, username)
        if attempt.refused:
            self.rate_limited = True
            self.retry_after = attempt.retry_after
            minutes = math.ceil(attempt.retry_after / 60)
            raise ValidationError(
                ngettext(
                    "Too many failed sign-in attempts for this account or from this network. "
                    "Try again in %(minutes)d minute.",
                    "Too many failed sign-in attempts for this account or from this network. "
                    "Try again in %(minutes)d minutes.",
                    minutes,
                )
                % {"minutes": minutes},
                code="rate_limited",
            )
        self.user_cache = authenticate(self.request, username=username, password=password)
        if self.user_cache is None:
            raise self.get_invalid_login_error()  # the slots stay taken: a failure
        attempt.give_back()
        self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class LimitedAuthenticationForm(LoginLimitMixin, AuthenticationForm):
    pass


class LimitedAdminAuthenticationForm(LoginLimitMixin, AdminAuthenticationForm):
    pass


def _as_429(response: HttpResponse) -> HttpResponse:
    form = (getattr(response, "context_data", None) or {}).get("form")
    if getattr(form, "rate_limited", False):
        response.status_code = 429
        response["Retry-After"] = str(form.retry_after)
    return response


class LoginView(auth_views.LoginView):
    authentication_form = LimitedAuthenticationForm

    def form_invalid(self, form):
        return _as_429(super().form_invalid(form))


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's own login view (its form is LimitedAdminAuthenticationForm, set in
    dashboards/admin.py), answering 429 when the limit refused the attempt."""
    return _as_429(admin.site.login(request))
