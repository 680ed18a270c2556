"""Django system checks (ws4redis_gevent.checks): ``manage.py check`` fails on broken websocket
settings, ``manage.py check --deploy`` warns about unsafe ones, and safe settings are quiet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TLS_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Settings under which no deployment check of ours has anything to say.
SAFE = {
    "ALLOWED_HOSTS": ["app.example.com"],
    "WS4REDIS_ALLOWED_CHANNELS": "tests.django_project.allowed.deny_anonymous",
    "WS4REDIS_HEARTBEAT": "--heartbeat--",
}


@pytest.fixture
def run_checks(ws4redis_settings):
    """``run_checks(**django_settings)``: the ids of our check messages under those settings,
    through Django's registry (so the app registered them), deployment checks included."""
    from django.core import checks
    from django.test import override_settings

    def run(**overrides: object) -> list[str]:
        with override_settings(**overrides):
            messages = checks.run_checks(include_deployment_checks=True)
        return sorted(m.id for m in messages if m.id and m.id.startswith("ws4redis_gevent."))

    return run


def test_safe_settings_raise_nothing(run_checks):
    assert run_checks(**SAFE) == []


def test_defaults_warn_only_about_publishing(run_checks):
    """The defaults are safe except ws4redis' open publishing (no ALLOWED_CHANNELS), which also
    lets clients store messages under facility names they invent (W010)."""
    got = run_checks(ALLOWED_HOSTS=["app.example.com"])
    assert got == ["ws4redis_gevent.W003", "ws4redis_gevent.W010"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"WS4REDIS_CHECK_ORIGIN": False}, "W001"),
        ({"WS4REDIS_ALLOWED_ORIGINS": ["https://app.example.com", "*"]}, "W002"),
        ({"WS4REDIS_ALLOWED_CHANNELS": None, "WS4REDIS_FACILITIES": ["chat"]}, "W003"),
        ({"WS4REDIS_MAX_CONNECTIONS": None}, "W004"),
        ({"WS4REDIS_PUBLISH_RATE": None}, "W005"),
        ({"WS4REDIS_HANDSHAKE_TIMEOUT": 0}, "W006"),
        ({"WS4REDIS_MAX_MESSAGE_SIZE": 64 << 20}, "W007"),
        ({"WS4REDIS_HEARTBEAT": None, "USE_X_FORWARDED_HOST": True}, "W008"),
        ({"WS4REDIS_HEARTBEAT": None, "SECURE_PROXY_SSL_HEADER": TLS_HEADER}, "W008"),
        ({"WS4REDIS_PING_INTERVAL": 120}, "W009"),
        ({"WS4REDIS_ALLOWED_CHANNELS": None, "WS4REDIS_EXPIRE": 60}, "W003 W010"),
        ({"WS4REDIS_HISTORY": {"*": {"size": 10}}}, "W011"),
        ({"ALLOWED_HOSTS": ["app.example.com", "*"]}, "W012"),
        ({"WS4REDIS_ALLOWED_HOSTS": ["*"]}, "W012"),
        ({"WS4REDIS_ALLOWED_ORIGINS": ["https://a.example", "http://b.example"]}, "W013"),
        ({"WS4REDIS_PING_RATE": None}, "W014"),
        ({"WS4REDIS_PUBLISH_BYTES_RATE": None}, "W015"),
    ],
    ids=[
        "origin check off",
        "any origin",
        "open publishing",
        "no connection limit",
        "no publish rate",
        "no handshake timeout",
        "huge messages",
        "proxy without heartbeat (forwarded host)",
        "proxy without heartbeat (TLS header)",
        "pings too rare for proxies",
        "clients store under invented facility names",
        "history for invented facility names",
        "any Host (ALLOWED_HOSTS)",
        "any Host (WS4REDIS_ALLOWED_HOSTS)",
        "an origin without TLS",
        "no ping rate",
        "no publish byte rate",
    ],
)
def test_unsafe_setting_gets_its_warning(run_checks, overrides, expected):
    """Each unsafe setting is reported with its own id, and only that one."""
    got = run_checks(**{**SAFE, **overrides})
    assert got == [f"ws4redis_gevent.{code}" for code in expected.split()]


def test_no_heartbeat_without_a_proxy_is_fine(run_checks):
    """Without a proxy in front, a missing heartbeat is not reported."""
    assert run_checks(**{**SAFE, "WS4REDIS_HEARTBEAT": None}) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"WEBSOCKET_URL": "ws"}, "E001"),
        ({"WS4REDIS_MAX_MESSAGE_SIZE": 0}, "E001"),
        ({"WS4REDIS_ALLOWED_CHANNELS": "tests.django_project.allowed.no_such_function"}, "E002"),
        ({"WS4REDIS_PROCESS_REQUEST": "no_such_module.process"}, "E002"),
        ({"WS4REDIS_SUBSCRIBER": "ws4redis_gevent.subscriber.NoSuchClass"}, "E002"),
        ({"WS4REDIS_ALLOWED_ORIGINS": ["app.example.com"]}, "E003"),
        ({"WS4REDIS_ALLOWED_ORIGINS": "https://app.example.com"}, "E003"),
        ({"WS4REDIS_ALLOWED_HOSTS": "app.example.com"}, "E001"),
    ],
    ids=[
        "bad URL",
        "zero message size",
        "unknown callback",
        "unknown module",
        "unknown subscriber",
        "origin without scheme",
        "origins as a string",
        "allowed hosts as a string",
    ],
)
def test_broken_setting_is_an_error_without_deploy(ws4redis_settings, overrides, expected):
    """Broken settings are errors of the plain checks (``manage.py check``), before a
    middleware is ever built."""
    from django.core import checks
    from django.test import override_settings

    with override_settings(**{**SAFE, **overrides}):
        messages = checks.run_checks(include_deployment_checks=False)
    ours = [m for m in messages if m.id and m.id.startswith("ws4redis_gevent.")]
    assert [m.id for m in ours] == [f"ws4redis_gevent.{expected}"]
    assert ours[0].is_serious()


def manage_py_check(tmp_path: Path, settings: dict[str, object], *args: str) -> str:
    """Run ``django-admin check`` on the test project in a new process; its output."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "WS4REDIS_TEST_DB": str(tmp_path / "db.sqlite3"),
        "WS4REDIS_TEST_SETTINGS": json.dumps(settings),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "check", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_manage_py_check_deploy_reports_unsafe_settings(tmp_path):
    """The real command: ``check --deploy`` lists our warnings with their hints; plain
    ``check`` does not; safe settings make them disappear."""
    unsafe = {"WS4REDIS_CHECK_ORIGIN": False, "WS4REDIS_PUBLISH_RATE": None}
    output = manage_py_check(tmp_path, unsafe, "--deploy")
    for code in ("W001", "W003", "W005"):
        assert f"ws4redis_gevent.{code}" in output, output
    assert "cross-site websocket hijacking" in output
    assert "ws4redis_gevent." not in manage_py_check(tmp_path, unsafe)
    assert "ws4redis_gevent." not in manage_py_check(tmp_path, SAFE, "--deploy")


def test_no_warning_for_local_http_origins(run_checks):
    """A front-end dev server on http://localhost is no network exposure."""
    origins = ["http://localhost:3000", "http://127.0.0.1:5173", "https://a.example"]
    assert run_checks(**{**SAFE, "WS4REDIS_ALLOWED_ORIGINS": origins}) == []


def test_manage_py_check_deploy_warns_about_open_hosts(tmp_path):
    """The real command, on the test project's ALLOWED_HOSTS = ['*']."""
    output = manage_py_check(tmp_path, {**SAFE, "ALLOWED_HOSTS": ["*"]}, "--deploy")
    assert "ws4redis_gevent.W012" in output and "DNS rebinding" in output, output


def test_manage_py_check_fails_on_a_broken_setting(tmp_path):
    output = manage_py_check(tmp_path, {"WS4REDIS_ALLOWED_ORIGINS": ["example.com"]})
    assert "ws4redis_gevent.E003" in output and "SystemCheckError" in output, output


def test_manage_py_check_calls_gevent_websocket_the_second_best_server(tmp_path, monkeypatch):
    """A deployment naming gevent-websocket's gunicorn worker gets I001 from plain ``check``,
    saying why it is second-best and what to use instead; without it, nothing."""
    worker = "-k geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
    monkeypatch.setenv("GUNICORN_CMD_ARGS", worker)
    output = manage_py_check(tmp_path, SAFE)
    assert "ws4redis_gevent.I001" in output and "second-best" in output, output
    assert "1008" in output and "ws4redis_gevent.gunicorn.GeventWebSocketWorker" in output
    monkeypatch.delenv("GUNICORN_CMD_ARGS")
    assert "ws4redis_gevent.I001" not in manage_py_check(tmp_path, SAFE)
