"""ws4redis_gevent around a bare WSGI callable: no framework at all.

``GET /publish?text=...`` publishes to the ``ticker`` facility; websockets connect to
``/ws/ticker?subscribe-broadcast``. Run it (Redis on localhost:6379, or REDIS_URL):

    gunicorn -k ws4redis_gevent.gunicorn.GeventWebSocketWorker --chdir examples/bare_wsgi app:app

or ``python examples/bare_wsgi/app.py [PORT]``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

from ws4redis_gevent import WebsocketMiddleware  # noqa: E402
from ws4redis_gevent.publisher import RedisPublisher  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")


def plain_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The application: publishes ``?text=`` on /publish, says hello elsewhere."""
    if environ["PATH_INFO"] == "/publish":
        text = parse_qs(environ.get("QUERY_STRING", "")).get("text", [""])[0]
        RedisPublisher(facility="ticker", broadcast=True).publish_message(text)
        body = b"published\n"
    else:
        body = b"hello from a bare WSGI app\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


# The middleware takes websocket requests under /ws/; every other request reaches plain_app.
app = WebsocketMiddleware(plain_app, connection=REDIS_URL)


if __name__ == "__main__":
    from gevent import pywsgi

    from ws4redis_gevent.backends.gevent import WebSocketHandler

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = pywsgi.WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler)
    server.start()  # binds: with port 0, the kernel chose one
    print(f"serving on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()
