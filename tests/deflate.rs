//! permessage-deflate (RFC 7692) end to end, against the real binary: the
//! 101's answer to real offers, compressed frames built by `flate2` on a
//! raw socket (a decompression bomb among them), and Python `websockets`
//! and Node `ws` with compression on, on `/echo` and `/ws`. Needs the
//! feature: `cargo test --features deflate`.
#![cfg(feature = "deflate")]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    client_frame, header, raw_request, read_close_code, read_frame, upgrade_request, Server,
};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};

const CHROMIUM_OFFER: &str = "permessage-deflate; client_max_window_bits";
const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The `Sec-WebSocket-Extensions` of the 101 answering `offer` on `path`.
fn answer(server: &Server, path: &str, offer: &str) -> (TcpStream, Option<String>) {
    let request = upgrade_request(path, &format!("Sec-WebSocket-Extensions: {offer}\r\n"));
    let (stream, head) = raw_request(server, &request);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let value = header(&head, "Sec-WebSocket-Extensions").map(str::to_owned);
    (stream, value)
}

/// A raw DEFLATE stream of `data` with a sync flush, its tail removed
/// (RFC 7692 7.2.1), as an independent client would compress it.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut rest = data;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        let before = compress.total_in();
        compress
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .unwrap();
        rest = &rest[(compress.total_in() - before) as usize..];
        if rest.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflate a compressed message's payload (RFC 7692 7.2.2).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(64 * 1024);
    inflater
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

#[test]
fn offers_are_answered_per_rfc_7692() {
    let server = Server::start(&["--deflate"]);
    for path in ["/echo", "/ws"] {
        assert_eq!(
            answer(&server, path, CHROMIUM_OFFER).1.as_deref(),
            Some(BOTH)
        );
    }
    // The first offer the server can honour: a 256-byte window it cannot.
    let offers = "permessage-deflate; server_max_window_bits=8, \
                  permessage-deflate; server_max_window_bits=10; client_max_window_bits=9";
    assert_eq!(
        answer(&server, "/echo", offers).1,
        Some(format!("{BOTH}; server_max_window_bits=10"))
    );
    // Duplicates and unknown parameters decline; other extensions too.
    for declined in [
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; bogus",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=8",
    ] {
        assert_eq!(answer(&server, "/echo", declined).1, None, "{declined}");
    }
    let takeover = Server::start(&["--deflate", "--deflate-context-takeover"]);
    assert_eq!(
        answer(&takeover, "/echo", CHROMIUM_OFFER).1.as_deref(),
        Some("permessage-deflate")
    );
}

#[test]
fn without_the_flag_nothing_changes() {
    let server = Server::start(&[]);
    let (mut stream, value) = answer(&server, "/echo", CHROMIUM_OFFER);
    assert_eq!(value, None, "the offer is declined");
    stream
        .write_all(&client_frame(0xC1, &deflate(b"Hello")))
        .unwrap();
    assert_eq!(
        read_close_code(&mut stream),
        Some(1002),
        "RSV1 stays an error"
    );
}

#[test]
fn compressed_echo_on_a_raw_socket() {
    let server = Server::start(&["--deflate"]);
    let (mut stream, _) = answer(&server, "/echo", CHROMIUM_OFFER);
    let text = "SocketBox ".repeat(100);
    stream
        .write_all(&client_frame(0xC1, &deflate(text.as_bytes())))
        .unwrap();
    let (b0, payload) = read_frame(&mut stream).unwrap();
    assert_eq!(b0, 0xC1, "FIN, RSV1, text: the echo is compressed too");
    assert!(payload.len() < 100);
    assert_eq!(inflate(&payload), text.as_bytes());
    // Under --deflate-min-size: sent as is, RSV1 clear.
    stream
        .write_all(&client_frame(0xC1, &deflate(b"short")))
        .unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x81, b"short".to_vec()));
    // RSV1 on a continuation frame is a protocol error.
    stream.write_all(&client_frame(0x01, b"a")).unwrap();
    stream
        .write_all(&client_frame(0xC0, &deflate(b"b")))
        .unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1002));
    // Data that does not inflate.
    let (mut stream, _) = answer(&server, "/echo", CHROMIUM_OFFER);
    stream
        .write_all(&client_frame(0xC2, &[0xff, 0xff, 0xff, 0xff]))
        .unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1007));
}

/// 10 MiB of zeros, about 10 KB on the wire, against a 1 MiB limit: refused
/// while inflating, with close 1009 on `/echo` and ERROR 41300 then close
/// 1009 on `/ws`.
#[test]
fn a_decompression_bomb_is_refused() {
    let bomb = deflate(&vec![0; 10 << 20]);
    assert!(bomb.len() < 20_000, "{} bytes", bomb.len());
    let server = Server::start(&[
        "--deflate",
        "--echo-max-message",
        "1048576",
        "--max-message",
        "1048576",
    ]);
    let started = Instant::now();
    let (mut stream, _) = answer(&server, "/echo", CHROMIUM_OFFER);
    stream.write_all(&client_frame(0xC2, &bomb)).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1009));
    assert!(started.elapsed() < Duration::from_secs(10));

    let (mut ws, _) = answer(&server, "/ws", CHROMIUM_OFFER);
    ws.write_all(&client_frame(
        0xC1,
        &deflate(br#"{"code":10000,"id":"eve"}"#),
    ))
    .unwrap();
    ws.write_all(&client_frame(0xC1, &bomb)).unwrap();
    let mut errors = Vec::new();
    loop {
        let (b0, payload) = read_frame(&mut ws).expect("frames up to the close");
        match b0 & 0x0f {
            0x8 => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
                break;
            }
            0x1 => {
                let text = if b0 & 0x40 != 0 {
                    inflate(&payload)
                } else {
                    payload
                };
                let value: Value = serde_json::from_slice(&text).unwrap();
                errors.push(value["extend"]["code"].clone());
            }
            _ => {}
        }
    }
    assert!(errors.contains(&json!(41300)), "{errors:?}");
}

/// A `/ws` MESSAGE to a client that negotiated compression goes out
/// compressed (RSV1), and inflates to the MESSAGE a plain client gets.
#[test]
fn chat_messages_go_out_compressed() {
    let server = Server::start(&["--deflate"]);
    let (mut bob, _) = answer(&server, "/ws", CHROMIUM_OFFER);
    bob.write_all(&client_frame(0x81, br#"{"code":10000,"id":"bob"}"#))
        .unwrap();
    let mut alice = server.user("alice");
    let data = json!({"to": "bob", "text": "compress me ".repeat(50)});
    alice.send_json(&json!({"code": 10002, "data": data}));
    loop {
        let (b0, payload) = read_frame(&mut bob).unwrap();
        let compressed = b0 & 0x40 != 0;
        let text = if compressed {
            inflate(&payload)
        } else {
            payload.clone()
        };
        let value: Value = serde_json::from_slice(&text).unwrap();
        if value["body"]["type"] == 30001 {
            assert!(compressed, "a 600-byte MESSAGE is compressed");
            assert!(payload.len() < text.len() / 3);
            assert_eq!(value["body"]["data"], data);
            assert_eq!(value["body"]["seq"], 1);
            break;
        }
    }
}

/// An online list (20004) over the minimum size is a reply that goes out
/// compressed too.
#[test]
fn long_replies_go_out_compressed() {
    let server = Server::start(&["--deflate"]);
    let _users: Vec<_> = (0..40)
        .map(|i| server.user(&format!("user-with-a-long-name-{i}")))
        .collect();
    let (mut watcher, _) = answer(&server, "/ws", CHROMIUM_OFFER);
    watcher
        .write_all(&client_frame(0x81, br#"{"code":10000,"id":"watcher"}"#))
        .unwrap();
    watcher
        .write_all(&client_frame(0x81, br#"{"code":10004}"#))
        .unwrap();
    loop {
        let (b0, payload) = read_frame(&mut watcher).unwrap();
        let compressed = b0 & 0x40 != 0;
        let text = if compressed {
            inflate(&payload)
        } else {
            payload
        };
        let value: Value = serde_json::from_slice(&text).unwrap();
        if value["extend"]["code"] == 20004 {
            assert!(compressed, "a {}-byte online list", text.len());
            assert_eq!(value["extend"]["mess"]["online"], 41, "{value}");
            break;
        }
    }
}

/// `None` when `probe` runs successfully, else what is missing: such a
/// test says NOT RUN in cargo test's output, and fails on CI.
fn missing(what: &str, probe: &mut Command) -> Option<String> {
    match probe.output() {
        Ok(output) if output.status.success() => None,
        _ => Some(format!("missing {what}")),
    }
}

const PYTHON_PEER: &str = r#"
import json, sys
from websockets.sync.client import connect
base = sys.argv[1]
with connect(base + "/echo", open_timeout=10) as ws:
    ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    assert ext.startswith("permessage-deflate"), ext
    text = json.dumps([{"i": i, "name": "user-%d" % (i % 13)} for i in range(500)])
    for n in range(5):  # similar messages: with takeover, later ones refer back
        ws.send(text + str(n)); assert ws.recv(timeout=10) == text + str(n)
    blob = bytes(range(256)) * 400
    ws.send(blob); assert ws.recv(timeout=10) == blob
def user(name):
    ws = connect(base + "/ws", open_timeout=10)
    ws.send(json.dumps({"code": 10000, "id": name}))
    while json.loads(ws.recv(timeout=10)).get("extend", {}).get("code") != 20001:
        pass
    return ws
alice, bob = user("alice"), user("bob")
data = {"to": "bob", "text": "hello from python " * 40}
alice.send(json.dumps({"code": 10002, "data": data}))
while True:
    msg = json.loads(bob.recv(timeout=10))
    if msg.get("body", {}).get("type") == 30001:
        assert msg["body"]["data"] == data, msg
        break
alice.close(); bob.close()
print("ok")
"#;

#[test]
fn python_websockets_interoperates() {
    if let Some(why) = missing(
        "python3 with the websockets module",
        Command::new("python3").args(["-c", "import websockets.sync.client"]),
    ) {
        return common::not_run(&format!("python_websockets_interoperates: {why}"));
    }
    // With context takeover both ways the windows outlive each message.
    for flags in [
        &["--deflate"][..],
        &["--deflate", "--deflate-context-takeover"],
    ] {
        let server = Server::start(flags);
        let output = Command::new("python3")
            .args(["-c", PYTHON_PEER, &format!("ws://{}", server.addr)])
            .output()
            .expect("run python3");
        assert!(
            output.status.success() && output.stdout.starts_with(b"ok"),
            "{flags:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn node_ws_interoperates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let has_ws = std::path::Path::new(dir).join("node_modules/ws").is_dir();
    let why = missing("node", Command::new("node").arg("--version"))
        .or_else(|| (!has_ws).then(|| "missing Node ws (run npm ci in tests/browser)".to_owned()));
    if let Some(why) = why {
        return common::not_run(&format!("node_ws_interoperates: {why}"));
    }
    for flags in [
        &["--deflate"][..],
        &["--deflate", "--deflate-context-takeover"],
    ] {
        let server = Server::start(flags);
        let output = Command::new("node")
            .current_dir(dir)
            .args(["deflate_peer.mjs", &format!("ws://{}", server.addr)])
            .output()
            .expect("run node");
        assert!(
            output.status.success() && output.stdout.starts_with(b"ok"),
            "{flags:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
