//! Native TLS (PROTOCOL.md "TLS"): the real binary with `--tls-cert` and
//! `--tls-key`, certificates made here by the `openssl` command (a
//! throwaway CA and leaves signed by it), and clients that verify against
//! that CA: tungstenite over rustls (ring provider), Python's `ssl` with
//! `websockets`, and raw TCP for what a TLS client would never send.
#![cfg(feature = "tls")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, Message, WebSocket};

/// Whether a tool a test needs is missing: say so in the test's output,
/// and fail under `CI=true` (tests/skips.rs explains the rule).
fn missing(what: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {what} is missing");
    }
    eprintln!("NOT RUN: missing {what}");
    println!("NOT RUN: missing {what}");
    true
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The kinds of key a leaf can have, as PEM files come in practice.
#[derive(Clone, Copy, Debug)]
enum KeyKind {
    /// `BEGIN PRIVATE KEY`, P-256.
    EcdsaPkcs8,
    /// `BEGIN EC PRIVATE KEY` (SEC1), P-256.
    EcdsaSec1,
    /// `BEGIN RSA PRIVATE KEY` (PKCS#1), 2048 bits.
    RsaPkcs1,
    /// `BEGIN PRIVATE KEY`, RSA 2048 bits.
    RsaPkcs8,
}

/// A throwaway CA in a fresh directory, and leaves it signs.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("socketbox-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=socketbox test CA",
            ],
        );
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Make `NAME.key` and `NAME.pem`, a leaf for localhost signed by the CA.
    fn leaf(&self, name: &str, kind: KeyKind) -> (PathBuf, PathBuf) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        match kind {
            KeyKind::EcdsaPkcs8 => openssl(
                &self.dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &key,
                ],
            ),
            KeyKind::EcdsaSec1 => openssl(
                &self.dir,
                &[
                    "ecparam",
                    "-genkey",
                    "-name",
                    "prime256v1",
                    "-noout",
                    "-out",
                    &key,
                ],
            ),
            KeyKind::RsaPkcs1 => {
                openssl(&self.dir, &["genrsa", "-traditional", "-out", &key, "2048"])
            }
            KeyKind::RsaPkcs8 => openssl(
                &self.dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &key,
                ],
            ),
        }
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
        );
        (self.path(&pem), self.path(&key))
    }

    /// A client configuration that trusts only this CA.
    fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.pem")).unwrap())
            .unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        // Every connection a full handshake: a resumed session shows the
        // certificate of the session it resumes.
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first certificate of a PEM file, as DER.
fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

/// The binary serving TLS, its stderr collected.
struct TlsServer {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl TlsServer {
    fn start(cert: &Path, key: &Path, extra: &[&str]) -> TlsServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_socketbox"))
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start socketbox");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "no listening line: {line:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            })
            .parse()
            .unwrap();
        TlsServer {
            child,
            addr,
            stderr,
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait until stderr holds `text` `times` times (at most 10 s).
    fn log_has(&self, text: &str, times: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.stderr.lock().unwrap().matches(text).count() >= times {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.addr.port())
    }

    fn raw(&self) -> TcpStream {
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        tcp
    }

    /// A tungstenite client on `path`, verifying the server against `config`.
    fn wss(&self, path: &str, config: &Arc<ClientConfig>) -> WebSocket<MaybeTlsStream<TcpStream>> {
        let (socket, response) = tungstenite::client_tls_with_config(
            self.url(path),
            self.raw(),
            None,
            Some(Connector::Rustls(Arc::clone(config))),
        )
        .expect("wss handshake");
        assert_eq!(response.status(), 101);
        socket
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The leaf certificate the server presented on this connection.
fn presented(socket: &WebSocket<MaybeTlsStream<TcpStream>>) -> Vec<u8> {
    match socket.get_ref() {
        MaybeTlsStream::Rustls(stream) => stream.conn.peer_certificates().unwrap()[0].to_vec(),
        _ => panic!("not a TLS stream"),
    }
}

fn echo_round_trip(socket: &mut WebSocket<MaybeTlsStream<TcpStream>>, text: &str) {
    socket.send(Message::text(text)).unwrap();
    loop {
        match socket.read().unwrap() {
            Message::Text(got) => {
                assert_eq!(got.as_str(), text);
                return;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The close code of the next Close frame.
fn close_code(socket: &mut WebSocket<MaybeTlsStream<TcpStream>>) -> Option<u16> {
    loop {
        match socket.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!("no Close frame: {e}"),
        }
    }
}

/// One HTTP/1.1 request over TLS; returns the whole answer.
fn https(server: &TlsServer, config: &Arc<ClientConfig>, request: &str) -> String {
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, server.raw());
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn every_route_is_served_over_tls_to_a_verifying_client() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("routes");
    let (cert, key) = pki.leaf("leaf", KeyKind::EcdsaPkcs8);
    let server = TlsServer::start(&cert, &key, &[]);
    let config = pki.client_config(rustls::ALL_VERSIONS);

    // /echo: text, and a binary message larger than a TLS record.
    let mut echo = server.wss("/echo", &config);
    assert_eq!(presented(&echo), der_of(&cert));
    echo_round_trip(&mut echo, "hello over TLS");
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    echo.send(Message::binary(big.clone())).unwrap();
    match echo.read().unwrap() {
        Message::Binary(got) => assert!(got[..] == big[..], "the same bytes back"),
        other => panic!("unexpected {other:?}"),
    }

    // /ws: the chat protocol.
    let mut chat = server.wss("/ws", &config);
    chat.send(Message::text(r#"{"code":10000,"id":"alice"}"#))
        .unwrap();
    let answer: serde_json::Value = match chat.read().unwrap() {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(answer["extend"]["code"], 20002);
    assert_eq!(answer["extend"]["mess"], true);

    // Plain HTTP routes, over https.
    let answer = https(
        &server,
        &config,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = https(
        &server,
        &config,
        "GET /socketbox.js HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("SocketBox"),
        "{answer:.200}"
    );
}

#[test]
fn rsa_and_ecdsa_keys_in_pkcs8_and_traditional_pem_over_tls_1_2_and_1_3() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("kinds");
    for kind in [
        KeyKind::EcdsaPkcs8,
        KeyKind::EcdsaSec1,
        KeyKind::RsaPkcs1,
        KeyKind::RsaPkcs8,
    ] {
        let name = format!("{kind:?}");
        let (cert, key) = pki.leaf(&name, kind);
        let server = TlsServer::start(&cert, &key, &[]);
        for versions in [
            &[&rustls::version::TLS12][..],
            &[&rustls::version::TLS13][..],
        ] {
            let config = pki.client_config(versions);
            let mut echo = server.wss("/echo", &config);
            assert_eq!(presented(&echo), der_of(&cert), "{name}");
            echo_round_trip(&mut echo, &name);
        }
    }
}

#[test]
fn python_websockets_and_ssl_verify_and_talk() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let python = Command::new("python3")
        .args(["-c", "import ssl, websockets"])
        .output();
    if !python.is_ok_and(|o| o.status.success()) && missing("python3 with the websockets module") {
        return;
    }
    let pki = Pki::new("python");
    let (cert, key) = pki.leaf("leaf", KeyKind::RsaPkcs1);
    let server = TlsServer::start(&cert, &key, &[]);
    let script = r#"
import asyncio, ssl, sys
from websockets.asyncio.client import connect
async def main(url, ca):
    context = ssl.create_default_context(cafile=ca)
    async with connect(url + "/echo", ssl=context) as ws:
        await ws.send("from python")
        assert await ws.recv() == "from python"
    async with connect(url + "/ws", ssl=context) as ws:
        await ws.send('{"code":10000,"id":"py"}')
        print(await ws.recv())
asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &server.url(""),
            pki.path("ca.pem").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("20002"),
        "python: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run the binary with `args` and expect it to refuse to start, saying
/// something that contains `says`.
fn refuses_to_start(args: &[&str], says: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_socketbox"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} started");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "{args:?} listened"
    );
    assert!(stderr.contains(says), "{args:?}: {stderr:?} lacks {says:?}");
}

#[test]
fn start_up_errors_name_the_problem() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("errors");
    let (cert, key) = pki.leaf("leaf", KeyKind::EcdsaPkcs8);
    let (_, other_key) = pki.leaf("other", KeyKind::EcdsaSec1);
    let cert = cert.to_str().unwrap();
    let key = key.to_str().unwrap();
    refuses_to_start(&["--tls-cert", cert], "--tls-key");
    refuses_to_start(&["--tls-key", key], "--tls-cert");
    let absent = pki.path("absent.pem");
    let absent = absent.to_str().unwrap();
    refuses_to_start(&["--tls-cert", absent, "--tls-key", key], absent);
    refuses_to_start(&["--tls-cert", cert, "--tls-key", absent], absent);
    refuses_to_start(
        &["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()],
        "does not match",
    );
    // A certificate given as the key, a key given as the certificate.
    refuses_to_start(
        &["--tls-cert", cert, "--tls-key", cert],
        "no PEM private key",
    );
    refuses_to_start(&["--tls-cert", key, "--tls-key", key], "no PEM certificate");
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_the_old_one_when_the_new_is_bad() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("reload");
    let (first_cert, first_key) = pki.leaf("first", KeyKind::EcdsaPkcs8);
    let (second_cert, second_key) = pki.leaf("second", KeyKind::RsaPkcs1);
    let (_, wrong_key) = pki.leaf("wrong", KeyKind::EcdsaSec1);
    let cert = pki.path("live.pem");
    let key = pki.path("live.key");
    std::fs::copy(&first_cert, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let server = TlsServer::start(&cert, &key, &[]);
    let config = pki.client_config(rustls::ALL_VERSIONS);

    let mut open = server.wss("/echo", &config);
    assert_eq!(presented(&open), der_of(&first_cert));
    echo_round_trip(&mut open, "before");

    // Renewal: new files, SIGHUP.
    std::fs::copy(&second_cert, &cert).unwrap();
    std::fs::copy(&second_key, &key).unwrap();
    server.signal("HUP");
    assert!(server.log_has("reloaded", 1), "the reload is logged");
    let mut fresh = server.wss("/echo", &config);
    assert_eq!(
        presented(&fresh),
        der_of(&second_cert),
        "new handshakes see the new certificate"
    );
    echo_round_trip(&mut fresh, "after");
    echo_round_trip(&mut open, "the open connection goes on");

    // A bad renewal: a key of another certificate.
    std::fs::copy(&wrong_key, &key).unwrap();
    server.signal("HUP");
    assert!(
        server.log_has("keeping the old TLS certificate", 1),
        "the refusal is logged"
    );
    assert!(server.log_has("does not match", 1), "with its reason");
    let mut later = server.wss("/echo", &config);
    assert_eq!(
        presented(&later),
        der_of(&second_cert),
        "the last good pair stays"
    );
    echo_round_trip(&mut later, "still served");
    // Unreadable files: the same.
    std::fs::remove_file(&cert).unwrap();
    server.signal("HUP");
    assert!(server.log_has("keeping the old TLS certificate", 2));
    echo_round_trip(&mut server.wss("/echo", &config), "still served");
    echo_round_trip(&mut open, "and the first connection too");
}

/// Whether the server closes `tcp` (EOF or reset) within `limit`.
fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
    tcp.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match tcp.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
        if started.elapsed() > limit {
            return false;
        }
    }
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_are_closed_at_once() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("garbage");
    let (cert, key) = pki.leaf("leaf", KeyKind::EcdsaPkcs8);
    // A long handshake timeout: closing at once is not that timeout.
    let server = TlsServer::start(&cert, &key, &["--handshake-timeout", "60"]);
    let mut plain = server.raw();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert!(
        closed_within(&mut plain, Duration::from_secs(10)),
        "plain HTTP closed"
    );
    let mut garbage = server.raw();
    garbage.write_all(&[0xff; 64]).unwrap();
    assert!(
        closed_within(&mut garbage, Duration::from_secs(10)),
        "garbage closed"
    );
    let mut upgrade = server.raw();
    upgrade.write_all(common_upgrade().as_bytes()).unwrap();
    assert!(
        closed_within(&mut upgrade, Duration::from_secs(10)),
        "ws:// on wss:// closed"
    );
    // The server still serves TLS.
    echo_round_trip(
        &mut server.wss("/echo", &pki.client_config(rustls::ALL_VERSIONS)),
        "still up",
    );
}

fn common_upgrade() -> String {
    "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_owned()
}

#[test]
fn a_client_that_says_nothing_is_dropped_at_the_handshake_timeout() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("silent");
    let (cert, key) = pki.leaf("leaf", KeyKind::EcdsaPkcs8);
    let server = TlsServer::start(&cert, &key, &["--handshake-timeout", "1"]);
    let mut silent = server.raw();
    assert!(
        closed_within(&mut silent, Duration::from_secs(15)),
        "a silent client is dropped"
    );
    // One that stops half-way through its ClientHello is dropped too.
    let mut partial = server.raw();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    assert!(closed_within(&mut partial, Duration::from_secs(15)));
}

#[test]
fn many_handshakes_at_once_complete_while_stalled_clients_wait_for_their_timeout() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("many");
    let (cert, key) = pki.leaf("leaf", KeyKind::EcdsaPkcs8);
    let server = TlsServer::start(&cert, &key, &["--handshake-timeout", "30"]);
    let config = pki.client_config(rustls::ALL_VERSIONS);
    // Clients stalled before and inside their handshake: their connections'
    // threads wait on their sockets, which must hold up no one else.
    let mut stalled = vec![server.raw(), server.raw()];
    stalled[1]
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // More handshakes at once than the server has cores.
    let clients: Vec<_> = (0..40)
        .map(|i| {
            let url = server.url("/echo");
            let tcp = server.raw();
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let (mut socket, response) = tungstenite::client_tls_with_config(
                    url,
                    tcp,
                    None,
                    Some(Connector::Rustls(config)),
                )
                .expect("wss handshake");
                assert_eq!(response.status(), 101);
                echo_round_trip(&mut socket, &format!("client {i}"));
            })
        })
        .collect();
    for client in clients {
        client
            .join()
            .expect("every client completes its handshake and echo");
    }
    // The stalled ones are still waiting, not refused.
    for tcp in &mut stalled {
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut byte = [0u8; 1];
        match tcp.read(&mut byte) {
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
            Ok(n) => panic!("a stalled client got {n} bytes before its timeout"),
        }
    }
}

#[test]
fn a_tls_1_3_key_update_from_the_client_keeps_the_session_going() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("keyupdate");
    let (cert, key) = pki.leaf("leaf", KeyKind::EcdsaPkcs8);
    let server = TlsServer::start(&cert, &key, &[]);
    let config = pki.client_config(&[&rustls::version::TLS13]);
    let mut echo = server.wss("/echo", &config);
    echo_round_trip(&mut echo, "before the key update");
    // RFC 8446 4.6.3: the client's KeyUpdate (update_requested) changes the
    // keys of what it sends from here on, and asks the server to change
    // its own.
    match echo.get_mut() {
        MaybeTlsStream::Rustls(stream) => stream.conn.refresh_traffic_keys().unwrap(),
        _ => panic!("not TLS"),
    }
    echo_round_trip(&mut echo, "after the key update");
    echo_round_trip(&mut echo, "and again");
}

#[test]
fn the_shutdown_close_1001_goes_out_over_tls() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("shutdown");
    let (cert, key) = pki.leaf("leaf", KeyKind::EcdsaPkcs8);
    let mut server = TlsServer::start(&cert, &key, &[]);
    let config = pki.client_config(rustls::ALL_VERSIONS);
    let mut echo = server.wss("/echo", &config);
    echo_round_trip(&mut echo, "hi");
    let mut chat = server.wss("/ws", &config);
    chat.send(Message::text(r#"{"code":10000,"id":"bob"}"#))
        .unwrap();
    let _ = chat.read().unwrap();
    server.signal("TERM");
    assert_eq!(close_code(&mut echo), Some(1001), "/echo");
    assert_eq!(close_code(&mut chat), Some(1001), "/ws");
    // Our answers complete the closing handshakes; the server exits 0.
    let _ = echo.flush();
    let _ = chat.flush();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server exits");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// The next chat message of `code` (others skipped), as JSON.
fn next_of(socket: &mut WebSocket<MaybeTlsStream<TcpStream>>, code: u64) -> serde_json::Value {
    loop {
        if let Message::Text(text) = socket.read().unwrap() {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["code"] == code {
                return value;
            }
        }
    }
}

fn auth(socket: &mut WebSocket<MaybeTlsStream<TcpStream>>, id: &str) {
    socket
        .send(Message::text(format!(r#"{{"code":10000,"id":"{id}"}}"#)))
        .unwrap();
    assert_eq!(next_of(socket, 988)["extend"]["mess"], true);
}

#[test]
fn chat_deliveries_over_tls_arrive_whole_and_in_order_and_a_slow_consumer_is_dropped() {
    if !openssl_available() && missing("the openssl command") {
        return;
    }
    let pki = Pki::new("chat");
    let (cert, key) = pki.leaf("leaf", KeyKind::EcdsaPkcs8);
    let server = TlsServer::start(&cert, &key, &["--max-queue", "262144"]);
    let config = pki.client_config(rustls::ALL_VERSIONS);
    let mut alice = server.wss("/ws", &config);
    let mut bob = server.wss("/ws", &config);
    auth(&mut alice, "alice");
    auth(&mut bob, "bob");
    // Senders write through to bob's socket when his writer sleeps; what
    // they leave encrypted in the socket his writer must flush.
    let filler = "x".repeat(1000);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            for expected in 1..=300u64 {
                let message = next_of(&mut bob, 1756);
                assert_eq!(message["body"]["seq"], expected);
                assert_eq!(message["body"]["data"]["n"], expected);
            }
        });
        for n in 1..=300u64 {
            let data = serde_json::json!({"n": n, "filler": filler});
            let text = serde_json::json!({"code": 10003, "data": data}).to_string();
            alice.send(Message::text(text)).unwrap();
            if n % 50 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        reader.join().unwrap();
    });

    // Carol authenticates and then reads nothing.
    let mut carol = server.wss("/ws", &config);
    auth(&mut carol, "carol");
    let big = "y".repeat(30_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dropped = false;
    let mut sent = 0;
    while !dropped && Instant::now() < deadline {
        let text = serde_json::json!({"code": 10003, "data": big}).to_string();
        alice.send(Message::text(text)).unwrap();
        sent += 1;
        // Bob reads, so only carol falls behind.
        let _ = next_of(&mut bob, 1756);
        if sent % 20 == 0 {
            let metrics = https(&server, &config, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            dropped = metrics.contains("socketbox_slow_consumers_total 1");
        }
    }
    assert!(
        dropped,
        "carol dropped as a slow consumer after {sent} broadcasts"
    );
    // Her TCP connection ends within the grace, whatever she does.
    let tcp = match carol.get_mut() {
        MaybeTlsStream::Rustls(stream) => &mut stream.sock,
        _ => unreachable!(),
    };
    let mut sink = vec![0u8; 65536];
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    loop {
        match tcp.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(started.elapsed() < Duration::from_secs(30), "closed"),
        }
    }
    // Alice and bob go on.
    alice
        .send(Message::text(
            r#"{"code":10002,"data":{"to":"bob","hi":1}}"#,
        ))
        .unwrap();
    assert_eq!(next_of(&mut bob, 1756)["body"]["data"]["hi"], 1);
}
