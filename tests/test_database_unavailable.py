"""A request the database fails under is answered 503 with Retry-After and says what is wrong, in
the request's language: the API's `{code, detail}` body under /api/ and /hooks/, a page of its
own elsewhere (one that needs no database: the session it would read is the one that died).

The views below end their own database session (`pg_terminate_backend` of their own backend):
a real failure from PostgreSQL in the middle of the request, as a restart or a failover gives
(tests/chaos/test_postgres_restart.py does it with a real restart under load). And once the
server has ended every idle pooled connection, the next query gets a live one at once
(config/postgresql/base.py)."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import translation
from django.utils.translation import gettext
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tests.test_dispatch_concurrency import conninfo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

API_DETAIL = "The database is unavailable right now. Try again in %(seconds)d seconds."
PAGE_HEADING = "The database is unavailable right now"


def end_own_session() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


class ApiView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        end_own_session()
        return Response({"stored": True})


def plain_view(request: HttpRequest) -> HttpResponse:
    end_own_session()
    return HttpResponse("stored")


urlpatterns = [
    path("api/orders-like/", ApiView.as_view()),
    path("hooks/shop/", plain_view),
    path("board/", plain_view),
]


@pytest.fixture(autouse=True)
def _drop_the_dead_connection():
    # A request closes a broken connection when it ends; the test client keeps the connection
    # open across requests (Django's test tools), so the test drops it before the flush.
    yield
    connection.close()


def in_language(language: str, text: str) -> str:
    with translation.override(language):
        return gettext(text)


@pytest.mark.parametrize("url", ["/api/orders-like/", "/hooks/shop/"])
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_api_and_webhooks_answer_503_saying_the_database_is_unavailable_and_when_to_retry(
    client, url, language
):
    # when the database goes away under a request from an integration
    response = client.post(url, {}, content_type="application/json", HTTP_ACCEPT_LANGUAGE=language)

    # then it is a 503, not a 500, in the API's error body and the caller's language
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert response["Content-Language"] == language
    assert response.json() == {
        "code": "database_unavailable",
        "detail": in_language(language, API_DETAIL) % {"seconds": 5},
    }
    if language == "en":
        assert response.json()["detail"] == "The database is unavailable right now. Try again in 5 seconds."


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_page_answers_503_with_a_page_of_its_own_in_the_readers_language(client, language):
    # when the database goes away under a person's page
    response = client.get("/board/", HTTP_ACCEPT_LANGUAGE=language)

    # then they get a 503 page saying what is wrong and to try again, in their language
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert f'<html lang="{language}">' in page
    assert f"<h1>{in_language(language, PAGE_HEADING)}</h1>" in page
    assert in_language(language, "Try again") in page
    if language == "en":
        assert "Nothing is wrong with what you did. Try again in 5 seconds." in page


def test_a_script_asking_for_json_gets_the_json_body_outside_the_api(client):
    # when a page's script (Accept: application/json) hits a page URL as the database goes away
    response = client.get("/board/", HTTP_ACCEPT="application/json", HTTP_ACCEPT_LANGUAGE="en")

    # then it gets the body it can show
    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"


def test_pooled_connections_the_server_ended_are_replaced_before_use_without_a_wait():
    # given four idle connections in the pool (the web process after a burst)
    pool = connection.pool
    if pool is None:
        pytest.fail("needs PostgreSQL with the pool (DATABASE_URL): run it through `make test`")
    connection.close()
    held = [pool.getconn() for _ in range(4)]
    for conn in held:
        pool.putconn(conn)
    # when the server ends every one of them, as a restart does
    with psycopg.connect(conninfo(), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert ended >= 4

    # then the next query runs, on a live connection, at once: every dead one was swept in
    # one go (psycopg_pool's own check sleeps 1, 2, 4 … s between dead ones)
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert time.monotonic() - started < 0.5
