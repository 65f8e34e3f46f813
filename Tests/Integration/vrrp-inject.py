#!/usr/bin/env python3
"""Sends broken VRRP datagrams to 224.0.0.18 on eth0, as a misconfigured or hostile router would.
  vrrp-inject.py SOURCE_IP VRID
Sends: one with TTL 254, one for another VRID, one with a bad checksum, one truncated.
The daemons must drop and count each and go on."""
import socket, struct, sys

src, vrid = sys.argv[1], int(sys.argv[2])
group = "224.0.0.18"

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def advert(vrid, priority=200, addrs=("10.199.8.100",), bad_sum=False):
    body = struct.pack("!BBBBHH", 0x31, vrid, priority, len(addrs), 100, 0) + b"".join(socket.inet_aton(a) for a in addrs)
    pseudo = socket.inet_aton(src) + socket.inet_aton(group) + struct.pack("!BBH", 0, 112, len(body))
    c = checksum(pseudo + body) ^ (0x1234 if bad_sum else 0)
    return body[:6] + struct.pack("!H", c) + body[8:]

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 254)
s.sendto(advert(vrid), (group, 0))                      # wrong TTL: from off-link
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.sendto(advert((vrid % 255) + 1), (group, 0))          # another virtual router
s.sendto(advert(vrid, bad_sum=True), (group, 0))        # bad checksum
s.sendto(advert(vrid)[:5], (group, 0))                  # truncated VRRP header
print("sent 4 bad datagrams")
