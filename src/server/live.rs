//! The open WebSocket connections, kept so that a shutdown can say goodbye
//! to each with the RFC 6455 7.4.1 code 1001 ("an endpoint is "going away",
//! such as a server going down") and a closing handshake (7.1.2).
//! PROTOCOL.md: "On SIGINT or SIGTERM the server stops accepting,
//! sends Close 1001 on every open WebSocket connection (all endpoints,
//! authenticated or not), waits up to 5 s for the closing handshakes, and
//! exits 0."
//!
//! Each connection registers something that can send its Close 1001 from
//! another thread ([`GoingAway`]); the entry leaves the set when the
//! connection's thread ends, and the shutdown waits for the set to empty.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::metrics::Metrics;

/// A connection that can be told, from any thread, that the server is
/// going away: it sends Close 1001 and lets its own thread finish the
/// closing handshake.
pub trait GoingAway: Send + Sync {
    /// Send Close 1001 unless a Close was already sent.
    fn going_away(&self, metrics: &Metrics);
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    connections: HashMap<u64, Arc<dyn GoingAway>>,
    shutting_down: bool,
}

/// The set of open WebSocket connections.
#[derive(Default)]
pub struct LiveSet {
    inner: Mutex<Inner>,
    emptied: Condvar,
}

impl std::fmt::Debug for LiveSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("LiveSet")
            .field("open", &inner.connections.len())
            .field("shutting_down", &inner.shutting_down)
            .finish()
    }
}

/// A registered connection; dropping it removes the connection.
pub struct LiveEntry<'a> {
    set: &'a LiveSet,
    id: u64,
}

impl LiveSet {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a connection. One that arrives during a shutdown is told to go
    /// away at once.
    pub fn register(&self, connection: Arc<dyn GoingAway>, metrics: &Metrics) -> LiveEntry<'_> {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let late = inner.shutting_down;
        inner.connections.insert(id, Arc::clone(&connection));
        drop(inner);
        if late {
            connection.going_away(metrics);
        }
        LiveEntry { set: self, id }
    }

    /// Whether a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// Begin the shutdown: every open connection is sent Close 1001.
    pub fn shutdown(&self, metrics: &Metrics) {
        let connections: Vec<Arc<dyn GoingAway>> = {
            let mut inner = self.lock();
            inner.shutting_down = true;
            inner.connections.values().cloned().collect()
        };
        for connection in connections {
            connection.going_away(metrics);
        }
    }

    /// Wait until every connection has ended, at most `limit`. Returns
    /// whether they all did.
    pub fn wait_until_empty(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut inner = self.lock();
        while !inner.connections.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            inner = self
                .emptied
                .wait_timeout(inner, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }
}

impl Drop for LiveEntry<'_> {
    fn drop(&mut self) {
        let mut inner = self.set.lock();
        inner.connections.remove(&self.id);
        if inner.connections.is_empty() {
            self.set.emptied.notify_all();
        }
    }
}
