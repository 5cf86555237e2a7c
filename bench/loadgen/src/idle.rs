//! Idle connections: open N WebSocket connections, let them sit, and read
//! what they cost the server (its VmRSS and thread count) and the system
//! (MemAvailable, kernel stacks, page tables, unreclaimable slab).
//!
//! Two readings after opening: right after the handshakes, and after every
//! connection has echoed one 16-byte message (a client that said hello and
//! went quiet, the common case for a chat user). Every connection is
//! checked to be alive by that echo.
//!
//! With `deflate`, each connection offers permessage-deflate (RFC 7692),
//! requires the server to accept it, and its echo is a 1 KiB JSON-like text
//! sent compressed (RSV1 set), which the server must echo compressed too;
//! the echo is checked after inflating.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::procfs::{self, Sample};
use crate::ws::{self, op, Incoming, Rng};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Connections to hold.
    pub conns: usize,
    /// Server process to read.
    pub pid: u32,
    /// Time to let memory settle before each reading.
    pub settle: Duration,
    /// Threads that open connections.
    pub openers: usize,
    /// Extra time to hold the connections after the last reading (for
    /// looking at the server from outside, `perf`, `/proc/PID/smaps`).
    pub hold: Duration,
    /// Offer permessage-deflate and echo a compressed 1 KiB text.
    pub deflate: bool,
    /// Echo the 1 KiB text uncompressed instead of 16 bytes (the
    /// baseline `deflate` compares with).
    pub text: bool,
}

/// What each connection offers with `deflate`: no context takeover is the
/// server's default, so the offer leaves it to the server.
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The readings.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Before opening.
    pub before: Sample,
    /// After the handshakes.
    pub open: Sample,
    /// After one echo on each.
    pub echoed: Sample,
    /// Connections opened.
    pub opened: usize,
    /// Connections that echoed correctly.
    pub verified: usize,
    /// Failures of any kind.
    pub errors: usize,
    /// Seconds spent opening.
    pub open_secs: f64,
}

fn echo_once(stream: &mut TcpStream, leftover: &[u8], rng: &mut Rng, text: bool) -> bool {
    let (kind, expected) = if text {
        (op::TEXT, json_text(rng))
    } else {
        let mut bytes = rng.next_u64().to_le_bytes().to_vec();
        bytes.extend_from_slice(b"idle-check");
        (op::BINARY, bytes)
    };
    let mut frame = Vec::with_capacity(expected.len() + 16);
    ws::write_frame(&mut frame, true, kind, &[&expected], ws::mask_key(rng));
    if stream.write_all(&frame).is_err() {
        return false;
    }
    let mut reader = ws::Reader::new(4096);
    reader.push(leftover);
    loop {
        match reader.next(|got_kind, got| got_kind == Incoming::Data(kind) && got == expected) {
            Ok(Some(ok)) => return ok,
            Ok(None) => {}
            Err(_) => return false,
        }
        match reader.read_from(stream) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// A 1 KiB text that compresses well, as a chat client's JSON would,
/// with a part that differs per message.
fn json_text(rng: &mut Rng) -> Vec<u8> {
    let mut text = String::from("[");
    let mut i = 0;
    while text.len() < 1000 {
        text.push_str(&format!(
            r#"{{"type":"message","room":"lobby","seq":{i},"id":"{:016x}","text":"hello from the idle check"}},"#,
            rng.next_u64()
        ));
        i += 1;
    }
    text.pop();
    text.push(']');
    text.into_bytes()
}

/// RFC 7692 7.2.1: DEFLATE with a sync flush, its `00 00 ff ff` tail removed.
fn compress(payload: &[u8]) -> Vec<u8> {
    let mut deflater = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    let _ = deflater.compress_vec(payload, &mut out, flate2::FlushCompress::Sync);
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

/// RFC 7692 7.2.2: the tail appended again, then inflated (at most 64 KiB).
fn inflate(payload: &[u8]) -> Option<Vec<u8>> {
    let mut inflater = flate2::Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * 1024);
    inflater
        .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .ok()?;
    (inflater.total_in() as usize == input.len()).then_some(out)
}

/// One compressed text echoed: the reply must be one compressed text frame
/// (FIN, RSV1) that inflates to what was sent.
fn echo_compressed(stream: &mut TcpStream, leftover: &[u8], rng: &mut Rng) -> bool {
    let payload = json_text(rng);
    let mut frame = Vec::with_capacity(1100);
    ws::write_frame(
        &mut frame,
        true,
        op::TEXT,
        &[&compress(&payload)],
        ws::mask_key(rng),
    );
    frame[0] |= 0x40; // RSV1: this message is compressed.
    if stream.write_all(&frame).is_err() {
        return false;
    }
    let mut got = leftover.to_vec();
    let mut chunk = [0u8; 2048];
    loop {
        if got.len() >= 2 {
            if got[0] != 0x80 | 0x40 | op::TEXT || got[1] & 0x80 != 0 {
                return false;
            }
            let (len, at) = match got[1] {
                126 if got.len() >= 4 => (usize::from(u16::from_be_bytes([got[2], got[3]])), 4),
                126 | 127 => (usize::MAX, 0), // more header to read, or too big
                n => (usize::from(n), 2),
            };
            if got[1] == 127 {
                return false;
            }
            if len != usize::MAX && got.len() >= at + len {
                return inflate(&got[at..at + len]).is_some_and(|echoed| echoed == payload);
            }
        }
        match std::io::Read::read(stream, &mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Connect and handshake, offering compression with `deflate` and
/// requiring it accepted.
fn open_one(opts: &Options, rng: &mut Rng) -> Result<(TcpStream, Vec<u8>), String> {
    if !opts.deflate {
        return ws::connect(opts.addr, &opts.path, rng, Duration::from_secs(10))
            .map_err(|e| e.to_string());
    }
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&opts.addr, timeout).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let (leftover, agreed) =
        ws::handshake_offering(&mut stream, opts.addr, &opts.path, rng, Some(DEFLATE_OFFER))
            .map_err(|e| e.to_string())?;
    match agreed {
        Some(value) if value.starts_with("permessage-deflate") => Ok((stream, leftover)),
        other => Err(format!(
            "permessage-deflate not accepted (Sec-WebSocket-Extensions: {other:?}); is the server run with --deflate?"
        )),
    }
}

/// Open, read, echo, read, close.
pub fn run(opts: &Options) -> Outcome {
    let mut outcome = Outcome {
        before: procfs::sample(opts.pid),
        ..Outcome::default()
    };
    let openers = opts.openers.clamp(1, opts.conns.max(1));
    let started = std::time::Instant::now();
    let mut groups: Vec<Vec<(TcpStream, Vec<u8>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..openers)
            .map(|t| {
                let count = opts.conns / openers + usize::from(t < opts.conns % openers);
                scope.spawn(move || {
                    let mut rng = Rng::new(0x1d1e + t as u64);
                    let mut held = Vec::with_capacity(count);
                    let mut failures = 0;
                    for _ in 0..count {
                        match open_one(opts, &mut rng) {
                            Ok(conn) => held.push(conn),
                            Err(e) => {
                                if failures < 3 {
                                    eprintln!("loadgen idle: {e}");
                                }
                                failures += 1;
                            }
                        }
                    }
                    held
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    outcome.open_secs = started.elapsed().as_secs_f64();
    outcome.opened = groups.iter().map(Vec::len).sum();
    outcome.errors = opts.conns - outcome.opened;
    std::thread::sleep(opts.settle);
    outcome.open = procfs::sample(opts.pid);
    let verified: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter_mut()
            .enumerate()
            .map(|(t, group)| {
                scope.spawn(move || {
                    let mut rng = Rng::new(0xec40 + t as u64);
                    let mut ok = 0;
                    for (stream, leftover) in group.iter_mut() {
                        let echoed = if opts.deflate {
                            echo_compressed(stream, leftover, &mut rng)
                        } else {
                            echo_once(stream, leftover, &mut rng, opts.text)
                        };
                        if echoed {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    outcome.verified = verified;
    outcome.errors += outcome.opened - verified;
    std::thread::sleep(opts.settle);
    outcome.echoed = procfs::sample(opts.pid);
    if !opts.hold.is_zero() {
        // A mark for whoever reads the server from outside meanwhile.
        eprintln!("holding {} connections for {:?}", outcome.opened, opts.hold);
    }
    std::thread::sleep(opts.hold);
    let mut rng = Rng::new(7);
    for (stream, _) in groups.iter_mut().flatten() {
        let _ = stream.write_all(&ws::close_frame(&mut rng));
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(groups);
    outcome
}
