"""Settings of the ws4redis-gevent demo (development only: DEBUG, a public secret key).

Environment: REDIS_URL (else ``manage.py runserver`` starts an embedded redis-server),
DEMO_DATABASE (the sqlite file, default demo_site/db.sqlite3), DEMO_TEST_DATABASE (the tests'
database file, default in memory).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "demo-only-this-key-is-public"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    # Before staticfiles: its runserver then serves websockets (and still serves static files).
    "ws4redis_gevent",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "ws4redis_gevent.context_processors.default",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DATABASE") or BASE_DIR / "db.sqlite3",
        # The tests' database: in memory, unless DEMO_TEST_DATABASE names a file.
        "TEST": {"NAME": os.environ.get("DEMO_TEST_DATABASE") or None},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "chat"

USE_TZ = True
TIME_ZONE = "UTC"  # Django's default would be America/Chicago
STATIC_URL = "static/"

# ws4redis-gevent
WEBSOCKET_URL = "/ws/"
WS4REDIS_PREFIX = "demo"
WS4REDIS_EXPIRE = 3600  # each channel keeps its last message for an hour
WS4REDIS_HEARTBEAT = "--heartbeat--"
WS4REDIS_ALLOWED_CHANNELS = "chat.channels.allowed_channels"
WS4REDIS_PRESENCE = {"chat": {"ttl": 30}}  # who is online, shown beside the room
if os.environ.get("REDIS_URL"):
    WS4REDIS_CONNECTION = os.environ["REDIS_URL"]
