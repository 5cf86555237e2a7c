//! Counters and gauges served at `GET /metrics` in the Prometheus text
//! exposition format (version 0.0.4; no RFC). Close codes are counted by
//! their RFC 6455 7.4 value, rejections by their RFC 9110 status.
//!
//! Plain atomics, updated where things happen; the two labelled families
//! (closes by code, rejections by status) are small maps behind a mutex,
//! touched once per connection at most.

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
    closes: Mutex<BTreeMap<u16, u64>>,
    rejections: Mutex<BTreeMap<u16, u64>>,
}

fn bump(map: &Mutex<BTreeMap<u16, u64>>, key: u16) {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *map.entry(key).or_insert(0) += 1;
}

impl Metrics {
    /// Count a Close frame the server sent, by its code.
    pub fn close_sent(&self, code: u16) {
        bump(&self.closes, code);
    }

    /// Count a request refused with an HTTP error status.
    pub fn rejected(&self, status: u16) {
        bump(&self.rejections, status);
    }

    /// How many Close frames with `code` were sent.
    pub fn closes(&self, code: u16) -> u64 {
        let map = self.closes.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&code).copied().unwrap_or(0)
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
        let labelled = [
            (
                "socketbox_closes_total",
                "Close frames sent, by close code.",
                "code",
                &self.closes,
            ),
            (
                "socketbox_rejections_total",
                "Requests refused, by HTTP status.",
                "status",
                &self.rejections,
            ),
        ];
        for (name, help, label, map) in labelled {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let map = map.lock().unwrap_or_else(|p| p.into_inner());
            for (key, count) in map.iter() {
                let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {count}");
            }
        }
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
        m.rejected(404);
        let text = m.render();
        assert!(text.contains("\nsocketbox_connections 3\n"));
        assert!(text.contains("socketbox_closes_total{code=\"1000\"} 2\n"));
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
