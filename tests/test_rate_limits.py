"""Rate limits: failed sign-ins on the real login forms (atomic counters, so a burst of guesses
cannot slip through together) and signed webhooks per channel (DRF's throttle: a brake that two
simultaneous requests can overrun, shown here rather than only said)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.db import connections
from django.test import Client

from orders.models import Order, WebhookDelivery
from orders.throttles import ChannelWebhookThrottle
from tests.factories import PASSWORD
from tests.test_e2e_runtime import free_port
from tests.test_webhooks import _body, _post

pytestmark = pytest.mark.django_db

REFUSED = "Too many failed sign-in attempts for this account or from this network."


@pytest.fixture(autouse=True)
def _fast_password_checks(settings):
    # A PBKDF2 check costs ~0.3 s here and these tests make dozens; the limit is the same.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def checks():
    """The password checks Django made, as it reports them: failed ones and sign-ins."""
    seen = {"failed": 0, "signed_in": 0}
    lock = threading.Lock()

    def failed(**kwargs):
        with lock:
            seen["failed"] += 1

    def signed_in(**kwargs):
        with lock:
            seen["signed_in"] += 1

    user_login_failed.connect(failed, dispatch_uid="test-rate-limits-failed")
    user_logged_in.connect(signed_in, dispatch_uid="test-rate-limits-in")
    yield seen
    user_login_failed.disconnect(dispatch_uid="test-rate-limits-failed")
    user_logged_in.disconnect(dispatch_uid="test-rate-limits-in")


def sign_in(client, username: str, password: str, *, address: str = "198.51.100.7", path: str = "/login/"):
    return client.post(
        path,
        {"username": username, "password": password},
        HTTP_ACCEPT_LANGUAGE="en",
        REMOTE_ADDR=address,
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- Sign-in ---------------------------------------------------------------------------------


def test_after_five_failures_even_the_right_password_is_refused_with_429_unchecked(client, make_user, checks):
    make_user("mei", "supervisor")
    make_user("lan", "supervisor")

    for _ in range(5):
        wrong = sign_in(client, "mei", "not-her-password")
        assert wrong.status_code == 200
        assert "didn't match" in wrong.content.decode()
    right = sign_in(client, "mei", PASSWORD)

    assert right.status_code == 429
    assert 1 <= int(right["Retry-After"]) <= 15 * 60
    assert REFUSED in right.content.decode()
    assert not signed_in(client)
    assert checks == {"failed": 5, "signed_in": 0}, "the refused attempt must not check the password"
    # the username's limit holds from any address; the address itself is not blocked for others
    assert sign_in(client, "mei", PASSWORD, address="203.0.113.9").status_code == 429
    other = sign_in(client, "lan", PASSWORD)
    assert other.status_code == 302 and signed_in(client)


def test_successful_sign_ins_are_not_counted(client, make_user, checks):
    make_user("mei", "supervisor")
    for _ in range(4):
        assert sign_in(client, "mei", "typo").status_code == 200
    for _ in range(3):
        assert sign_in(client, "mei", PASSWORD).status_code == 302
        client.logout()

    fifth_failure = sign_in(client, "mei", "typo")
    after = sign_in(client, "mei", PASSWORD)

    assert fifth_failure.status_code == 200 and "didn't match" in fifth_failure.content.decode()
    assert after.status_code == 429
    assert checks == {"failed": 5, "signed_in": 3}


def test_failures_from_one_address_refuse_every_username_from_it(client, make_user, settings, checks):
    settings.LOGIN_FAILURES_PER_IP = 3
    make_user("mei", "supervisor")
    for name in ("a1", "a2", "a3"):  # spraying: one guess each at several accounts
        assert sign_in(client, name, "guess", address="192.0.2.44").status_code == 200

    from_there = sign_in(client, "mei", PASSWORD, address="192.0.2.44")
    from_elsewhere = sign_in(client, "mei", PASSWORD, address="192.0.2.45")

    assert from_there.status_code == 429
    assert from_elsewhere.status_code == 302
    assert checks == {"failed": 3, "signed_in": 1}


def test_the_admin_login_counts_the_same_failures_and_answers_429(client, make_user, checks):
    make_user("root", is_staff=True, is_superuser=True)
    for _ in range(3):
        assert sign_in(client, "root", "guess", path="/admin/login/").status_code == 200
    for _ in range(2):
        assert sign_in(client, "root", "guess").status_code == 200

    admin_page = sign_in(client, "root", PASSWORD, path="/admin/login/")
    site_page = sign_in(client, "root", PASSWORD)

    assert admin_page.status_code == 429 and REFUSED in admin_page.content.decode()
    assert 'class="errornote"' in admin_page.content.decode()  # shown where the admin shows errors
    assert site_page.status_code == 429
    assert checks == {"failed": 5, "signed_in": 0}


def test_twenty_simultaneous_guesses_get_exactly_five_password_checks(checks):
    start = threading.Barrier(20)
    statuses: list[int] = []

    def guess(n: int) -> None:
        try:
            start.wait(timeout=10)
            statuses.append(sign_in(Client(), "ghost", f"guess-{n}").status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sorted(statuses) == [200] * 5 + [429] * 15
    assert checks["failed"] == 5, "a check-then-count limit would have let all 20 be checked"


def test_with_the_cache_down_sign_in_and_webhooks_fail_open(client, make_user, settings, jd, checks):
    # given a Redis nobody listens on, configured as production's cache is
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    settings.WEBHOOK_RATE = "1/m"
    make_user("mei", "supervisor")

    # when more than the limits arrive
    failures = [sign_in(client, "mei", "typo").status_code for _ in range(7)]
    right = sign_in(client, "mei", PASSWORD)
    hooks = [
        _post(Client(), "jd", _body(external_id=f"D-{n}"), event_id=f"d-{n}").status_code for n in range(3)
    ]

    # then nothing is refused for want of a counter: no lock-out, no lost orders
    assert failures == [200] * 7 and right.status_code == 302
    assert checks == {"failed": 7, "signed_in": 1}
    assert hooks == [200, 200, 200] and Order.objects.count() == 3


# --- Webhooks --------------------------------------------------------------------------------


def test_a_channel_past_its_rate_gets_429_with_retry_after_and_nothing_stored(client, jd, tb, settings):
    settings.WEBHOOK_RATE = "3/m"
    # unsigned requests do not spend the channel's budget: only a holder of the secret can
    for n in range(5):
        assert _post(client, "jd", _body(), event_id=f"x-{n}", secret="not-the-secret").status_code == 401

    accepted = [_post(client, "jd", _body(external_id=f"J-{n}"), event_id=f"j-{n}") for n in range(3)]
    refused = _post(client, "jd", _body(external_id="J-3"), event_id="j-3")
    other_channel = _post(client, "taobao", _body(external_id="T-1", channel="taobao"), event_id="t-1")

    assert [r.status_code for r in accepted] == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["code"] == "rate_limited"
    assert "Channel 'jd' sent more than 3/m webhooks" in refused.json()["detail"]
    assert not Order.objects.filter(external_id="J-3").exists()
    assert not WebhookDelivery.objects.filter(event_id="j-3").exists()
    assert other_channel.status_code == 200, "each channel has its own budget"


class _ReadersMeet:
    """The real cache, except that each reader waits until the other has read too: the
    interleaving two requests arriving at the same moment can have. Nothing is faked; only the
    timing that concurrency would produce by chance is made certain."""

    def __init__(self) -> None:
        self.both_read = threading.Barrier(2)

    def get(self, *args, **kwargs):
        value = cache.get(*args, **kwargs)
        self.both_read.wait(timeout=5)
        return value

    def set(self, *args, **kwargs):
        return cache.set(*args, **kwargs)


def test_the_webhook_throttle_is_a_brake_two_simultaneous_requests_both_pass_a_limit_of_one(settings):
    settings.WEBHOOK_RATE = "1/m"
    meeting = _ReadersMeet()
    passed: list[bool] = []

    def request() -> None:
        throttle = ChannelWebhookThrottle("jd")
        throttle.cache = meeting
        passed.append(throttle.allow_request(None, None))

    threads = [threading.Thread(target=request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    # both read an empty history and both passed: the limit was exceeded
    assert passed == [True, True]
    # and a request that comes after them is refused as it should be
    assert ChannelWebhookThrottle("jd").allow_request(None, None) is False
