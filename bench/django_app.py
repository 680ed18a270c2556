"""The Django app under test for the handshake benchmark (settings: bench.django_settings).

``python -m bench.django_app cookie USERNAME`` prints a session cookie (``sessionid=...``) of a
logged-in USERNAME in groups ``bench``: the benchmark's clients send it with every handshake.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.django_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from ws4redis_gevent import WebsocketMiddleware  # noqa: E402


def index(request: object) -> HttpResponse:
    return HttpResponse("ws4redis_gevent Django benchmark\n", content_type="text/plain")


urlpatterns = [path("", index)]

# Options from fanout.py --app-options override the Django settings.
application = WebsocketMiddleware(
    get_wsgi_application(), **json.loads(os.environ.get("WS4REDIS_BENCH_OPTIONS") or "{}")
)


def session_cookie(username: str) -> str:
    """A signed session cookie of a user whose name and groups the session holds."""
    from django.conf import settings
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    from ws4redis_gevent.channels import SESSION_GROUPS_KEY
    from ws4redis_gevent.django_request import store_identity

    class User:
        groups = None

        def get_username(self) -> str:
            return username

    session = SessionStore()
    session["_auth_user_id"] = "1"
    store_identity(session, User())
    session[SESSION_GROUPS_KEY] = ["bench"]
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


if __name__ == "__main__" and sys.argv[1:2] == ["cookie"]:
    print(session_cookie(sys.argv[2] if len(sys.argv) > 2 else "john"))
