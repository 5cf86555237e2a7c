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

/// Shortest time between two rounds: a round costs a lock per session, so
/// the timer never runs more than ten a second however many deadlines
/// fall in between (each is then late by at most this).
pub const ROUND: Duration = Duration::from_millis(100);

/// Longest time between two rounds.
const IDLE_ROUND: Duration = Duration::from_secs(1);

/// Grace added to two heartbeat intervals before a silent session is closed.
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<u64, Weak<Session>>,
    /// When the next round is planned.
    next_round: Option<Instant>,
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

    /// Serve `session` from now on.
    pub fn add(&self, session: &Arc<Session>) {
        let mut inner = self.lock();
        inner.sessions.insert(session.id, Arc::downgrade(session));
        if inner.sessions.len() == 1 {
            self.wake.notify_one();
        }
    }

    /// Stop serving the session with this id.
    pub fn remove(&self, id: u64) {
        self.lock().sessions.remove(&id);
    }

    /// Something is due at `at`: run a round by then (at most [`ROUND`]
    /// after the last one).
    pub fn wake_by(&self, at: Instant) {
        let inner = self.lock();
        if inner.next_round.is_some_and(|planned| at < planned) {
            self.wake.notify_one();
        }
    }

    /// The timer thread's body.
    pub fn run(&self, heartbeat: Duration, metrics: &Metrics) {
        let silence_limit = heartbeat * 2 + HEARTBEAT_GRACE;
        let mut sessions: Vec<Arc<Session>> = Vec::new();
        loop {
            let started = Instant::now();
            sessions.extend(self.lock().sessions.values().filter_map(Weak::upgrade));
            let mut next = started + IDLE_ROUND;
            for session in sessions.drain(..) {
                if let Some(at) = session.outbox.tick(started, silence_limit, metrics) {
                    next = next.min(at);
                }
            }
            let next = next.max(started + ROUND);
            let mut inner = self.lock();
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
