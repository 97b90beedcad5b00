"""Fixtures shared by all tests. Tests run on the PostgreSQL and Redis of DATABASE_URL and
REDIS_URL (see Makefile); the fault, locking and end-to-end tests need them to be real."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db.backends.signals import connection_created
from rest_framework.test import APIClient

from tests.factories import ChannelFactory, UserFactory, token_for


@pytest.fixture
def jd(db):
    return ChannelFactory(code="jd", name="京东", tag_prefix="JD")


@pytest.fixture
def tb(db):
    return ChannelFactory(code="taobao", name="淘宝", tag_prefix="TB")


@pytest.fixture
def make_user(db):
    def make(username: str, *roles: str, **extra: object):
        return UserFactory(username=username, roles=list(roles), **extra)

    return make


@pytest.fixture
def supervisor(make_user):
    return make_user("sup", "supervisor")


@pytest.fixture
def api(supervisor):
    """An API client authenticated by token, as an integration would be."""
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(supervisor)}")
    return client


@pytest.fixture
def api_as(make_user):
    def make(username: str, *roles: str) -> APIClient:
        client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(make_user(username, *roles))}")
        return client

    return make


def _allow_flush_to_truncate_the_audit(sender, connection, **kwargs) -> None:
    # The audit tables refuse TRUNCATE unless the session asks (orders/migrations/0009_…);
    # the flush between transactional tests truncates every table. The application never asks.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET paidan.allow_audit_truncate = 'on'")


connection_created.connect(_allow_flush_to_truncate_the_audit, dispatch_uid="paidan-test-audit-truncate")


def _forget_cached_counts() -> None:
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")  # only the cache's own prefixed keys: not Celery's or Channels'
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _empty_cache():
    # Rate-limit counters live in the cache (Redis db of REDIS_URL, shared with the broker and
    # the channel layer): none may leak into the next test or the next run.
    _forget_cached_counts()
    yield
    _forget_cached_counts()


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(settings):
    # Unit tests push to an in-memory layer; the end-to-end tests start daphne on real Redis.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def pytest_collection_modifyitems(items):
    """No test may use serialized_rollback. Whether a flush re-runs post_migrate depends on an
    attribute of the thread's (context-local) connection, and inside Playwright's event loop
    the teardown sees another connection: the flush re-creates content types and the next
    serialized test fails to reload its snapshot, depending on test order. Transactional
    tests start from an empty database instead (factories create the role groups)."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker and marker.kwargs.get("serialized_rollback"):
            raise pytest.UsageError(f"{item.nodeid}: do not use serialized_rollback (see tests/conftest.py)")
