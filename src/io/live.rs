//! The open WebSocket connections, kept so that a shutdown can say goodbye
//! to each with the RFC 6455 7.4.1 code 1001 ("an endpoint is "going away",
//! such as a server going down") and a closing handshake (7.1.2).
//! PROTOCOL.md: "On SIGINT or SIGTERM the server stops accepting,
//! sends Close 1001 on every open WebSocket connection (all endpoints,
//! authenticated or not), waits up to 5 s for the closing handshakes, and
//! exits 0."
//!
//! Each connection registers something that can send its Close 1001 from
//! another thread ([`GoingAway`]) and its socket; the entry leaves the set
//! when the connection's thread ends, and the shutdown waits for the set to
//! empty. No client can stretch that wait: the Close 1001 goes out without
//! blocking (a client whose socket buffer is full does not get it), the 5 s
//! are one deadline for the whole server, and at that deadline every socket
//! still in the set is shut down both ways, which wakes a thread blocked
//! reading from it or writing to it.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::socket::Socket;

/// A connection that can be told, from any thread, that the server is
/// going away: it sends Close 1001 and lets its own thread finish the
/// closing handshake.
pub trait GoingAway: Send + Sync {
    /// Send Close 1001 unless a Close was already sent. Must not block on
    /// the peer: it runs on the shutdown's thread, once per connection.
    fn going_away(&self, metrics: &Metrics);
}

/// One registered connection.
struct Live {
    connection: Arc<dyn GoingAway>,
    stream: Arc<Socket>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    connections: HashMap<u64, Live>,
    /// Set when the shutdown begins: when the closing handshakes must be over.
    deadline: Option<Instant>,
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
            .field("deadline", &inner.deadline)
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

    /// Add a connection and its socket. One that arrives during a shutdown
    /// is told to go away at once.
    pub fn register(
        &self,
        connection: Arc<dyn GoingAway>,
        stream: Arc<Socket>,
        metrics: &Metrics,
    ) -> LiveEntry<'_> {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let late = inner.deadline.is_some();
        let live = Live {
            connection: Arc::clone(&connection),
            stream,
        };
        inner.connections.insert(id, live);
        drop(inner);
        if late {
            connection.going_away(metrics);
        }
        LiveEntry { set: self, id }
    }

    /// Whether a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().deadline.is_some()
    }

    /// Begin the shutdown: every open connection is sent Close 1001, and
    /// the closing handshakes have `grace` from now (a second call keeps
    /// the first deadline).
    pub fn shutdown(&self, grace: Duration, metrics: &Metrics) {
        let connections: Vec<Arc<dyn GoingAway>> = {
            let mut inner = self.lock();
            inner.deadline.get_or_insert(Instant::now() + grace);
            inner
                .connections
                .values()
                .map(|live| Arc::clone(&live.connection))
                .collect()
        };
        for connection in connections {
            connection.going_away(metrics);
        }
    }

    /// Wait until every connection has ended, at most until the deadline
    /// [`Self::shutdown`] set (without one, return at once). Returns whether
    /// they all did.
    pub fn wait_for_closing_handshakes(&self) -> bool {
        let deadline = self.lock().deadline;
        match deadline {
            Some(deadline) => self.wait_until_empty_by(deadline),
            None => self.lock().connections.is_empty(),
        }
    }

    /// Shut down both ways the socket of every connection still open, so
    /// that its threads, wherever they block, wake up and end. Returns how
    /// many there were.
    pub fn close_all(&self) -> usize {
        let inner = self.lock();
        for live in inner.connections.values() {
            let _ = live.stream.shutdown(Shutdown::Both);
        }
        inner.connections.len()
    }

    /// Wait until every connection has ended, at most `limit`. Returns
    /// whether they all did.
    pub fn wait_until_empty(&self, limit: Duration) -> bool {
        self.wait_until_empty_by(Instant::now() + limit)
    }

    fn wait_until_empty_by(&self, deadline: Instant) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl GoingAway for Counting {
        fn going_away(&self, _: &Metrics) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    /// A connected pair on 127.0.0.1: (the server's end, the client's end).
    fn socket_pair() -> (Arc<Socket>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Arc::new(Socket::plain(server)), client)
    }

    #[test]
    fn the_deadline_is_set_once_and_closing_everything_wakes_blocked_readers() {
        let set = LiveSet::default();
        let metrics = Metrics::default();
        let connection = Arc::new(Counting::default());
        let (server, _client) = socket_pair();
        let entry = set.register(
            Arc::clone(&connection) as Arc<dyn GoingAway>,
            Arc::clone(&server),
            &metrics,
        );
        assert!(!set.wait_for_closing_handshakes(), "no shutdown yet");
        set.shutdown(Duration::from_millis(50), &metrics);
        set.shutdown(Duration::from_secs(3600), &metrics);
        assert_eq!(connection.0.load(Relaxed), 2, "told each time");
        let started = Instant::now();
        assert!(!set.wait_for_closing_handshakes());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first deadline holds"
        );
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut byte = [0u8; 1];
                (&*server).read(&mut byte).map_err(|e| e.kind())
            });
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(set.close_all(), 1);
            assert_eq!(reader.join().unwrap(), Ok(0), "woken with EOF");
        });
        drop(entry);
        assert!(set.wait_for_closing_handshakes());
        // A latecomer is told at once.
        let late = Arc::new(Counting::default());
        let _entry = set.register(
            Arc::clone(&late) as Arc<dyn GoingAway>,
            Arc::clone(&server),
            &metrics,
        );
        assert_eq!(late.0.load(Relaxed), 1);
    }
}
