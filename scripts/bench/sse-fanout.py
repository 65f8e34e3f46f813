#!/usr/bin/env python3
"""Opens N Server-Sent Events streams to cm-webd and reports when each saw its first event.

  sse-fanout.py HOST PORT COOKIE N TRIGGER_FILE

Every stream is opened (and its greeting read) before TRIGGER_FILE is created, which tells
the caller to cause a check transition; then the time from the trigger to each stream's
first `event: health` is collected. Prints: opened, received, first_ms, p50_ms, last_ms.
"""
import socket, sys, threading, time

host, port, cookie, n, trigger = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
received, lock, ready = [], threading.Lock(), threading.Barrier(n + 1, timeout=60)
t0 = [0.0]

def stream():
    s = socket.create_connection((host, port), timeout=60)
    s.sendall(("GET /events?topics=health HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nAccept: text/event-stream\r\n\r\n" % (host, cookie)).encode())
    buf = b""
    while b"retry:" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return
        buf += chunk
    ready.wait()
    buf = b""
    while b"event: health" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return
        buf += chunk
    with lock:
        received.append(time.time() - t0[0])
    s.close()

threads = [threading.Thread(target=stream, daemon=True) for _ in range(n)]
for t in threads:
    t.start()
ready.wait()
t0[0] = time.time()
open(trigger, "w").close()
deadline = time.time() + 30
for t in threads:
    t.join(max(0, deadline - time.time()))
r = sorted(received)
ms = lambda v: "%.0f" % (v * 1000)
print("opened=%d received=%d first_ms=%s p50_ms=%s last_ms=%s" % (n, len(r), ms(r[0]) if r else "-", ms(r[len(r) // 2]) if r else "-", ms(r[-1]) if r else "-"))
