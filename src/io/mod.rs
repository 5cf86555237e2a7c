//! The I/O layer under the server shell and its applications: socket reads
//! and writes with the lingering close of RFC 6455 7.1.1 (`transport`), the
//! socket they go through, plain TCP or TLS ([`socket`], `tls`),
//! HTTP/1.1 request heads and responses (`http`), the set of open
//! WebSocket connections a shutdown closes (`live`), the counters behind
//! `/metrics` ([`metrics`]), the connection threads and their budget
//! (`threads`), the settings ([`config`]) and the seam through which the
//! shell mounts applications ([`app`]). It knows no route and no
//! application.

pub mod app;
pub mod config;
pub(crate) mod http;
pub(crate) mod live;
pub mod metrics;
pub mod socket;
pub(crate) mod threads;
#[cfg(feature = "tls")]
pub mod tls;
pub(crate) mod transport;
