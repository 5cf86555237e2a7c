//! Echo traffic on N connections, every echo checked byte for byte against
//! what was sent (a sequence number plus a per-connection pattern); only
//! checked echoes count, anything else is an error.
//!
//! Two paces. The benchmark's closed loop keeps `inflight` messages of
//! `size` bytes outstanding, each echo sending the next one. The soak's open
//! loop sends one message every `1/rate` seconds per connection whatever the
//! server does, tells a lost echo from a late one by its sequence number,
//! and ends with the closing handshake on every connection.
//!
//! Connections are driven by `threads` event loops (mio, edge-triggered),
//! so the generator spends as little of the shared CPU as it can.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::hist::Histogram;
use crate::soak::Live;
use crate::ws::{self, op, Incoming, Rng};

/// When a connection sends.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Closed loop: keep this many messages outstanding.
    Inflight(usize),
    /// Open loop: one message every `interval`; a send is skipped while
    /// `window` bytes are unanswered (the server has fallen behind).
    Rate {
        /// Time between two messages of one connection.
        interval: Duration,
        /// Most unanswered bytes per connection.
        window: usize,
    },
}

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
    /// When to send.
    pub pace: Pace,
    /// Measured time (the open loop sends during it).
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Time after it for the last echoes to arrive.
    pub drain: Duration,
    /// Event-loop threads.
    pub threads: usize,
    /// Text messages instead of binary.
    pub text: bool,
    /// Connections opened per second at most (`f64::INFINITY`: one after
    /// the other, as fast as the server answers).
    pub ramp: f64,
    /// Time one connection may take to open.
    pub connect_timeout: Duration,
}

/// What came back.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages sent.
    pub sent: u64,
    /// Checked echoes counted (the closed loop: inside the measured window;
    /// the open loop: all of them).
    pub messages: u64,
    /// Round-trip latency of those.
    pub latency: Histogram,
    /// Echoes whose bytes differed from what was sent, or that echoed
    /// nothing sent.
    pub bad: u64,
    /// Messages never echoed (connection died or the drain timed out).
    pub lost: u64,
    /// Echoes that came after a later message's echo.
    pub out_of_order: u64,
    /// Connections that could not be opened or died early.
    pub failed: u64,
    /// Open loop: sends skipped because the window was full.
    pub skipped: u64,
    /// Open loop: connections whose Close was not answered with a Close.
    pub unclean_closes: u64,
}

impl Outcome {
    /// Everything that went wrong.
    pub fn errors(&self) -> u64 {
        self.bad + self.lost + self.out_of_order + self.failed + self.unclean_closes
    }

    fn add(&mut self, other: &Outcome) {
        self.sent += other.sent;
        self.messages += other.messages;
        self.latency.merge(&other.latency);
        self.bad += other.bad;
        self.lost += other.lost;
        self.out_of_order += other.out_of_order;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.unclean_closes += other.unclean_closes;
    }
}

/// One open connection.
pub struct Conn {
    stream: TcpStream,
    reader: ws::Reader,
    out: Vec<u8>,
    out_pos: usize,
    rng: Rng,
    pattern: Vec<u8>,
    next_send: u64,
    next_recv: u64,
    /// Send times of messages `next_recv..next_send`.
    sent_at: VecDeque<Instant>,
    /// Messages counted lost because a later one's echo came first.
    skipped: HashSet<u64>,
    alive: bool,
    close_sent: bool,
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

/// The sequence number `seq_bytes` wrote (text mode: its low 32 bits).
fn seq_of(head: [u8; 8], text: bool) -> Option<u64> {
    if text {
        u64::from_str_radix(std::str::from_utf8(&head).ok()?, 16).ok()
    } else {
        Some(u64::from_le_bytes(head))
    }
}

/// Connection `i`'s payload pattern: letters in text mode.
fn pattern(i: usize, size: usize, text: bool) -> Vec<u8> {
    (0..size)
        .map(|j| {
            if text {
                b'a' + ((i * 7 + j) % 26) as u8
            } else {
                (i.wrapping_mul(131) ^ j.wrapping_mul(31)) as u8
            }
        })
        .collect()
}

enum Verdict {
    /// A data message: its first (up to 8) bytes, and whether the rest
    /// matches the connection's pattern.
    Data {
        head: [u8; 8],
        body_ok: bool,
    },
    Ping(Vec<u8>),
    Ignore,
    Closed,
}

/// How serving an event left the connection.
enum Step {
    Open,
    /// The server's Close frame arrived.
    Closed,
    Failed,
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

    /// The connection is gone: what it still waited for is lost.
    fn fail(&mut self, poll: &Poll, outcome: &mut Outcome) {
        self.alive = false;
        outcome.failed += 1;
        outcome.lost += self.sent_at.len() as u64;
        self.sent_at.clear();
        let _ = poll.registry().deregister(&mut self.stream);
    }
}

fn check(kind: Incoming, payload: &[u8], pattern: &[u8], opcode: u8) -> Verdict {
    match kind {
        Incoming::Data(got) => {
            let n = pattern.len().min(8).min(payload.len());
            let mut head = [0u8; 8];
            head[..n].copy_from_slice(&payload[..n]);
            let body_ok =
                got == opcode && payload.len() == pattern.len() && payload[n..] == pattern[n..];
            Verdict::Data { head, body_ok }
        }
        Incoming::Ping => Verdict::Ping(payload.to_vec()),
        Incoming::Pong => Verdict::Ignore,
        Incoming::Close => Verdict::Closed,
    }
}

/// Open the connections (blocking handshakes, at most `opts.ramp` per
/// second), spread over `opts.threads` groups. Returns the groups and how
/// many connections failed to open.
pub fn open(opts: &Options) -> (Vec<Vec<Conn>>, u64) {
    let mut failed = 0;
    let mut rng = Rng::new(0x5eed ^ opts.conns as u64 ^ (opts.size as u64) << 20);
    let threads = opts.threads.clamp(1, opts.conns.max(1));
    let mut groups: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    let started = Instant::now();
    for i in 0..opts.conns {
        if opts.ramp.is_finite() {
            let due = started + Duration::from_secs_f64(i as f64 / opts.ramp.max(1e-9));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        match ws::connect(opts.addr, &opts.path, &mut rng, opts.connect_timeout) {
            Ok((stream, leftover)) => {
                if stream.set_nonblocking(true).is_err() {
                    failed += 1;
                    continue;
                }
                let mut reader = ws::Reader::new(opts.size.max(125) + 16);
                reader.push(&leftover);
                // The open loop usually has one message out at a time.
                let expected = match opts.pace {
                    Pace::Inflight(k) => k,
                    Pace::Rate { .. } => 1,
                };
                groups[i % threads].push(Conn {
                    stream: TcpStream::from_std(stream),
                    reader,
                    out: Vec::with_capacity(expected * (opts.size + 14)),
                    out_pos: 0,
                    rng: Rng::new(rng.next_u64()),
                    pattern: pattern(i, opts.size, opts.text),
                    next_send: 0,
                    next_recv: 0,
                    sent_at: VecDeque::with_capacity(expected),
                    skipped: HashSet::new(),
                    alive: true,
                    close_sent: false,
                });
            }
            Err(e) => {
                if failed < 3 {
                    eprintln!("loadgen: connection {i}: {e}");
                }
                failed += 1;
            }
        }
    }
    (groups, failed)
}

/// Run the event loops on connections [`open`] made; `live` (if any) is
/// told of every message sent and every checked echo as it happens.
pub fn drive(groups: Vec<Vec<Conn>>, opts: &Options, live: Option<&Live>) -> Outcome {
    let opcode = if opts.text { op::TEXT } else { op::BINARY };
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + opts.warmup;
    let end = measure_from + opts.duration;
    let results: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|conns| {
                let opts = opts.clone();
                scope
                    .spawn(move || event_loop(conns, &opts, opcode, start, measure_from, end, live))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut outcome = Outcome::default();
    for r in &results {
        outcome.add(r);
    }
    outcome
}

/// Open the connections and run the benchmark.
pub fn run(opts: &Options) -> Outcome {
    let (groups, failed) = open(opts);
    let mut outcome = drive(groups, opts, None);
    outcome.failed += failed;
    outcome
}

fn event_loop(
    mut conns: Vec<Conn>,
    opts: &Options,
    opcode: u8,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    live: Option<&Live>,
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
    // The open loop's schedule: (when, connection), earliest first.
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    for (i, conn) in conns.iter_mut().enumerate().filter(|(_, c)| c.alive) {
        match opts.pace {
            Pace::Inflight(k) => {
                for _ in 0..k {
                    conn.queue_message(opcode, opts.text);
                }
                outcome.sent += k as u64;
                if !conn.flush() {
                    conn.fail(&poll, &mut outcome);
                }
            }
            // Spread the first sends over one interval.
            Pace::Rate { interval, .. } => {
                let first = (conn.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                due.push(Reverse((start + interval.mul_f64(first), i)));
            }
        }
    }
    let drain_until = end + opts.drain;
    // The benchmark measures a window; the soak counts every echo.
    let count_until = match opts.pace {
        Pace::Inflight(_) => end,
        Pace::Rate { .. } => drain_until,
    };
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        while let Some(&Reverse((at, i))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            let Pace::Rate { interval, window } = opts.pace else {
                break;
            };
            if at + interval < end {
                due.push(Reverse((at + interval, i)));
            }
            let conn = &mut conns[i];
            if !conn.alive {
                continue;
            }
            if (conn.sent_at.len() + 1) * opts.size > window.max(opts.size) {
                // The server is not keeping up: do not pile more on it.
                outcome.skipped += 1;
                continue;
            }
            conn.queue_message(opcode, opts.text);
            outcome.sent += 1;
            if let Some(live) = live {
                live.sent(1);
            }
            if !conn.flush() {
                conn.fail(&poll, &mut outcome);
            }
        }
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
        let wake = match due.peek() {
            Some(Reverse((at, _))) if sending => *at,
            _ if sending => end,
            _ => drain_until,
        };
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
            let window = (measure_from, count_until, end);
            if !matches!(
                serve_event(conn, opts, opcode, window, &mut outcome, live),
                Step::Open
            ) {
                conn.fail(&poll, &mut outcome);
            }
        }
    }
    for conn in conns.iter_mut().filter(|c| c.alive) {
        outcome.lost += conn.sent_at.len() as u64;
        conn.sent_at.clear();
        let close = ws::close_frame(&mut conn.rng);
        match opts.pace {
            Pace::Inflight(_) => {
                let _ = conn.stream.write(&close);
            }
            Pace::Rate { .. } => {
                conn.out.extend_from_slice(&close);
                conn.close_sent = true;
                if !conn.flush() {
                    conn.alive = false;
                    outcome.unclean_closes += 1;
                }
            }
        }
    }
    if matches!(opts.pace, Pace::Rate { .. }) {
        close_all(
            &mut conns,
            &mut poll,
            &mut events,
            opts,
            opcode,
            &mut outcome,
        );
    } else {
        // Give servers a moment to answer the Close frames before the sockets go.
        std::thread::sleep(Duration::from_millis(50));
    }
    outcome
}

/// The closing handshake on every connection, Close already sent: wait up
/// to 5 s for each server Close (RFC 6455 5.5.1: the endpoint that receives
/// a Close "MUST send a Close frame in response").
fn close_all(
    conns: &mut [Conn],
    poll: &mut Poll,
    events: &mut Events,
    opts: &Options,
    opcode: u8,
    outcome: &mut Outcome,
) {
    let until = Instant::now() + Duration::from_secs(5);
    let mut open = conns.iter().filter(|c| c.alive).count();
    while open > 0 && Instant::now() < until {
        let timeout = until.saturating_duration_since(Instant::now());
        if poll
            .poll(events, Some(timeout.min(Duration::from_millis(100))))
            .is_err()
        {
            break;
        }
        for event in events.iter() {
            let Some(conn) = conns.get_mut(event.token().0) else {
                continue;
            };
            if !conn.alive {
                continue;
            }
            // Nothing is counted any more: the window is over.
            let past = Instant::now() + Duration::from_secs(3600);
            match serve_event(conn, opts, opcode, (past, past, past), outcome, None) {
                Step::Open => continue,
                Step::Closed => {}
                Step::Failed => outcome.unclean_closes += 1,
            }
            conn.alive = false;
            open -= 1;
            let _ = poll.registry().deregister(&mut conn.stream);
        }
    }
    outcome.unclean_closes += open as u64;
}

/// Read everything available, check it, answer (the closed loop: with new
/// messages). `window` is (count from, count until, send until).
fn serve_event(
    conn: &mut Conn,
    opts: &Options,
    opcode: u8,
    (measure_from, count_until, end): (Instant, Instant, Instant),
    outcome: &mut Outcome,
    live: Option<&Live>,
) -> Step {
    let closed_loop = matches!(opts.pace, Pace::Inflight(_));
    loop {
        match conn.reader.read_from(&mut conn.stream) {
            Ok(0) => return Step::Failed,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Step::Failed,
        }
        loop {
            let pattern = &conn.pattern;
            let verdict = match conn
                .reader
                .next(|kind, payload| check(kind, payload, pattern, opcode))
            {
                Ok(Some(v)) => v,
                Ok(None) => break,
                Err(_) => return Step::Failed,
            };
            let now = Instant::now();
            match verdict {
                // After the drain, an echo is already counted lost.
                Verdict::Data { .. } if conn.close_sent => {}
                Verdict::Data { head, body_ok } => {
                    let full_head = conn.pattern.len() >= 8;
                    let named = seq_of(head, opts.text).filter(|_| full_head);
                    if let Some(seq) = named.filter(|s| *s != conn.next_recv) {
                        // Given up for lost when a later echo came first:
                        // it was late after all.
                        if conn.skipped.remove(&seq) {
                            outcome.lost = outcome.lost.saturating_sub(1);
                            outcome.out_of_order += 1;
                            continue;
                        }
                        // The echo of a later message: the ones before it
                        // are lost (or late, above).
                        if seq > conn.next_recv && seq < conn.next_send {
                            for missing in conn.next_recv..seq {
                                conn.sent_at.pop_front();
                                conn.skipped.insert(missing);
                                outcome.lost += 1;
                            }
                            conn.next_recv = seq;
                        }
                    }
                    let Some(sent) = conn.sent_at.pop_front() else {
                        // An echo of nothing we sent.
                        outcome.bad += 1;
                        continue;
                    };
                    let head_len = conn.pattern.len().min(8);
                    let intact = body_ok
                        && head[..head_len] == seq_bytes(conn.next_recv, opts.text)[..head_len];
                    conn.next_recv += 1;
                    if !intact {
                        outcome.bad += 1;
                    } else if now >= measure_from && now < count_until {
                        outcome.messages += 1;
                        outcome.latency.record((now - sent).as_nanos() as u64);
                        if let Some(live) = live {
                            live.delivered(1);
                        }
                    }
                    if closed_loop && now < end {
                        conn.queue_message(opcode, opts.text);
                        outcome.sent += 1;
                    }
                }
                Verdict::Ping(payload) => {
                    let key = ws::mask_key(&mut conn.rng);
                    ws::write_frame(&mut conn.out, true, op::PONG, &[&payload], key);
                }
                Verdict::Ignore => {}
                Verdict::Closed => return Step::Closed,
            }
        }
    }
    if conn.flush() {
        Step::Open
    } else {
        Step::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_read_back() {
        for seq in [0u64, 1, 255, 0xdead_beef] {
            assert_eq!(seq_of(seq_bytes(seq, true), true), Some(seq));
            assert_eq!(seq_of(seq_bytes(seq, false), false), Some(seq));
        }
        assert_eq!(seq_of(*b"not hex!", true), None);
    }

    #[test]
    fn patterns_differ_between_connections() {
        assert_ne!(pattern(1, 64, true), pattern(2, 64, true));
        assert!(pattern(3, 100, true).iter().all(u8::is_ascii_lowercase));
        assert_eq!(pattern(0, 5, false).len(), 5);
    }
}
