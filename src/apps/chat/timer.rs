//! The chat's one timer thread: every round it runs [`Outbox::tick`] for
//! every open `/ws` session, which sends due heartbeat PINGs and online
//! counts (PROTOCOL.md "Heartbeat and closing", SYSTEM 20001), closes
//! sessions past their AUTH deadline (4001) or silent too long (4000), and
//! cuts off slow consumers past their grace and closing handshakes past
//! their deadline (RFC 6455 7.1.1 leaves that wait to the server). One
//! thread for all sessions instead of a thread, or a read timeout, per
//! session: an idle session costs its reader and nothing else.
//!
//! [`Outbox::tick`]: super::outbox::Outbox::tick

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::io::metrics::Metrics;

use super::registry::Session;

/// Shortest time between two rounds: a deadline is late by at most this.
pub const ROUND: Duration = Duration::from_millis(100);

/// Time between two full rounds, which tick every session whatever its
/// next deadline: a deadline set since its last tick (a slow consumer's
/// grace, a closing handshake's end) is late by at most this.
const FULL_ROUND: Duration = Duration::from_secs(1);

/// Grace added to two heartbeat intervals before a silent session is closed.
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Inner {
    /// Each session, and when it next needs the timer as its last tick
    /// said (`None`: not ticked yet, or nothing planned).
    sessions: HashMap<u64, (Weak<Session>, Option<Instant>)>,
    /// When the next round is planned.
    next_round: Option<Instant>,
    /// Something new is due that the stored times do not show (an online
    /// count offered): the next round is a full one.
    full_requested: bool,
}

/// The sessions the timer serves.
#[derive(Debug, Default)]
pub struct Timers {
    inner: Mutex<Inner>,
    wake: Condvar,
}

impl Timers {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve `session` from now on (from the next full round).
    pub fn add(&self, session: &Arc<Session>) {
        let mut inner = self.lock();
        inner
            .sessions
            .insert(session.id, (Arc::downgrade(session), None));
        if inner.sessions.len() == 1 {
            self.wake.notify_one();
        }
    }

    /// Stop serving the session with this id.
    pub fn remove(&self, id: u64) {
        self.lock().sessions.remove(&id);
    }

    /// Something is due at `at` for sessions whose stored times do not
    /// show it: a full round by then (at most [`ROUND`] after the last).
    pub fn wake_by(&self, at: Instant) {
        let mut inner = self.lock();
        inner.full_requested = true;
        if inner.next_round.is_some_and(|planned| at < planned) {
            self.wake.notify_one();
        }
    }

    /// The timer thread's body. A round ticks the sessions whose time has
    /// come; once a second, or when asked, every session. So an idle
    /// session costs a comparison per round and a tick per second.
    pub fn run(&self, heartbeat: Duration, metrics: &Metrics) {
        let silence_limit = heartbeat * 2 + HEARTBEAT_GRACE;
        let mut last_full = Instant::now();
        let mut due: Vec<(u64, Arc<Session>)> = Vec::new();
        let mut ticked: Vec<(u64, Option<Instant>)> = Vec::new();
        loop {
            let started = Instant::now();
            {
                let mut inner = self.lock();
                let full =
                    std::mem::take(&mut inner.full_requested) || started >= last_full + FULL_ROUND;
                if full {
                    last_full = started;
                }
                due.extend(inner.sessions.iter().filter_map(|(id, (session, at))| {
                    if full || at.is_some_and(|at| at <= started) {
                        session.upgrade().map(|session| (*id, session))
                    } else {
                        None
                    }
                }));
            }
            for (id, session) in due.drain(..) {
                ticked.push((id, session.outbox.tick(started, silence_limit, metrics)));
            }
            let mut inner = self.lock();
            for (id, at) in ticked.drain(..) {
                if let Some(entry) = inner.sessions.get_mut(&id) {
                    entry.1 = at;
                }
            }
            let earliest = inner.sessions.values().filter_map(|(_, at)| *at).min();
            let next = earliest
                .unwrap_or(last_full + FULL_ROUND)
                .min(last_full + FULL_ROUND)
                .max(started + ROUND);
            inner.next_round = Some(next);
            loop {
                let now = Instant::now();
                let planned = inner.next_round.unwrap_or(now);
                if inner.sessions.is_empty() {
                    inner = self.wake.wait(inner).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
                if now >= planned {
                    break;
                }
                let (guard, _) = self
                    .wake
                    .wait_timeout(inner, planned - now)
                    .unwrap_or_else(|p| p.into_inner());
                inner = guard;
                // Woken for an earlier deadline: no sooner than ROUND.
                let earliest = started + ROUND;
                if Instant::now() >= earliest {
                    break;
                }
                inner.next_round = Some(earliest);
            }
            inner.next_round = None;
        }
    }
}
