//! `tlsload`: wss:// load for the TLS cells of docs/benchmarks.md. The
//! server's certificate is verified against `--ca`; every handshake is a
//! full one (no resumption). Prints one `RESULT` line.
//!
//! ```text
//! tlsload echo      --url wss://localhost:PORT/echo --ca CA.pem [--conns 16] [--size 1024] [--duration 5] [--warmup 1]
//! tlsload handshake --url wss://localhost:PORT/echo --ca CA.pem [--clients 4] [--duration 5] [--warmup 1]
//! ```

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, Message, WebSocket};

struct Args {
    mode: String,
    url: String,
    ca: String,
    conns: usize,
    size: usize,
    duration: f64,
    warmup: f64,
}

fn args() -> Args {
    let mut a = Args {
        mode: String::new(),
        url: String::new(),
        ca: String::new(),
        conns: 16,
        size: 1024,
        duration: 5.0,
        warmup: 1.0,
    };
    let mut it = std::env::args().skip(1);
    a.mode = it.next().expect("mode: echo or handshake");
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value,
            "--ca" => a.ca = value,
            "--conns" | "--clients" => a.conns = value.parse().unwrap(),
            "--size" => a.size = value.parse().unwrap(),
            "--duration" => a.duration = value.parse().unwrap(),
            "--warmup" => a.warmup = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn config(ca: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).expect("read --ca"))
        .unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn connect(url: &str, config: &Arc<ClientConfig>) -> WebSocket<MaybeTlsStream<TcpStream>> {
    let authority = url.split('/').nth(2).unwrap();
    let port = authority.rsplit(':').next().unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (socket, _) = tungstenite::client_tls_with_config(
        url,
        tcp,
        None,
        Some(Connector::Rustls(Arc::clone(config))),
    )
    .expect("wss handshake");
    socket
}

fn main() {
    let a = args();
    let config = config(&a.ca);
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..a.conns {
        let (config, counting, stop, count, errors) = (
            Arc::clone(&config),
            Arc::clone(&counting),
            Arc::clone(&stop),
            Arc::clone(&count),
            Arc::clone(&errors),
        );
        let (mode, url, size) = (a.mode.clone(), a.url.clone(), a.size);
        threads.push(std::thread::spawn(move || match mode.as_str() {
            "echo" => {
                let mut ws = connect(&url, &config);
                let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
                while !stop.load(Relaxed) {
                    ws.send(Message::binary(payload.clone())).unwrap();
                    match ws.read() {
                        Ok(Message::Binary(got)) if got[..] == payload[..] => {
                            if counting.load(Relaxed) {
                                count.fetch_add(1, Relaxed);
                            }
                        }
                        _ => {
                            errors.fetch_add(1, Relaxed);
                            return;
                        }
                    }
                }
                let _ = ws.close(None);
            }
            "handshake" => {
                while !stop.load(Relaxed) {
                    let mut ws = connect(&url, &config);
                    let _ = ws.close(None);
                    // Until the server's Close (or the end of TCP).
                    let clean = loop {
                        match ws.read() {
                            Ok(_) => {}
                            Err(tungstenite::Error::ConnectionClosed) => break true,
                            Err(_) => break false,
                        }
                    };
                    if !clean {
                        errors.fetch_add(1, Relaxed);
                    }
                    if counting.load(Relaxed) {
                        count.fetch_add(1, Relaxed);
                    }
                }
            }
            other => panic!("unknown mode {other}"),
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(a.warmup));
    counting.store(true, Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(a.duration));
    counting.store(false, Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let n = count.load(Relaxed);
    let unit = if a.mode == "echo" {
        "msgs_per_s"
    } else {
        "handshakes_per_s"
    };
    println!(
        "RESULT test=tls_{} conns={} size={} {unit}={:.0} errors={}",
        a.mode,
        a.conns,
        a.size,
        n as f64 / elapsed,
        errors.load(Relaxed)
    );
}
