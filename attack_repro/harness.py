"""Harness of the attack reproductions: a server process (tests/serve.py) on REDIS_URL."""
import json, os, subprocess, sys, time, urllib.request
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, ROOT + "/tests"]
from websockets.sync.client import connect
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6391/0")

class Srv:
    def __init__(self, **opts):
        opts.setdefault("connection", REDIS)
        env = {**os.environ, "WS4REDIS_TEST_OPTIONS": json.dumps(opts),
               "PYTHONPATH": ROOT + ":" + ROOT + "/tests", "WS4REDIS_TEST_LOG_LEVEL": os.environ.get("LL", "WARNING")}
        env.update(json.loads(os.environ.get("SRV_ENV", "{}")))
        self.proc = subprocess.Popen([ROOT + "/.venv/bin/python", ROOT + "/tests/serve.py"], env=env, cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=open(os.environ.get("SERVER_ERR", "/tmp/attack-server.err"), "w"), text=True)
        line = self.proc.stdout.readline()
        self.port = int(line.split()[1])
    def url(self, p): return f"ws://127.0.0.1:{self.port}{p}"
    def connect(self, p, **kw):
        kw.setdefault("open_timeout", 10)
        return connect(self.url(p), **kw)
    def stats(self):
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=10).read())
    def stop(self):
        self.proc.terminate(); self.proc.wait(10)
    def __enter__(self): return self
    def __exit__(self, *a): self.stop()
