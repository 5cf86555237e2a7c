//! The shell's settings, one field per command-line flag (the flag table in
//! `PROTOCOL.md` and the README), with the defaults `socketbox` uses when run
//! with no flags: listening, connection limits, the opening handshake, TLS
//! and compression. Each application keeps its own settings, so this layer
//! names none of them. No RFC governs these.

use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::origin::OriginPolicy;

/// Everything the shell can be told on the command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: String,
    /// Origins allowed to upgrade, parsed once at start-up; the default
    /// allows any.
    pub allowed_origins: OriginPolicy,
    /// Open TCP connections of every kind; past it, 503.
    pub max_connections: usize,
    /// Open TCP connections from one IP address; past it, 503. 0: no limit.
    pub max_connections_per_ip: usize,
    /// Time to send a complete request head.
    pub handshake_timeout: Duration,
    /// Stack size of each connection thread.
    pub thread_stack: usize,
    /// Print every frame on stderr.
    pub trace: bool,

    // TLS (feature `tls`): both or neither; the command line checks.
    /// PEM certificate chain, leaf first (`--tls-cert`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate (`--tls-key`).
    pub tls_key: Option<PathBuf>,
    // permessage-deflate (RFC 7692; `--deflate` needs the cargo feature
    // `deflate`).
    /// `--deflate`: accept permessage-deflate on `/ws` and `/echo`.
    pub deflate: bool,
    /// `--deflate-context-takeover`: keep both compression windows per
    /// connection instead of asking for no context takeover.
    pub deflate_context_takeover: bool,
    /// `--deflate-min-size`: messages shorter than this go out uncompressed.
    pub deflate_min_size: usize,
}

/// Default stack of a connection thread; see `docs/benchmarks.md` for how
/// it was measured.
pub const DEFAULT_THREAD_STACK: usize = 64 * 1024;

/// Least stack of a connection thread when the server speaks TLS: a rustls
/// handshake overflowed 64 KiB in a debug build (a release build got
/// through in 64 KiB, RSA and ECDSA). Stack is reserved, not resident:
/// only the pages a thread touches count in its RSS.
pub const TLS_THREAD_STACK: usize = 256 * 1024;

impl ServerConfig {
    /// The stack each connection thread gets: `thread_stack`, raised to
    /// [`TLS_THREAD_STACK`] when the server speaks TLS.
    pub fn connection_stack(&self) -> usize {
        if self.tls_cert.is_some() {
            self.thread_stack.max(TLS_THREAD_STACK)
        } else {
            self.thread_stack
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            allowed_origins: OriginPolicy::any(),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            handshake_timeout: Duration::from_secs(10),
            thread_stack: DEFAULT_THREAD_STACK,
            trace: false,
            tls_cert: None,
            tls_key: None,
            deflate: false,
            deflate_context_takeover: false,
            deflate_min_size: 256,
        }
    }
}
