#!/usr/bin/env python3
"""Talks to a control socket the way a broken or hostile client would.
  wire-raw.py SOCKET oversized|garbage|hello
Prints the daemon's answer (decoded error envelope) and whether it then closed the connection."""
import json, socket, struct, sys

path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(path)
if mode == "oversized":
    s.sendall(struct.pack(">I", 64 << 20))              # announce 64 MiB, send nothing more
elif mode == "garbage":
    s.sendall(struct.pack(">I", 9) + b"\xff\xfenot json")
else:
    body = json.dumps({"v": 1, "kind": "request", "id": 1, "type": "hello", "body": {"protocolVersion": 1, "peer": "raw"}}).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if mode == "hello" and len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
            break
except socket.timeout:
    print("timeout: connection still open")
    sys.exit(2)
if len(data) >= 4:
    n = struct.unpack(">I", data[:4])[0]
    print(data[4:4 + n].decode())
print("closed" if mode != "hello" else "open")
