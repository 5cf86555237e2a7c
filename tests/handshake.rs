//! The HTTP side of the real binary: routing, the opening handshake (RFC
//! 6455 4.2) and every way it can be refused, the connection limits, the
//! handshake deadline, the plain endpoints, and the command line.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::process::Command;
use std::time::Duration;

use common::{header, raw_request, split_response, trickle, upgrade_request, Server};

/// (status, head, body) of a complete response.
fn parse(response: &str) -> (u16, &str, &str) {
    let (status, _) = split_response(response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    (status, head, body)
}

#[test]
fn accept_key_of_the_rfc_example() {
    let server = Server::start(&[]);
    let (_stream, head) = raw_request(&server, &upgrade_request("/echo", ""));
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    // RFC 6455 1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" gives this accept value.
    assert_eq!(
        header(&head, "Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert!(header(&head, "Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(header(&head, "Connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    assert_eq!(header(&head, "Sec-WebSocket-Protocol"), None);
    assert_eq!(
        header(&head, "Sec-WebSocket-Extensions"),
        None,
        "no extension is ever accepted"
    );
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let server = Server::start(&[]);
    let request = "GET /echo HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\n\
        connection: keep-alive, upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        sec-websocket-version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    let (_stream, head) = raw_request(&server, request);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "Sec-WebSocket-Extensions"), None);
}

#[test]
fn query_string_does_not_change_the_route() {
    let server = Server::start(&[]);
    for path in ["/echo?x=1", "/ws?token=abc&v=2"] {
        let (_stream, head) = raw_request(&server, &upgrade_request(path, ""));
        assert!(head.starts_with("HTTP/1.1 101 "), "{path}: {head}");
    }
    assert_eq!(server.get("/healthz?probe=1"), (200, "ok".to_owned()));
}

#[test]
fn plain_get_on_websocket_paths_is_426() {
    let server = Server::start(&[]);
    for path in ["/ws", "/websocket", "/echo"] {
        let response = server.http(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let (status, head, _) = parse(&response);
        assert_eq!(status, 426, "{path}: {response}");
        assert!(
            header(head, "Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "{path}: a 426 names the protocol to upgrade to: {head}"
        );
    }
}

#[test]
fn unknown_path_is_404() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/nope").0, 404);
    assert_eq!(server.get("/ws/extra").0, 404);
    // An upgrade to an unknown path is no better.
    let response = server.http(upgrade_request("/nowhere", "").as_bytes());
    assert_eq!(parse(&response).0, 404, "{response}");
}

#[test]
fn wrong_method_is_405_with_allow() {
    let server = Server::start(&[]);
    let request = upgrade_request("/echo", "").replacen("GET", "POST", 1);
    let response = server.http(request.as_bytes());
    let (status, head, _) = parse(&response);
    assert_eq!(status, 405, "{response}");
    // RFC 9110 10.2.1: Allow lists the methods the resource supports, and
    // every GET route answers HEAD too.
    assert_eq!(header(head, "Allow"), Some("GET, HEAD"));
}

/// `METHOD path` with a Host header, read until the server closes:
/// (status, head with its empty line, bytes after the head).
fn exchange(server: &Server, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = server.raw();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head = common::read_head(&mut stream);
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("the server closes");
    (parse(&head).0, head, rest)
}

#[test]
fn head_answers_like_get_without_a_body() {
    let server = Server::start(&[]);
    // RFC 9110 9.3.2: HEAD is GET without content; the server "SHOULD send
    // the same header fields", Content-Length included (8.6). Uptime
    // checkers send `HEAD /healthz`. A WebSocket route answers a HEAD like
    // a GET without an upgrade: 426.
    for (path, status) in [
        ("/healthz", 200),
        ("/", 200),
        ("/socketbox.js", 200),
        ("/ws", 426),
        ("/websocket", 426),
        ("/echo", 426),
        ("/nope", 404),
    ] {
        let (get_status, get_head, get_body) = exchange(&server, "GET", path);
        assert_eq!(get_status, status, "GET {path}: {get_head}");
        assert!(!get_body.is_empty(), "GET {path} has a body");
        let (head_status, head_head, head_body) = exchange(&server, "HEAD", path);
        assert_eq!(head_status, status, "HEAD {path}: {head_head}");
        assert_eq!(head_head, get_head, "HEAD {path}: the same head as GET");
        assert_eq!(
            header(&head_head, "Content-Length"),
            Some(get_body.len().to_string().as_str()),
            "HEAD {path}: the length of the GET body"
        );
        assert!(
            head_body.is_empty(),
            "HEAD {path} sent a body: {head_body:?}"
        );
    }
    // /metrics changes between two requests: same status, no body.
    let (status, head, body) = exchange(&server, "HEAD", "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        header(&head, "Content-Length").is_some_and(|n| n != "0"),
        "{head}"
    );
    assert!(body.is_empty(), "HEAD /metrics sent a body");
}

#[test]
fn head_ignores_an_upgrade_and_is_never_a_websocket() {
    // A HEAD cannot switch protocols (RFC 6455 4.2.1 asks for a GET); the
    // server ignores its Upgrade header (RFC 9110 7.8 lets it) and answers
    // what a GET without one gets.
    let server = Server::start(&[]);
    let request = upgrade_request("/echo", "").replacen("GET", "HEAD", 1);
    let response = server.http(request.as_bytes());
    let (status, head, body) = parse(&response);
    assert_eq!(status, 426, "{response}");
    assert!(header(head, "Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert_eq!(body, "", "{response}");
}

#[test]
fn head_on_a_post_route_is_405_without_a_body() {
    let server = Server::start(&["--admin-token", "t0ken"]);
    let (status, head, body) = exchange(&server, "HEAD", "/api/push");
    assert_eq!(status, 405, "{head}");
    assert_eq!(header(&head, "Allow"), Some("POST"));
    assert!(body.is_empty(), "{body:?}");
}

#[test]
fn malformed_upgrades_are_400_with_the_reason_in_the_body() {
    let server = Server::start(&[]);
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases: &[(&str, String, &str)] = &[
        (
            "no key",
            upgrade_request("/echo", "").replace(key, ""),
            "missing Sec-WebSocket-Key",
        ),
        (
            "key not base64",
            upgrade_request("/echo", "")
                .replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!!!!!"),
            "base64 of 16 bytes",
        ),
        (
            "key of 15 bytes",
            upgrade_request("/echo", "")
                .replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j"),
            "base64 of 16 bytes",
        ),
        (
            "two keys",
            upgrade_request("/echo", key),
            "more than one Sec-WebSocket-Key",
        ),
        (
            "no Connection: Upgrade",
            upgrade_request("/echo", "").replace("Connection: Upgrade", "Connection: keep-alive"),
            "Connection header must contain Upgrade",
        ),
        (
            "HTTP/1.0",
            upgrade_request("/echo", "").replace("HTTP/1.1", "HTTP/1.0"),
            "HTTP/1.1",
        ),
        (
            "no Host",
            upgrade_request("/echo", "").replace("Host: localhost\r\n", ""),
            "without Host",
        ),
        (
            "two Hosts",
            upgrade_request("/echo", "Host: other\r\n"),
            "more than one Host",
        ),
        (
            "request line without version",
            "GET /echo\r\nHost: x\r\n\r\n".to_owned(),
            "request line",
        ),
        (
            "header without colon",
            upgrade_request("/echo", "NoColonHere\r\n"),
            "no colon",
        ),
        (
            "obsolete line folding",
            upgrade_request("/echo", "X-Folded: a\r\n  b\r\n"),
            "folding",
        ),
        (
            "space before colon",
            upgrade_request("/echo", "X-Bad : a\r\n"),
            "whitespace between header name and colon",
        ),
        (
            "NUL in a value",
            upgrade_request("/echo", "X-Bad: a\0b\r\n"),
            "control character",
        ),
        (
            "bad version syntax",
            "GET /echo HTTP/one\r\nHost: x\r\n\r\n".to_owned(),
            "HTTP/DIGIT.DIGIT",
        ),
        (
            "not HTTP at all",
            "\u{16}\u{3}\u{1}\u{2}\0\u{1}\0\u{1}\u{fc}\u{3}\u{3}".to_owned(),
            "method",
        ),
    ];
    for (what, request, reason) in cases {
        let response = server.http(request.as_bytes());
        let (status, _, body) = parse(&response);
        assert_eq!(status, 400, "{what}: {response}");
        assert!(
            body.contains(reason),
            "{what}: body {body:?} lacks {reason:?}"
        );
    }
}

#[test]
fn http_2_is_505() {
    let server = Server::start(&[]);
    let response = server.http(b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n");
    assert_eq!(parse(&response).0, 505, "{response}");
}

#[test]
fn unsupported_version_is_426_naming_13() {
    let server = Server::start(&[]);
    let version = "Sec-WebSocket-Version: 13\r\n";
    for (what, request) in [
        (
            "version 8",
            upgrade_request("/echo", "").replace(version, "Sec-WebSocket-Version: 8\r\n"),
        ),
        (
            "no version",
            upgrade_request("/echo", "").replace(version, ""),
        ),
        ("two versions", upgrade_request("/echo", version)),
        (
            "version 8 on /ws",
            upgrade_request("/ws", "").replace(version, "Sec-WebSocket-Version: 8\r\n"),
        ),
    ] {
        let response = server.http(request.as_bytes());
        let (status, head, body) = parse(&response);
        assert_eq!(status, 426, "{what}: {response}");
        assert_eq!(header(head, "Sec-WebSocket-Version"), Some("13"), "{what}");
        assert!(body.contains("Sec-WebSocket-Version"), "{what}: {body:?}");
    }
}

#[test]
fn origin_outside_the_allowed_list_is_403() {
    let server = Server::start(&["--allowed-origin", "http://good.example:8080"]);
    for (origin, allowed) in [
        (Some("http://good.example:8080"), true),
        (Some("HTTP://GOOD.example:8080"), true),
        (None, true),
        (Some("http://good.example"), false),
        (Some("https://good.example:8080"), false),
        (Some("http://evil.example:8080"), false),
        (Some("null"), false),
    ] {
        for path in ["/echo", "/ws"] {
            let extra = origin
                .map(|o| format!("Origin: {o}\r\n"))
                .unwrap_or_default();
            let (_stream, head) = raw_request(&server, &upgrade_request(path, &extra));
            let expected = if allowed {
                "HTTP/1.1 101 "
            } else {
                "HTTP/1.1 403 "
            };
            assert!(head.starts_with(expected), "{path} {origin:?}: {head}");
        }
    }
}

#[test]
fn subprotocol_selection() {
    let server = Server::start(&[]);
    // tungstenite itself checks that the server picked one it offered.
    assert_eq!(server.ws("/ws").protocol, None, "none offered, none picked");
    assert_eq!(
        server
            .ws_with("/ws", Some("socketbox.v1"))
            .protocol
            .as_deref(),
        Some("socketbox.v1")
    );
    assert_eq!(
        server
            .ws_with("/websocket", Some("other,socketbox.v1"))
            .protocol
            .as_deref(),
        Some("socketbox.v1")
    );
    // tungstenite 0.24 splits the offer on commas without trimming, so it
    // would refuse the answer to a list in the usual "a, b" form: by hand.
    let offer = "Sec-WebSocket-Protocol: chat, socketbox.v1\r\n";
    let (_stream, head) = raw_request(&server, &upgrade_request("/ws", offer));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        header(&head, "Sec-WebSocket-Protocol"),
        Some("socketbox.v1")
    );
    // Selecting none is legal (RFC 6455 4.2.2) but tungstenite treats it as
    // an error, so these go over raw sockets.
    for (path, offer) in [("/ws", "other"), ("/echo", "socketbox.v1")] {
        let extra = format!("Sec-WebSocket-Protocol: {offer}\r\n");
        let (_stream, head) = raw_request(&server, &upgrade_request(path, &extra));
        assert!(head.starts_with("HTTP/1.1 101 "), "{path}: {head}");
        assert_eq!(
            header(&head, "Sec-WebSocket-Protocol"),
            None,
            "{path} {offer}"
        );
    }
}

#[test]
fn full_server_answers_503() {
    let server = Server::start(&["--max-connections", "1"]);
    let mut held = server.ws("/echo");
    // The server refuses from its accept loop; do not send a request so
    // that the refusal is not turned into a reset by unread bytes.
    let mut stream = server.raw();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("a response, then EOF");
    let response = String::from_utf8_lossy(&response);
    assert_eq!(parse(&response).0, 503, "{response}");
    // The held connection still works, and once it is gone the slot frees.
    held.send_text("still here");
    assert_eq!(held.recv_text(), "still here");
    drop(held);
    assert!(
        common::eventually(Duration::from_secs(10), || server.get("/healthz").0 == 200),
        "the slot was not released"
    );
}

#[test]
fn full_server_503_survives_a_request_sent_at_once() {
    // Real clients send their request right after connecting, so it is
    // usually waiting in the socket when the server refuses.
    let server = Server::start(&["--max-connections", "1"]);
    let _held = server.ws("/echo");
    for _ in 0..5 {
        let mut stream = server.raw();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 503 "),
            "the 503 was lost: {response:?}"
        );
    }
}

#[test]
fn no_echo_removes_echo() {
    let server = Server::start(&["--no-echo"]);
    let response = server.http(upgrade_request("/echo", "").as_bytes());
    assert_eq!(parse(&response).0, 404, "{response}");
    assert_eq!(server.get("/echo").0, 404);
    // The rest is still there.
    let (_stream, head) = raw_request(&server, &upgrade_request("/ws", ""));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(server.get("/healthz"), (200, "ok".to_owned()));
}

#[test]
fn head_over_8_kib_is_431() {
    let server = Server::start(&[]);
    let padding = format!("X-Padding: {}\r\n", "a".repeat(9000));
    let response = server.http(upgrade_request("/echo", &padding).as_bytes());
    assert_eq!(parse(&response).0, 431, "{response}");
    // Just under the limit is fine.
    let base = upgrade_request("/echo", "X-Padding: \r\n").len();
    let padding = format!("X-Padding: {}\r\n", "a".repeat(8192 - base));
    let request = upgrade_request("/echo", &padding);
    assert_eq!(request.len(), 8192);
    let (_stream, head) = raw_request(&server, &request);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

#[test]
fn too_many_headers_is_431() {
    let server = Server::start(&[]);
    let many: String = (0..100).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let response = server.http(upgrade_request("/echo", &many).as_bytes());
    assert_eq!(parse(&response).0, 431, "{response}");
}

#[test]
fn half_a_head_is_cut_off() {
    let server = Server::start(&["--handshake-timeout", "1"]);
    let mut stream = server.raw();
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .unwrap();
    // The socket's own read timeout (10 s) is far past the deadline: a
    // server that waits forever fails this read.
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept the connection open: {e}"),
    }
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 408 "),
        "{response}"
    );
}

#[test]
fn slowloris_is_cut_off_by_the_whole_head_deadline() {
    let server = Server::start(&["--handshake-timeout", "1"]);
    // Sent one byte every 300 ms this head takes about 10 s, ten times the
    // deadline, though no single pause comes near it.
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let (sent, answer) = trickle(
        server.raw(),
        request,
        Duration::from_millis(300),
        Duration::from_secs(30),
    );
    assert!(
        sent < request.len(),
        "the server waited for the whole trickled head"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
        "{answer}"
    );
}

#[test]
fn healthz_is_200_ok() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/healthz"), (200, "ok".to_owned()));
}

#[test]
fn index_and_script_are_served() {
    let server = Server::start(&[]);
    let response = server.http(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, head, body) = parse(&response);
    assert_eq!(status, 200);
    assert!(header(head, "Content-Type").is_some_and(|v| v.starts_with("text/html")));
    assert!(body.contains("<html") || body.contains("<!DOCTYPE") || body.contains("<!doctype"));
    let response = server.http(b"GET /socketbox.js HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, head, body) = parse(&response);
    assert_eq!(status, 200);
    assert!(header(head, "Content-Type").is_some_and(|v| v.contains("javascript")));
    assert!(body.contains("MessageCode"));
    assert_eq!(
        header(head, "Content-Length").and_then(|v| v.parse().ok()),
        Some(body.len())
    );
}

#[test]
fn api_is_404_without_an_admin_token() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/api/online").0, 404);
}

#[test]
fn metrics_lists_every_family_and_counts_what_happened() {
    let server = Server::start(&[]);
    // Something to count: an echo, a refusal, a protocol error.
    let mut client = server.ws("/echo");
    client.send_text("count me");
    assert_eq!(client.recv_text(), "count me");
    assert_eq!(server.get("/nope").0, 404);
    let mut stream = common::raw_upgrade(&server, "/echo");
    stream.write_all(&[0x81, 0x01, b'x']).unwrap(); // unmasked
    assert_eq!(common::read_close_code(&mut stream), Some(1002));

    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    for family in [
        "socketbox_connections",
        "socketbox_sessions",
        "socketbox_users_online",
        "socketbox_threads",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} gauge\n")),
            "{family}\n{text}"
        );
    }
    for family in [
        "socketbox_messages_in_total",
        "socketbox_messages_out_total",
        "socketbox_bytes_in_total",
        "socketbox_bytes_out_total",
        "socketbox_slow_consumers_total",
        "socketbox_closes_total",
        "socketbox_rejections_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} counter\n")),
            "{family}\n{text}"
        );
    }
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name}\n{text}"))
    };
    assert!(value("socketbox_messages_in_total") >= 1);
    assert!(value("socketbox_messages_out_total") >= 1);
    assert!(value("socketbox_bytes_in_total") > 0);
    assert!(value("socketbox_bytes_out_total") > 0);
    // This /metrics request and the open echo client are connections.
    assert!(value("socketbox_connections") >= 2);
    assert!(value("socketbox_threads") >= 2);
    assert_eq!(value("socketbox_rejections_total{status=\"404\"}"), 1);
    assert_eq!(
        value("socketbox_closes_total{code=\"1002\",initiator=\"server\"}"),
        1
    );
}

fn run_binary(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_socketbox"))
        .args(args)
        .output()
        .expect("run socketbox");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn version_flag() {
    for flag in ["--version", "-V"] {
        let (ok, stdout, _) = run_binary(&[flag]);
        assert!(ok);
        assert_eq!(stdout, format!("socketbox {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn help_flag_lists_the_protocol_flags() {
    let (ok, stdout, _) = run_binary(&["--help"]);
    assert!(ok);
    for flag in [
        "--listen",
        "--heartbeat",
        "--auth-timeout",
        "--presence-interval",
        "--auth-secret",
        "--admin-token",
        "--allowed-origin",
        "--max-message",
        "--echo-max-message",
        "--no-echo",
        "--max-queue",
        "--max-connections",
        "--handshake-timeout",
        "--rate-limit",
        "--trace",
        "token",
    ] {
        assert!(stdout.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn unknown_flag_fails_with_a_message() {
    let (ok, stdout, stderr) = run_binary(&["--bogus"]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("--bogus"), "{stderr}");
}

#[test]
fn token_subcommand_prints_one_line() {
    let (ok, stdout, _) = run_binary(&[
        "token", "--secret", "s3cret", "--id", "alice", "--ttl", "3600",
    ]);
    assert!(ok);
    let line = stdout
        .strip_suffix('\n')
        .expect("a line ending in a newline");
    assert!(!line.contains('\n'), "{stdout:?}");
    let (exp, hex) = line.split_once('.').expect("EXP.HEX");
    let exp: u64 = exp.parse().expect("EXP is a number");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 3500..=now + 3700).contains(&exp), "{exp} vs {now}");
    assert_eq!(hex.len(), 40, "HMAC-SHA1 in hex");
    assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
}

#[test]
fn token_subcommand_refuses_what_the_server_would_refuse() {
    let too_long = "a".repeat(65);
    for (args, names) in [
        (["--id", "bad id", "--ttl", "60"], "--id"),
        (["--id", "", "--ttl", "60"], "--id"),
        (["--id", too_long.as_str(), "--ttl", "60"], "--id"),
        (["--id", "alice", "--ttl", "0"], "--ttl"),
    ] {
        let mut full = vec!["token", "--secret", "s3cret"];
        full.extend(args);
        let (ok, stdout, stderr) = run_binary(&full);
        assert!(!ok, "{args:?} must fail, printed {stdout:?}");
        assert!(stdout.is_empty(), "{args:?}: no token: {stdout:?}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
    // The longest id the server takes, and every character it allows.
    let longest = "a".repeat(64);
    for id in [longest.as_str(), "A-z_0.9@x", "42"] {
        let (ok, stdout, stderr) =
            run_binary(&["token", "--secret", "s", "--id", id, "--ttl", "1"]);
        assert!(ok, "{id}: {stderr}");
        assert!(stdout.contains('.'), "{id}: {stdout:?}");
    }
}
