#!/usr/bin/env python3
"""Stand-in for systemd's NOTIFY_SOCKET: prints each sd_notify datagram as one line
(fields joined by '|'), flushed, so tests can wait for READY=1, RELOADING=1, STOPPING=1."""
import os, socket, sys, time

path = sys.argv[1]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
while True:
    data = s.recv(65536)
    print("%.3f %s" % (time.time(), data.decode(errors="replace").replace("\n", "|")), flush=True)
