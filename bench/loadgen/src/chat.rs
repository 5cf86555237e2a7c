//! SocketBox chat load on `/ws`: sessions that AUTH, then either a
//! broadcast fan-out (one session sends BROADCAST 10003, the time until the
//! last of the others has it is measured) or peer traffic among users
//! (every delivered PEER 10002 makes its receiver send the next one to a
//! random user, so the number of messages in flight stays constant).
//!
//! Every MESSAGE is checked: type, sender, recipient, data, and the
//! per-session `seq` that must grow by one.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use crate::hist::Histogram;
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
    authed: bool,
    last_seq: u64,
    alive: bool,
}

impl Session {
    fn send_json(&mut self, value: &Value) {
        let text = value.to_string();
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

impl Crowd {
    /// Connect `count` sessions named `{prefix}{i}` and AUTH them all.
    pub fn connect(addr: SocketAddr, path: &str, prefix: &str, count: usize) -> io::Result<Crowd> {
        let openers = 4.min(count.max(1));
        let opened: Vec<Vec<(usize, StdStream, Vec<u8>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..openers)
                .map(|t| {
                    scope.spawn(move || {
                        let mut rng = Rng::new(0xc4a7 + t as u64);
                        let mut held = Vec::new();
                        for i in (t..count).step_by(openers) {
                            let user = format!("{prefix}{i}");
                            match ws::connect(addr, path, &mut rng, Duration::from_secs(10)) {
                                Ok((mut stream, leftover)) => {
                                    let auth = json!({"code": code::AUTH, "id": user}).to_string();
                                    let mut frame = Vec::new();
                                    ws::write_frame(
                                        &mut frame,
                                        true,
                                        op::TEXT,
                                        &[auth.as_bytes()],
                                        ws::mask_key(&mut rng),
                                    );
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
                authed: false,
                last_seq: 0,
                alive: true,
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

    fn complain(&mut self, what: &str) {
        if self.reported < 5 {
            eprintln!("loadgen chat: {what}");
        }
        self.reported += 1;
    }

    /// The default handling of one server message: AUTH results, server
    /// pings, presence, errors, and `seq` of MESSAGEs. Returns the value
    /// when it is a MESSAGE for the caller to check further.
    fn common(&mut self, index: usize, value: Option<Value>) -> Option<Value> {
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
            loop {
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
                        Incoming::Data(op::TEXT) => Some(payload.to_vec()),
                        Incoming::Ping => {
                            let key = ws::mask_key(&mut session.rng);
                            ws::write_frame(&mut session.out, true, op::PONG, &[payload], key);
                            None
                        }
                        Incoming::Pong => None,
                        _ => Some(Vec::new()),
                    });
                    match next {
                        Ok(Some(Some(payload))) if !payload.is_empty() => {
                            handler(self, index, now, &payload)
                        }
                        Ok(Some(Some(_))) => {
                            ok = false;
                            break;
                        }
                        Ok(Some(None)) => {}
                        Ok(None) => break,
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    break;
                }
            }
            let session = &mut self.sessions[index];
            if !ok || !session.flush() {
                session.alive = false;
                let _ = self.poll.registry().deregister(&mut session.stream);
                self.errors.sessions += 1;
                let what = format!("session {} closed", self.sessions[index].user);
                self.complain(&what);
            }
        }
        self.events = events;
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
}

/// Broadcast from session 0 to `receivers` sessions, `rounds` times.
pub fn fanout(
    addr: SocketAddr,
    prefix: &str,
    receivers: usize,
    rounds: usize,
) -> io::Result<FanoutOutcome> {
    let mut crowd = Crowd::connect(addr, "/ws", prefix, receivers + 1)?;
    crowd.settle(Duration::from_millis(1500), Duration::from_secs(30));
    let mut outcome = FanoutOutcome {
        receivers: crowd.sessions.len().saturating_sub(1),
        ..FanoutOutcome::default()
    };
    let count = crowd.sessions.len();
    for round in 0..rounds {
        let token = format!("fanout-{prefix}-{round}");
        let mut got: Vec<Option<Instant>> = vec![None; count];
        let mut stored: Vec<(usize, Vec<u8>)> = Vec::with_capacity(count);
        let mut pending = count - 1;
        let broadcast = json!({"code": code::BROADCAST, "data": token});
        let t0 = Instant::now();
        crowd.sessions[0].send_json(&broadcast);
        if !crowd.sessions[0].flush() {
            crowd.errors.sessions += 1;
            break;
        }
        let deadline = t0 + Duration::from_secs(10);
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
        let from = crowd.sessions[0].user.clone();
        for (i, payload) in stored {
            let Some(message) = crowd.common(i, parse(&payload)) else {
                continue;
            };
            let body = &message["body"];
            let right = i != 0
                && body["type"].as_i64() == Some(code::BROADCAST_MESSAGE)
                && body["data"].as_str() == Some(token.as_str())
                && body["from"].as_str() == Some(from.as_str());
            if !right {
                crowd.errors.bad += 1;
                crowd.complain(&format!("wrong broadcast: {message}"));
            }
        }
        let mut last = 0;
        for (i, when) in got.iter().enumerate().skip(1) {
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
}

/// `users` sessions; each starts `depth` PEER messages to random others and
/// sends a new one for each it receives.
pub fn peers(
    addr: SocketAddr,
    prefix: &str,
    users: usize,
    depth: usize,
    warmup: Duration,
    duration: Duration,
) -> io::Result<PeersOutcome> {
    let mut crowd = Crowd::connect(addr, "/ws", prefix, users)?;
    crowd.settle(Duration::from_millis(1500), Duration::from_secs(30));
    let mut outcome = PeersOutcome::default();
    let base = Instant::now();
    let count = crowd.sessions.len();
    if count < 2 {
        outcome.errors = crowd.errors;
        return Ok(outcome);
    }
    let mut rng = Rng::new(99);
    let send_one = |crowd: &mut Crowd, from: usize, rng: &mut Rng, sent: &mut u64| {
        let mut to = rng.below(count as u64 - 1) as usize;
        if to >= from {
            to += 1;
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
    while Instant::now() < drain_until
        && (Instant::now() < end || received + crowd.errors.bad < sent)
    {
        let sending = Instant::now() < end;
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
