#!/usr/bin/env python3
"""A TFTP client asking for blksize, windowsize and tsize (RFC 2347-2349, 7440): checks the
OACK, acknowledges each window's last block, compares the result with a local copy. Block
numbers roll over past 65535 (files of more than 65535 blocks).
Usage: tftp-window.py SERVER FILE EXPECTED_COPY [BLKSIZE [WINDOWSIZE]]   (default 1468, 8)"""
import socket, struct, sys

server, name, expected = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read()
BLK = int(sys.argv[4]) if len(sys.argv) > 4 else 1468
WIN = int(sys.argv[5]) if len(sys.argv) > 5 else 8
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
opts = b"".join(k + b"\0" + v + b"\0" for k, v in [(b"blksize", str(BLK).encode()), (b"windowsize", str(WIN).encode()), (b"tsize", b"0")])
s.sendto(struct.pack("!H", 1) + name.encode() + b"\0octet\0" + opts, (server, 69))
pkt, peer = s.recvfrom(70000)
op = struct.unpack("!H", pkt[:2])[0]
if op != 6:
    sys.exit(f"expected OACK, got opcode {op}: {pkt!r}")
fields = pkt[2:].split(b"\0")
oack = dict(zip(fields[0::2], fields[1::2]))
if oack.get(b"blksize") != str(BLK).encode() or oack.get(b"windowsize") != str(WIN).encode() or int(oack.get(b"tsize", b"-1")) != len(expected):
    sys.exit(f"unexpected OACK {oack}")
s.sendto(struct.pack("!HH", 4, 0), peer)
data, want, in_window = bytearray(), 1, 0
while True:
    pkt, p = s.recvfrom(70000)
    if p != peer:
        continue
    op, block = struct.unpack("!HH", pkt[:4])
    if op != 3:
        sys.exit(f"expected DATA, got opcode {op}")
    if block != want & 0xFFFF:
        s.sendto(struct.pack("!HH", 4, (want - 1) & 0xFFFF), peer)  # gap: ack the last good block
        in_window = 0
        continue
    data += pkt[4:]
    last = len(pkt) - 4 < BLK
    in_window += 1
    if in_window == WIN or last:
        s.sendto(struct.pack("!HH", 4, block), peer)
        in_window = 0
    want += 1
    if last:
        break
if bytes(data) != expected:
    sys.exit(f"received {len(data)} bytes that differ from the {len(expected)} expected")
print(f"ok: {len(data)} bytes, blksize {BLK}, windowsize {WIN}")
