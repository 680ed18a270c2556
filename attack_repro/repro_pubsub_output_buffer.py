from harness import *
import redis, threading, time, sys, subprocess
r = redis.Redis.from_url(REDIS); r.flushall()
with Srv() as s:
    from raw_client import RawClient
    subs = []
    for k in range(int(sys.argv[1])):
        sub = RawClient(s.port, "/ws/feed?subscribe-broadcast")
        def drain(sub=sub):
            try:
                while sub.sock.recv(1<<20): pass
            except Exception: pass
        threading.Thread(target=drain, daemon=True).start()
        subs.append(sub)
    procs = [subprocess.Popen([sys.executable, "-c", """
import redis
c = redis.Redis.from_url(%r)
big = b"y" * ((1 << 20) - 100)
for k in range(3):
    p = c.pipeline(transaction=False)
    for i in range(100): p.publish("broadcast:feed", big)
    p.execute()
""" % REDIS]) for _ in range(2)]
    for p in procs: p.wait()
    time.sleep(3)
    print(s.stats())
