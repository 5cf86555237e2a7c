//! The `/ws` drain path (PROTOCOL.md "Heartbeat and closing"), against the
//! real binary with raw TcpStream and tungstenite clients: a session holds
//! one thread, its reader, while its client keeps up; a thread is lent to
//! it only while its socket has not taken all its bytes, and comes back
//! when the queue is empty or the session is dropped; heartbeats and
//! deadlines still reach every session from the one timer thread.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{eventually, read_frame, silent_reader, Client, Server};

fn peer(to: &str, n: u64, pad: &str) -> Value {
    json!({"code": 10002, "data": {"to": to, "n": n, "pad": pad}})
}

/// Connection threads and open connections, from one `/metrics` page.
fn threads_and_connections(server: &Server) -> (u64, u64) {
    let (status, body) = server.get("/metrics");
    assert_eq!(status, 200);
    let value = |name: &str| {
        body.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse::<f64>().expect("a number") as u64)
            })
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    (value("socketbox_threads"), value("socketbox_connections"))
}

/// Whether the server holds more threads than connections: a thread is
/// lent to a session with a backlog (every connection, the `/metrics`
/// request included, otherwise holds exactly one).
fn a_thread_is_lent(server: &Server) -> bool {
    let (threads, connections) = threads_and_connections(server);
    threads > connections
}

fn one_thread_per_connection(server: &Server) -> bool {
    let (threads, connections) = threads_and_connections(server);
    threads == connections
}

#[test]
fn a_client_that_stops_reading_then_reads_again_gets_every_message_in_order() {
    // 8 MB for a client that reads nothing: more than its socket buffers
    // hold, less than its queue may.
    const MESSAGES: u64 = 2000;
    let server = Server::start(&["--max-queue", "67108864"]);
    let mut slow = silent_reader(&server, "slow");
    assert!(eventually(Duration::from_secs(5), || server
        .metric("socketbox_users_online")
        == 1));
    let mut sender: Client = server.user("sender");
    assert!(
        eventually(Duration::from_secs(5), || one_thread_per_connection(
            &server
        )),
        "sessions that keep up hold one thread each"
    );
    let pad = "x".repeat(4000);
    for n in 1..=MESSAGES {
        sender.send_json(&peer("slow", n, &pad));
    }
    // The sender was never held up: all its messages were handled.
    assert_eq!(sender.sync(), Vec::<Value>::new());
    assert!(
        a_thread_is_lent(&server),
        "the backlog of a client that stopped reading is drained by a lent thread"
    );
    assert_eq!(server.metric("socketbox_slow_consumers_total"), 0);

    // Now it reads: everything, in order, seq 1, 2, 3... without a gap.
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut expected_seq = None;
    let mut next_n = 1;
    while next_n <= MESSAGES {
        let (b0, payload) = read_frame(&mut slow).expect("a frame");
        assert_eq!(b0, 0x81, "a final text frame");
        let value: Value = serde_json::from_slice(&payload).unwrap();
        if value["code"] != 1756 {
            assert!(
                common::is_background(&value) || value["code"] == 988,
                "{value}"
            );
            continue;
        }
        let body = &value["body"];
        assert_eq!(body["data"]["n"], next_n, "in order");
        let seq = body["seq"].as_u64().unwrap();
        if let Some(expected) = expected_seq {
            assert_eq!(seq, expected, "consecutive seq");
        }
        expected_seq = Some(seq + 1);
        next_n += 1;
    }
    assert_eq!(expected_seq, Some(MESSAGES + 1), "seq counts from 1");
    // The queue is empty: the thread was given back.
    assert!(
        eventually(Duration::from_secs(10), || one_thread_per_connection(
            &server
        )),
        "the lent thread did not come back"
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_closed_and_its_lent_thread_given_back() {
    let server = Server::start(&["--max-queue", "65536"]);
    let _never = silent_reader(&server, "never");
    let mut bob = server.user("bob");
    let mut sender = server.user("sender");
    let pad = "x".repeat(20_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    let dropped_at = loop {
        assert!(Instant::now() < deadline, "never was never dropped");
        for _ in 0..8 {
            n += 1;
            sender.send_json(&peer("never", n, &pad));
        }
        if let Some(reply) = sender.sync().first() {
            assert_eq!(reply["extend"]["code"], 40400, "{reply}");
            break Instant::now();
        }
    };
    assert_eq!(server.metric("socketbox_slow_consumers_total"), 1);
    // bob is not affected.
    sender.send_json(&json!({"code": 10002, "data": {"to": "bob", "hi": 1}}));
    assert_eq!(bob.event()["body"]["data"]["hi"], 1);
    // Within 10 s of the drop (a 15 s bound) its connection is gone and
    // every thread it was lent is back: bob, sender, /metrics.
    let limit = Duration::from_secs(15).saturating_sub(dropped_at.elapsed());
    assert!(
        eventually(limit, || server.metric("socketbox_connections") == 3
            && one_thread_per_connection(&server)),
        "the server still holds the connection or a thread of a client that never reads"
    );
    assert_eq!(server.metric("socketbox_sessions"), 2);
}

#[test]
fn many_idle_sessions_hold_one_thread_each_and_the_timer_reaches_them_all() {
    const SESSIONS: usize = 20;
    let server = Server::start(&["--heartbeat", "1", "--auth-timeout", "2"]);
    let mut clients: Vec<Client> = (0..SESSIONS)
        .map(|i| server.user(&format!("user{i}")))
        .collect();
    let unauthenticated: Vec<Client> = (0..3).map(|_| server.ws("/ws")).collect();
    assert!(eventually(
        Duration::from_secs(5),
        || one_thread_per_connection(&server)
            && server.metric("socketbox_sessions") == (SESSIONS + 3) as u64
    ));
    // Each authenticated session gets PINGs and answers them as the seed
    // does; none is closed.
    for client in &mut clients {
        client.set_read_timeout(Duration::from_secs(10));
    }
    for round in 0..2 {
        for (i, client) in clients.iter_mut().enumerate() {
            loop {
                let value = client.json();
                if value["code"] == 476 {
                    client.send_text("{'code':10016}");
                    break;
                }
                assert!(
                    common::is_background(&value),
                    "user{i} round {round}: {value}"
                );
            }
        }
    }
    // The unauthenticated ones are closed with 4001 by now or soon.
    for mut client in unauthenticated {
        assert_eq!(client.close_code(), Some(4001));
    }
    for client in &mut clients {
        assert_eq!(client.sync(), Vec::<Value>::new(), "still open");
    }
    assert!(eventually(
        Duration::from_secs(10),
        || one_thread_per_connection(&server)
            && server.metric("socketbox_sessions") == SESSIONS as u64
    ));
}
