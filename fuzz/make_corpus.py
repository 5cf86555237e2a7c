#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Run from anywhere: `python3 fuzz/make_corpus.py`. It is deterministic and
rewrites only the seed-* files it owns, so regression-* inputs (crashes found
and fixed, see docs/fuzzing.md) stay. The seeds are committed and a fuzz run
only reads them: libFuzzer adds what it finds to the first corpus directory
it is given, fuzz/corpus/<target>/, which git ignores.

Each seed is small and means something: a valid frame of every kind, a
fragmented message, a Close of each code class, a handshake as a real
browser or client sends it, a message of the seed chat client. The input
layouts are described at the top of each target.
"""

import json
import os
import struct

FUZZ_DIR = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(FUZZ_DIR, "seeds")
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 5.7's example key

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def header(opcode, length, fin=True, mask=KEY, rsv=0, force_len_bytes=None):
    """A frame header; force_len_bytes writes a non-minimal length on purpose."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    len_bytes = force_len_bytes
    if len_bytes is None:
        len_bytes = 0 if length <= 125 else 2 if length <= 0xFFFF else 8
    if len_bytes == 0:
        out = bytes([first, mask_bit | length])
    elif len_bytes == 2:
        out = bytes([first, mask_bit | 126]) + struct.pack(">H", length)
    else:
        out = bytes([first, mask_bit | 127]) + struct.pack(">Q", length)
    return out + (mask if mask is not None else b"")


def masked(payload, key=KEY):
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(opcode, payload=b"", fin=True, mask=KEY, rsv=0):
    body = masked(payload, mask) if mask is not None else payload
    return header(opcode, len(payload), fin, mask, rsv) + body


def close(code=None, reason=b""):
    payload = b"" if code is None else struct.pack(">H", code) + reason
    return frame(CLOSE, payload)


def write(target, name, data):
    directory = os.path.join(SEEDS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data)


def clear_seeds(target):
    directory = os.path.join(SEEDS, target)
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if name.startswith("seed-"):
                os.remove(os.path.join(directory, name))


# --------------------------------------------------------------------------
# frame_header: raw bytes, a header (and for the write side, choices).

def frame_header_seeds():
    seeds = {
        "rfc-unmasked-hello": bytes([0x81, 0x05]) + b"Hello",
        "rfc-masked-hello": frame(TEXT, b"Hello"),
        "rfc-fragment-hel": bytes([0x01, 0x03]) + b"Hel",
        "rfc-binary-256-len16": header(BINARY, 256, mask=None),
        "rfc-binary-64k-len64": header(BINARY, 65536, mask=None),
        "masked-len16": header(BINARY, 300),
        "masked-len64": header(BINARY, 1 << 40),
        "max-len64": header(BINARY, (1 << 63) - 1),
        "len-high-bit": bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 63) + KEY,
        "nonminimal-16": header(BINARY, 125, force_len_bytes=2),
        "nonminimal-64": header(BINARY, 0xFFFF, force_len_bytes=8),
        "rsv-all": header(TEXT, 0, rsv=0b111),
        "reserved-opcode-3": header(0x3, 0),
        "reserved-opcode-b": header(0xB, 0),
        "partial-1": bytes([0x81]),
        "partial-mask": header(TEXT, 5)[:4],
        "partial-len64": header(BINARY, 1 << 20)[:6],
    }
    for opcode, name in [(CONT, "cont"), (TEXT, "text"), (BINARY, "binary"),
                         (CLOSE, "close"), (PING, "ping"), (PONG, "pong")]:
        seeds["each-" + name] = frame(opcode, b"abc", fin=True)
    return seeds


# --------------------------------------------------------------------------
# connection: [config][cut count][cuts as u16 LE]... stream.
# config bits 0-2, max_message: 4 -> 1024 bytes, 6 -> 64 KiB; bits 3-4, the
# application: 0 passive, 1 echo, 2 closes first, 3 closed elsewhere.
PASSIVE, ECHO, CLOSES_FIRST, CLOSED_ELSEWHERE = range(4)


def conn_input(stream, cuts=(), limit=6, app=PASSIVE):
    config = limit | (app << 3)
    prefix = bytes([config, len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts)
    return prefix + stream


def connection_seeds():
    greek = "κόσμε".encode()
    s = {}
    s["text-hello"] = frame(TEXT, b"Hello")
    s["binary"] = frame(BINARY, bytes(range(16)))
    s["empty-text-and-binary"] = frame(TEXT) + frame(BINARY)
    s["ping-pong"] = frame(PING, b"are you there") + frame(PONG, b"yes")
    s["fragmented-text-with-ping"] = (
        frame(TEXT, b"frag", fin=False) + frame(PING, b"x")
        + frame(CONT, b"men", fin=False) + frame(CONT, b"ted"))
    s["fragmented-binary"] = frame(BINARY, b"\x00\x01", fin=False) + frame(CONT, b"\x02")
    s["utf8-split-across-frames"] = (
        frame(TEXT, greek[:3], fin=False) + frame(CONT, greek[3:]))
    s["utf8-invalid-fails-fast"] = frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edite")
    s["utf8-cut-at-end"] = frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xce")
    for code in (1000, 1001, 1002, 1005, 1011, 3000, 4999, 999, 5000):
        s["close-%d" % code] = frame(TEXT, b"bye") + close(code, b"reason")
    s["close-empty"] = close()
    s["close-one-byte"] = frame(CLOSE, b"\x03")
    s["close-reason-not-utf8"] = close(1000, b"\xff")
    s["close-too-long"] = frame(CLOSE, struct.pack(">H", 1000) + b"x" * 124)
    s["close-fragmented"] = frame(CLOSE, struct.pack(">H", 1000), fin=False)
    s["data-after-close"] = close(1000) + frame(TEXT, b"late")
    s["unmasked"] = frame(TEXT, b"x", mask=None)
    s["rsv1"] = frame(TEXT, b"x", rsv=0b100)
    s["reserved-opcode"] = frame(0x3, b"")
    s["control-too-long"] = frame(PING, bytes(126))
    s["fragmented-control"] = frame(PING, b"", fin=False)
    s["unexpected-continuation"] = frame(CONT, b"x")
    s["expected-continuation"] = frame(TEXT, b"a", fin=False) + frame(TEXT, b"b")
    s["huge-length-header"] = header(BINARY, 1 << 62)
    s["length-high-bit"] = bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 63) + KEY
    s["nonminimal-length"] = header(BINARY, 125, force_len_bytes=2) + masked(bytes(125))
    s["after-failure-peer-close"] = (
        frame(TEXT, b"\xff") + frame(TEXT, b"\xff junk") + close(1007))
    s["nonminimal-after-failure"] = (
        frame(0x3) + header(BINARY, 1, force_len_bytes=2) + b"\x00")
    seeds = {name: conn_input(stream) for name, stream in s.items()}
    # Messages at and just over a 1 KiB limit.
    seeds["limit-exact-1024"] = conn_input(frame(BINARY, bytes(1024)), limit=4)
    seeds["limit-over-fragmented"] = conn_input(
        frame(BINARY, bytes(600), fin=False) + frame(CONT, bytes(425)), limit=4)
    # The application echoing, answering an oversized message with last
    # words, closing first, or learning of a Close sent elsewhere.
    seeds["echo-fragmented"] = conn_input(s["fragmented-text-with-ping"], app=ECHO)
    seeds["echo-then-close"] = conn_input(
        frame(TEXT, b"Hello") + frame(BINARY, b"\x00\xff") + close(1000), app=ECHO)
    seeds["echo-over-limit-last-words"] = conn_input(
        frame(PING, b"p") + frame(BINARY, bytes(1025)), limit=4, app=ECHO)
    seeds["closes-first-peer-answers"] = conn_input(
        frame(TEXT, b"late") + frame(PING, b"x") + close(1001), app=CLOSES_FIRST)
    seeds["closed-elsewhere-peer-answers"] = conn_input(
        frame(TEXT, b"late") + close(1001), app=CLOSED_ELSEWHERE)
    # The same streams fed in pieces cut inside headers, masks and code points.
    frag = s["fragmented-text-with-ping"]
    seeds["cuts-fragmented"] = conn_input(frag, cuts=(1, 3, 7, 12, 13, 20))
    seeds["cuts-utf8"] = conn_input(s["utf8-split-across-frames"], cuts=(2, 8, 9, 10))
    seeds["cuts-close"] = conn_input(s["close-1000"], cuts=(5, 10, 11))
    return seeds


# --------------------------------------------------------------------------
# utf8: [cut count][cuts as u16 LE]... bytes.

def utf8_input(data, cuts=()):
    return bytes([len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + data


def utf8_seeds():
    greek = "κόσμε".encode()
    emoji = "a😀b".encode()
    return {
        "ascii": utf8_input(b"Hello, world"),
        "greek": utf8_input(greek),
        "greek-split-inside": utf8_input(greek, cuts=(1, 3, 4)),
        "emoji-split-every-byte": utf8_input(emoji, cuts=(1, 2, 3, 4, 5)),
        "all-lengths": utf8_input("$¢€𐍈".encode(), cuts=(2, 5)),
        "max-code-point": utf8_input(b"\xf4\x8f\xbf\xbf"),
        "over-max": utf8_input(b"\xf4\x90\x80\x80", cuts=(1,)),
        "overlong-nul": utf8_input(b"\xc0\x80"),
        "overlong-3": utf8_input(b"\xe0\x80\xaf"),
        "surrogate": utf8_input(b"\xed\xa0\x80", cuts=(1, 2)),
        "truncated-at-end": utf8_input(b"ok\xe2\x82"),
        "lone-continuation": utf8_input(b"\x80"),
        "invalid-lead": utf8_input(b"ab\xff"),
        "autobahn-6.4.1": utf8_input(
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
            cuts=(12, 15)),
    }


# --------------------------------------------------------------------------
# handshake: the bytes a client sends.

def crlf(*lines):
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def handshake_seeds():
    return {
        "chromium": crlf(
            "GET /ws HTTP/1.1",
            "Host: localhost:8080",
            "Connection: Upgrade",
            "Pragma: no-cache",
            "Cache-Control: no-cache",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            "Upgrade: websocket",
            "Origin: http://localhost:8080",
            "Sec-WebSocket-Version: 13",
            "Accept-Encoding: gzip, deflate, br, zstd",
            "Accept-Language: en-US,en;q=0.9",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            "Sec-WebSocket-Protocol: socketbox.v1"),
        "firefox": crlf(
            "GET /ws HTTP/1.1",
            "Host: localhost:8080",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Accept: */*",
            "Accept-Language: en-US,en;q=0.5",
            "Accept-Encoding: gzip, deflate, br, zstd",
            "Sec-WebSocket-Version: 13",
            "Origin: http://localhost:8080",
            "Sec-WebSocket-Extensions: permessage-deflate",
            "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
            "Connection: keep-alive, Upgrade",
            "Sec-Fetch-Dest: empty",
            "Sec-Fetch-Mode: websocket",
            "Sec-Fetch-Site: same-origin",
            "Pragma: no-cache",
            "Cache-Control: no-cache",
            "Upgrade: websocket"),
        "curl": crlf(
            "GET /echo HTTP/1.1",
            "Host: 127.0.0.1:8080",
            "User-Agent: curl/8.5.0",
            "Accept: */*",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==",
            "Connection: Upgrade"),
        "python-websockets": crlf(
            "GET /ws HTTP/1.1",
            "Host: localhost:8080",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: 9sHGfNhHHoDPXRVkoyIWHA==",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            "User-Agent: Python/3.11 websockets/12.0"),
        "node-ws-with-frame": crlf(
            "GET /ws?room=1 HTTP/1.1",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: 5Z8pz0Jv0m0pGkq1hYzSNg==",
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Protocol: socketbox.v1, chat",
            "Host: localhost:8080") + frame(TEXT, b"{'code':10016}"),
        "api-post-with-body": crlf(
            "POST /api/push HTTP/1.1",
            "Host: localhost:8080",
            "Content-Type: application/json",
            "Content-Length: 29") + b'{"to":"bob","data":{"x":1}}\r\n',
        "plain-get-http10": crlf("GET / HTTP/1.0"),
        "bare-lf": b"GET /ws HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\n\n",
        "leading-empty-lines": b"\r\n\r\n" + crlf("GET / HTTP/1.1", "Host: a"),
        "absolute-form": crlf("GET http://localhost:8080/ws HTTP/1.1", "Host: localhost:8080"),
        "obs-fold": crlf("GET / HTTP/1.1", "Host: a", "X-A: b", " c"),
        "space-before-colon": crlf("GET / HTTP/1.1", "Host : a"),
        "two-hosts": crlf("GET / HTTP/1.1", "Host: a", "Host: b"),
        "chunked": crlf("POST /api/push HTTP/1.1", "Host: a", "Transfer-Encoding: chunked"),
        "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "tls-client-hello": bytes.fromhex("16030100a5010000a10303") + bytes(32),
        "partial": b"GET /ws HTTP/1.1\r\nHost: loc",
        "utf8-value": crlf("GET / HTTP/1.1", "Host: a", "X-Name: κόσμε"),
        "bad-key": crlf("GET /ws HTTP/1.1", "Host: a", "Upgrade: websocket",
                        "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="),
        "version-8": crlf("GET /ws HTTP/1.1", "Host: a", "Upgrade: websocket",
                          "Connection: Upgrade", "Sec-WebSocket-Version: 8",
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
    }


# --------------------------------------------------------------------------
# laxjson and chat_decode: UTF-8 text.

SEED_CLIENT_MESSAGES = {
    "pong": "{'code':10016}",
    "peer": "{'code':10002,'data':'" + json.dumps({"to": "bob", "text": "hi"}, separators=(",", ":")) + "'}",
    "peer-escaped-quote": "{'code':10002,'data':'{\"to\":\"bob\",\"text\":\"hi \\\"x\\\" it\\'s\"}'}",
    "auth": json.dumps({"code": 10000, "id": "alice"}, separators=(",", ":")),
    "auth-token": '{"code":10000,"id":"alice","token":"1900000000.0123456789abcdef0123456789abcdef01234567"}',
    "auth-integer-id": '{"code":10000,"id":42}',
    "broadcast-object": '{"code":10003,"data":{"text":"hello all"}}',
    "broadcast-string-data": "{'code':10003,'data':'just text'}",
    "ping": '{"code":10015}',
    "code-as-float": '{"code":10016.0}',
    "code-exponent": '{"code":1.0016e4}',
    "code-fraction": '{"code":10016.5}',
    "code-unknown": '{"code":99999}',
    "code-string": '{"code":"10016"}',
    "not-object": '[1,2,3]',
    "peer-no-to": "{'code':10002,'data':'{\"text\":\"hi\"}'}",
    "peer-bad-id": '{"code":10002,"data":{"to":"bob smith"}}',
}

JSON_SAMPLES = {
    "numbers": '[0,-0,1,-1,1.5,-1.5e-3,1E+2,18446744073709551615,18446744073709551616,'
               '-9223372036854775808,-9223372036854775809,1e308,2.2250738585072014e-308]',
    "escapes": r'"\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00"',
    "nested": '{"a":[{"b":{"c":[null,true,false]}}],"":{}}',
    "duplicate-keys": '{"a":1,"a":2}',
    "whitespace": ' \t\r\n{ "a" : [ 1 , 2 ] } \n',
    "single-quoted-backslashes": r"{'path':'C:\\','q':'it\'s'}",
    "deep": "[" * 64 + "]" * 64,
    "too-deep": "[" * 65 + "]" * 65,
    "lone-surrogate": r'"\ud800"',
    "control-char": '"a\tb"',
    "out-of-range": "1e400",
    "bad-number": "01",
    "trailing": '{"a":1} x',
}


def main():
    targets = {
        "frame_header": frame_header_seeds(),
        "connection": connection_seeds(),
        "utf8": utf8_seeds(),
        "handshake": handshake_seeds(),
        "laxjson": {**{k: v.encode() for k, v in JSON_SAMPLES.items()},
                    **{"client-" + k: v.encode() for k, v in SEED_CLIENT_MESSAGES.items()}},
        "chat_decode": {k: v.encode() for k, v in SEED_CLIENT_MESSAGES.items()},
    }
    for target, seeds in targets.items():
        clear_seeds(target)
        for name, data in seeds.items():
            write(target, name, data)
        print("%-13s %3d seeds" % (target, len(seeds)))


if __name__ == "__main__":
    main()
