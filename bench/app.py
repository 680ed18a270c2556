"""The plain WSGI app under test: a tiny app wrapped in WebsocketMiddleware.

Served by ``gunicorn -k ws4redis_gevent.gunicorn.GeventWebSocketWorker bench.app:application``
or ``uwsgi --gevent N --module bench.app:application``. The Redis URL comes from the
environment (``WS4REDIS_BENCH_REDIS``); persistence is off (``expire=0``), so a websocket's
handshake costs one subscription and nothing else. ``WS4REDIS_BENCH_OPTIONS`` (a JSON object,
from ``fanout.py --app-options``) adds or overrides middleware options.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from ws4redis_gevent import WebsocketMiddleware


def plain_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = b"ws4redis_gevent benchmark\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def options() -> dict[str, Any]:
    return {
        "connection": os.environ.get("WS4REDIS_BENCH_REDIS", "redis://127.0.0.1:6379/0"),
        "expire": 0,
        **json.loads(os.environ.get("WS4REDIS_BENCH_OPTIONS") or "{}"),
    }


application = WebsocketMiddleware(plain_app, **options())
