#!/usr/bin/python3
"""WebSocket peers for the cm-lbd test (Debian's python3-websockets).
  ws-echo.py serve HOST PORT   an echo server
  ws-echo.py client URL        sends 100 text messages and one of 100 KiB, checks each echo,
                               prints "ok 101 messages" (exit 1 on any mismatch)."""
import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def serve(host, port):
    async with websockets.serve(echo, host, int(port), max_size=1 << 20):
        await asyncio.Future()


async def client(url):
    async with websockets.connect(url, max_size=1 << 20) as ws:
        messages = [f"message {i}" for i in range(100)] + ["x" * 102400]
        for m in messages:
            await ws.send(m)
            got = await asyncio.wait_for(ws.recv(), 5)
            if got != m:
                print(f"echo mismatch: sent {len(m)} bytes, got {len(got)}")
                sys.exit(1)
        print(f"ok {len(messages)} messages")


if sys.argv[1] == "serve":
    asyncio.run(serve(sys.argv[2], sys.argv[3]))
else:
    asyncio.run(client(sys.argv[2]))
