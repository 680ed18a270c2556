"""Settings of the test project; the test process and the server processes share them.

Environment:
    WS4REDIS_TEST_DB: path of the sqlite database file (required), shared by every process.
    WS4REDIS_TEST_SETTINGS: JSON object of extra settings for one server (e.g.
        ``{"WS4REDIS_ALLOWED_CHANNELS": "tests.django_project.allowed.deny_anonymous"}`` or
        ``{"SESSION_ENGINE": "django.contrib.sessions.backends.file", "SESSION_FILE_PATH": ...}``).
"""

from __future__ import annotations

import json
import os

from django.core.exceptions import ImproperlyConfigured

try:
    _DATABASE_PATH = os.environ["WS4REDIS_TEST_DB"]
except KeyError:
    raise ImproperlyConfigured("set WS4REDIS_TEST_DB to the sqlite file of the tests") from None

SECRET_KEY = "ws4redis-gevent-tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "ws4redis_gevent",
    "tests.django_project",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.django_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": ["ws4redis_gevent.context_processors.default"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _DATABASE_PATH,
        # The test process and a server process may write at the same moment.
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}

globals().update(json.loads(os.environ.get("WS4REDIS_TEST_SETTINGS", "{}")))
