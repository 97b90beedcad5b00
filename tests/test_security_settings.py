"""Production settings and secrets: `check --deploy` is clean with what .env.example documents,
every secret comes from the environment (production refuses a missing or published key), the
repository holds no credentials, and a channel's secrets are never shown back."""

from __future__ import annotations

import ast
import logging
import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ImproperlyConfigured

from orders.models import Channel, Order
from tests.test_webhooks import _body, _post

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "config" / "settings.py"
SECRET_NAMES = ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_HOST_PASSWORD", "SMS_GATEWAY_TOKEN")


def example_env() -> dict[str, str]:
    """The settings .env.example sets (its uncommented lines)."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def load_settings(monkeypatch, **env: str) -> dict:
    """config/settings.py run afresh under `env` (the process's own settings stay as they are)."""
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_check_deploy_is_clean_with_the_documented_production_settings():
    # given exactly what .env.example sets, with a real random key, and nothing else
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    env.update(example_env())
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    assert env["SECURE_SSL_REDIRECT"] == "1" and int(env["SECURE_HSTS_SECONDS"]) > 0

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize("key", ["", "paidan-embedded-insecure-key-change-me", "from .env.example"])
def test_production_refuses_to_start_without_a_secret_key_or_with_a_published_one(monkeypatch, key):
    if key == "from .env.example":
        key = example_env()["DJANGO_SECRET_KEY"]
    env = {"DATABASE_URL": "postgres://paidan@db.example:5432/paidan"}
    if key:
        env["DJANGO_SECRET_KEY"] = key
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY must be set to a long random value"):
        load_settings(monkeypatch, **env)


def test_secrets_and_service_urls_come_from_the_environment(monkeypatch):
    # given made-up values for every secret the settings take
    db_password, redis_password = "db-pw-" + secrets.token_hex(4), "redis-pw-" + secrets.token_hex(4)
    redis_url = f"redis://:{redis_password}@cache.example:6379/3"
    given = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"postgres://paidan:{db_password}@db.example:5432/paidan",
        "REDIS_URL": redis_url,
        "EMAIL_HOST_PASSWORD": "mail-" + secrets.token_hex(4),
        "SMS_GATEWAY_TOKEN": "sms-" + secrets.token_hex(4),
    }

    production = load_settings(monkeypatch, **given)
    embedded = load_settings(monkeypatch)

    # then each one is taken from there
    db = production["DATABASES"]["default"]
    assert production["SECRET_KEY"] == given["DJANGO_SECRET_KEY"]
    assert (db["PASSWORD"], db["HOST"]) == (db_password, "db.example")
    assert production["CELERY_BROKER_URL"] == redis_url
    assert production["CACHES"]["default"]["LOCATION"] == redis_url
    assert production["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]["address"] == redis_url
    assert production["EMAIL_HOST_PASSWORD"] == given["EMAIL_HOST_PASSWORD"]
    assert production["SMS_GATEWAY_TOKEN"] == given["SMS_GATEWAY_TOKEN"]
    # and without them there is no built-in fallback but the embedded default's published key
    assert embedded["SECRET_KEY"] == embedded["EMBEDDED_SECRET_KEY"]
    assert embedded["EMAIL_HOST_PASSWORD"] == embedded["SMS_GATEWAY_TOKEN"] == ""
    assert embedded["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert embedded["CELERY_BROKER_URL"] == "memory://"


def test_settings_assign_no_literal_secret_but_the_published_embedded_key():
    tree = ast.parse(SETTINGS.read_text())
    literal = [
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and node.value.value
        for target in node.targets
        if isinstance(target, ast.Name) and re.search(r"SECRET|PASSWORD|TOKEN", target.id)
    ]
    assert literal == ["EMBEDDED_SECRET_KEY"]


# Things that are credentials whatever file they sit in. This file is skipped: it holds the
# patterns and made-up values.
CREDENTIAL_PATTERNS = {
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "AWS access key": r"\bAKIA[0-9A-Z]{16}\b",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{36}\b",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "Stripe live key": r"\bsk_live_[A-Za-z0-9]{16,}",
    "WeCom robot key": r"qyapi\.weixin\.qq\.com/cgi-bin/webhook/send\?key=[0-9a-f]{8}-",
    "password in a service URL": r"\b(?:postgres(?:ql)?|redis|rediss|amqp|mysql|smtp)://[^\s:/@'\"{}]*:[^\s@'\"{}]+@",
}
SKIPPED_DIRS = {".git", ".venv", "node_modules", "var", "__pycache__", ".ruff_cache", ".pytest_cache"}


def test_the_repository_holds_no_credentials():
    patterns = {name: re.compile(p) for name, p in CREDENTIAL_PATTERNS.items()}
    found = []
    scanned = 0
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            path = Path(folder) / name
            if path == Path(__file__).resolve() or path.suffix in {".png", ".mo", ".sqlite3", ".xlsx"}:
                continue
            if name.startswith(".env") and name != ".env.example":
                continue  # a deployment's own, never committed (.gitignore)
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            scanned += 1
            found += [f"{path.relative_to(ROOT)}: {kind}" for kind, p in patterns.items() if p.search(text)]
    assert scanned > 200, "the scan must see the source tree"
    assert found == []


# --- A channel's secrets are typed into the admin and never shown back -----------------------

WEBHOOK_SECRET = "whsec-" + "7Kq2" * 8  # ends in 7Kq2
POLL_HEADER = "Authorization: Bearer pollsec-" + "Zx9w" * 6


@pytest.fixture
def secret_channel(jd):
    Channel.objects.filter(pk=jd.pk).update(webhook_secret=WEBHOOK_SECRET, poll_auth_header=POLL_HEADER)
    jd.refresh_from_db()
    return jd


@pytest.fixture
def root(client, make_user):
    user = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return user


def _shows_a_secret(text: str) -> bool:
    return "whsec-" in text or "pollsec-" in text


@pytest.mark.django_db
def test_channel_secrets_are_not_in_admin_pages_api_answers_or_logs(
    client, root, api, secret_channel, caplog
):
    caplog.set_level(logging.DEBUG)
    signed = _post(client, "jd", _body(external_id="S-1"), event_id="s-1", secret=WEBHOOK_SECRET)
    forged = _post(client, "jd", _body(external_id="S-2"), event_id="s-2", secret="guess")
    order = Order.objects.get(external_id="S-1")

    pages = {
        "channel list": client.get("/admin/orders/channel/"),
        "channel page": client.get(f"/admin/orders/channel/{secret_channel.pk}/change/"),
        "new channel page": client.get("/admin/orders/channel/add/"),
        "order admin": client.get(f"/admin/orders/order/{order.pk}/change/"),
        "API order list": api.get("/api/orders/"),
        "API order": api.get(f"/api/orders/{order.pk}/"),
        "API timeline": api.get(f"/api/orders/{order.pk}/timeline/"),
        "webhook accepted": signed,
        "webhook refused": forged,
    }

    assert signed.status_code == 200 and forged.status_code == 401
    for name, response in pages.items():
        assert response.status_code in (200, 401), name
        assert not _shows_a_secret(response.content.decode()), f"{name} shows a channel secret"
    assert not _shows_a_secret(caplog.text)
    # the admin shows which secret is set by its last characters only
    assert "ends in …7Kq2 (38 characters)" in pages["channel page"].content.decode()


def _channel_form(channel: Channel, **changes: str) -> dict[str, str]:
    form = {
        "code": channel.code,
        "name": channel.name,
        "tag_prefix": channel.tag_prefix,
        "kind": channel.kind,
        "is_active": "on",
        "webhook_secret": "",
        "field_mapping": "{}",
        "initial-field_mapping": "{}",  # the admin's hidden copy for a field with a callable default
        "poll_url": "",
        "poll_auth_header": "",
        "poll_cursor_param": channel.poll_cursor_param,
        "poll_page_size": str(channel.poll_page_size),
        "poll_page_size_param": channel.poll_page_size_param,
        "poll_list_path": channel.poll_list_path,
        "poll_next_cursor_path": channel.poll_next_cursor_path,
        "poll_interval_minutes": str(channel.poll_interval_minutes),
    }
    form.update(changes)
    return form


@pytest.mark.django_db
def test_an_empty_secret_box_keeps_the_secret_a_typed_one_replaces_it_and_remove_clears_it(
    client, root, secret_channel
):
    url = f"/admin/orders/channel/{secret_channel.pk}/change/"

    kept = client.post(url, _channel_form(secret_channel, name="京东 2"))
    secret_channel.refresh_from_db()
    assert kept.status_code == 302, kept.content.decode()[:2000]
    assert (secret_channel.name, secret_channel.webhook_secret) == ("京东 2", WEBHOOK_SECRET)
    assert secret_channel.poll_auth_header == POLL_HEADER

    new_secret = "whsec-" + "N3w5" * 8
    client.post(url, _channel_form(secret_channel, webhook_secret=new_secret))
    secret_channel.refresh_from_db()
    assert secret_channel.webhook_secret == new_secret and secret_channel.poll_auth_header == POLL_HEADER

    client.post(url, _channel_form(secret_channel, remove_webhook_secret="on", remove_poll_auth_header="on"))
    secret_channel.refresh_from_db()
    assert (secret_channel.webhook_secret, secret_channel.poll_auth_header) == ("", "")

    # the admin's history names what changed, never the values
    messages = [
        entry.get_change_message() for entry in LogEntry.objects.filter(object_id=str(secret_channel.pk))
    ]
    assert len(messages) == 3 and all(e.user_id == root.pk for e in LogEntry.objects.all())
    assert "Changed Name." in messages
    assert not any(_shows_a_secret(m) for m in messages)
