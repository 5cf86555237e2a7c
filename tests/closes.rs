//! `socketbox_closes_total`: one count per closing handshake, by the code
//! of the Close frame that began it and the side that sent it, whichever
//! side that was. The peers are tungstenite and raw sockets.

mod common;

use std::io::Write;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

use common::{client_frame, eventually, raw_upgrade, read_close_code, read_frame, Server};

/// The samples of `socketbox_closes_total`, as `{labels} value` lines.
fn closes(metrics_text: &str) -> Vec<String> {
    metrics_text
        .lines()
        .filter_map(|line| line.strip_prefix("socketbox_closes_total"))
        .filter(|line| line.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

fn closes_of(server: &Server) -> Vec<String> {
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    closes(&text)
}

/// Wait until the server's samples are `expected` (the server counts a
/// client's Close when its thread reads it, a moment after the client
/// has seen the answer).
fn assert_closes(server: &Server, expected: &[&str]) {
    let mut seen = Vec::new();
    let settled = eventually(Duration::from_secs(10), || {
        seen = closes_of(server);
        seen == expected
    });
    assert!(settled, "expected {expected:?}, got {seen:?}");
}

#[test]
fn the_help_line_says_what_is_counted() {
    let server = Server::start(&[]);
    let (_, text) = server.get("/metrics");
    let help = text
        .lines()
        .find_map(|line| line.strip_prefix("# HELP socketbox_closes_total "))
        .expect("a HELP line");
    for words in ["closing handshake", "initiator", "client", "server", "1005"] {
        assert!(help.to_lowercase().contains(words), "{words:?} in {help:?}");
    }
}

#[test]
fn a_client_close_on_echo_counts_as_the_clients() {
    let server = Server::start(&[]);
    let mut client = server.ws("/echo");
    client
        .socket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .unwrap();
    assert_eq!(client.close_code(), Some(1000));
    assert_closes(&server, &[r#"{code="1000",initiator="client"} 1"#]);

    // A Close without a status code is counted as 1005 (RFC 6455 7.1.5:
    // "considered to be 1005").
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&client_frame(0x88, b"")).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x88, Vec::new()));
    assert_closes(
        &server,
        &[
            r#"{code="1000",initiator="client"} 1"#,
            r#"{code="1005",initiator="client"} 1"#,
        ],
    );
}

#[test]
fn a_server_close_on_echo_counts_once_as_the_servers() {
    let server = Server::start(&["--echo-max-message", "8"]);
    // An unmasked frame: the server fails the connection with 1002; the
    // Close the client answers with does not begin another handshake.
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&[0x81, 0x01, b'x']).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1002));
    stream
        .write_all(&client_frame(0x88, &1002u16.to_be_bytes()))
        .unwrap();
    // A message over the limit: 1009, and tungstenite answers it itself.
    let mut client = server.ws("/echo");
    client.send_text("longer than eight bytes");
    assert_eq!(client.close_code(), Some(1009));
    let _ = client.socket.flush();
    assert_closes(
        &server,
        &[
            r#"{code="1002",initiator="server"} 1"#,
            r#"{code="1009",initiator="server"} 1"#,
        ],
    );
    // The answers have been read by now (the server closes TCP after them):
    // still no client-initiated count.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        closes_of(&server),
        [
            r#"{code="1002",initiator="server"} 1"#,
            r#"{code="1009",initiator="server"} 1"#,
        ]
    );
}

#[test]
fn ws_closes_count_by_initiator() {
    let server = Server::start(&[]);
    let mut alice = server.user("alice");
    alice
        .socket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
    assert_eq!(alice.close_code(), Some(1000));
    // PROTOCOL.md: a binary message on /ws is closed with 1003.
    let mut bob = server.user("bob");
    bob.socket.send(Message::Binary(vec![1, 2, 3])).unwrap();
    assert_eq!(bob.close_code(), Some(1003));
    let _ = bob.socket.flush();
    assert_closes(
        &server,
        &[
            r#"{code="1000",initiator="client"} 1"#,
            r#"{code="1003",initiator="server"} 1"#,
        ],
    );
}

#[test]
fn the_shutdown_counts_its_1001_and_not_the_answers() {
    // In process: the shutdown's Close 1001 is sent by another thread than
    // the connection's, and each client's answer to it must not count as a
    // handshake the client began.
    let config = socketbox::apps::StandardConfig {
        server: socketbox::server::ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = socketbox::apps::standard_server(config).unwrap();
    let addr = server.local_addr().unwrap();
    let shared = server.shared();
    let handle = server.shutdown_handle().unwrap();
    let running = std::thread::spawn(move || server.run());
    let connect = |path: &str| {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        tungstenite::client(format!("ws://{addr}{path}"), stream)
            .expect("handshake")
            .0
    };
    let mut clients = [connect("/echo"), connect("/ws")];
    // Both connections are registered once the server answered something.
    clients[0].send(Message::text("ready?")).unwrap();
    assert!(matches!(clients[0].read(), Ok(Message::Text(_))));
    clients[1].send(Message::text(r#"{"code":10015}"#)).unwrap();
    assert!(matches!(clients[1].read(), Ok(Message::Text(_))));
    handle.shutdown();
    for client in &mut clients {
        loop {
            match client.read() {
                Ok(Message::Close(frame)) => {
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("expected Close 1001, got {e}"),
            }
        }
        // tungstenite queued its answer; send it.
        let _ = client.flush();
    }
    // The server waits for each client's FIN after its own.
    drop(clients);
    running.join().unwrap().unwrap();
    let text = shared.metrics.render();
    assert_eq!(
        closes(&text),
        [r#"{code="1001",initiator="server"} 2"#],
        "{text}"
    );
}
