//! SocketBox chat load on `/ws`: sessions that AUTH, then either a
//! broadcast fan-out (one session sends BROADCAST 10003, the time until the
//! last of the others has it is measured) or peer traffic among users
//! (every delivered PEER 10002 makes its receiver send the next one to a
//! random user, so the number of messages in flight stays constant).
//!
//! The soak sends PEER messages at a fixed rate per user, to random others,
//! and accounts for every one: each arrives once, in order, intact.
//!
//! Every MESSAGE is checked: type, sender, recipient, data, and the
//! per-session `seq` that must grow by one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use crate::hist::Histogram;
use crate::procfs::{self, Sample};
use crate::soak::Live;
use crate::ws::{self, op, Incoming, Rng};

/// Codes of PROTOCOL.md.
mod code {
    pub const AUTH: i64 = 10000;
    pub const PEER: i64 = 10002;
    pub const BROADCAST: i64 = 10003;
    pub const CLIENT_PONG: i64 = 10016;
    pub const SERVER_PING: i64 = 476;
    pub const SYSTEM: i64 = 988;
    pub const MESSAGE: i64 = 1756;
    pub const AUTH_RESULT: i64 = 20002;
    pub const PEER_MESSAGE: i64 = 30001;
    pub const BROADCAST_MESSAGE: i64 = 30002;
}

/// One `/ws` session of the generator.
pub struct Session {
    stream: TcpStream,
    reader: ws::Reader,
    out: Vec<u8>,
    out_pos: usize,
    rng: Rng,
    /// Its user id.
    pub user: String,
    /// Which of the addresses it is connected to.
    pub node: usize,
    authed: bool,
    last_seq: u64,
    alive: bool,
    close_sent: bool,
}

impl Session {
    fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string());
    }

    fn send_text(&mut self, text: &str) {
        let key = ws::mask_key(&mut self.rng);
        ws::write_frame(&mut self.out, true, op::TEXT, &[text.as_bytes()], key);
    }

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

/// Counters every chat run keeps.
#[derive(Debug, Default)]
pub struct Errors {
    /// Sessions that failed to connect, authenticate, or died.
    pub sessions: u64,
    /// Messages that were wrong (fields, order, seq) or ERROR replies.
    pub bad: u64,
    /// Messages that never arrived.
    pub lost: u64,
}

impl Errors {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.sessions + self.bad + self.lost
    }
}

/// A set of authenticated sessions and their event loop.
pub struct Crowd {
    poll: Poll,
    events: Events,
    /// The sessions.
    pub sessions: Vec<Session>,
    /// What went wrong so far.
    pub errors: Errors,
    reported: u64,
}

/// What a handler wants done with a text message.
fn parse(payload: &[u8]) -> Option<Value> {
    serde_json::from_slice(payload).ok()
}

/// How fast sessions are opened.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    /// Sessions opened per second at most.
    pub per_second: f64,
    /// Time one connection may take to open.
    pub timeout: Duration,
}

impl Opening {
    /// As fast as four threads can, 10 s for each.
    pub const FAST: Opening = Opening {
        per_second: f64::INFINITY,
        timeout: Duration::from_secs(10),
    };
}

/// What the sessions of a crowd speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// The SocketBox protocol on `/ws`: AUTH first, JSON messages.
    Chat,
    /// Plain WebSocket text, relayed as is (a broadcast server).
    Plain,
}

/// What one frame from the server is to a session.
enum Frame {
    Text(Vec<u8>),
    Control,
    Close,
    Binary,
}

impl Crowd {
    /// Connect `count` sessions named `{prefix}{i}` and AUTH them all.
    pub fn connect(
        addr: SocketAddr,
        path: &str,
        prefix: &str,
        count: usize,
        opening: Opening,
    ) -> io::Result<Crowd> {
        Crowd::open(&[addr], path, prefix, count, opening, Flavour::Chat)
    }

    /// Like [`Crowd::connect`], session `i` on `addrs[i % addrs.len()]`
    /// (several SocketBox nodes sharing a Redis).
    pub fn connect_spread(
        addrs: &[SocketAddr],
        path: &str,
        prefix: &str,
        count: usize,
        opening: Opening,
    ) -> io::Result<Crowd> {
        Crowd::open(addrs, path, prefix, count, opening, Flavour::Chat)
    }

    /// Connect `count` plain WebSocket connections (no AUTH, no protocol
    /// on top), for servers that only relay what they get.
    pub fn connect_plain(
        addr: SocketAddr,
        path: &str,
        count: usize,
        opening: Opening,
    ) -> io::Result<Crowd> {
        Crowd::open(&[addr], path, "plain", count, opening, Flavour::Plain)
    }

    fn open(
        addrs: &[SocketAddr],
        path: &str,
        prefix: &str,
        count: usize,
        opening: Opening,
        flavour: Flavour,
    ) -> io::Result<Crowd> {
        let openers = 4.min(count.max(1));
        let started = Instant::now();
        let opened: Vec<Vec<(usize, StdStream, Vec<u8>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..openers)
                .map(|t| {
                    scope.spawn(move || {
                        let mut rng = Rng::new(0xc4a7 + t as u64);
                        let mut held = Vec::new();
                        for i in (t..count).step_by(openers) {
                            if opening.per_second.is_finite() {
                                let due = started
                                    + Duration::from_secs_f64(i as f64 / opening.per_second);
                                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            }
                            let user = format!("{prefix}{i}");
                            let addr = addrs[i % addrs.len()];
                            match ws::connect(addr, path, &mut rng, opening.timeout) {
                                Ok((mut stream, leftover)) => {
                                    let mut frame = Vec::new();
                                    if flavour == Flavour::Chat {
                                        let auth =
                                            json!({"code": code::AUTH, "id": user}).to_string();
                                        ws::write_frame(
                                            &mut frame,
                                            true,
                                            op::TEXT,
                                            &[auth.as_bytes()],
                                            ws::mask_key(&mut rng),
                                        );
                                    }
                                    if stream.write_all(&frame).is_ok()
                                        && stream.set_nonblocking(true).is_ok()
                                    {
                                        held.push((i, stream, leftover));
                                    }
                                }
                                Err(e) => eprintln!("loadgen chat: session {i}: {e}"),
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
        let mut all: Vec<(usize, StdStream, Vec<u8>)> = opened.into_iter().flatten().collect();
        all.sort_by_key(|(i, _, _)| *i);
        let poll = Poll::new()?;
        let mut errors = Errors {
            sessions: (count - all.len()) as u64,
            ..Errors::default()
        };
        let mut sessions = Vec::with_capacity(all.len());
        for (i, stream, leftover) in all {
            let mut stream = TcpStream::from_std(stream);
            let token = Token(sessions.len());
            if poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                errors.sessions += 1;
                continue;
            }
            let mut reader = ws::Reader::new(1 << 20);
            reader.push(&leftover);
            sessions.push(Session {
                stream,
                reader,
                out: Vec::new(),
                out_pos: 0,
                rng: Rng::new(0xabc0 + i as u64),
                user: format!("{prefix}{i}"),
                node: i % addrs.len(),
                authed: flavour == Flavour::Plain,
                last_seq: 0,
                alive: true,
                close_sent: false,
            });
        }
        let mut crowd = Crowd {
            poll,
            events: Events::with_capacity(4096),
            sessions,
            errors,
            reported: 0,
        };
        // Every session must get its 20002 true.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let waiting = crowd
                .sessions
                .iter()
                .filter(|s| s.alive && !s.authed)
                .count();
            if waiting == 0 || Instant::now() >= deadline {
                crowd.errors.sessions += waiting as u64;
                break;
            }
            crowd.pump(Duration::from_millis(100), |crowd, i, _, payload| {
                if crowd.common(i, parse(payload)).is_some() {
                    crowd.errors.bad += 1;
                    crowd.complain("a MESSAGE before any was sent");
                }
            });
        }
        Ok(crowd)
    }

    /// Sessions open and authenticated.
    pub fn authed(&self) -> usize {
        self.sessions.iter().filter(|s| s.alive && s.authed).count()
    }

    fn complain(&mut self, what: &str) {
        if self.reported < 5 {
            eprintln!("loadgen chat: {what}");
        }
        self.reported += 1;
    }

    /// The default handling of one server message: AUTH results, server
    /// pings, presence, errors, and `seq` of MESSAGEs. Returns the value
    /// when it is a MESSAGE for the caller to check further.
    pub fn common(&mut self, index: usize, value: Option<Value>) -> Option<Value> {
        let Some(value) = value else {
            self.errors.bad += 1;
            self.complain("a text message that is not JSON");
            return None;
        };
        let session = &mut self.sessions[index];
        match value["code"].as_i64() {
            Some(code::SYSTEM) => {
                if value["extend"]["code"].as_i64() == Some(code::AUTH_RESULT) {
                    if value["extend"]["mess"] == Value::Bool(true) {
                        session.authed = true;
                    } else {
                        self.errors.sessions += 1;
                        self.complain("AUTH refused");
                    }
                }
                None
            }
            Some(code::SERVER_PING) => {
                session.send_json(&json!({"code": code::CLIENT_PONG}));
                None
            }
            Some(code::MESSAGE) => {
                let seq = value["body"]["seq"].as_u64();
                if seq != Some(session.last_seq + 1) {
                    let what = format!("{}: seq {seq:?} after {}", session.user, session.last_seq);
                    self.errors.bad += 1;
                    self.complain(&what);
                }
                if let Some(seq) = seq {
                    self.sessions[index].last_seq = seq;
                }
                Some(value)
            }
            _ => {
                self.errors.bad += 1;
                let what = format!("unexpected {value}");
                self.complain(&what);
                None
            }
        }
    }

    /// Wait up to `timeout` for events and hand every text message to
    /// `handler(crowd, index, time read, payload)`.
    pub fn pump(
        &mut self,
        timeout: Duration,
        mut handler: impl FnMut(&mut Crowd, usize, Instant, &[u8]),
    ) {
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        if self.poll.poll(&mut events, Some(timeout)).is_err() {
            self.events = events;
            return;
        }
        for event in events.iter() {
            let index = event.token().0;
            if !self.sessions.get(index).is_some_and(|s| s.alive) {
                continue;
            }
            let mut ok = true;
            let mut closed = false;
            'read: loop {
                let session = &mut self.sessions[index];
                match session.reader.read_from(&mut session.stream) {
                    Ok(0) => {
                        ok = false;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
                let now = Instant::now();
                loop {
                    let session = &mut self.sessions[index];
                    let next = session.reader.next(|kind, payload| match kind {
                        Incoming::Data(op::TEXT) => Frame::Text(payload.to_vec()),
                        Incoming::Ping => {
                            let key = ws::mask_key(&mut session.rng);
                            ws::write_frame(&mut session.out, true, op::PONG, &[payload], key);
                            Frame::Control
                        }
                        Incoming::Pong => Frame::Control,
                        Incoming::Close => Frame::Close,
                        Incoming::Data(_) => Frame::Binary,
                    });
                    match next {
                        Ok(Some(Frame::Text(payload))) => handler(self, index, now, &payload),
                        Ok(Some(Frame::Control)) => {}
                        Ok(None) => break,
                        // The answer to our Close ends the session cleanly.
                        Ok(Some(Frame::Close)) if self.sessions[index].close_sent => {
                            closed = true;
                            break 'read;
                        }
                        Ok(Some(Frame::Close | Frame::Binary)) | Err(_) => {
                            ok = false;
                            break 'read;
                        }
                    }
                }
            }
            if closed {
                self.drop_session(index);
            } else if !ok || !self.sessions[index].flush() {
                self.fail_session(index);
            }
        }
        self.events = events;
    }

    /// Never read session `index` again, keeping its socket open: a client
    /// that stopped reading. It no longer counts as alive.
    pub fn stop_reading(&mut self, index: usize) {
        self.drop_session(index);
    }

    /// Stop watching session `index`.
    fn drop_session(&mut self, index: usize) {
        let session = &mut self.sessions[index];
        session.alive = false;
        let _ = self.poll.registry().deregister(&mut session.stream);
    }

    /// Session `index` died: count it.
    fn fail_session(&mut self, index: usize) {
        self.drop_session(index);
        self.errors.sessions += 1;
        let what = format!("session {} closed", self.sessions[index].user);
        self.complain(&what);
    }

    /// Pump with the default handling until `quiet` passes with no message,
    /// at most `limit` in all.
    pub fn settle(&mut self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = Instant::now();
        while Instant::now() < deadline && last.elapsed() < quiet {
            self.pump(Duration::from_millis(50), |crowd, i, now, payload| {
                last = now;
                if crowd.common(i, parse(payload)).is_some() {
                    crowd.errors.bad += 1;
                    crowd.complain("a MESSAGE nobody sent");
                }
            });
        }
    }

    /// The closing handshake on every live session: send Close, then wait
    /// up to `limit` for each server's Close (RFC 6455 5.5.1: the receiver
    /// of a Close "MUST send a Close frame in response"), handing what
    /// still arrives to `handler`. Returns how many never answered.
    pub fn close_checked(
        &mut self,
        limit: Duration,
        mut handler: impl FnMut(&mut Crowd, usize, Instant, &[u8]),
    ) -> u64 {
        for index in 0..self.sessions.len() {
            self.begin_close(index);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && self.sessions.iter().any(|s| s.alive) {
            self.pump(Duration::from_millis(50), &mut handler);
        }
        let mut unanswered = 0;
        for index in 0..self.sessions.len() {
            if self.sessions[index].alive {
                self.drop_session(index);
                unanswered += 1;
            }
        }
        unanswered
    }

    /// Queue `value` on session `index` and send what its socket takes.
    pub fn send_to(&mut self, index: usize, value: &Value) {
        let session = &mut self.sessions[index];
        if !session.alive {
            return;
        }
        session.send_json(value);
        if !session.flush() {
            self.fail_session(index);
        }
    }

    /// Start the closing handshake on session `index` (a logout); the
    /// server's Close, read by [`Crowd::pump`], ends it.
    pub fn begin_close(&mut self, index: usize) {
        let session = &mut self.sessions[index];
        if !session.alive || session.close_sent {
            return;
        }
        session.close_sent = true;
        let close = ws::close_frame(&mut session.rng);
        session.out.extend_from_slice(&close);
        if !session.flush() {
            self.fail_session(index);
        }
    }

    /// Sessions still open.
    pub fn alive(&self) -> usize {
        self.sessions.iter().filter(|s| s.alive).count()
    }

    /// Send Close on every session and let them go.
    pub fn close(mut self) {
        for session in self.sessions.iter_mut().filter(|s| s.alive) {
            let close = ws::close_frame(&mut session.rng);
            let _ = session.stream.write(&close);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Result of a fan-out run.
#[derive(Debug, Default)]
pub struct FanoutOutcome {
    /// Time until the last delivery, per round, in nanoseconds.
    pub last: Vec<u64>,
    /// Delivery times of all receivers in all rounds.
    pub deliveries: Histogram,
    /// Errors.
    pub errors: Errors,
    /// Sessions that received (the broadcaster excluded).
    pub receivers: usize,
    /// The server and the system before connecting and once every session
    /// is connected (and, for the chat, authenticated) and quiet.
    pub memory: Option<(Sample, Sample)>,
    /// With stopped receivers: what became of them.
    pub stopped: Option<StoppedOutcome>,
    /// CPU seconds used over all the rounds (the server's, with `pid`, and
    /// this process's own): what a delivery costs the machine, which on a
    /// machine of few cores bounds the last delivery from below.
    pub cpu: Option<RoundsCpu>,
}

/// CPU time used over the rounds of a fan-out.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundsCpu {
    /// The server's user + system seconds.
    pub server: f64,
    /// The load generator's own.
    pub loadgen: f64,
}

/// What a fan-out run asks for.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// The server, or the nodes to spread the sessions over.
    pub addrs: Vec<SocketAddr>,
    /// The endpoint: `/ws` for the chat, whatever a broadcast server serves.
    pub path: String,
    /// The chat's BROADCAST, or a plain text a broadcast server relays.
    pub flavour: Flavour,
    /// Id prefix (chat).
    pub prefix: String,
    /// Sessions besides the sender.
    pub receivers: usize,
    /// Broadcasts sent, one at a time.
    pub rounds: usize,
    /// The server's process, for the memory readings (0: none).
    pub pid: u32,
    /// Receivers (the first ones after the sender) that never read again
    /// once authenticated: their sockets stay open, unpolled.
    pub stopped: usize,
    /// Bytes of filler added to each broadcast's data (0: the token only).
    pub size: usize,
}

/// What happened to the stopped receivers, and the server's memory.
#[derive(Debug, Default)]
pub struct StoppedOutcome {
    /// Stopped receivers whose stream ended with the server's Close 1008
    /// (a slow consumer dropped, PROTOCOL.md) and then EOF.
    pub dropped: usize,
    /// Stopped receivers whose stream ended otherwise: EOF or a reset
    /// without a Close, or a Close with another code (listed).
    pub ended_otherwise: usize,
    /// The codes of those other Closes.
    pub other_codes: Vec<u16>,
    /// Of those ended otherwise, how many by a reset (the rest: EOF).
    pub reset: usize,
    /// Stopped receivers still open: everything they had been sent was
    /// read and nothing more came for [`QUIET_OPEN`].
    pub open: usize,
    /// The server's RSS after the last round, once the stopped were drained.
    pub rss_after_kib: u64,
    /// The highest RSS sampled after each round.
    pub rss_peak_kib: u64,
}

/// How a stopped receiver's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoppedEnd {
    /// A Close frame with this code (0: none in it), then EOF or reset.
    Closed(u16),
    /// EOF (false) or a reset (true) with no Close frame before it.
    Cut(bool),
    /// Still open.
    Open,
}

/// A stopped receiver counts as still open once it has read everything
/// and nothing more arrived for this long: a server that dropped it sent
/// its Close and FIN during the rounds, so they would be in the pipe.
const QUIET_OPEN: Duration = Duration::from_secs(1);

/// Read what a stopped receiver's socket holds, frame by frame, until the
/// stream ends, it stays quiet for [`QUIET_OPEN`], or `deadline` passes.
fn drain_stopped(session: &mut Session, deadline: Instant) -> StoppedEnd {
    let mut close = None;
    let mut quiet_since = Instant::now();
    loop {
        loop {
            let frame = session.reader.next(|kind, payload| {
                (kind == ws::Incoming::Close).then(|| match payload {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 0,
                })
            });
            match frame {
                Ok(Some(Some(code))) => close = close.or(Some(code)),
                Ok(Some(None)) => {}
                // Bytes that are not frames: count it as cut.
                Err(_) => return StoppedEnd::Cut(false),
                Ok(None) => break,
            }
        }
        match session.reader.read_from(&mut session.stream) {
            Ok(0) => return close.map_or(StoppedEnd::Cut(false), StoppedEnd::Closed),
            Ok(_) => quiet_since = Instant::now(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                if now >= deadline || now - quiet_since >= QUIET_OPEN {
                    return StoppedEnd::Open;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return close.map_or(StoppedEnd::Cut(true), StoppedEnd::Closed),
        }
    }
}

/// Broadcast from session 0 to `receivers` sessions, `rounds` times.
/// With several `addrs` (chat only), the sessions are spread over them.
pub fn fanout(o: &FanoutOptions) -> io::Result<FanoutOutcome> {
    let before = (o.pid != 0).then(|| procfs::sample(o.pid));
    let count = o.receivers + 1;
    let mut crowd = match o.flavour {
        Flavour::Chat => Crowd::connect_spread(&o.addrs, &o.path, &o.prefix, count, Opening::FAST)?,
        Flavour::Plain => Crowd::connect_plain(o.addrs[0], &o.path, count, Opening::FAST)?,
    };
    crowd.settle(Duration::from_millis(1500), Duration::from_secs(30));
    // The stopped receivers: no longer polled, so never read again.
    let stopped_count = o.stopped.min(crowd.sessions.len().saturating_sub(1));
    for index in 1..=stopped_count {
        crowd.stop_reading(index);
    }
    let filler = "x".repeat(o.size);
    let mut outcome = FanoutOutcome {
        receivers: crowd.sessions.len().saturating_sub(1),
        memory: before.map(|before| (before, procfs::sample(o.pid))),
        ..FanoutOutcome::default()
    };
    let count = crowd.sessions.len();
    let prefix = &o.prefix;
    let cpu_before = (o.pid != 0).then(|| (procfs::cpu_seconds(o.pid), procfs::own_cpu_seconds()));
    for round in 0..o.rounds {
        let token = format!("fanout-{prefix}-{round}");
        let mut got: Vec<Option<Instant>> = vec![None; count];
        let mut stored: Vec<(usize, Vec<u8>)> = Vec::with_capacity(count);
        let mut pending = (stopped_count + 1..count)
            .filter(|&i| crowd.sessions[i].alive)
            .count();
        let data = format!("{token}{filler}");
        let t0 = Instant::now();
        match o.flavour {
            Flavour::Chat => {
                crowd.sessions[0].send_json(&json!({"code": code::BROADCAST, "data": data}))
            }
            Flavour::Plain => crowd.sessions[0].send_text(&data),
        }
        if !crowd.sessions[0].flush() {
            crowd.errors.sessions += 1;
            break;
        }
        let deadline = t0 + Duration::from_secs(10);
        // The sender's socket may not take a large broadcast at once.
        while !crowd.sessions[0].out.is_empty() && Instant::now() < deadline {
            if !crowd.sessions[0].flush() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        while pending > 0 && Instant::now() < deadline {
            crowd.pump(Duration::from_millis(20), |_, i, now, payload| {
                // Check later: parsing here would delay reading the rest.
                if got[i].is_none() && ws::find(payload, token.as_bytes()).is_some() {
                    got[i] = Some(now);
                    pending = pending.saturating_sub(1);
                }
                stored.push((i, payload.to_vec()));
            });
        }
        if o.flavour == Flavour::Plain {
            for (i, payload) in stored {
                if i == 0 || payload != data.as_bytes() {
                    crowd.errors.bad += 1;
                    let what = format!("wrong relay to {i}: {}", String::from_utf8_lossy(&payload));
                    crowd.complain(&what);
                }
            }
            stored = Vec::new();
        }
        let from = crowd.sessions[0].user.clone();
        for (i, payload) in stored {
            let Some(message) = crowd.common(i, parse(&payload)) else {
                continue;
            };
            let body = &message["body"];
            let right = i != 0
                && body["type"].as_i64() == Some(code::BROADCAST_MESSAGE)
                && body["data"].as_str() == Some(data.as_str())
                && body["from"].as_str() == Some(from.as_str());
            if !right {
                crowd.errors.bad += 1;
                crowd.complain(&format!("wrong broadcast: {message}"));
            }
        }
        let mut last = 0;
        for (i, when) in got.iter().enumerate().skip(1 + stopped_count) {
            match when {
                Some(when) => {
                    let nanos = (*when - t0).as_nanos() as u64;
                    last = last.max(nanos);
                    outcome.deliveries.record(nanos);
                }
                None if crowd.sessions[i].alive => crowd.errors.lost += 1,
                None => {}
            }
        }
        outcome.last.push(last);
        crowd.settle(Duration::from_millis(200), Duration::from_secs(2));
        if o.pid != 0 && stopped_count > 0 {
            let rss = procfs::sample(o.pid).rss_kib;
            let stopped = outcome.stopped.get_or_insert_with(StoppedOutcome::default);
            stopped.rss_peak_kib = stopped.rss_peak_kib.max(rss);
        }
    }
    outcome.cpu = cpu_before.map(|(server, loadgen)| RoundsCpu {
        server: procfs::cpu_seconds(o.pid) - server,
        loadgen: procfs::own_cpu_seconds() - loadgen,
    });
    if stopped_count > 0 {
        // Drained side by side: one at a time, the first sockets' megabytes
        // used up the time of the last ones, which then counted as open.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stopped = outcome.stopped.take().unwrap_or_default();
        let stopped_sessions = &mut crowd.sessions[1..=stopped_count];
        let per_thread = stopped_sessions.len().div_ceil(32);
        let ends: Vec<StoppedEnd> = std::thread::scope(|scope| {
            let workers: Vec<_> = stopped_sessions
                .chunks_mut(per_thread)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter_mut()
                            .map(|session| drain_stopped(session, deadline))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().unwrap_or_default())
                .collect()
        });
        for end in ends {
            match end {
                StoppedEnd::Closed(1008) => stopped.dropped += 1,
                StoppedEnd::Closed(code) => {
                    stopped.ended_otherwise += 1;
                    stopped.other_codes.push(code);
                }
                StoppedEnd::Cut(reset) => {
                    stopped.ended_otherwise += 1;
                    stopped.reset += usize::from(reset);
                }
                StoppedEnd::Open => stopped.open += 1,
            }
        }
        if o.pid != 0 {
            std::thread::sleep(Duration::from_millis(500));
            stopped.rss_after_kib = procfs::sample(o.pid).rss_kib;
        }
        outcome.stopped = Some(stopped);
    }
    outcome.errors = std::mem::take(&mut crowd.errors);
    crowd.close();
    Ok(outcome)
}

/// Result of a peer-traffic run.
#[derive(Debug, Default)]
pub struct PeersOutcome {
    /// Checked deliveries inside the window.
    pub delivered: u64,
    /// Send-to-delivery latency.
    pub latency: Histogram,
    /// Errors.
    pub errors: Errors,
    /// CPU seconds used inside the window, with the server's `pid`.
    pub cpu: Option<RoundsCpu>,
}

/// `users` sessions; each starts `depth` PEER messages to random others and
/// sends a new one for each it receives. With several `addrs` the sessions
/// are spread over them and every message goes to a session on another.
pub fn peers(
    addrs: &[SocketAddr],
    prefix: &str,
    users: usize,
    depth: usize,
    warmup: Duration,
    duration: Duration,
    pid: u32,
) -> io::Result<PeersOutcome> {
    let mut crowd = Crowd::connect_spread(addrs, "/ws", prefix, users, Opening::FAST)?;
    crowd.settle(Duration::from_millis(1500), Duration::from_secs(30));
    let mut outcome = PeersOutcome::default();
    let base = Instant::now();
    let count = crowd.sessions.len();
    if count < 2 {
        outcome.errors = crowd.errors;
        return Ok(outcome);
    }
    let mut rng = Rng::new(99);
    let spread = crowd.sessions.iter().any(|s| s.node != 0);
    let send_one = |crowd: &mut Crowd, from: usize, rng: &mut Rng, sent: &mut u64| {
        let mut to = rng.below(count as u64 - 1) as usize;
        if to >= from {
            to += 1;
        }
        // Across nodes, when there are several.
        while spread && crowd.sessions[to].node == crowd.sessions[from].node {
            to = rng.below(count as u64) as usize;
        }
        let message = json!({"code": code::PEER, "data": {
            "to": crowd.sessions[to].user, "t": base.elapsed().as_nanos() as u64, "f": from}});
        crowd.sessions[from].send_json(&message);
        *sent += 1;
    };
    let mut sent = 0u64;
    let mut received = 0u64;
    for from in 0..count {
        for _ in 0..depth {
            send_one(&mut crowd, from, &mut rng, &mut sent);
        }
        crowd.sessions[from].flush();
    }
    let measure_from = base + warmup;
    let end = measure_from + duration;
    let drain_until = end + Duration::from_secs(3);
    let cpu_now = || (procfs::cpu_seconds(pid), procfs::own_cpu_seconds());
    let mut cpu_from = None;
    while Instant::now() < drain_until
        && (Instant::now() < end || received + crowd.errors.bad < sent)
    {
        let sending = Instant::now() < end;
        if pid != 0 {
            if cpu_from.is_none() && Instant::now() >= measure_from {
                cpu_from = Some(cpu_now());
            }
            if let (Some((server, loadgen)), false, None) = (cpu_from, sending, outcome.cpu) {
                let (server_now, loadgen_now) = cpu_now();
                outcome.cpu = Some(RoundsCpu {
                    server: server_now - server,
                    loadgen: loadgen_now - loadgen,
                });
            }
        }
        crowd.pump(Duration::from_millis(20), |crowd, i, now, payload| {
            let Some(message) = crowd.common(i, parse(payload)) else {
                return;
            };
            let body = &message["body"];
            let right = body["type"].as_i64() == Some(code::PEER_MESSAGE)
                && body["to"].as_str() == Some(crowd.sessions[i].user.as_str());
            let sender = body["data"]["f"].as_u64().unwrap_or(u64::MAX) as usize;
            let right = right
                && crowd
                    .sessions
                    .get(sender)
                    .is_some_and(|s| body["from"].as_str() == Some(s.user.as_str()));
            received += 1;
            if !right {
                crowd.errors.bad += 1;
                crowd.complain(&format!("wrong peer message: {message}"));
            } else if now >= measure_from && now < end {
                outcome.delivered += 1;
                let t = body["data"]["t"].as_u64().unwrap_or(0);
                let at = (now - base).as_nanos() as u64;
                outcome.latency.record(at.saturating_sub(t));
            }
            if sending {
                send_one(crowd, i, &mut rng, &mut sent);
            }
        });
    }
    crowd.errors.lost += sent.saturating_sub(received);
    outcome.errors = std::mem::take(&mut crowd.errors);
    crowd.close();
    Ok(outcome)
}

/// What a chat soak asks for.
#[derive(Debug, Clone, Copy)]
pub struct SoakOptions {
    /// PEER messages per second per user.
    pub rate: f64,
    /// Characters of text in each.
    pub size: usize,
    /// Time the users send for.
    pub duration: Duration,
    /// Time after it for the last deliveries.
    pub drain: Duration,
}

/// What a chat soak saw.
#[derive(Debug, Default)]
pub struct SoakOutcome {
    /// PEER messages sent.
    pub sent: u64,
    /// Delivered intact, once, in their sender's order.
    pub delivered: u64,
    /// Send-to-delivery latency of those.
    pub latency: Histogram,
    /// Deliveries whose `k` was not above the last one from that sender
    /// (a duplicate, or one that came late).
    pub duplicated: u64,
    /// Deliveries that skipped a `k` from that sender.
    pub out_of_order: u64,
    /// Deliveries with the wrong type, sender, recipient or text.
    pub corrupt: u64,
    /// Sessions that did not answer the closing Close.
    pub unclean_closes: u64,
    /// Sessions lost, other wrong messages (`seq` gaps, ERROR answers), and
    /// messages sent and never delivered.
    pub errors: Errors,
}

/// The messages from one user to another.
#[derive(Debug, Default, Clone, Copy)]
struct Pair {
    sent: u64,
    got: u64,
    last_k: u64,
}

/// The text of message `k` from session `from` to session `to`.
fn soak_text(from: usize, to: usize, k: u64, size: usize) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = Rng::new((from as u64) << 40 ^ (to as u64) << 20 ^ k);
    (0..size)
        .map(|_| ALNUM[rng.below(ALNUM.len() as u64) as usize] as char)
        .collect()
}

/// The receiving side of a soak.
struct Ledger<'a> {
    pairs: HashMap<(usize, usize), Pair>,
    /// Every PEER MESSAGE that arrived, intact or not.
    arrived: u64,
    base: Instant,
    size: usize,
    live: Option<&'a Live>,
    outcome: SoakOutcome,
}

impl Ledger<'_> {
    fn receive(&mut self, crowd: &mut Crowd, to: usize, now: Instant, payload: &[u8]) {
        let Some(message) = crowd.common(to, parse(payload)) else {
            return;
        };
        self.arrived += 1;
        let body = &message["body"];
        let data = &body["data"];
        let from = data["f"].as_u64().map(|f| f as usize);
        let addressed = body["type"].as_i64() == Some(code::PEER_MESSAGE)
            && body["to"].as_str() == Some(crowd.sessions[to].user.as_str())
            && from
                .and_then(|f| crowd.sessions.get(f))
                .map(|s| s.user.as_str())
                == body["from"].as_str();
        let (Some(from), Some(k), Some(t), Some(text), true) = (
            from,
            data["k"].as_u64(),
            data["t"].as_u64(),
            data["p"].as_str(),
            addressed,
        ) else {
            self.outcome.corrupt += 1;
            crowd.complain(&format!("wrong peer message: {message}"));
            return;
        };
        let pair = self.pairs.entry((from, to)).or_default();
        pair.got += 1;
        if k <= pair.last_k {
            self.outcome.duplicated += 1;
            return;
        }
        if k != pair.last_k + 1 {
            self.outcome.out_of_order += 1;
        }
        pair.last_k = k;
        if text != soak_text(from, to, k, self.size) {
            self.outcome.corrupt += 1;
            crowd.complain(&format!("wrong text from {from} to {to}, message {k}"));
            return;
        }
        self.outcome.delivered += 1;
        let at = (now - self.base).as_nanos() as u64;
        self.outcome.latency.record(at.saturating_sub(t));
        if let Some(live) = self.live {
            live.delivered(1);
        }
    }
}

/// Every authenticated session sends PEER messages at `o.rate` per second
/// to random others for `o.duration`; everything delivered is checked and
/// accounted for per sender and recipient. Ends with the closing handshake.
pub fn soak(crowd: &mut Crowd, o: &SoakOptions, live: Option<&Live>) -> SoakOutcome {
    let base = Instant::now();
    let start = base + Duration::from_millis(50);
    let end = start + o.duration;
    let drain_until = end + o.drain;
    let senders: Vec<usize> = (0..crowd.sessions.len())
        .filter(|&i| crowd.sessions[i].alive && crowd.sessions[i].authed)
        .collect();
    let interval = Duration::from_secs_f64(1.0 / o.rate.max(1e-9));
    let mut rng = Rng::new(0x50a4);
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    if o.rate > 0.0 && senders.len() >= 2 {
        for &i in &senders {
            let first = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            due.push(Reverse((start + interval.mul_f64(first), i)));
        }
    }
    let mut ledger = Ledger {
        pairs: HashMap::new(),
        arrived: 0,
        base,
        size: o.size,
        live,
        outcome: SoakOutcome::default(),
    };
    loop {
        let now = Instant::now();
        while let Some(&Reverse((at, from))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            if at + interval < end {
                due.push(Reverse((at + interval, from)));
            }
            if !crowd.sessions[from].alive {
                continue;
            }
            let to = loop {
                let to = senders[rng.below(senders.len() as u64) as usize];
                if to != from {
                    break to;
                }
            };
            let pair = ledger.pairs.entry((from, to)).or_default();
            pair.sent += 1;
            let message = json!({"code": code::PEER, "data": {
                "to": crowd.sessions[to].user, "f": from, "k": pair.sent,
                "t": base.elapsed().as_nanos() as u64, "p": soak_text(from, to, pair.sent, o.size)}});
            crowd.sessions[from].send_json(&message);
            ledger.outcome.sent += 1;
            if let Some(live) = live {
                live.sent(1);
            }
            if !crowd.sessions[from].flush() {
                crowd.fail_session(from);
            }
        }
        if now >= end && (ledger.arrived >= ledger.outcome.sent || now >= drain_until) {
            break;
        }
        let wake = match due.peek() {
            Some(Reverse((at, _))) => *at,
            None => drain_until,
        };
        let timeout = wake
            .saturating_duration_since(now)
            .min(Duration::from_millis(50));
        crowd.pump(timeout, |crowd, i, now, payload| {
            ledger.receive(crowd, i, now, payload)
        });
    }
    ledger.outcome.unclean_closes = crowd
        .close_checked(Duration::from_secs(5), |crowd, i, now, payload| {
            ledger.receive(crowd, i, now, payload)
        });
    let lost: u64 = ledger
        .pairs
        .values()
        .map(|p| p.sent.saturating_sub(p.got))
        .sum();
    let mut outcome = ledger.outcome;
    outcome.errors = std::mem::take(&mut crowd.errors);
    outcome.errors.lost += lost;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_texts_are_fixed_per_message_and_differ() {
        let a = soak_text(1, 2, 3, 64);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(a, soak_text(1, 2, 3, 64));
        assert_ne!(a, soak_text(1, 2, 4, 64));
        assert_ne!(a, soak_text(2, 1, 3, 64));
    }
}

/// Result of an idle-sessions run.
#[derive(Debug, Default)]
pub struct IdleOutcome {
    /// Before opening.
    pub before: crate::procfs::Sample,
    /// After every session authenticated and the online counts settled.
    pub open: crate::procfs::Sample,
    /// After every session answered one PING 10015.
    pub checked: crate::procfs::Sample,
    /// Sessions authenticated.
    pub authed: usize,
    /// Sessions that answered PING 10015 with PONG 732.
    pub alive: usize,
    /// Errors.
    pub errors: Errors,
    /// Seconds spent opening and authenticating.
    pub open_secs: f64,
}

/// `sessions` authenticated `/ws` sessions that sit idle; the server
/// process `pid` is read before, once they are authenticated and quiet,
/// and after each has been proved alive (PING 10015 answered by PONG 732).
pub fn idle(addr: SocketAddr, sessions: usize, pid: u32, settle: Duration) -> IdleOutcome {
    const CLIENT_PING: i64 = 10015;
    const PONG: i64 = 732;
    let mut outcome = IdleOutcome {
        before: crate::procfs::sample(pid),
        ..IdleOutcome::default()
    };
    let started = Instant::now();
    let mut crowd = match Crowd::connect(addr, "/ws", "idle", sessions, Opening::FAST) {
        Ok(crowd) => crowd,
        Err(e) => {
            eprintln!("loadgen chat-idle: {e}");
            outcome.errors.sessions = sessions as u64;
            return outcome;
        }
    };
    crowd.settle(Duration::from_secs(2), Duration::from_secs(60));
    outcome.open_secs = started.elapsed().as_secs_f64();
    outcome.authed = crowd.authed();
    std::thread::sleep(settle);
    outcome.open = crate::procfs::sample(pid);
    let mut ponged = vec![false; crowd.sessions.len()];
    for index in 0..crowd.sessions.len() {
        let session = &mut crowd.sessions[index];
        if session.alive {
            session.send_json(&json!({"code": CLIENT_PING}));
            if !session.flush() {
                crowd.fail_session(index);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut alive = 0;
    while Instant::now() < deadline && alive < outcome.authed {
        crowd.pump(Duration::from_millis(50), |crowd, i, _, payload| {
            let value = parse(payload);
            if value.as_ref().and_then(|v| v["code"].as_i64()) == Some(PONG) {
                if !std::mem::replace(&mut ponged[i], true) {
                    alive += 1;
                }
            } else if crowd.common(i, value).is_some() {
                crowd.errors.bad += 1;
                crowd.complain("a MESSAGE nobody sent");
            }
        });
        // Sessions whose PING did not fit the socket at once.
        for session in crowd.sessions.iter_mut().filter(|s| s.alive) {
            let _ = session.flush();
        }
    }
    outcome.alive = alive;
    std::thread::sleep(settle);
    outcome.checked = crate::procfs::sample(pid);
    outcome.errors.lost += (outcome.authed - alive) as u64;
    outcome.errors.sessions += (sessions - outcome.authed) as u64;
    let errors = std::mem::take(&mut crowd.errors);
    outcome.errors.bad += errors.bad;
    crowd.close();
    outcome
}
