from harness import *
import redis, time
r = redis.Redis.from_url(REDIS); r.flushall()
with Srv() as s:
    with s.connect("/ws/feed?subscribe-broadcast") as ws:
        time.sleep(0.2)
        r.publish("broadcast:feed", b"\x00ws4t\x00\xff\xfe")
        try:
            print("got", repr(ws.recv(timeout=3)))
        except Exception as e:
            print("client error:", type(e).__name__, e)
