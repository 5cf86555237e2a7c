//! Hostile networks and constrained hosts: clients that trickle, hog,
//! reset and vanish, the connection limits, and the graceful shutdown on
//! SIGTERM. Each test talks to the real binary over raw sockets (or
//! tungstenite where a well-behaved client is the point) and checks what
//! the server promises: a refusal with its status, a thread and a slot
//! given back, a registry entry removed, a Close 1001 and exit status 0;
//! and that `/metrics` counts what happened.
//!
//! Every wait is bounded: sockets have read timeouts, polls give up after
//! 10 s.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    client_frame, eventually, read_close_code, read_frame, trickle, upgrade_request, Server,
};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(10);

/// Reads `/metrics` and remembers how many of its own requests the server
/// refused with 503 while it was full, so that `rejections_total{503}` can
/// be compared exactly.
struct Observer<'a> {
    addr: SocketAddr,
    server: &'a Server,
    refused: u64,
}

impl<'a> Observer<'a> {
    fn new(server: &'a Server) -> Self {
        Observer {
            addr: server.addr,
            server,
            refused: 0,
        }
    }

    /// Every sample of `/metrics`, or `None` when the server was full.
    fn metrics(&mut self) -> Option<HashMap<String, u64>> {
        let response = http_at(self.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        if response.starts_with("HTTP/1.1 503 ") {
            self.refused += 1;
            return None;
        }
        let (status, body) = common::split_response(&response);
        assert_eq!(status, 200, "{response}");
        Some(
            body.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| {
                    let (key, value) = line.rsplit_once(' ')?;
                    Some((key.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// Wait until the gauges read `threads` connection threads and
    /// `connections` connections besides the `/metrics` request itself
    /// (which holds one of each while it is answered).
    fn settles_at(&mut self, threads: u64, connections: u64) -> bool {
        let mut last = None;
        let settled = eventually(PATIENCE, || {
            let Some(m) = self.metrics() else {
                return false;
            };
            let now = (m["socketbox_threads"], m["socketbox_connections"]);
            last = Some(now);
            now == (threads + 1, connections + 1)
        });
        if !settled {
            eprintln!(
                "gauges (threads, connections) stayed at {last:?}, expected ({}, {}) on {:?}",
                threads + 1,
                connections + 1,
                self.server.addr
            );
        }
        settled
    }

    fn value(&mut self, name: &str) -> u64 {
        let m = self.metrics().expect("a free slot for /metrics");
        m.get(name).copied().unwrap_or(0)
    }
}

/// Send raw bytes to `addr` and read the whole answer. The request is
/// followed by a FIN, so that the server, which drains until the client's
/// FIN after answering, lets go of the connection as it sends its own.
fn http_at(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// A new connection at `addr` that the server refuses from its accept
/// loop: the whole answer. Nothing is sent, so that the refusal is not
/// turned into a reset by unread bytes.
fn refused_at(addr: SocketAddr) -> String {
    let mut stream = connect(addr);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Whether a connection that has sent nothing was refused: its 503 waits
/// unread. Only meaningful once a later connection has been refused, since
/// the accept loop answers connections in order (so the `/metrics` request
/// that found the server idle, whose thread may not have ended yet, cannot
/// make a held connection's refusal go unnoticed).
fn was_refused(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let refused = matches!(stream.peek(&mut byte), Ok(n) if n > 0);
    stream.set_nonblocking(false).unwrap();
    refused
}

/// The opening handshake on a raw socket at `addr`.
fn upgrade_at(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = connect(addr);
    stream
        .write_all(upgrade_request(path, "").as_bytes())
        .unwrap();
    let head = common::read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

/// Block until bytes from the server wait unread in `stream`.
fn wait_for_unread(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    assert!(
        stream.peek(&mut byte).expect("data from the server") > 0,
        "the server closed"
    );
}

/// Close `stream` with a TCP reset rather than a FIN. std cannot set
/// SO_LINGER, but Linux resets a connection that is closed while received
/// data lies unread in it (RFC 2525 2.17), so the caller leaves some there.
fn reset(stream: TcpStream) {
    wait_for_unread(&stream);
    drop(stream);
}

/// AUTH on a raw `/ws` socket; returns once SYSTEM 20002 `true` is read.
fn raw_auth(stream: &mut TcpStream, id: &str) {
    let auth = json!({"code": 10000, "id": id}).to_string();
    stream
        .write_all(&client_frame(0x81, auth.as_bytes()))
        .unwrap();
    loop {
        let (_, payload) = read_frame(stream).expect("the AUTH answer");
        let value: Value = serde_json::from_slice(&payload).unwrap();
        if value["extend"]["code"] == 20002 {
            assert_eq!(value["extend"]["mess"], true, "{value}");
            return;
        }
    }
}

#[test]
fn slowloris_clients_at_the_connection_limit_lose_their_slots_at_the_handshake_timeout() {
    let server = Server::start(&["--max-connections", "3", "--handshake-timeout", "2"]);
    let addr = server.addr;
    let request = upgrade_request("/echo", &format!("X-Slow: {}\r\n", "z".repeat(40)));
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let (stream, request) = (connect(addr), request.clone());
            thread::spawn(move || trickle(stream, &request, Duration::from_millis(100), PATIENCE))
        })
        .collect();
    // The three trickling clients hold every slot (the accept loop takes
    // connections in order): the next is refused.
    let response = refused_at(addr);
    assert!(response.starts_with("HTTP/1.1 503 "), "{response:?}");
    for client in slow {
        let (sent, answer) = client.join().unwrap();
        assert!(sent < request.len(), "a trickled head outlived the timeout");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
            "{answer:?}"
        );
    }
    let mut observer = Observer::new(&server);
    assert!(observer.settles_at(0, 0), "the slots were not given back");
    assert_eq!(
        observer.value("socketbox_rejections_total{status=\"408\"}"),
        3
    );
    assert_eq!(
        observer.value("socketbox_rejections_total{status=\"503\"}"),
        1 + observer.refused
    );
}

#[test]
fn max_connections_counts_every_kind_and_recovers_after_abrupt_departures() {
    let server = Server::start(&["--max-connections", "3"]);
    let mut observer = Observer::new(&server);
    let mut refused_by_us = 0;
    for round in 0..3 {
        // One of each kind: an echo WebSocket, an authenticated chat user,
        // and a connection that has not sent its request yet.
        let mut echo = common::raw_upgrade(&server, "/echo");
        let mut user = common::raw_upgrade(&server, "/ws");
        raw_auth(&mut user, &format!("user{round}"));
        let silent = server.raw();
        let response = refused_at(server.addr);
        assert!(response.starts_with("HTTP/1.1 503 "), "{response:?}");
        refused_by_us += 1 + u64::from(was_refused(&silent));
        // Leave without a closing handshake: a reset, a reset, a FIN.
        echo.write_all(&client_frame(0x81, b"unread")).unwrap();
        reset(echo);
        user.write_all(&client_frame(0x81, br#"{"code":10015}"#))
            .unwrap();
        reset(user);
        drop(silent);
        assert!(
            observer.settles_at(0, 0),
            "round {round}: slots were not given back"
        );
    }
    assert_eq!(observer.value("socketbox_sessions"), 0);
    assert_eq!(observer.value("socketbox_users_online"), 0);
    assert_eq!(
        observer.value("socketbox_rejections_total{status=\"503\"}"),
        refused_by_us + observer.refused
    );
}

#[test]
fn max_connections_per_ip_refuses_that_address_only_and_recovers() {
    // Listening on both families gives this machine two client addresses,
    // 127.0.0.1 and ::1; without a dual-stack IPv6 socket only the first is
    // tested.
    let ipv6 = TcpListener::bind("[::1]:0").is_ok()
        && std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.trim() == "0");
    let listen = if ipv6 { "[::]:0" } else { "127.0.0.1:0" };
    let server = Server::start(&["--listen", listen, "--max-connections-per-ip", "2"]);
    let port = server.addr.port();
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let first = upgrade_at(v4, "/echo");
    let second = upgrade_at(v4, "/echo");
    let response = refused_at(v4);
    assert!(response.starts_with("HTTP/1.1 503 "), "{response:?}");
    let mut refused = 1;
    if ipv6 {
        let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
        let mut other = upgrade_at(v6, "/echo");
        other.write_all(&client_frame(0x81, b"still open")).unwrap();
        let (_, payload) = read_frame(&mut other).unwrap();
        assert_eq!(payload, b"still open");
        let mut observer = Observer {
            addr: v6,
            server: &server,
            refused: 0,
        };
        assert_eq!(
            observer.value("socketbox_rejections_total{status=\"503\"}"),
            1
        );
    } else {
        common::not_run(
            "max_connections_per_ip: no dual-stack IPv6 loopback, so its other-address half",
        );
    }
    // The count per address recovers when a connection leaves.
    drop(first);
    assert!(
        eventually(PATIENCE, || {
            let answer = http_at(v4, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            if answer.starts_with("HTTP/1.1 503 ") {
                refused += 1;
            }
            answer.starts_with("HTTP/1.1 200 ")
        }),
        "the per-address count did not recover"
    );
    drop(second);
    let mut observer = Observer {
        addr: v4,
        server: &server,
        refused: 0,
    };
    assert!(observer.settles_at(0, 0));
    assert_eq!(
        observer.value("socketbox_rejections_total{status=\"503\"}"),
        refused + observer.refused
    );
}

#[test]
fn an_echo_client_that_resets_mid_frame_gives_back_its_thread_and_slot() {
    let server = Server::start(&[]);
    let mut observer = Observer::new(&server);
    assert!(observer.settles_at(0, 0));
    let mut stream = common::raw_upgrade(&server, "/echo");
    // A message whose echo is left unread, then the first 20 bytes of a
    // frame that announces 100.
    stream.write_all(&client_frame(0x81, b"unread")).unwrap();
    wait_for_unread(&stream);
    stream
        .write_all(&client_frame(0x82, &[7u8; 100])[..20])
        .unwrap();
    assert!(observer.settles_at(1, 1));
    reset(stream);
    // Without the reset the server would wait for the rest of the frame for
    // --idle-timeout (300 s).
    assert!(observer.settles_at(0, 0), "the echo thread is still there");
}

#[test]
fn a_chat_user_that_resets_mid_frame_leaves_the_registry_and_frees_its_thread() {
    let server = Server::start(&[]);
    let mut observer = Observer::new(&server);
    let mut bob = server.user("bob");
    let mut alice = common::raw_upgrade(&server, "/ws");
    raw_auth(&mut alice, "alice");
    // Each session whose client keeps up holds one thread, its reader.
    assert!(observer.settles_at(2, 2));
    assert_eq!(observer.value("socketbox_users_online"), 2);
    // A PING whose PONG is left unread, then half a frame.
    alice
        .write_all(&client_frame(0x81, br#"{"code":10015}"#))
        .unwrap();
    wait_for_unread(&alice);
    alice
        .write_all(&client_frame(0x81, br#"{"code":10003,"data":"never finished"}"#)[..12])
        .unwrap();
    reset(alice);
    assert!(observer.settles_at(1, 1), "alice's thread is still there");
    assert_eq!(observer.value("socketbox_sessions"), 1);
    assert_eq!(observer.value("socketbox_users_online"), 1);
    bob.send_json(&json!({"code": 10002, "data": {"to": "alice", "text": "hello?"}}));
    let answer = bob.event();
    assert_eq!(answer["code"], 1244, "{answer}");
    assert_eq!(answer["extend"]["code"], 40400, "{answer}");
}

#[test]
fn clients_that_leave_mid_handshake_give_back_their_threads_and_slots() {
    let server = Server::start(&[]);
    let mut observer = Observer::new(&server);
    // Half a request head, then FIN.
    let mut gone = server.raw();
    gone.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpg")
        .unwrap();
    drop(gone);
    // Half a request head, then a half-close: the client keeps its socket
    // open, the server must still let go when it reads the end of input.
    let mut half = server.raw();
    half.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    // A whole request, then a reset before reading the 101.
    let mut impatient = server.raw();
    impatient
        .write_all(upgrade_request("/ws", "").as_bytes())
        .unwrap();
    reset(impatient);
    assert!(observer.settles_at(0, 0), "a thread or slot was kept");
    let mut rest = Vec::new();
    half.read_to_end(&mut rest)
        .expect("the server closed its side");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert_eq!(observer.value("socketbox_sessions"), 0);
}

#[test]
fn sigterm_sends_close_1001_on_every_endpoint_and_exits_0() {
    let mut server = Server::start(&[]);
    let mut echo = server.ws("/echo");
    echo.send_text("before");
    assert_eq!(echo.recv_text(), "before");
    let mut user = server.user("alice");
    let mut anonymous = server.ws("/ws");
    assert!(anonymous.sync().is_empty());

    server.signal_term();
    // tungstenite answers each Close as it reads it.
    for (name, client) in [
        ("echo", &mut echo),
        ("authenticated", &mut user),
        ("unauthenticated", &mut anonymous),
    ] {
        assert_eq!(client.close_code(), Some(1001), "{name}");
        assert!(
            matches!(
                client.socket.read(),
                Err(tungstenite::Error::ConnectionClosed)
            ),
            "{name}: the closing handshake did not complete"
        );
    }
    let status = server.wait_exit(PATIENCE).expect("the server exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_does_not_wait_forever_for_clients_that_never_answer() {
    let mut server = Server::start(&[]);
    // An echo client and a chat user that will ignore the Close, and a
    // client stuck in the middle of its request head.
    let mut echo = common::raw_upgrade(&server, "/echo");
    let mut user = common::raw_upgrade(&server, "/ws");
    raw_auth(&mut user, "deaf");
    let mut stuck = server.raw();
    stuck.write_all(b"GET /echo HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    server.signal_term();
    assert_eq!(read_close_code(&mut echo), Some(1001));
    assert_eq!(read_close_code(&mut user), Some(1001));
    let status = server.wait_exit(PATIENCE).expect("the server exited");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "the server left before giving the clients the closing handshake's 5 s"
    );
    // The process is gone, so every socket of it is closed.
    for stream in [&mut echo, &mut user, &mut stuck] {
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        }
    }
}

#[test]
fn metrics_count_rejections_by_status_and_closes_by_code() {
    let server = Server::start(&[
        "--max-connections",
        "3",
        "--handshake-timeout",
        "3",
        "--auth-timeout",
        "1",
        "--max-message",
        "100",
    ]);
    let mut observer = Observer::new(&server);
    // 4001: no AUTH in time.
    let mut lazy = common::raw_upgrade(&server, "/ws");
    assert_eq!(read_close_code(&mut lazy), Some(4001));
    // 1009: a message over --max-message (after ERROR 41300).
    let mut wordy = common::raw_upgrade(&server, "/ws");
    raw_auth(&mut wordy, "wordy");
    let text = json!({"code": 10003, "data": "x".repeat(200)}).to_string();
    wordy
        .write_all(&client_frame(0x81, text.as_bytes()))
        .unwrap();
    assert_eq!(read_close_code(&mut wordy), Some(1009));
    // 1003: binary on /ws.
    let mut binary = common::raw_upgrade(&server, "/ws");
    binary.write_all(&client_frame(0x82, b"\x00\x01")).unwrap();
    assert_eq!(read_close_code(&mut binary), Some(1003));
    // Each holds a slot until it closes its side too.
    drop((lazy, wordy, binary));
    assert!(observer.settles_at(0, 0));
    // 408: a head that never completes.
    let mut slow = server.raw();
    slow.write_all(b"GET /echo HTTP/1.1\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 408 "));
    drop(slow);
    assert!(observer.settles_at(0, 0));
    // 400 and 404, from a malformed upgrade and an unknown path.
    assert_eq!(server.get("/nowhere").0, 404);
    let bad = upgrade_request("/echo", "").replace("Sec-WebSocket-Key", "Sec-WebSocket-Kee");
    assert!(http_at(server.addr, bad.as_bytes()).starts_with("HTTP/1.1 400 "));
    // 503: three held connections, then one more.
    assert!(observer.settles_at(0, 0));
    // Connections that send nothing hold their slots (for the handshake
    // timeout, 3 s) until one is refused. The thread of the `/metrics`
    // request that found the server idle may still hold a slot for a moment,
    // so the refusal is awaited rather than expected at the fourth.
    let mut held = Vec::new();
    loop {
        let mut stream = connect(server.addr);
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {
                let answer = String::from_utf8_lossy(&answer);
                assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
                break;
            }
            // No answer: it was accepted, and holds a slot.
            Err(_) => held.push(stream),
        }
        assert!(
            held.len() <= 3,
            "more connections than --max-connections accepted"
        );
    }
    assert!(
        held.len() >= 2,
        "refused with {} connections held",
        held.len()
    );
    drop(held);
    assert!(observer.settles_at(0, 0));
    let m = observer.metrics().unwrap();
    let count = |key: &str| m.get(key).copied().unwrap_or(0);
    assert_eq!(
        count("socketbox_closes_total{code=\"4001\",initiator=\"server\"}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        count("socketbox_closes_total{code=\"1009\",initiator=\"server\"}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        count("socketbox_closes_total{code=\"1003\",initiator=\"server\"}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        count("socketbox_rejections_total{status=\"408\"}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        count("socketbox_rejections_total{status=\"404\"}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        count("socketbox_rejections_total{status=\"400\"}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        count("socketbox_rejections_total{status=\"503\"}"),
        1 + observer.refused,
        "{m:?}"
    );
}

/// The bytes of a client that has just broken a rule and goes on sending:
/// `first`, then `more` over and over.
struct KeepsSending {
    first: Vec<u8>,
    more: Vec<u8>,
}

impl KeepsSending {
    /// A frame header declaring a 2^40-byte message, then payload for ever.
    fn huge_frame(opcode: u8) -> Self {
        let mut header = vec![0x80 | opcode, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        KeepsSending {
            first: header,
            more: vec![0x61; 1000],
        }
    }

    /// A 60,000-byte text frame whose payload stops being UTF-8 at byte
    /// 1,500, then more (valid) text frames for ever.
    fn bad_utf8() -> Self {
        let mut payload = vec![b'a'; 60_000];
        payload[1500] = 0xff;
        KeepsSending {
            first: client_frame(0x81, &payload),
            more: client_frame(0x81, &[b'b'; 994]),
        }
    }

    /// All of it, 1,000 bytes every 30 ms, for at most 12 s.
    fn chunks(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let endless = self.first.iter().chain(self.more.iter().cycle()).copied();
        let mut endless = endless.peekable();
        std::iter::from_fn(move || Some(endless.by_ref().take(1000).collect()))
    }
}

/// What a client that keeps sending after breaking a rule saw: the close
/// code, then how long after that Close the server's side ended (EOF or a
/// reset) and how long until its own writes started failing (the server
/// let the socket go), if they did.
struct AfterFailure {
    code: Option<u16>,
    eof_after: Duration,
    writes_failed_after: Option<Duration>,
}

/// Upgrade to `path`, then trickle `bytes` (1,000 bytes every 30 ms) from
/// another thread while reading the server's frames up to its Close and
/// then to the end of the stream.
fn fail_and_keep_sending(server: &Server, path: &str, bytes: KeepsSending) -> AfterFailure {
    let mut stream = upgrade_at(server.addr, path);
    let writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let mut writer = writer;
        let stop = Instant::now() + Duration::from_secs(12);
        for chunk in bytes.chunks() {
            if Instant::now() >= stop {
                return None;
            }
            if writer.write_all(&chunk).is_err() {
                return Some(Instant::now());
            }
            thread::sleep(Duration::from_millis(30));
        }
        None
    });
    let code = read_close_code(&mut stream);
    let closed_at = Instant::now();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{path}: the server did not close TCP: {e}"),
    }
    let eof_after = closed_at.elapsed();
    assert!(rest.is_empty(), "{path}: bytes after the Close: {rest:?}");
    let writes_failed_after = sender
        .join()
        .unwrap()
        .map(|failed| failed.saturating_duration_since(closed_at));
    AfterFailure {
        code,
        eof_after,
        writes_failed_after,
    }
}

/// RFC 6455 7.1.7: after failing the connection the server "MUST NOT
/// continue to attempt to process data (including a responding Close
/// frame)": it closes TCP at once, however much the client still sends.
fn assert_let_go(what: &str, seen: &AfterFailure, code: u16) {
    eprintln!(
        "{what}: Close {:?}; EOF {:?} later; the client's writes failed {:?} later",
        seen.code, seen.eof_after, seen.writes_failed_after
    );
    assert_eq!(seen.code, Some(code), "{what}");
    assert!(
        seen.eof_after < Duration::from_millis(1500),
        "{what}: TCP stayed open {:?} after the Close",
        seen.eof_after
    );
    let failed = seen
        .writes_failed_after
        .unwrap_or_else(|| panic!("{what}: the server kept taking bytes for 12 s"));
    assert!(
        failed < Duration::from_secs(3),
        "{what}: the server kept the socket {failed:?} after its Close"
    );
}

#[test]
fn a_frame_declaring_2_to_the_40_bytes_is_refused_and_the_connection_let_go() {
    let server = Server::start(&[]);
    let mut observer = Observer::new(&server);
    let echo = fail_and_keep_sending(&server, "/echo", KeepsSending::huge_frame(0x2));
    assert_let_go("/echo, 2^40-byte frame", &echo, 1009);
    let chat = fail_and_keep_sending(&server, "/ws", KeepsSending::huge_frame(0x1));
    assert_let_go("/ws, 2^40-byte frame", &chat, 1009);
    assert!(observer.settles_at(0, 0), "a thread or slot was kept");
}

#[test]
fn bad_utf8_trickling_in_is_refused_and_the_connection_let_go() {
    let server = Server::start(&[]);
    let mut observer = Observer::new(&server);
    let echo = fail_and_keep_sending(&server, "/echo", KeepsSending::bad_utf8());
    assert_let_go("/echo, bad UTF-8 at byte 1,500", &echo, 1007);
    let chat = fail_and_keep_sending(&server, "/ws", KeepsSending::bad_utf8());
    assert_let_go("/ws, bad UTF-8 at byte 1,500", &chat, 1007);
    assert!(observer.settles_at(0, 0), "a thread or slot was kept");
}

/// A binary message on `/ws` is the application refusing a well-formed
/// message (RFC 6455 7.4.1, 1003), not a broken connection: the server
/// starts an ordinary closing handshake and waits for the client's Close.
#[test]
fn close_1003_waits_for_the_clients_close() {
    let server = Server::start(&[]);
    let mut stream = common::raw_upgrade(&server, "/ws");
    stream.write_all(&client_frame(0x82, b"\x00\x01")).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1003));
    stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the server did not wait for the client's Close: {other:?}"),
    }
    stream
        .write_all(&client_frame(0x88, &1003u16.to_be_bytes()))
        .unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
}

/// A `/ws` client that sends its Close and never reads again does not keep
/// the session's threads: what is still queued for it gets the closing
/// handshake's 5 s to go out, then the socket is shut down.
#[test]
fn a_chat_client_that_closes_without_reading_is_let_go() {
    // A queue large enough that it is not dropped as a slow consumer.
    let server = Server::start(&["--max-queue", "67108864"]);
    let mut observer = Observer::new(&server);
    let mut stream = upgrade_at(server.addr, "/ws");
    raw_auth(&mut stream, "deaf");
    // 8 MB to itself: twice what loopback socket buffers hold unread.
    let peer = json!({"code": 10002, "data": {"to": "deaf", "text": "x".repeat(60_000)}});
    let peer = peer.to_string();
    let peer = client_frame(0x81, peer.as_bytes());
    for _ in 0..140 {
        stream.write_all(&peer).unwrap();
    }
    stream
        .write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    assert!(observer.settles_at(0, 0), "the session's threads were kept");
}
