"""Middleware of our own."""

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.deprecation import MiddlewareMixin
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from psycopg_pool import PoolTimeout

logger = logging.getLogger(__name__)

# A fast restart of PostgreSQL takes a second or two; the pool reconnects within a few more.
DATABASE_RETRY_AFTER_SECONDS = 5

# The database went away under a request (restart, failover, network) or the pool had no
# connection to give within its timeout. Django wraps psycopg's errors, PoolTimeout included
# when it is raised while connecting; the bare class covers the rest.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)

# Answered in the API's error body; everything else is a page for people.
_JSON_PREFIXES = ("/api/", "/hooks/")


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 saying the database is unavailable and when to try again, in the request's
    language: the API's `{code, detail}` body for integrations and pages' scripts, a page of
    its own for people. The page touches nothing that needs the database (no user, no
    session, no base template)."""
    seconds = DATABASE_RETRY_AFTER_SECONDS
    if request.path.startswith(_JSON_PREFIXES) or request.headers.get("Accept", "").startswith(
        "application/json"
    ):
        detail = _("The database is unavailable right now. Try again in %(seconds)d seconds.") % {
            "seconds": seconds
        }
        response: HttpResponse = JsonResponse({"code": "database_unavailable", "detail": detail}, status=503)
    else:
        page = render_to_string("503.html", {"seconds": seconds, "LANGUAGE_CODE": get_language()})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(seconds)
    return response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A request the database failed under is answered 503 with Retry-After, never a 500:
    the client did nothing wrong and the same request will work again shortly. Ingestion is
    idempotent (channel + external id, webhook event id), so resending is safe."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_UNAVAILABLE):
            return None
        logger.warning("%s %s answered 503, the database is unavailable: %s", request.method,
                       request.path, exception)  # fmt: skip
        return database_unavailable(request)


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
