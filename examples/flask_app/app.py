"""ws4redis_gevent in a Flask app: a page that subscribes with ws4redis.js, a view that
publishes with RedisPublisher.

Run it (Redis on localhost:6379, or REDIS_URL):

    pip install 'ws4redis-gevent[gunicorn]' flask
    gunicorn -k ws4redis_gevent.gunicorn.GeventWebSocketWorker --chdir examples/flask_app app:app

or, without gunicorn, ``python examples/flask_app/app.py [PORT]`` (gevent's pywsgi). Then open
http://127.0.0.1:8000/ in two windows and post a message in one.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from flask import Flask, render_template, request, send_from_directory  # noqa: E402

import ws4redis_gevent  # noqa: E402
from ws4redis_gevent import WebsocketMiddleware  # noqa: E402
from ws4redis_gevent.publisher import RedisPublisher  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
FACILITY = "news"
STATIC = Path(ws4redis_gevent.__file__).parent / "static" / "ws4redis_gevent"

app = Flask(__name__)
# Websocket requests under /ws/ are served by the middleware; everything else reaches Flask.
app.wsgi_app = WebsocketMiddleware(  # type: ignore[method-assign]
    app.wsgi_app,
    connection=REDIS_URL,
    allowed_channels=lambda request, channels: {"subscribe-broadcast"} & set(channels),
)


@app.get("/")
def page() -> str:
    """The page: ws4redis.js subscribes to the facility's broadcasts."""
    return render_template("news.html", facility=FACILITY)


@app.post("/publish")
def publish() -> tuple[str, int]:
    """Publish the posted text to every subscriber of the facility."""
    text = request.form.get("text", "").strip()
    if not text:
        return "empty message\n", 400
    RedisPublisher(facility=FACILITY, broadcast=True).publish_message(text)
    return "published\n", 200


@app.get("/static/ws4redis_gevent/<path:name>")
def ws4redis_js(name: str):
    """The browser client shipped inside the package (Django serves it as a static file)."""
    return send_from_directory(STATIC, name)


def main() -> None:
    from gevent import pywsgi

    from ws4redis_gevent.backends.gevent import WebSocketHandler

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = pywsgi.WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler)
    server.start()  # binds: with port 0, the kernel chose one
    print(f"serving on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
