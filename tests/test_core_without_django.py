"""The core runs where Django cannot even be imported: a plain WSGI app under gevent's pywsgi,
a real redis-server and a real websocket client, in a server process whose imports of
``django`` fail (ARCHITECTURE.md: the core imports no Django, not even lazily)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

SERVER = textwrap.dedent(
    """
    import sys

    class NoDjango:
        def find_spec(self, name, path=None, target=None):
            if name == "django" or name.startswith("django."):
                raise ImportError("Django is not installed here")
            return None

    sys.meta_path.insert(0, NoDjango())

    from gevent import monkey

    monkey.patch_all()

    from gevent import pywsgi

    from ws4redis_gevent import WebsocketMiddleware

    def app(environ, start_response):
        loaded = sorted({m.split(".")[0] for m in sys.modules} & {"django"})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"frameworks: {loaded}".encode()]

    server = pywsgi.WSGIServer(
        ("127.0.0.1", 0), WebsocketMiddleware(app, connection=sys.argv[1]), log=None
    )
    server.start()
    print("LISTENING", server.server_port, flush=True)
    server.serve_forever()
    """
)


def test_core_serves_websockets_without_django(redis_url):
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, redis_url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("LISTENING"), proc.stderr.read()
        port = int(line.split()[1])
        url = f"ws://127.0.0.1:{port}/ws/news?subscribe-broadcast&publish-broadcast&echo"
        with connect(url, open_timeout=10) as ws:
            publisher = RedisPublisher(
                facility="news", broadcast=True, settings=Settings(connection=redis_url)
            )
            publisher.publish_message("hello")
            assert ws.recv(timeout=10) == "hello"
            ws.send(b"binary")
            assert ws.recv(timeout=10) == b"binary"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.read() == b"frameworks: []"
    finally:
        proc.kill()
        proc.communicate(timeout=10)
