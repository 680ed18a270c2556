"""Django settings of the handshake benchmark: signed-cookie sessions, no database.

A websocket's handshake then does the real work of a Django deployment: build a WSGIRequest,
load and verify the session from the signed cookie, read the user's name and groups from it.
"""

from __future__ import annotations

import os

SECRET_KEY = "ws4redis-gevent-benchmark-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "ws4redis_gevent",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.django_app"
DATABASES: dict[str, dict[str, str]] = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

WS4REDIS_CONNECTION = os.environ.get("WS4REDIS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
WS4REDIS_EXPIRE = 0
