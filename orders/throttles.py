"""The per-channel brake on signed webhooks: DRF's SimpleRateThrottle keyed by channel code.

Honest limits of this brake. SimpleRateThrottle reads the channel's list of recent request
times from the cache, drops the old ones, appends the new one and writes the list back: two
requests that arrive together can both read the same list, both pass, and one write overwrites
the other. Under concurrency more requests than the rate get through, and a lost write also
forgets a request, so the limit is a brake on a runaway sender, not a guarantee. (The login
limit, by contrast, counts with atomic increments: dashboards/login_limits.py.) The list holds
one timestamp per request in the window and is read and written whole on every request, which
is why the rate is given per second: 100/s keeps it near 1 KB, where 6000/min would move ~50 KB
per webhook. With Redis down the cache answers "nothing" and every request passes.

The rate is per channel, not per sender address: a marketplace pushes from a pool of addresses,
and what the limit protects is our capacity for the other channels. It is taken after the
signature check, so someone without the channel's secret cannot spend its budget.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import SimpleRateThrottle


class ChannelWebhookThrottle(SimpleRateThrottle):
    """WEBHOOK_RATE ("100/s"; empty turns the brake off) per channel code."""

    scope = "webhook"

    def __init__(self, channel_code: str) -> None:
        self.channel_code = channel_code
        super().__init__()

    def get_rate(self) -> str | None:
        return settings.WEBHOOK_RATE or None

    def get_cache_key(self, request: HttpRequest, view: object) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.channel_code}
