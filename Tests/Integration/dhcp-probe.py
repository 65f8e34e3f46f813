#!/usr/bin/env python3
"""Sends one DHCPDISCOVER as a PXE client (vendor class PXEClient, arch 0, iPXE user class)
from INTERFACE and waits for an OFFER. Prints "yiaddr file" and exits 0, or exits 1 when no
offer came within TIMEOUT seconds. Usage: dhcp-probe.py INTERFACE MAC [TIMEOUT]"""
import os, select, socket, struct, sys, time

iface, mac, timeout = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), float(sys.argv[3]) if len(sys.argv) > 3 else 2
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
xid = os.urandom(4)
msg = bytearray(236)
msg[0:4] = b"\x01\x01\x06\x00"
msg[4:8] = xid
msg[10] = 0x80
msg[28:34] = mac
msg += b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\x3c\x20PXEClient:Arch:00000:UNDI:002001" + b"\x5d\x02\x00\x00" + b"\x4d\x04iPXE" + b"\xff"
s.sendto(bytes(msg), ("255.255.255.255", 67))
deadline = time.time() + timeout
while time.time() < deadline:
    r, _, _ = select.select([s], [], [], max(0, deadline - time.time()))
    if not r:
        break
    data = s.recv(2048)
    if len(data) < 240 or data[4:8] != xid or data[0] != 2:
        continue
    print(socket.inet_ntoa(data[16:20]), data[108:236].split(b"\0")[0].decode())
    sys.exit(0)
sys.exit(1)
