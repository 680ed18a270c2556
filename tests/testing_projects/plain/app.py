"""A plain WSGI application (no Django) with websockets, as a user's project would have it.

Its WS4REDIS connection names "production" (PRODUCTION_REDIS_URL): the test tools must never
use it.
"""

import os

from ws4redis_gevent import WebsocketMiddleware
from ws4redis_gevent.exceptions import PermissionDenied


def hello(environ, start_response):
    body = b"hello from the app"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def allowed_channels(request, channels):
    if request.facility == "secret":
        raise PermissionDenied("no secrets here")
    return channels


application = WebsocketMiddleware(
    hello,
    connection=os.environ.get("PRODUCTION_REDIS_URL", "redis://production.invalid:6379/0"),
    heartbeat="--hb--",
    heartbeat_interval=0.2,
    history={"feed": {"size": 100, "ttl": 60}},
    allowed_channels=allowed_channels,
    max_message_size=1000,
)
