//! The I/O layer under the server shell and its applications: socket reads
//! and writes with the lingering close of RFC 6455 7.1.1 ([`transport`]),
//! the set of open WebSocket connections a shutdown closes ([`live`]), the
//! counters behind `/metrics` ([`metrics`]) and the connection threads and
//! their budget ([`threads`]). It knows no route and no application.

pub mod live;
pub mod metrics;
pub mod threads;
pub mod transport;
