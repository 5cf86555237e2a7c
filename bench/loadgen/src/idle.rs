//! Idle connections: open N WebSocket connections, let them sit, and read
//! what they cost the server (its VmRSS and thread count) and the system
//! (MemAvailable, kernel stacks, page tables, unreclaimable slab).
//!
//! Two readings after opening: right after the handshakes, and after every
//! connection has echoed one 16-byte message (a client that said hello and
//! went quiet, the common case for a chat user). Every connection is
//! checked to be alive by that echo.

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
}

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

fn echo_once(stream: &mut TcpStream, leftover: &[u8], rng: &mut Rng) -> bool {
    let payload = rng.next_u64().to_le_bytes();
    let mut frame = Vec::with_capacity(32);
    ws::write_frame(
        &mut frame,
        true,
        op::BINARY,
        &[&payload, b"idle-check"],
        ws::mask_key(rng),
    );
    if stream.write_all(&frame).is_err() {
        return false;
    }
    let mut reader = ws::Reader::new(256);
    reader.push(leftover);
    loop {
        let mut expected = payload.to_vec();
        expected.extend_from_slice(b"idle-check");
        match reader.next(|kind, got| kind == Incoming::Data(op::BINARY) && got == expected) {
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
                        match ws::connect(opts.addr, &opts.path, &mut rng, Duration::from_secs(10))
                        {
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
                        if echo_once(stream, leftover, &mut rng) {
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
    std::thread::sleep(opts.hold);
    let mut rng = Rng::new(7);
    for (stream, _) in groups.iter_mut().flatten() {
        let _ = stream.write_all(&ws::close_frame(&mut rng));
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(groups);
    outcome
}
