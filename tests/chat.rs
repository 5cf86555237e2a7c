//! The SocketBox protocol on `/ws`, row by row of `PROTOCOL.md`, checked
//! against the real binary with an independent client (tungstenite) and
//! replies parsed with serde_json.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::Message;

use common::{
    client_frame, eventually, extend_code, raw_request, raw_upgrade, silent_reader,
    upgrade_request, Client, Server,
};

/// Milliseconds since the Unix epoch, the clock of MESSAGE `time`.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn assert_error(value: &Value, code: i64) {
    assert_eq!(value["code"], 1244, "expected ERROR {code}, got {value}");
    assert_eq!(extend_code(value), code, "{value}");
    assert!(
        value["extend"]["mess"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "ERROR mess is a text a person can read: {value}"
    );
}

fn peer(to: Value, data: Value) -> Value {
    let mut data = data;
    data["to"] = to;
    json!({"code": 10002, "data": data})
}

/// Check a MESSAGE (1756) and return its body.
fn message_body(value: &Value, kind: i64) -> &Value {
    assert_eq!(value["code"], 1756, "expected MESSAGE, got {value}");
    let body = &value["body"];
    assert_eq!(body["type"], kind, "{value}");
    assert!(body["seq"].is_u64(), "{value}");
    assert!(body["time"].is_u64(), "{value}");
    body
}

// ---------------------------------------------------------------- AUTH

#[test]
fn auth_with_a_string_id_answers_true_then_the_online_count() {
    let server = Server::start(&[]);
    let mut alice = server.ws("/ws");
    assert_eq!(alice.auth(json!("alice")), 1);
    let mut bob = server.ws("/ws");
    assert_eq!(bob.auth(json!("bob")), 2, "the count counts ids");
    let mut bob_again = server.ws("/ws");
    assert_eq!(
        bob_again.auth(json!("bob")),
        2,
        "a second session of one id is not a second user"
    );
    // Every id character class, and the longest id.
    let mut odd = server.ws("/ws");
    odd.auth(json!("A-z_0.9@x"));
    let mut longest = server.ws("/ws");
    longest.auth(json!("x".repeat(64)));
    // Without --auth-secret a token is not needed, and not checked.
    let mut with_token = server.ws("/ws");
    with_token.send_json(&json!({"code": 10000, "id": "dave", "token": "1.ab"}));
    assert_eq!(with_token.json()["extend"]["mess"], true);
}

// ---------------------------------------------------------------- PEER

#[test]
fn peer_is_delivered_to_every_session_of_the_recipient() {
    let server = Server::start(&[]);
    let mut bob_tab1 = server.user("bob");
    let mut bob_tab2 = server.user("bob");
    let mut alice = server.user("alice");
    let before = now_ms();
    alice.send_json(&peer(json!("bob"), json!({"text": "hi", "n": [1, 2]})));
    for tab in [&mut bob_tab1, &mut bob_tab2] {
        let got = tab.event();
        let body = message_body(&got, 30001);
        assert_eq!(body["from"], "alice");
        assert_eq!(body["to"], "bob");
        assert_eq!(
            body["data"],
            json!({"to": "bob", "text": "hi", "n": [1, 2]})
        );
        assert_eq!(body["seq"], 1);
        let time = body["time"].as_u64().unwrap();
        assert!(before <= time && time <= now_ms(), "time {time} is unix ms");
    }
    // The sender gets no copy and no acknowledgement.
    assert_eq!(alice.sync(), Vec::<Value>::new());

    // To oneself: every session of the user, the sending one included.
    bob_tab1.send_json(&peer(json!("bob"), json!({"text": "note to self"})));
    for tab in [&mut bob_tab1, &mut bob_tab2] {
        let got = tab.event();
        let body = message_body(&got, 30001);
        assert_eq!(body["from"], "bob");
        assert_eq!(body["seq"], 2);
    }
}

// ---------------------------------------------------------------- BROADCAST

#[test]
fn broadcast_reaches_every_other_authenticated_session() {
    let server = Server::start(&[]);
    let mut alice_tab1 = server.user("alice");
    let mut alice_tab2 = server.user("alice");
    let mut bob = server.user("bob");
    let mut anonymous = server.ws("/ws");

    alice_tab1.send_json(&json!({"code": 10003, "data": {"text": "hello all"}}));
    for receiver in [&mut alice_tab2, &mut bob] {
        let got = receiver.event();
        let body = message_body(&got, 30002);
        assert_eq!(body["from"], "alice");
        assert_eq!(body["to"], Value::Null);
        assert_eq!(body["data"], json!({"text": "hello all"}));
        assert_eq!(body["seq"], 1);
    }
    // Not to the sending session itself, not to an unauthenticated one.
    assert_eq!(alice_tab1.sync(), Vec::<Value>::new());
    assert_eq!(anonymous.sync(), Vec::<Value>::new());

    // Any JSON value, or none.
    bob.send_json(&json!({"code": 10003, "data": 7}));
    bob.send_json(&json!({"code": 10003}));
    for tab in [&mut alice_tab1, &mut alice_tab2] {
        let data: Vec<Value> = (0..2)
            .map(|_| message_body(&tab.event(), 30002)["data"].clone())
            .collect();
        assert_eq!(data, vec![json!(7), Value::Null]);
    }
}

#[test]
fn a_broadcast_shared_between_threads_reaches_each_session_once_in_seq_order() {
    // Over 1,024 recipients the server splits the fan-out between cores,
    // and most recipients are written to by the sender's own threads, not
    // their writers (src/apps/chat/outbox.rs, "Writing through").
    const RECEIVERS: usize = 1_100;
    let server = Server::start(&[]);
    let mut sender = server.user("sender");
    let mut receivers: Vec<Client> = (0..RECEIVERS)
        .map(|i| server.user(&format!("user{i}")))
        .collect();
    for round in 1..=3 {
        sender.send_json(&json!({"code": 10003, "data": {"round": round}}));
    }
    for (i, receiver) in receivers.iter_mut().enumerate() {
        for round in 1..=3 {
            let got = receiver.event();
            let body = message_body(&got, 30002);
            assert_eq!(body["from"], "sender", "receiver {i}");
            assert_eq!(body["data"], json!({"round": round}), "receiver {i}");
            assert_eq!(body["seq"], round, "receiver {i}");
        }
    }
    for receiver in receivers.iter_mut().step_by(100) {
        assert_eq!(receiver.sync(), Vec::<Value>::new(), "nothing more");
    }
}

// ---------------------------------------------------------------- ping frames

#[test]
fn rfc6455_ping_frames_on_ws_are_answered_with_pong_frames() {
    // The request-level PING 10015 / PONG 10016 rows are unit tests of
    // `chat::step`; this is the frame level, under the chat's replies.
    let server = Server::start(&[]);
    let mut client = server.user("alice");
    // RFC 6455 ping frames are answered with pong frames, payload echoed.
    client
        .socket
        .send(Message::Ping(b"are you there".to_vec()))
        .unwrap();
    loop {
        match client.socket.read().expect("read") {
            Message::Pong(payload) => {
                assert_eq!(payload, b"are you there");
                break;
            }
            Message::Text(text) => {
                assert!(common::is_background(&serde_json::from_str(&text).unwrap()))
            }
            other => panic!("expected a pong, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- errors

#[test]
fn a_message_of_exactly_max_message_is_accepted_and_one_byte_more_is_41300_then_1009() {
    let server = Server::start(&["--max-message", "200"]);
    let padded = |len: usize| {
        let head = r#"{"code":10015,"pad":""#;
        let text = format!("{head}{}\"}}", "x".repeat(len - head.len() - 2));
        assert_eq!(text.len(), len);
        text
    };
    let mut client = server.user("alice");
    client.send_text(&padded(200));
    assert_eq!(client.event()["code"], 732);
    client.send_text(&padded(201));
    assert_error(&client.event(), 41300);
    assert_eq!(client.close_code(), Some(1009));

    // The limit is on the message, not the frame: two fragments of 100 and
    // 101 bytes are over it too.
    let mut raw = raw_upgrade(&server, "/ws");
    let text = padded(201);
    raw.write_all(&client_frame(0x01, &text.as_bytes()[..100]))
        .unwrap();
    raw.write_all(&client_frame(0x80, &text.as_bytes()[100..]))
        .unwrap();
    let (b0, payload) = common::read_frame(&mut raw).unwrap();
    assert_eq!(b0, 0x81, "a text frame");
    let error: Value = serde_json::from_slice(&payload).unwrap();
    assert_error(&error, 41300);
    assert_eq!(common::read_close_code(&mut raw), Some(1009));
}

#[test]
fn rate_limit_answers_42900_past_a_burst_of_2n_drops_the_message_and_keeps_the_connection() {
    // --rate-limit 1: bursts of 2 messages, then one per second.
    let server = Server::start(&["--rate-limit", "1"]);
    let mut bob = server.user("bob");
    let mut alice = server.ws("/ws");
    // Sent back to back, handled within microseconds of each other: the
    // AUTH and the first PING use the burst of 2.
    let burst = [
        json!({"code": 10000, "id": "alice"}),
        json!({"code": 10015}),
        json!({"code": 10015}),
        peer(json!("bob"), json!({"text": "dropped"})),
    ];
    let text: Vec<String> = burst.iter().map(Value::to_string).collect();
    for message in &text {
        alice.socket.write(Message::text(message.as_str())).unwrap();
    }
    alice.socket.flush().unwrap();
    assert_eq!(extend_code(&alice.json()), 20002);
    assert_eq!(extend_code(&alice.json()), 20001);
    assert_eq!(alice.event()["code"], 732);
    assert_error(&alice.event(), 42900);
    assert_error(&alice.event(), 42900);

    // After a second the bucket has refilled: the connection is still there.
    thread::sleep(Duration::from_millis(1100));
    alice.send_json(&peer(json!("bob"), json!({"text": "kept"})));
    let got = bob.event();
    let body = message_body(&got, 30001);
    assert_eq!(body["data"]["text"], "kept", "the limited PEER was dropped");
    assert_eq!(body["seq"], 1);
}

#[test]
fn a_binary_message_on_ws_is_closed_with_1003() {
    let server = Server::start(&[]);
    let mut client = server.user("alice");
    client.socket.send(Message::Binary(vec![1, 2, 3])).unwrap();
    assert_eq!(client.close_code(), Some(1003));
    // It left the registry.
    let mut bob = server.user("bob");
    bob.send_json(&peer(json!("alice"), json!({})));
    assert_error(&bob.event(), 40400);
    let (_, metrics) = server.get("/metrics");
    assert!(
        metrics.contains("socketbox_closes_total{code=\"1003\",initiator=\"server\"} 1"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------- --auth-secret

fn token_from_binary(secret: &str, id: &str, ttl: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_socketbox"))
        .args(["token", "--secret", secret, "--id", id, "--ttl", ttl])
        .output()
        .expect("run socketbox token");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "alone on one line: {stdout:?}");
    stdout.trim_end().to_owned()
}

fn assert_auth_rejected(client: &mut Client) {
    let result = client.event();
    assert_eq!(result["code"], 988, "{result}");
    assert_eq!(extend_code(&result), 20002, "{result}");
    assert_eq!(result["extend"]["mess"], false, "{result}");
    assert_error(&client.event(), 40101);
    assert_eq!(client.close_code(), Some(1008));
}

/// Which tokens pass is a unit test of `chat::step`; this checks the
/// `--auth-secret` flag, the `socketbox token` subcommand and the verdict
/// on the wire, the Close 1008 included.
#[test]
fn auth_secret_accepts_tokens_of_socketbox_token_and_rejects_others_with_20002_false_40101_1008() {
    let secret = "s3cret";
    let server = Server::start(&["--auth-secret", secret]);

    let mut alice = server.ws("/ws");
    let token = token_from_binary(secret, "alice", "3600");
    assert!(token.split_once('.').is_some(), "EXP.HEX: {token}");
    alice.send_json(&json!({"code": 10000, "id": "alice", "token": token}));
    assert_eq!(extend_code(&alice.json()), 20002);
    assert_eq!(extend_code(&alice.json()), 20001);

    let bad_tokens = [
        None,
        Some(token_from_binary("not the secret", "mallory", "3600")),
        Some(token_from_binary(secret, "mallory", "3600").to_uppercase()),
    ];
    for token in bad_tokens {
        let mut mallory = server.ws("/ws");
        let mut request = json!({"code": 10000, "id": "mallory"});
        if let Some(token) = &token {
            request["token"] = json!(token);
        }
        mallory.send_json(&request);
        assert_auth_rejected(&mut mallory);
    }
    // None of them got in.
    alice.send_json(&peer(json!("mallory"), json!({})));
    assert_error(&alice.event(), 40400);
}

/// PROTOCOL.md: "an AUTH whose `id` is missing or malformed is a rejected
/// AUTH (20002 `false`, 40101, Close 1008), answered the same way with or
/// without `--auth-secret`".
#[test]
fn a_missing_or_malformed_id_is_a_rejected_auth_with_or_without_auth_secret() {
    let malformed = [
        json!({"code": 10000}),
        json!({"code": 10000, "id": ""}),
        json!({"code": 10000, "id": "x".repeat(65)}),
        json!({"code": 10000, "id": "a b"}),
        json!({"code": 10000, "id": -1}),
        json!({"code": 10000, "id": 1.5}),
        json!({"code": 10000, "id": null}),
        json!({"code": 10000, "id": true}),
        json!({"code": 10000, "id": {"id": "alice"}}),
    ];
    for flags in [&[][..], &["--auth-secret", "s3cret"][..]] {
        let server = Server::start(flags);
        for request in &malformed {
            let mut client = server.ws("/ws");
            client.send_json(request);
            assert_auth_rejected(&mut client);
        }
    }
}

// ---------------------------------------------------------------- timers

#[test]
fn a_connection_that_does_not_authenticate_in_time_is_closed_with_4001() {
    let server = Server::start(&["--auth-timeout", "1"]);
    let mut authenticated = server.user("alice");
    let mut idle = server.ws("/ws");
    let mut talking = server.ws("/ws");
    // Talking is not authenticating.
    talking.send_json(&json!({"code": 10015}));
    assert_eq!(talking.event()["code"], 732);
    assert_eq!(idle.close_code(), Some(4001));
    assert_eq!(talking.close_code(), Some(4001));
    // The authenticated session is not affected.
    assert_eq!(authenticated.sync(), Vec::<Value>::new());
}

#[test]
fn heartbeat_pings_every_interval_and_a_silent_session_is_closed_with_4000() {
    let server = Server::start(&["--heartbeat", "1"]);
    // One session answers the PINGs as the seed does, one stays silent.
    let mut lively = server.user("lively");
    let answering = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut pings = 0;
        while Instant::now() < deadline {
            let got = lively.json();
            if common::is_background(&got) && got["code"] == 476 {
                assert_eq!(got, json!({"code": 476}));
                pings += 1;
                lively.send_text("{'code':10016}");
            } else {
                assert!(common::is_background(&got), "unexpected {got}");
            }
        }
        assert_eq!(lively.sync(), Vec::<Value>::new(), "still open");
        pings
    });

    let started = Instant::now();
    let mut silent = server.user("silent");
    let mut pings = 0;
    let code = loop {
        match silent.socket.read().expect("read") {
            Message::Text(text) => {
                let got: Value = serde_json::from_str(&text).unwrap();
                assert!(common::is_background(&got), "unexpected {got}");
                if got["code"] == 476 {
                    assert_eq!(got, json!({"code": 476}));
                    pings += 1;
                }
            }
            Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            _ => {}
        }
    };
    assert_eq!(code, Some(4000));
    assert!(pings >= 2, "a PING every second: {pings}");
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "closed only after two intervals plus 5 s of silence: {:?}",
        started.elapsed()
    );
    let lively_pings = answering.join().unwrap();
    assert!(lively_pings >= 7, "{lively_pings}");
}

// ---------------------------------------------------------------- seq

#[test]
fn seq_counts_1_2_3_per_session_without_gaps_across_many_senders() {
    const SENDERS: usize = 3;
    const PER_SENDER: u64 = 300;
    const BROADCASTS: u64 = 100;
    let server = Server::start(&[]);
    let mut receivers = vec![server.user("r"), server.user("r")];
    let mut senders: Vec<Client> = (0..SENDERS)
        .map(|i| server.user(&format!("s{i}")))
        .collect();
    let mut broadcaster = server.user("b");

    let threads: Vec<_> = senders
        .drain(..)
        .enumerate()
        .map(|(i, mut sender)| {
            thread::spawn(move || {
                for n in 0..PER_SENDER {
                    sender.send_json(&peer(json!("r"), json!({"sender": i, "n": n})));
                }
                // Other senders' broadcasts reach it too; the sync drains them.
                sender.sync();
            })
        })
        .chain(std::iter::once(thread::spawn(move || {
            for n in 0..BROADCASTS {
                broadcaster.send_json(&json!({"code": 10003, "data": {"n": n}}));
            }
            broadcaster.sync();
        })))
        .collect();

    let total = SENDERS as u64 * PER_SENDER + BROADCASTS;
    for receiver in &mut receivers {
        let mut next_n = [0u64; SENDERS];
        let mut next_broadcast = 0;
        for expected_seq in 1..=total {
            let got = receiver.event();
            assert_eq!(got["code"], 1756, "{got}");
            let body = &got["body"];
            assert_eq!(body["seq"], expected_seq, "no gap, no reordering: {got}");
            let n = body["data"]["n"].as_u64().unwrap();
            if body["type"] == 30002 {
                assert_eq!(n, next_broadcast, "{got}");
                next_broadcast += 1;
            } else {
                let sender = body["data"]["sender"].as_u64().unwrap() as usize;
                assert_eq!(n, next_n[sender], "per sender in order: {got}");
                next_n[sender] += 1;
            }
        }
        assert_eq!(receiver.sync(), Vec::<Value>::new(), "nothing more");
    }
    for thread in threads {
        thread.join().unwrap();
    }
    // A session that logs in later starts at 1.
    let mut late = server.user("r");
    let mut alice = server.user("alice");
    alice.send_json(&peer(json!("r"), json!({})));
    assert_eq!(late.event()["body"]["seq"], 1);
    for receiver in &mut receivers {
        assert_eq!(receiver.event()["body"]["seq"], total + 1);
    }
}

// ---------------------------------------------------------------- slow consumer

/// Read `stream` until EOF or a reset, for at most `limit`; returns the
/// bytes and whether the end was reached.
fn read_to_end_within(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (bytes, false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (bytes, true),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (bytes, true), // reset
        }
    }
}

/// Split server frames into (first byte, payload), and the length of a
/// trailing partial frame.
fn split_frames(mut bytes: &[u8]) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut frames = Vec::new();
    loop {
        if bytes.len() < 2 {
            return (frames, bytes.len());
        }
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return (frames, bytes.len()),
            n => (n as usize, 2),
        };
        if bytes.len() < header + len {
            return (frames, bytes.len());
        }
        frames.push((bytes[0], bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
}

/// Flood `target` with 60 kB PEER messages from `sender` until a PEER to it
/// is answered 40400; returns the sender and when that happened.
fn flood(mut sender: Client, target: &'static str) -> thread::JoinHandle<(Client, Instant)> {
    thread::spawn(move || {
        let pad = "x".repeat(60_000);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut sent = 0;
        while Instant::now() < deadline && sent < 3000 {
            for _ in 0..8 {
                sender.send_json(&peer(json!(target), json!({"pad": pad})));
                sent += 1;
            }
            if let Some(reply) = sender.sync().first() {
                assert_error(reply, 40400);
                return (sender, Instant::now());
            }
        }
        panic!("{target} was never dropped ({sent} messages of 60 kB sent)");
    })
}

#[test]
fn a_slow_consumer_is_dropped_without_slowing_anyone_else() {
    let server = Server::start(&["--max-queue", "65536"]);
    // Two slow consumers authenticate, then read nothing: the first will
    // start reading once it is dropped, the second never.
    let mut slow = silent_reader(&server, "slow");
    let mut never = silent_reader(&server, "never");
    assert!(eventually(Duration::from_secs(5), || server
        .metric("socketbox_users_online")
        == 2));
    assert_eq!(server.metric("socketbox_slow_consumers_total"), 0);

    let floods = [
        flood(server.user("sender1"), "slow"),
        flood(server.user("sender2"), "never"),
    ];
    let mut carol = server.user("carol");
    let mut dave = server.user("dave");

    // Meanwhile carol and dave talk as usual; a read that takes longer than
    // the clients' read timeout fails the test.
    carol.set_read_timeout(Duration::from_secs(5));
    dave.set_read_timeout(Duration::from_secs(5));
    let mut exchanges = 0;
    while floods.iter().any(|f| !f.is_finished()) || exchanges < 20 {
        carol.send_json(&peer(json!("dave"), json!({"n": exchanges})));
        let got = dave.event();
        assert_eq!(message_body(&got, 30001)["data"]["n"], exchanges);
        dave.send_json(&peer(json!("carol"), json!({"n": exchanges})));
        let got = carol.event();
        assert_eq!(message_body(&got, 30001)["data"]["n"], exchanges);
        exchanges += 1;
    }
    let [(mut sender, slow_dropped_at), (_sender2, never_dropped_at)] =
        floods.map(|f| f.join().unwrap());

    // Both left the registry at once and are counted.
    sender.send_json(&peer(json!("slow"), json!({})));
    assert_error(&sender.event(), 40400);
    sender.send_json(&peer(json!("never"), json!({})));
    assert_error(&sender.event(), 40400);
    assert_eq!(server.metric("socketbox_slow_consumers_total"), 2);
    assert_eq!(server.metric("socketbox_users_online"), 4);

    // The one that reads gets what was already on its way, then a Close
    // 1008, then the end of the TCP connection, within 10 s of the drop
    // (a 15 s bound).
    let limit = Duration::from_secs(15).saturating_sub(slow_dropped_at.elapsed());
    let (bytes, ended) = read_to_end_within(&mut slow, limit);
    assert!(ended, "the TCP connection was not closed within 15 s");
    let (frames, partial) = split_frames(&bytes);
    assert_eq!(partial, 0, "no partial frame at the end");
    let (b0, payload) = frames.last().expect("frames");
    assert_eq!(*b0, 0x88, "the last frame is a Close");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
    assert!(
        frames[..frames.len() - 1].iter().all(|(b0, _)| *b0 == 0x81),
        "text frames before the Close"
    );

    // The one that never reads is let go by the server all the same: its
    // session, its threads and its connection are gone within 10 s (15 s
    // bound), while it still has not read a byte. Open connections left:
    // sender1, sender2, carol, dave, and the /metrics request itself.
    let limit = Duration::from_secs(15).saturating_sub(never_dropped_at.elapsed());
    assert!(
        eventually(limit, || server.metric("socketbox_connections") == 5),
        "the server still holds the connection of a client that never reads"
    );
    assert_eq!(server.metric("socketbox_sessions"), 4);
    // What the kernel still had for it ends with the end of the stream.
    let (_, ended) = read_to_end_within(&mut never, Duration::from_secs(5));
    assert!(ended, "closed");
}

// ---------------------------------------------------------------- HTTP side of /ws

#[test]
fn allowed_origin_refuses_other_origins_with_403() {
    let server = Server::start(&["--allowed-origin", "http://good.example"]);
    let status = |origin: Option<&str>| {
        let header = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        let (_, head) = raw_request(&server, &upgrade_request("/ws", &header));
        head.split(' ').nth(1).unwrap_or("none").to_owned()
    };
    assert_eq!(status(Some("http://evil.example")), "403");
    assert_eq!(status(Some("https://good.example")), "403");
    assert_eq!(status(Some("http://good.example:8080")), "403");
    assert_eq!(status(Some("null")), "403");
    assert_eq!(status(Some("http://good.example")), "101");
    assert_eq!(status(Some("http://GOOD.example")), "101");
    assert_eq!(status(None), "101", "no Origin: not a browser");
    let (_, websocket) = raw_request(
        &server,
        &upgrade_request("/websocket", "Origin: http://evil.example\r\n"),
    );
    assert!(websocket.starts_with("HTTP/1.1 403"), "{websocket}");
}

#[test]
fn the_websocket_alias_speaks_the_same_protocol() {
    let server = Server::start(&[]);
    let mut alice = server.ws("/websocket");
    assert_eq!(alice.auth(json!("alice")), 1);
    let mut bob = server.ws("/ws");
    assert_eq!(bob.auth(json!("bob")), 2);
    bob.send_json(&peer(json!("alice"), json!({"text": "hi"})));
    assert_eq!(message_body(&alice.event(), 30001)["data"]["text"], "hi");
    alice.send_json(&peer(json!("bob"), json!({"text": "hey"})));
    assert_eq!(message_body(&bob.event(), 30001)["data"]["text"], "hey");
}

#[test]
fn metrics_gauges_follow_sessions_and_users() {
    let server = Server::start(&[]);
    assert_eq!(server.metric("socketbox_sessions"), 0);
    assert_eq!(server.metric("socketbox_users_online"), 0);
    let alice_tab1 = server.user("alice");
    let mut alice_tab2 = server.user("alice");
    let bob = server.user("bob");
    let mut anonymous = server.ws("/ws");
    anonymous.sync();
    assert_eq!(server.metric("socketbox_sessions"), 4);
    assert_eq!(server.metric("socketbox_users_online"), 2);

    drop(alice_tab1);
    assert!(eventually(Duration::from_secs(10), || server
        .metric("socketbox_sessions")
        == 3));
    assert_eq!(
        server.metric("socketbox_users_online"),
        2,
        "alice has a tab"
    );
    alice_tab2
        .socket
        .close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
    assert_eq!(alice_tab2.close_code(), Some(1000));
    assert!(eventually(Duration::from_secs(10), || server
        .metric("socketbox_users_online")
        == 1));
    drop(bob);
    drop(anonymous);
    assert!(eventually(Duration::from_secs(10), || server
        .metric("socketbox_sessions")
        == 0
        && server.metric("socketbox_users_online") == 0));
    let (_, body) = server.get("/metrics");
    for counter in [
        "socketbox_messages_in_total",
        "socketbox_messages_out_total",
        "socketbox_bytes_in_total",
        "socketbox_bytes_out_total",
    ] {
        assert!(server.metric(counter) > 0, "{counter} in {body}");
    }
}
