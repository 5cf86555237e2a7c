//! Echo throughput and latency: N connections, each keeping `inflight`
//! messages of `size` bytes outstanding. Every echo is checked byte for
//! byte against what was sent (a sequence number plus a per-connection
//! pattern), and only checked echoes count; anything else is an error.
//!
//! Connections are driven by `threads` event loops (mio, edge-triggered),
//! so the generator spends as little of the shared CPU as it can.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::hist::Histogram;
use crate::ws::{self, op, Incoming, Rng};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Connections.
    pub conns: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages outstanding per connection.
    pub inflight: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Event-loop threads.
    pub threads: usize,
    /// Text messages instead of binary.
    pub text: bool,
}

/// What came back.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Checked echoes received inside the measured window.
    pub messages: u64,
    /// Round-trip latency of those.
    pub latency: Histogram,
    /// Echoes whose bytes differed from what was sent.
    pub bad: u64,
    /// Messages never echoed (connection died or the drain timed out).
    pub lost: u64,
    /// Connections that could not be opened or died early.
    pub failed: u64,
}

struct Conn {
    stream: TcpStream,
    reader: ws::Reader,
    out: Vec<u8>,
    out_pos: usize,
    rng: Rng,
    pattern: Vec<u8>,
    next_send: u64,
    next_recv: u64,
    sent_at: VecDeque<Instant>,
    alive: bool,
}

/// The first bytes of message `seq`: its number, as hex digits in text mode.
fn seq_bytes(seq: u64, text: bool) -> [u8; 8] {
    if text {
        let mut out = [0u8; 8];
        let digits = b"0123456789abcdef";
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = digits[((seq >> (28 - 4 * i)) & 0xF) as usize];
        }
        out
    } else {
        seq.to_le_bytes()
    }
}

enum Verdict {
    Good,
    Bad,
    Ping(Vec<u8>),
    Ignore,
    Closed,
}

impl Conn {
    fn queue_message(&mut self, opcode: u8, text: bool) {
        let head = self.pattern.len().min(8);
        let seq = seq_bytes(self.next_send, text);
        let key = ws::mask_key(&mut self.rng);
        ws::write_frame(
            &mut self.out,
            true,
            opcode,
            &[&seq[..head], &self.pattern[head..]],
            key,
        );
        self.next_send += 1;
        self.sent_at.push_back(Instant::now());
    }

    /// Write what is queued; false when the connection failed.
    fn flush(&mut self) -> bool {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return false,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.out.clear();
        self.out_pos = 0;
        true
    }
}

fn check(
    kind: Incoming,
    payload: &[u8],
    pattern: &[u8],
    seq: u64,
    opcode: u8,
    text: bool,
) -> Verdict {
    match kind {
        Incoming::Data(got) => {
            let head = pattern.len().min(8);
            let ok = got == opcode
                && payload.len() == pattern.len()
                && payload[..head] == seq_bytes(seq, text)[..head]
                && payload[head..] == pattern[head..];
            if ok {
                Verdict::Good
            } else {
                Verdict::Bad
            }
        }
        Incoming::Ping => Verdict::Ping(payload.to_vec()),
        Incoming::Pong => Verdict::Ignore,
        Incoming::Close => Verdict::Closed,
    }
}

/// Open the connections (blocking handshakes) and run the event loops.
pub fn run(opts: &Options) -> Outcome {
    let mut outcome = Outcome::default();
    let mut rng = Rng::new(0x5eed ^ opts.conns as u64 ^ (opts.size as u64) << 20);
    let opcode = if opts.text { op::TEXT } else { op::BINARY };
    let threads = opts.threads.clamp(1, opts.conns.max(1));
    let mut groups: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..opts.conns {
        match ws::connect(opts.addr, &opts.path, &mut rng, Duration::from_secs(5)) {
            Ok((stream, leftover)) => {
                if stream.set_nonblocking(true).is_err() {
                    outcome.failed += 1;
                    continue;
                }
                let mut reader = ws::Reader::new(opts.size.max(125) + 16);
                reader.push(&leftover);
                let pattern: Vec<u8> = (0..opts.size)
                    .map(|j| {
                        if opts.text {
                            b'a' + ((i * 7 + j) % 26) as u8
                        } else {
                            (i.wrapping_mul(131) ^ j.wrapping_mul(31)) as u8
                        }
                    })
                    .collect();
                groups[i % threads].push(Conn {
                    stream: TcpStream::from_std(stream),
                    reader,
                    out: Vec::with_capacity(opts.inflight * (opts.size + 14)),
                    out_pos: 0,
                    rng: Rng::new(rng.next_u64()),
                    pattern,
                    next_send: 0,
                    next_recv: 0,
                    sent_at: VecDeque::with_capacity(opts.inflight),
                    alive: true,
                });
            }
            Err(e) => {
                if outcome.failed < 3 {
                    eprintln!("loadgen: connection {i}: {e}");
                }
                outcome.failed += 1;
            }
        }
    }
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + opts.warmup;
    let end = measure_from + opts.duration;
    let results: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|conns| {
                let opts = opts.clone();
                scope.spawn(move || event_loop(conns, &opts, opcode, start, measure_from, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for r in results {
        outcome.messages += r.messages;
        outcome.latency.merge(&r.latency);
        outcome.bad += r.bad;
        outcome.lost += r.lost;
        outcome.failed += r.failed;
    }
    outcome
}

fn event_loop(
    mut conns: Vec<Conn>,
    opts: &Options,
    opcode: u8,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let Ok(mut poll) = Poll::new() else {
        outcome.failed += conns.len() as u64;
        return outcome;
    };
    for (i, conn) in conns.iter_mut().enumerate() {
        if poll
            .registry()
            .register(
                &mut conn.stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            conn.alive = false;
            outcome.failed += 1;
        }
    }
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    for conn in conns.iter_mut().filter(|c| c.alive) {
        for _ in 0..opts.inflight {
            conn.queue_message(opcode, opts.text);
        }
        if !conn.flush() {
            conn.alive = false;
            outcome.failed += 1;
        }
    }
    let drain_until = end + Duration::from_secs(3);
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let sending = now < end;
        if !sending {
            let outstanding: usize = conns
                .iter()
                .filter(|c| c.alive)
                .map(|c| c.sent_at.len())
                .sum();
            if outstanding == 0 || now >= drain_until {
                break;
            }
        }
        let wake = if sending { end } else { drain_until };
        let timeout = wake
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for event in events.iter() {
            let Some(conn) = conns.get_mut(event.token().0) else {
                continue;
            };
            if !conn.alive {
                continue;
            }
            if !serve_event(conn, opts, opcode, measure_from, end, &mut outcome) {
                conn.alive = false;
                outcome.failed += 1;
                outcome.lost += conn.sent_at.len() as u64;
                conn.sent_at.clear();
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
    for conn in conns.iter_mut().filter(|c| c.alive) {
        outcome.lost += conn.sent_at.len() as u64;
        let close = ws::close_frame(&mut conn.rng);
        let _ = conn.stream.write(&close);
    }
    // Give servers a moment to answer the Close frames before the sockets go.
    std::thread::sleep(Duration::from_millis(50));
    outcome
}

/// Read everything available, check it, answer with new messages. Returns
/// false when the connection is finished.
fn serve_event(
    conn: &mut Conn,
    opts: &Options,
    opcode: u8,
    measure_from: Instant,
    end: Instant,
    outcome: &mut Outcome,
) -> bool {
    loop {
        match conn.reader.read_from(&mut conn.stream) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
        loop {
            let (pattern, seq) = (&conn.pattern, conn.next_recv);
            let verdict = match conn
                .reader
                .next(|kind, payload| check(kind, payload, pattern, seq, opcode, opts.text))
            {
                Ok(Some(v)) => v,
                Ok(None) => break,
                Err(_) => return false,
            };
            let now = Instant::now();
            match verdict {
                Verdict::Good | Verdict::Bad => {
                    let Some(sent) = conn.sent_at.pop_front() else {
                        // An echo of nothing we sent.
                        outcome.bad += 1;
                        continue;
                    };
                    conn.next_recv += 1;
                    if matches!(verdict, Verdict::Bad) {
                        outcome.bad += 1;
                    } else if now >= measure_from && now < end {
                        outcome.messages += 1;
                        outcome.latency.record((now - sent).as_nanos() as u64);
                    }
                    if now < end {
                        conn.queue_message(opcode, opts.text);
                    }
                }
                Verdict::Ping(payload) => {
                    let key = ws::mask_key(&mut conn.rng);
                    ws::write_frame(&mut conn.out, true, op::PONG, &[&payload], key);
                }
                Verdict::Ignore => {}
                Verdict::Closed => return false,
            }
        }
    }
    conn.flush()
}
