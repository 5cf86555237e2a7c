//! Counters and gauges served at `GET /metrics` in the Prometheus text
//! exposition format (version 0.0.4; no RFC). Closing handshakes (RFC 6455
//! 7.1.2) are counted by the RFC 6455 7.4 code of the Close frame that
//! began them and the side that sent it, rejections by their RFC 9110
//! status.
//!
//! Plain atomics, updated where things happen; the two labelled families
//! (closes, rejections) are small maps behind a mutex, touched once per
//! connection at most.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// The server's counters. Gauges go up and down; counters only up.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Gauge: open TCP connections of every kind.
    pub connections: AtomicU64,
    /// Gauge: open `/ws` sessions.
    pub sessions: AtomicU64,
    /// Gauge: distinct authenticated user ids.
    pub users_online: AtomicU64,
    /// Gauge: live connection threads (readers and writers).
    pub threads: AtomicU64,
    /// Counter: data messages received.
    pub messages_in: AtomicU64,
    /// Counter: data messages sent.
    pub messages_out: AtomicU64,
    /// Counter: bytes read from sockets.
    pub bytes_in: AtomicU64,
    /// Counter: bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Counter: sessions dropped because their outbound queue overflowed.
    pub slow_consumers: AtomicU64,
    closes: Mutex<BTreeMap<(u16, Initiator), u64>>,
    rejections: Mutex<BTreeMap<u16, u64>>,
}

/// The side whose Close frame began a closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Initiator {
    /// The client's Close arrived before the server had sent one.
    Client,
    /// The server sent its Close first.
    Server,
}

impl Initiator {
    fn label(self) -> &'static str {
        match self {
            Initiator::Client => "client",
            Initiator::Server => "server",
        }
    }
}

/// What `socketbox_closes_total` counts, word for word its HELP line.
const CLOSES_HELP: &str = "Closing handshakes, one per Close frame that began one, \
by its code (1005: it had none) and initiator, the side that sent it: client when \
the client's Close arrived before the server had sent one, else server. A client \
Close the server cannot parse counts as the server's 1002.";

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *map.entry(key).or_insert(0) += 1;
}

impl Metrics {
    /// Count a closing handshake the server began with a Close of `code`.
    pub fn close_sent(&self, code: u16) {
        bump(&self.closes, (code, Initiator::Server));
    }

    /// Count a closing handshake the client began with a Close of `code`
    /// (1005 for one without a code), one that arrived before the server
    /// had sent a Close.
    pub fn close_received(&self, code: u16) {
        bump(&self.closes, (code, Initiator::Client));
    }

    /// Count a request refused with an HTTP error status.
    pub fn rejected(&self, status: u16) {
        bump(&self.rejections, status);
    }

    /// How many closing handshakes `initiator` began with `code`.
    pub fn closes(&self, code: u16, initiator: Initiator) -> u64 {
        let map = self.closes.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(code, initiator)).copied().unwrap_or(0)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let gauges = [
            (
                "socketbox_connections",
                "Open TCP connections of every kind.",
                &self.connections,
            ),
            ("socketbox_sessions", "Open /ws sessions.", &self.sessions),
            (
                "socketbox_users_online",
                "Distinct authenticated user ids.",
                &self.users_online,
            ),
            (
                "socketbox_threads",
                "Live connection threads.",
                &self.threads,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                value.load(Relaxed)
            );
        }
        let counters = [
            (
                "socketbox_messages_in_total",
                "Data messages received.",
                &self.messages_in,
            ),
            (
                "socketbox_messages_out_total",
                "Data messages sent.",
                &self.messages_out,
            ),
            (
                "socketbox_bytes_in_total",
                "Bytes read from sockets.",
                &self.bytes_in,
            ),
            (
                "socketbox_bytes_out_total",
                "Bytes written to sockets.",
                &self.bytes_out,
            ),
            (
                "socketbox_slow_consumers_total",
                "Sessions dropped for letting their outbound queue overflow.",
                &self.slow_consumers,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let name = "socketbox_closes_total";
        let _ = writeln!(out, "# HELP {name} {CLOSES_HELP}\n# TYPE {name} counter");
        let closes = self.closes.lock().unwrap_or_else(|p| p.into_inner());
        for ((code, initiator), count) in closes.iter() {
            let initiator = initiator.label();
            let _ = writeln!(
                out,
                "{name}{{code=\"{code}\",initiator=\"{initiator}\"}} {count}"
            );
        }
        drop(closes);
        let name = "socketbox_rejections_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests refused, by HTTP status.\n# TYPE {name} counter"
        );
        let rejections = self.rejections.lock().unwrap_or_else(|p| p.into_inner());
        for (status, count) in rejections.iter() {
            let _ = writeln!(out, "{name}{{status=\"{status}\"}} {count}");
        }
        drop(rejections);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        m.connections.store(3, Relaxed);
        m.close_sent(1000);
        m.close_sent(1000);
        m.close_received(1000);
        m.close_received(1005);
        m.rejected(404);
        let text = m.render();
        assert!(text.contains("\nsocketbox_connections 3\n"));
        assert!(text.contains("socketbox_closes_total{code=\"1000\",initiator=\"server\"} 2\n"));
        assert!(text.contains("socketbox_closes_total{code=\"1000\",initiator=\"client\"} 1\n"));
        assert!(text.contains("socketbox_closes_total{code=\"1005\",initiator=\"client\"} 1\n"));
        assert_eq!(m.closes(1000, Initiator::Server), 2);
        assert_eq!(m.closes(1005, Initiator::Server), 0);
        assert!(text.contains("socketbox_rejections_total{status=\"404\"} 1\n"));
        for family in [
            "socketbox_sessions",
            "socketbox_users_online",
            "socketbox_threads",
            "socketbox_bytes_out_total",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }
}
