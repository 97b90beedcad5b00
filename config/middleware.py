"""Middleware of our own."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class OneThreadMiddlewareStack:
    """Innermost on purpose. Under ASGI Django runs each async-capable middleware's hooks
    through sync_to_async: two thread hand-offs per middleware, ~17 per request. A sync-only
    middleware at the bottom makes Django adapt once, here, and run the whole stack
    synchronously in one thread. Measured through daphne with 4 clients posting orders:
    ~65 against ~55 orders/s without it (medians of six runs each; docs/benchmarks.md)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)
