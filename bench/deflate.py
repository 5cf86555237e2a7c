#!/usr/bin/env python3
"""permessage-deflate figures for docs/benchmarks.md ("Compression").

Usage: bench/deflate.py [path/to/socketbox]   (a --features deflate release build;
default target/release/socketbox). Starts its own servers on 127.0.0.1:0 (with
$SOCKETBOX_ARGS added to their flags) and
prints one line per figure. The clients are Python `websockets` (compression
on, as browsers do) and raw sockets with zlib for the bomb; nothing here is
SocketBox's own client code.

1. idle: server RSS per idle connection at 1,000 /echo connections that each
   echoed one 1 KiB compressible text (compressed both ways; ONLY=hello: a
   16-byte text, sent uncompressed as loadgen idle does), with
   compression off (client offers nothing), on (no context takeover, the
   default) and on with --deflate-context-takeover.
2. wire: bytes on the wire (the server's own counters) for 1,000 PEER
   messages of realistic chat JSON from alice to bob, off / on / takeover.
3. bomb: 10 MiB of zeros compressed (about 10 KB) in one message against a
   1 MiB limit, on /echo and on /ws: time to the Close, and the server's peak
   RSS growth (VmHWM after less VmRSS before).
"""
import asyncio
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import time
import zlib

from websockets.asyncio.client import connect

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/socketbox"
CONNS = int(os.environ.get("CONNS", "1000"))


def start(*args):
    extra = os.environ.get("SOCKETBOX_ARGS", "").split()
    proc = subprocess.Popen([BIN, "--listen", "127.0.0.1:0", *args, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    addr = re.match(r"listening on (\S+)", line).group(1)
    return proc, addr


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metric(addr, name):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise KeyError(name)


def smaps_split(pid):
    """RSS in the connection threads' 64 KiB stack mappings, and the rest (KiB)."""
    stacks = rest = 0
    size = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                if size == 64:
                    stacks += rss
                else:
                    rest += rss
    return stacks, rest


TEXT = json.dumps({"rows": [{"id": i, "name": f"user-{i % 17}", "online": i % 3 == 0}
                            for i in range(20)]})[:1024]


async def idle(label, args, compression, text=None):
    text = text or TEXT
    proc, addr = start(*args)
    try:
        await asyncio.sleep(0.5)
        before = status(proc.pid, "VmRSS")
        conns = []
        for i in range(CONNS):
            ws = await connect(f"ws://{addr}/echo", compression=compression, max_size=None,
                               open_timeout=30, ping_interval=None)
            await ws.send(text)
            assert await ws.recv() == text
            conns.append(ws)
        negotiated = conns[0].response.headers.get("Sec-WebSocket-Extensions", "none")
        await asyncio.sleep(3)
        after = status(proc.pid, "VmRSS")
        threads = status(proc.pid, "Threads")
        stacks, heap = smaps_split(proc.pid)
        print(f"idle {label}: {CONNS} connections, RSS {before} -> {after} KiB, "
              f"{(after - before) / CONNS:.1f} KiB per connection, {threads} threads; "
              f"negotiated: {negotiated}; of the RSS, {stacks} KiB in 64 KiB thread "
              f"stacks and {heap} KiB elsewhere")
        for ws in conns:
            await ws.close()
    finally:
        proc.terminate()
        proc.wait()


WORDS = ("the meeting moved to three pm can you send the deck again thanks "
         "sounds good see you there lunch tomorrow I pushed the fix to main "
         "build is green let me check ok great on my way").split()


def chat_data(rng, i):
    return {
        "to": "bob",
        "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30))),
        "msgId": "%032x" % rng.getrandbits(128),
        "room": rng.choice(["general", "random", "dev", "design"]),
        "sentAt": 1764806400000 + i * 1375,
        "mentions": rng.sample(["alice", "bob", "carol", "dave"], rng.randint(0, 2)),
        "client": {"app": "web", "version": "2.3.1", "locale": "en-GB"},
    }


async def wire(label, args, compression):
    proc, addr = start(*args)
    try:
        async def user(name):
            ws = await connect(f"ws://{addr}/ws", compression=compression, ping_interval=None)
            await ws.send(json.dumps({"code": 10000, "id": name}))
            while json.loads(await ws.recv()).get("extend", {}).get("code") != 20001:
                pass
            return ws
        alice, bob = await user("alice"), await user("bob")
        rng = random.Random(7)
        bytes_in, bytes_out = metric(addr, "socketbox_bytes_in_total"), metric(addr, "socketbox_bytes_out_total")
        plain = 0
        for i in range(1000):
            message = json.dumps({"code": 10002, "data": chat_data(rng, i)})
            plain += len(message)
            await alice.send(message)
        got = 0
        while got < 1000:
            if json.loads(await bob.recv()).get("body", {}).get("type") == 30001:
                got += 1
        # The /metrics requests themselves are counted too; the same in each run.
        d_in = metric(addr, "socketbox_bytes_in_total") - bytes_in
        d_out = metric(addr, "socketbox_bytes_out_total") - bytes_out
        print(f"wire {label}: 1000 PEER messages ({plain} bytes of JSON sent): "
              f"{d_in} bytes in, {d_out} bytes out")
        await alice.close()
        await bob.close()
    finally:
        proc.terminate()
        proc.wait()


def bomb(path, args):
    proc, addr = start("--deflate", *args)
    try:
        time.sleep(0.3)
        host, port = addr.rsplit(":", 1)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = compressor.compress(bytes(10 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        payload = payload[:-4]
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += s.recv(1)
        assert b" 101 " in head and b"permessage-deflate" in head, head
        time.sleep(0.3)
        rss_before = status(proc.pid, "VmRSS")
        key = os.urandom(4)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        first = 0xC2 if path == "/echo" else 0xC1  # FIN, RSV1, binary or text
        assert len(payload) < 65536  # the 16-bit length form, as RFC 6455 5.2 requires
        frame = bytes([first, 0x80 | 126]) + struct.pack(">H", len(payload)) + key + masked
        started = time.monotonic()
        s.sendall(frame)
        code = None
        buf = b""
        while code is None:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2:
                n = buf[1] & 0x7F
                at = 2 + (2 if n == 126 else 8 if n == 127 else 0)
                if len(buf) < at:
                    break
                n = n if n < 126 else int.from_bytes(buf[2:at], "big")
                if len(buf) < at + n:
                    break
                if buf[0] & 0x0F == 0x8:
                    code = int.from_bytes(buf[at:at + 2], "big")
                buf = buf[at + n:]
        elapsed = time.monotonic() - started
        peak = status(proc.pid, "VmHWM")
        print(f"bomb {path}: {len(payload)} bytes on the wire inflating to 10 MiB, limit 1 MiB: "
              f"close {code} after {elapsed * 1000:.1f} ms; server RSS {rss_before} KiB before, "
              f"peak {peak} KiB (growth at most {peak - rss_before} KiB)")
    finally:
        proc.terminate()
        proc.wait()


async def main():
    what = os.environ.get("ONLY", "idle wire bomb").split()
    if "hello" in what:  # as loadgen idle: a 16-byte hello, under --deflate-min-size
        await idle("off, 16 B hello", ["--deflate"], None, "0123456789abcdef")
        await idle("on, 16 B hello", ["--deflate"], "deflate", "0123456789abcdef")
    if "idle" in what:
        await idle("off", ["--deflate"], None)
        await idle("on", ["--deflate"], "deflate")
        if "notakeover" not in what:
            await idle("on+takeover", ["--deflate", "--deflate-context-takeover"], "deflate")
    if "wire" in what:
        await wire("off", ["--deflate"], None)
        await wire("on", ["--deflate"], "deflate")
        await wire("on+takeover", ["--deflate", "--deflate-context-takeover"], "deflate")
    if "bomb" in what:
        bomb("/echo", ["--echo-max-message", "1048576"])
        bomb("/ws", ["--max-message", "1048576"])


asyncio.run(main())
