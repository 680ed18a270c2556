from harness import *
from raw_client import RawClient
import redis, psutil, socket, time
r = redis.Redis.from_url(REDIS); r.flushall()
MB = 1 << 20
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
with Srv(history={"*": {"size": 100, "ttl": 600}}) as s:
    p = psutil.Process(s.proc.pid)
    big = "y" * (MB - 100)
    with s.connect("/ws/feed?publish-broadcast&subscribe-broadcast&recover&echo", max_size=None) as ws:
        ws.send("first")
        pos = ws.recv(timeout=5).split("\n",1)[0].split(" ")[1]
        for i in range(99):
            ws.send(big)
        for i in range(99): ws.recv(timeout=30)
    print("rss after publishing MiB", p.memory_info().rss // MB)
    socks = []
    t0 = time.time()
    for k in range(N):
        c = RawClient(s.port, f"/ws/feed?subscribe-broadcast&recover&since=broadcast@{pos}", timeout=60)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks.append(c)
    for t in range(6):
        time.sleep(2)
        print(f"t={time.time()-t0:.0f}s  {N} non-reading recovering clients: server rss MiB", p.memory_info().rss // MB)
    t1=time.time(); s.stats(); print("http probe", round(time.time()-t1,3))
    for c in socks: c.close()
