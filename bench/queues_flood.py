#!/usr/bin/env python3
"""A bystander's ping while 16 clients each pipeline 40 `queues` requests
over 5,000 queues and do not read the answers. Usage: start chanqd
(e.g. `build/daemon/chanqd --memory --listen 127.0.0.1:PORT`), then
`bench/queues_flood.py PORT`. Prints the cost of one 1000-queue answer and
the ping latency (p50, p99, max) during the flood."""
import socket, json, time, threading, sys
port=int(sys.argv[1])
s=socket.create_connection(("127.0.0.1",port)); f=s.makefile("rwb")
for i in range(5000):
    f.write(b'{"op":"declare","queue":"q%04d"}\n' % i)
f.flush()
for i in range(5000): f.readline()
t=time.monotonic()
for i in range(10):
    f.write(b'{"op":"queues"}\n'); f.flush(); l=f.readline()
print("queues answer %d bytes: %.1f ms each" % (len(l), (time.monotonic()-t)/10*1000))
floods=[]
for c in range(16):
    fs=socket.create_connection(("127.0.0.1",port))
    fs.sendall(b'{"op":"queues"}\n'*40)
    floods.append(fs)
pings=[]
ps=socket.create_connection(("127.0.0.1",port)); pf=ps.makefile("rwb")
end=time.monotonic()+3
while time.monotonic()<end:
    t0=time.monotonic(); pf.write(b'{"op":"ping"}\n'); pf.flush(); pf.readline(); pings.append(time.monotonic()-t0); time.sleep(0.01)
pings.sort()
print("ping during flood: n=%d p50 %.1f ms p99 %.1f ms max %.1f ms"%(len(pings),pings[len(pings)//2]*1000,pings[int(len(pings)*0.99)]*1000,pings[-1]*1000))
