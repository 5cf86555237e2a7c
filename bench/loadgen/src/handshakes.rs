//! Opening handshakes per second: `clients` threads, each in a loop of
//! connect, upgrade (checking Sec-WebSocket-Accept), Close 1000, wait for
//! the server to close TCP. A handshake counts once its 101 is verified.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::hist::Histogram;
use crate::ws::{self, Rng};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
}

/// What came back.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Verified handshakes inside the window.
    pub handshakes: u64,
    /// Connect-to-101 latency.
    pub latency: Histogram,
    /// Failed handshakes.
    pub errors: u64,
}

/// Run the clients.
pub fn run(opts: &Options) -> Outcome {
    let start = Instant::now();
    let measure_from = start + opts.warmup;
    let end = measure_from + opts.duration;
    let results: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..opts.clients)
            .map(|t| {
                scope.spawn(move || {
                    let mut out = Outcome::default();
                    let mut rng = Rng::new(0x4a5 + t as u64);
                    let mut sink = [0u8; 512];
                    while Instant::now() < end {
                        let began = Instant::now();
                        match ws::connect(opts.addr, &opts.path, &mut rng, Duration::from_secs(5)) {
                            Ok((mut stream, _)) => {
                                let done = Instant::now();
                                if began >= measure_from && done < end {
                                    out.handshakes += 1;
                                    out.latency.record((done - began).as_nanos() as u64);
                                }
                                let _ = stream.write_all(&ws::close_frame(&mut rng));
                                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                                // The server answers Close and closes TCP first.
                                while let Ok(n) = stream.read(&mut sink) {
                                    if n == 0 {
                                        break;
                                    }
                                }
                            }
                            Err(e) => {
                                if out.errors < 3 {
                                    eprintln!("loadgen handshake: {e}");
                                }
                                out.errors += 1;
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut total = Outcome::default();
    for r in results {
        total.handshakes += r.handshakes;
        total.latency.merge(&r.latency);
        total.errors += r.errors;
    }
    total
}
