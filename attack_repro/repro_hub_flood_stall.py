from harness import *
import redis, threading, time, urllib.request, sys, subprocess
r = redis.Redis.from_url(REDIS); r.flushall()
CH = sys.argv[1]
with Srv() as s:
    from raw_client import RawClient
    ws = RawClient(s.port, "/ws/feed?subscribe-broadcast")
    # a reader process draining the socket so the server's writes never block
    def drain():
        try:
            while ws.sock.recv(1<<20): pass
        except Exception: pass
    threading.Thread(target=drain, daemon=True).start()
    def probe():
        t0=time.time(); urllib.request.urlopen(f"http://127.0.0.1:{s.port}/x", timeout=60).read(); return time.time()-t0
    print("idle probe", round(probe(),3))
    flood = subprocess.Popen([sys.executable, "-c", f"""
import redis
c = redis.Redis.from_url({REDIS!r})
for k in range(40):
    p = c.pipeline(transaction=False)
    for i in range(5000): p.publish({CH!r}, b"z"*100)
    p.execute()
"""])
    lat = []
    while flood.poll() is None:
        lat.append(probe())
    print(CH, "probes during flood:", len(lat), "max %.3f" % max(lat))
    print("after", round(probe(),3))
