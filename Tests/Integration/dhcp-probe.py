#!/usr/bin/env python3
"""Sends one DHCPDISCOVER as a PXE client (vendor class PXEClient, arch 0, iPXE user class)
from INTERFACE and waits for an OFFER. Prints "yiaddr file" and exits 0, or exits 1 when no
offer came within TIMEOUT seconds. Usage: dhcp-probe.py INTERFACE MAC [TIMEOUT]
       dhcp-probe.py INTERFACE flood COUNT: COUNT DISCOVERs from made-up MAC addresses
       (02:00:00:xx:xx:xx), as fast as they go, answers not read; prints how many were sent."""
import os, select, socket, struct, sys, time

def discover(xid, mac):
    msg = bytearray(236)
    msg[0:4] = b"\x01\x01\x06\x00"
    msg[4:8] = xid
    msg[10] = 0x80
    msg[28:34] = mac
    msg += b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\x3c\x20PXEClient:Arch:00000:UNDI:002001" + b"\x5d\x02\x00\x00" + b"\x4d\x04iPXE" + b"\xff"
    return bytes(msg)

iface = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
if sys.argv[2] == "flood":
    count = int(sys.argv[3])
    for i in range(count):
        s.sendto(discover(struct.pack(">I", i), bytes([2, 0, 0, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff])), ("255.255.255.255", 67))
    print(count)
    sys.exit(0)
mac, timeout = bytes.fromhex(sys.argv[2].replace(":", "")), float(sys.argv[3]) if len(sys.argv) > 3 else 2
xid = os.urandom(4)
s.sendto(discover(xid, mac), ("255.255.255.255", 67))
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
