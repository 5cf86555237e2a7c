//! The programs in `examples/` work: each is built, started on port 0 and
//! driven by tungstenite, an independent client.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Build `examples/NAME.rs` with the profile and target directory this test
/// was built with, and return the binary's path. `cargo test` builds the
/// examples already, but `cargo test --test examples` does not, and a stale
/// binary must not pass for the current source. (Cargo releases its build
/// lock before it runs tests, so a nested build does not wait on it.)
fn build(name: &str) -> PathBuf {
    // Tests run from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("<target>/<profile>");
    let target_dir = profile_dir.parent().expect("<target>");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let output = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name, "--profile", profile])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// A running example, killed on drop.
struct Example {
    child: Child,
    addr: String,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Example {
    /// Start `examples/NAME.rs` on `127.0.0.1:0` and read its `listening on ADDR`.
    fn start(name: &str) -> Example {
        let path = build(name);
        let mut child = Command::new(&path)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the example");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Example { child, addr }
    }

    fn connect(&self) -> Socket {
        let stream = TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let url = format!("ws://{}/", self.addr);
        let (socket, _) =
            tungstenite::client(url, MaybeTlsStream::Plain(stream)).expect("the handshake");
        socket
    }
}

/// The next message that is not a ping or a pong.
fn next_data(socket: &mut Socket) -> Message {
    loop {
        match socket.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Ping and wait for the pong: the server's connection loop is running.
fn ping(socket: &mut Socket) {
    socket.send(Message::Ping(b"ready?".to_vec())).unwrap();
    match socket.read().expect("the pong") {
        Message::Pong(payload) => assert_eq!(&payload[..], b"ready?"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// Close from the client's side and check the server answers with the same code.
fn close(socket: &mut Socket) {
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    socket.close(Some(bye)).unwrap();
    loop {
        match socket.read() {
            Ok(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
                return;
            }
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("expected the server's Close, got {e}"),
        }
    }
}

#[test]
fn echo_server_echoes_text_and_binary_and_closes() {
    let example = Example::start("echo_server");
    let mut socket = example.connect();
    socket.send(Message::text("Hello, κόσμε")).unwrap();
    assert_eq!(next_data(&mut socket), Message::text("Hello, κόσμε"));
    let data = vec![0u8, 1, 2, 255];
    socket.send(Message::binary(data.clone())).unwrap();
    assert_eq!(next_data(&mut socket), Message::binary(data));
    ping(&mut socket);
    close(&mut socket);
}

#[test]
fn echo_server_answers_a_bad_request_with_an_http_error() {
    use std::io::{Read, Write};
    let example = Example::start("echo_server");
    let mut stream = TcpStream::connect(&example.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
}

#[test]
fn broadcast_chat_sends_each_message_to_every_other_client() {
    let example = Example::start("broadcast_chat");
    let mut alice = example.connect();
    let mut bob = example.connect();
    let mut carol = example.connect();
    for socket in [&mut alice, &mut bob, &mut carol] {
        // Each connection is registered before its loop answers pings.
        ping(socket);
    }
    alice.send(Message::text("hi from alice")).unwrap();
    assert_eq!(next_data(&mut bob), Message::text("hi from alice"));
    assert_eq!(next_data(&mut carol), Message::text("hi from alice"));
    bob.send(Message::text("hi from bob")).unwrap();
    // Had alice been sent her own message, it would have reached her first.
    assert_eq!(next_data(&mut alice), Message::text("hi from bob"));
    assert_eq!(next_data(&mut carol), Message::text("hi from bob"));
    close(&mut carol);
    alice.send(Message::text("carol left")).unwrap();
    assert_eq!(next_data(&mut bob), Message::text("carol left"));
}
