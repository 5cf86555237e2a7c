//! Test support: start the real `socketbox` binary on port 0 and talk to it
//! with independent clients (tungstenite) or raw sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A running server process, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Start `socketbox --listen 127.0.0.1:0 ARGS...` and wait for its
    /// `listening on ADDR` line.
    pub fn start(args: &[&str]) -> Server {
        Server::spawn(args, Stdio::inherit())
    }

    /// Start the binary with `stderr` as given and wait for its address.
    fn spawn(args: &[&str], stderr: Stdio) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_socketbox"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start socketbox");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .expect("an address");
        Server { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A raw TCP connection with generous but bounded timeouts.
    pub fn raw(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Connect a tungstenite client to `path`.
    pub fn ws(&self, path: &str) -> Client {
        self.ws_with(path, None)
    }

    pub fn ws_with(&self, path: &str, protocol: Option<&str>) -> Client {
        let mut request = self.url(path).into_client_request().unwrap();
        if let Some(protocol) = protocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        }
        let stream = self.raw();
        let config = WebSocketConfig {
            max_message_size: Some(64 << 20),
            max_frame_size: Some(64 << 20),
            ..Default::default()
        };
        let (socket, response) = tungstenite::client::client_with_config(
            request,
            MaybeTlsStream::Plain(stream),
            Some(config),
        )
        .expect("handshake");
        Client {
            socket,
            protocol: response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_owned()),
        }
    }

    /// Send raw bytes and read the whole response until the server closes.
    pub fn http(&self, request: &[u8]) -> String {
        let mut stream = self.raw();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }

    /// GET `path` and return (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let response = self.http(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        split_response(&response)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, body) of an HTTP response text.
pub fn split_response(response: &str) -> (u16, String) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A tungstenite client.
pub struct Client {
    pub socket: WebSocket<MaybeTlsStream<TcpStream>>,
    pub protocol: Option<String>,
}

impl Client {
    pub fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).expect("send");
    }

    /// The next data message (pings and pongs are skipped).
    pub fn recv(&mut self) -> Message {
        loop {
            match self.socket.read().expect("read") {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return other,
            }
        }
    }

    pub fn recv_text(&mut self) -> String {
        match self.recv() {
            Message::Text(text) => text.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// Read until the server's Close frame; return its code.
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.socket.read() {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(e) => panic!("expected a close frame, got {e}"),
            }
        }
    }
}

/// Wait until `check` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// A masked client frame, built by hand for raw-socket tests.
pub fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![first_byte];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Perform the upgrade on a raw socket; returns the socket after the 101.
pub fn raw_upgrade(server: &Server, path: &str) -> TcpStream {
    let mut stream = server.raw();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

/// A raw `/ws` connection authenticated as `id` that reads nothing (yet):
/// a slow or stopped consumer.
pub fn silent_reader(server: &Server, id: &str) -> TcpStream {
    let mut stream = raw_upgrade(server, "/ws");
    let auth = format!(r#"{{"code":10000,"id":"{id}"}}"#);
    stream
        .write_all(&client_frame(0x81, auth.as_bytes()))
        .unwrap();
    stream
}

/// Read an HTTP response head, up to and including its empty line, byte by
/// byte so that nothing behind it is consumed.
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("a UTF-8 response head")
}

/// Play a slowloris client: send `request` one byte at a time, waiting up
/// to `pause` for an answer after each byte, until the server answers or
/// closes, or `patience` has passed in all. Returns how many bytes were
/// sent and the answer (read until the server closes or pauses).
pub fn trickle(
    mut stream: TcpStream,
    request: &str,
    pause: Duration,
    patience: Duration,
) -> (usize, String) {
    stream.set_read_timeout(Some(pause)).unwrap();
    let deadline = Instant::now() + patience;
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    for byte in request.bytes() {
        if Instant::now() >= deadline || stream.write_all(&[byte]).is_err() {
            break;
        }
        sent += 1;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                let _ = stream.read_to_end(&mut answer);
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    (sent, String::from_utf8_lossy(&answer).into_owned())
}

/// An upgrade request for `path` with the given extra header lines (each
/// ending in CRLF).
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// Send `request` on a new raw socket; return the socket and the response
/// head (the socket is positioned right after it).
pub fn raw_request(server: &Server, request: &str) -> (TcpStream, String) {
    let mut stream = server.raw();
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    (stream, head)
}

/// The value of header `name` (case-insensitive) in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Read one unmasked server frame from a raw socket: (first byte, payload).
pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload)?;
    Ok((head[0], payload))
}

/// Read frames until a Close; return its code (None for an empty payload).
pub fn read_close_code(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let (b0, payload) = read_frame(stream).expect("a frame before the close");
        if b0 & 0x0f == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

// ---- SocketBox chat helpers (tests/chat.rs, tests/api.rs, tests/presence.rs) ----

/// The underlying TCP stream of a tungstenite client.
pub fn tcp_of(socket: &WebSocket<MaybeTlsStream<TcpStream>>) -> &TcpStream {
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream,
        _ => unreachable!("tests use plain TCP"),
    }
}

impl Client {
    /// Send one JSON value as a text message.
    pub fn send_json(&mut self, value: &serde_json::Value) {
        self.send_text(&value.to_string());
    }

    /// The next text message, parsed as JSON (the server always sends strict JSON).
    pub fn json(&mut self) -> serde_json::Value {
        let text = self.recv_text();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("server sent {text:?}: {e}"))
    }

    /// The next message that is not a heartbeat PING (476) or an online
    /// count (SYSTEM 20001): those arrive on their own schedule.
    pub fn event(&mut self) -> serde_json::Value {
        loop {
            let value = self.json();
            if !is_background(&value) {
                return value;
            }
        }
    }

    pub fn set_read_timeout(&mut self, timeout: Duration) {
        tcp_of(&self.socket)
            .set_read_timeout(Some(timeout))
            .unwrap();
    }

    /// AUTH as `id` (a JSON string or number) and check the answer: SYSTEM
    /// 20002 true, then SYSTEM 20001 at once. Returns the online count.
    pub fn auth(&mut self, id: serde_json::Value) -> u64 {
        self.send_json(&serde_json::json!({"code": 10000, "id": id}));
        let result = self.json();
        assert_eq!(result["code"], 988, "{result}");
        assert_eq!(result["extend"]["code"], 20002, "{result}");
        assert_eq!(result["extend"]["mess"], true, "{result}");
        let count = self.json();
        assert_eq!(count["code"], 988, "{count}");
        assert_eq!(count["extend"]["code"], 20001, "{count}");
        count["extend"]["mess"].as_u64().expect("a count")
    }

    /// Send PING 10015 and read up to its PONG 732; returns what came before
    /// it, heartbeats and online counts left out. Replies to one session
    /// leave in the order their causes were handled, so this is a barrier:
    /// everything queued for this session before the PING was handled has
    /// arrived.
    pub fn sync(&mut self) -> Vec<serde_json::Value> {
        self.send_json(&serde_json::json!({"code": 10015}));
        let mut before = Vec::new();
        loop {
            let value = self.json();
            if value["code"] == 732 {
                return before;
            }
            if !is_background(&value) {
                before.push(value);
            }
        }
    }
}

impl Server {
    /// A `/ws` client authenticated as `id`.
    pub fn user(&self, id: &str) -> Client {
        let mut client = self.ws("/ws");
        client.auth(serde_json::Value::from(id));
        client
    }

    /// One HTTP request with optional bearer token and body: (status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        split_response(&self.http(request.as_bytes()))
    }

    /// The value of an unlabelled metric in `/metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200);
        body.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse::<f64>().expect("a number") as u64)
            })
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    }
}

/// `extend.code` of a SYSTEM, ERROR or AUTH message.
pub fn extend_code(value: &serde_json::Value) -> i64 {
    value["extend"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no extend.code in {value}"))
}

/// A heartbeat PING (476) or an online count (SYSTEM 20001).
pub fn is_background(value: &serde_json::Value) -> bool {
    value["code"] == 476 || (value["code"] == 988 && value["extend"]["code"] == 20001)
}

// ---- stderr capture (tests/trace.rs) ----

/// What a server started with [`Server::start_capturing_stderr`] has written
/// on stderr so far, collected by a thread.
pub struct StderrLog {
    text: std::sync::Arc<std::sync::Mutex<String>>,
}

impl StderrLog {
    /// Everything written so far.
    pub fn contents(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Wait (at most 10 s) until stderr contains `needle`.
    pub fn wait_for(&self, needle: &str) -> bool {
        eventually(Duration::from_secs(10), || self.contents().contains(needle))
    }
}

impl Server {
    /// Like [`Server::start`], with stderr collected instead of inherited.
    pub fn start_capturing_stderr(args: &[&str]) -> (Server, StderrLog) {
        let mut server = Server::spawn(args, Stdio::piped());
        let stderr = server.child.stderr.take().expect("stderr");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&text);
        // Whole reads, not lines: the server writes each trace block in one
        // write, so a reader of `contents()` never sees half a block.
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        (server, StderrLog { text })
    }
}

// ---- process control (tests/hostile.rs) ----

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM with the `kill` command (std has no signal API).
    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait at most `limit` for the process to exit: its status, or `None`
    /// while it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A test, or part of one, cannot run here because `what` is missing. It
/// says so where a reader of `cargo test` sees it: libtest captures
/// `eprintln!` of a passing test, but not writes to the stderr handle
/// itself. Under `CI=true` the test fails instead: CI has every tool.
pub fn not_run(what: &str) {
    let on_ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"));
    assert!(!on_ci, "CI must provide what this test needs: {what}");
    let _ = writeln!(std::io::stderr(), "NOT RUN: {what}");
}
