"""A real server process for the integration tests: gevent pywsgi on port 0 (or gunicorn).

Run as ``python tests/serve.py [--handler geventwebsocket]`` (the option: gevent-websocket's
handler instead of ours); options come as JSON in WS4REDIS_TEST_OPTIONS (middleware options,
plus ``"django": true`` to serve the Django test project). Prints ``LISTENING <port>`` once it
accepts connections. ``/_stats`` answers JSON about the process: hub channels and their
websocket counts, open websockets, greenlets, file descriptors, hub reconnects.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import greenlet  # noqa: E402
from gevent import pywsgi  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stats() -> dict:
    from ws4redis_gevent import hubs as registry
    from ws4redis_gevent import relay
    from ws4redis_gevent.stats import STATS

    hubs = registry.hubs()
    return {
        "channels": {ch.decode(): h.subscribers(ch) for h in hubs for ch in sorted(h.channels)},
        "websockets": len(relay.live_relays()),
        "greenlets": sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet)),
        "fds": len(os.listdir("/proc/self/fd")),
        "reconnects": sum(h.reconnects for h in hubs),
        "hubs": len(hubs),
        "gc_frozen": gc.get_freeze_count(),
        "dropped": dict(STATS.dropped),
        "closes_sent": {str(code): count for code, count in STATS.closes_sent.items()},
    }


def plain_app(environ, start_response):
    body = f"app saw {environ['REQUEST_METHOD']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def with_stats(app):
    def wrapper(environ, start_response):
        if environ.get("PATH_INFO") == "/_stats":
            gc.collect()
            body = json.dumps(stats()).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if environ.get("PATH_INFO") == "/_environ":
            # The request's CGI variables, as the server made them from the request headers.
            seen = {k: v for k, v in environ.items() if k.startswith(("HTTP_", "CONTENT_"))}
            body = json.dumps(seen).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        return app(environ, start_response)

    return wrapper


def facility_per_connection(app):
    """Give each websocket to /ws/echo a facility of its own (/ws/echo-1, /ws/echo-2...): for
    the Autobahn run, where every case connects to the same URL, so that an echo still on its
    way through Redis when its case ended cannot reach the websocket of the next case."""
    counter = itertools.count(1)

    def wrapper(environ, start_response):
        if environ.get("PATH_INFO") == "/ws/echo":
            environ["PATH_INFO"] = f"/ws/echo-{next(counter)}"
        return app(environ, start_response)

    return wrapper


def build_app(options: dict):
    use_django = options.pop("django", False)
    separate = options.pop("facility_per_connection", False)
    if use_django:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")
        from django.core.wsgi import get_wsgi_application

        inner = get_wsgi_application()
    else:
        inner = plain_app
    from ws4redis_gevent import WebsocketMiddleware

    app = with_stats(WebsocketMiddleware(inner, **options))
    return facility_per_connection(app) if separate else app


def main() -> None:
    import logging

    # WS4REDIS_TEST_LOG_LEVEL=WARNING for tests that open thousands of websockets: the test
    # reads stderr only at the end, and a full pipe would block the server.
    level = os.environ.get("WS4REDIS_TEST_LOG_LEVEL", "INFO")
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr)
    options = json.loads(os.environ.get("WS4REDIS_TEST_OPTIONS", "{}"))
    if sys.argv[1:] == ["--handler", "geventwebsocket"]:
        # gevent-websocket's handler: it upgrades before the application runs.
        from geventwebsocket.handler import WebSocketHandler
    else:
        from ws4redis_gevent.backends.gevent import WebSocketHandler

    server = pywsgi.WSGIServer(
        ("127.0.0.1", 0), build_app(options), handler_class=WebSocketHandler, log=None
    )
    server.start()
    print(f"LISTENING {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
