//! The graceful shutdown against clients that stopped reading. PROTOCOL.md:
//! "On SIGINT or SIGTERM the server stops accepting, sends Close 1001 on
//! every open WebSocket connection (all endpoints, authenticated or not),
//! waits up to 5 s for the closing handshakes, and exits 0." No client may
//! stretch that: an `/echo` client that sent large messages and reads none
//! of the echoes (the server's thread is blocked writing to it), and a `/ws`
//! session whose replies pile up unread while it keeps sending, each alone
//! and twenty of each at once. Well-behaved clients connected alongside
//! still get their Close 1001 at once, and the process exits 0 well within
//! 8 s of the signal.
//!
//! Raw sockets for the stalled clients (they must not read), tungstenite for
//! the well-behaved ones. Every loop is bounded in time.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{client_frame, raw_upgrade, Server};
use serde_json::json;

/// How long after SIGTERM the process may take to exit: the 5 s of the
/// closing handshakes, plus a generous margin for a loaded machine.
const EXIT_LIMIT: Duration = Duration::from_secs(8);

/// How long a well-behaved client may wait for its Close 1001: it is sent
/// at once; the bound only leaves room for a busy machine.
const GOODBYE_LIMIT: Duration = Duration::from_secs(3);

/// Longest any stalling loop here runs.
const PATIENCE: Duration = Duration::from_secs(10);

/// An `/echo` client that sends 256 KiB binary messages and never reads
/// the echoes, until the server stops taking its bytes: the socket buffers
/// are full both ways and the server's connection thread is blocked in a
/// write to this socket. The socket is returned mid-frame, never read.
fn stalled_echo(server: &Server) -> TcpStream {
    let mut stream = raw_upgrade(server, "/echo");
    stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let frame = client_frame(0x82, &vec![0x5a; 256 * 1024]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match stream.write_all(&frame) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return stream
            }
            Err(e) => panic!("the server stopped the echo client: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the server never stopped reading"
        );
    }
}

/// A `/ws` session that reads nothing and keeps sending: it fills its own
/// socket with large PEER messages to itself (so the session's writer
/// thread is blocked in a write), then floods PING 10015 (whose PONG
/// replies queue up unread) until the server goes away or `stop` is set.
/// Returns the flooding thread, which hands the socket back.
fn stalled_chat(
    server: &Server,
    id: &str,
    stop: &Arc<AtomicBool>,
) -> thread::JoinHandle<TcpStream> {
    let mut stream = raw_upgrade(server, "/ws");
    let auth = json!({"code": 10000, "id": id}).to_string();
    stream
        .write_all(&client_frame(0x81, auth.as_bytes()))
        .unwrap();
    let peer = json!({"code": 10002, "data": {"to": id, "text": "x".repeat(60_000)}});
    let peer = peer.to_string();
    let peer = client_frame(0x81, peer.as_bytes());
    // 8 MB: twice what loopback socket buffers hold between the server's
    // writer and a client that does not read (4 MB here).
    for _ in 0..140 {
        stream.write_all(&peer).unwrap();
    }
    let ping = client_frame(0x81, json!({"code": 10015}).to_string().as_bytes());
    let pings: Vec<u8> = (0..50).flat_map(|_| ping.iter().copied()).collect();
    let stop = Arc::clone(stop);
    thread::spawn(move || {
        stream
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if stream.write_all(&pings).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        stream
    })
}

/// Stall `count` `/echo` clients at once (one at a time would let the first
/// ones' server writes time out before the last is stalled).
fn stalled_echoes(server: &Server, count: usize) -> Vec<TcpStream> {
    thread::scope(|scope| {
        let stalling: Vec<_> = (0..count)
            .map(|_| scope.spawn(|| stalled_echo(server)))
            .collect();
        stalling
            .into_iter()
            .map(|handle| handle.join().expect("an echo client stalled"))
            .collect()
    })
}

/// Well-behaved clients: an `/echo` client and an authenticated `/ws` user,
/// both answering the Close as tungstenite does.
struct Polite {
    echo: common::Client,
    user: common::Client,
}

impl Polite {
    fn connect(server: &Server) -> Polite {
        let mut echo = server.ws("/echo");
        echo.send_text("hello");
        assert_eq!(echo.recv_text(), "hello");
        let mut user = server.user("polite");
        user.set_read_timeout(GOODBYE_LIMIT);
        echo.set_read_timeout(GOODBYE_LIMIT);
        Polite { echo, user }
    }

    /// Both get their Close 1001 within [`GOODBYE_LIMIT`] of `signalled`.
    fn get_their_goodbyes(mut self, signalled: Instant) {
        for (name, client) in [("/echo", &mut self.echo), ("/ws", &mut self.user)] {
            assert_eq!(client.close_code(), Some(1001), "{name}");
            assert!(
                signalled.elapsed() < GOODBYE_LIMIT,
                "{name}: Close 1001 came {:?} after SIGTERM",
                signalled.elapsed()
            );
        }
    }
}

/// SIGTERM, then: the well-behaved clients get Close 1001 at once, and the
/// process exits 0 within [`EXIT_LIMIT`].
fn terminate(server: &mut Server, polite: Polite, what: &str) {
    let signalled = Instant::now();
    server.signal_term();
    polite.get_their_goodbyes(signalled);
    let status = server.wait_exit(EXIT_LIMIT);
    let took = signalled.elapsed();
    eprintln!("{what}: the server exited {took:?} after SIGTERM ({status:?})");
    let status = status.unwrap_or_else(|| panic!("{what}: still running {took:?} after SIGTERM"));
    assert!(status.success(), "{what}: {status:?}");
}

#[test]
fn sigterm_is_not_held_up_by_an_echo_client_that_stopped_reading() {
    let mut server = Server::start(&[]);
    let polite = Polite::connect(&server);
    let _stalled = stalled_echo(&server);
    terminate(&mut server, polite, "one stalled /echo client");
}

#[test]
fn sigterm_is_not_held_up_by_chat_sessions_that_flood_without_reading() {
    // A large queue, so that the sessions are not dropped as slow consumers
    // before the signal: their writers stay blocked on full sockets.
    let mut server = Server::start(&["--max-queue", "67108864"]);
    let polite = Polite::connect(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..3)
        .map(|i| stalled_chat(&server, &format!("flood{i}"), &stop))
        .collect();
    terminate(&mut server, polite, "three flooding /ws sessions");
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().expect("a flooder");
    }
}

#[test]
fn sigterm_is_not_held_up_by_twenty_stalled_clients_of_each_kind() {
    let mut server = Server::start(&["--max-queue", "67108864"]);
    let polite = Polite::connect(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..20)
        .map(|i| stalled_chat(&server, &format!("flood{i}"), &stop))
        .collect();
    let _stalled = stalled_echoes(&server, 20);
    terminate(&mut server, polite, "20 stalled /echo and 20 flooding /ws");
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().expect("a flooder");
    }
}
