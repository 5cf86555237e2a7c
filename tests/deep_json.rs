//! Deeply nested JSON from the network, against the real binary in the
//! profile `cargo test` builds (debug, where every stack frame is largest),
//! with the default `--thread-stack`: the deepest nesting the server
//! accepts is delivered intact, anything deeper is refused with an answer,
//! and neither the connection nor the server goes down. Before the server
//! bounded its stack use, each of these aborted the whole process ("thread
//! has overflowed its stack").
//!
//! The limit (PROTOCOL.md leaves it to the server, `docs/protocol-notes.md`
//! states it): one JSON text the server reads, a `/ws` message or an
//! `/api/*` body, nests at most [`LIMIT`] arrays and objects, its own outer
//! object included. A JSON text inside a `data` string is a text of its own.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::{extend_code, Client, Server};

/// The deepest nesting accepted in one JSON text, outermost braces included.
const LIMIT: usize = 64;

const TOKEN: &str = "deep-admin";

/// Room for the 100,000-level texts (about 500 KB) on `/ws`; the default
/// `--max-message` would close the connection with 1009 before parsing.
const BIG_MESSAGE: &str = "1048576";

fn server() -> Server {
    Server::start(&["--admin-token", TOKEN, "--max-message", BIG_MESSAGE])
}

/// `levels` arrays nested around a string: `[[["deep"]]]`.
fn arrays(levels: usize) -> String {
    format!("{}\"deep\"{}", "[".repeat(levels), "]".repeat(levels))
}

/// `levels` objects nested around a number: `{"k":{"k":1}}`.
fn objects(levels: usize) -> String {
    format!("{}1{}", "{\"k\":".repeat(levels), "}".repeat(levels))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON: {e}"))
}

/// How deep `value` nests (a scalar is 0), without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((value, above)) = pending.pop() {
        let children: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            Value::Object(members) => members.values().collect(),
            _ => continue,
        };
        deepest = deepest.max(above + 1);
        pending.extend(children.into_iter().map(|child| (child, above + 1)));
    }
    deepest
}

/// The next MESSAGE (1756) for `client`; its `body.data`.
fn delivered_data(client: &mut Client) -> Value {
    let message = client.event();
    assert_eq!(message["code"], 1756, "expected a MESSAGE");
    message["body"]["data"].clone()
}

/// Sends `text` and expects one ERROR with `extend.code` `code` whose text
/// names the nesting; then the connection still answers a PING with 732.
fn expect_refused(client: &mut Client, text: &str, code: i64) {
    client.send_text(text);
    let answer = client.event();
    assert_eq!(answer["code"], 1244, "expected an ERROR, got {answer}");
    assert_eq!(extend_code(&answer), code, "{answer}");
    let reason = answer["extend"]["mess"].as_str().expect("a reason");
    assert!(reason.contains("nested"), "the reason says why: {reason}");
    assert_eq!(
        client.sync(),
        Vec::<Value>::new(),
        "PING is answered with 732"
    );
}

fn assert_alive(server: &mut Server) {
    assert_eq!(server.get("/healthz"), (200, "ok".to_owned()));
    assert_eq!(server.wait_exit(Duration::ZERO), None, "the server runs");
}

#[test]
fn the_deepest_peer_is_delivered_intact() {
    let mut server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");

    // The message is level 1 and `data` level 2, so `x` has LIMIT - 2 levels.
    for inner in [arrays(LIMIT - 2), objects(LIMIT - 2)] {
        let data = format!("{{\"to\":\"bob\",\"x\":{inner}}}");
        alice.send_text(&format!("{{\"code\":10002,\"data\":{data}}}"));
        let got = delivered_data(&mut bob);
        assert_eq!(depth(&got), LIMIT - 1);
        assert_eq!(got, parse(&data));
        assert_eq!(alice.sync(), Vec::<Value>::new(), "no error for alice");
    }

    // In a string `data` is a text of its own: `x` has LIMIT - 1 levels,
    // and the lax dialect's single quotes carry it as the seed client does.
    let data = format!("{{\"to\":\"bob\",\"x\":{}}}", arrays(LIMIT - 1));
    alice.send_text(&format!("{{'code':10002,'data':'{data}'}}"));
    let got = delivered_data(&mut bob);
    assert_eq!(depth(&got), LIMIT);
    assert_eq!(got, parse(&data));
    assert_eq!(alice.sync(), Vec::<Value>::new());
    assert_alive(&mut server);
}

#[test]
fn the_deepest_broadcast_is_delivered_intact() {
    let mut server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    for data in [arrays(LIMIT - 1), objects(LIMIT - 1)] {
        alice.send_text(&format!("{{\"code\":10003,\"data\":{data}}}"));
        for recipient in [&mut bob, &mut carol] {
            let got = delivered_data(recipient);
            assert_eq!(depth(&got), LIMIT - 1);
            assert_eq!(got, parse(&data));
        }
        assert_eq!(alice.sync(), Vec::<Value>::new());
    }
    assert_alive(&mut server);
}

#[test]
fn one_level_too_deep_on_ws_is_refused_and_the_connection_stays() {
    let mut server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let peer = format!(
        "{{\"code\":10002,\"data\":{{\"to\":\"bob\",\"x\":{}}}}}",
        arrays(LIMIT - 1)
    );
    expect_refused(&mut alice, &peer, 40000);
    let peer = format!(
        "{{\"code\":10002,\"data\":{{\"to\":\"bob\",\"x\":{}}}}}",
        objects(LIMIT - 1)
    );
    expect_refused(&mut alice, &peer, 40000);
    expect_refused(
        &mut alice,
        &format!("{{\"code\":10003,\"data\":{}}}", arrays(LIMIT)),
        40000,
    );
    expect_refused(
        &mut alice,
        &format!("{{\"code\":10003,\"data\":{}}}", objects(LIMIT)),
        40000,
    );
    // Too deep in an unused field: the whole text is refused.
    expect_refused(
        &mut alice,
        &format!("{{\"code\":10015,\"junk\":{}}}", arrays(LIMIT)),
        40000,
    );
    // Nothing reached bob, and alice still delivers.
    assert_eq!(bob.sync(), Vec::<Value>::new());
    alice.send_text(r#"{"code":10002,"data":{"to":"bob","text":"still here"}}"#);
    assert_eq!(delivered_data(&mut bob)["text"], "still here");
    assert_alive(&mut server);
}

#[test]
fn a_too_deep_data_string_stays_a_string() {
    // PROTOCOL.md: a `data` string is decoded when it parses as an object or
    // array, "and kept as a string otherwise"; too deep does not parse.
    let mut server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let text = arrays(LIMIT + 1);
    alice.send_json(&json!({"code": 10003, "data": text}));
    assert_eq!(delivered_data(&mut bob), Value::String(text));
    // A PEER's data must be an object with `to`: a string is 40002.
    let text = format!("{{\"to\":\"bob\",\"x\":{}}}", arrays(LIMIT));
    alice.send_json(&json!({"code": 10002, "data": text}));
    let answer = alice.event();
    assert_eq!(extend_code(&answer), 40002, "{answer}");
    assert_eq!(bob.sync(), Vec::<Value>::new());
    assert_alive(&mut server);
}

#[test]
fn far_too_deep_on_ws_is_refused_and_the_connection_stays() {
    let mut server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    for levels in [1_000, 100_000] {
        for inner in [arrays(levels), objects(levels)] {
            let peer = format!("{{\"code\":10002,\"data\":{{\"to\":\"bob\",\"x\":{inner}}}}}");
            expect_refused(&mut alice, &peer, 40000);
            expect_refused(
                &mut alice,
                &format!("{{\"code\":10003,\"data\":{inner}}}"),
                40000,
            );
        }
        // Open brackets that never close.
        expect_refused(
            &mut alice,
            &format!("{{\"code\":10003,\"data\":{}", "[".repeat(levels)),
            40000,
        );
    }
    assert_eq!(bob.sync(), Vec::<Value>::new());
    assert_alive(&mut server);
}

/// POSTs `body` to `path` with the admin token.
fn post(server: &Server, path: &str, body: &str) -> (u16, String) {
    server.request("POST", path, Some(TOKEN), body)
}

#[test]
fn the_deepest_api_push_and_broadcast_are_delivered_intact() {
    let mut server = server();
    let mut bob = server.user("bob");
    // The body is level 1, so `data` has LIMIT - 1 levels.
    for data in [arrays(LIMIT - 1), objects(LIMIT - 1)] {
        let (status, body) = post(
            &server,
            "/api/push",
            &format!("{{\"to\":\"bob\",\"data\":{data}}}"),
        );
        assert_eq!((status, parse(&body)), (200, json!({"delivered": 1})));
        assert_eq!(delivered_data(&mut bob), parse(&data));

        let (status, body) = post(&server, "/api/broadcast", &format!("{{\"data\":{data}}}"));
        assert_eq!((status, parse(&body)), (200, json!({"delivered": 1})));
        assert_eq!(delivered_data(&mut bob), parse(&data));
    }
    assert_alive(&mut server);
}

#[test]
fn too_deep_api_bodies_are_400_and_the_server_stays() {
    let mut server = server();
    let mut bob = server.user("bob");
    for levels in [LIMIT, 1_000, 100_000] {
        for data in [arrays(levels), objects(levels), "[".repeat(levels)] {
            let bodies = [
                ("/api/push", format!("{{\"to\":\"bob\",\"data\":{data}}}")),
                ("/api/broadcast", format!("{{\"data\":{data}}}")),
            ];
            for (path, body) in bodies {
                let (status, reason) = post(&server, path, &body);
                assert_eq!(status, 400, "{path} with {levels} levels: {reason}");
                assert!(reason.contains("nested"), "the reason says why: {reason}");
            }
        }
        // A body that is only brackets.
        let (status, _) = post(&server, "/api/broadcast", &"[".repeat(levels));
        assert_eq!(status, 400);
        assert_alive(&mut server);
    }
    // Nothing was delivered, and bob's session is still there.
    assert_eq!(bob.sync(), Vec::<Value>::new());
}
