//! The server's settings, one field per command-line flag (the flag table in
//! `PROTOCOL.md` and the README), with the defaults `socketbox` uses when run
//! with no flags. No RFC governs these; where a value bounds an RFC 6455
//! rule (the message size behind close 1009, 7.4.1) the field says so.

use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::origin::OriginPolicy;

/// Everything the server can be told on its command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: String,
    /// Interval between server PINGs (476) on `/ws`.
    pub heartbeat: Duration,
    /// Time a `/ws` connection has to authenticate before close 4001.
    pub auth_timeout: Duration,
    /// Coalescing window for online-count notices (SYSTEM 20001).
    pub presence_interval: Duration,
    /// Largest online list 10004 serves; past it, ERROR 40003.
    pub presence_list_max: usize,
    /// Secret for AUTH tokens; `None` accepts any well-formed id.
    pub auth_secret: Option<String>,
    /// Bearer token for `/api/*`; `None` turns the API off (404).
    pub admin_token: Option<String>,
    /// Origins allowed to upgrade, parsed once at start-up; the default
    /// allows any.
    pub allowed_origins: OriginPolicy,
    /// Largest message on `/ws`.
    pub max_message: usize,
    /// Largest message on `/echo`.
    pub echo_max_message: usize,
    /// Whether `/echo` exists.
    pub echo_enabled: bool,
    /// Outbound bytes a `/ws` session may have queued before it is dropped.
    pub max_queue: usize,
    /// Open TCP connections of every kind; past it, 503.
    pub max_connections: usize,
    /// Open TCP connections from one IP address; past it, 503. 0: no limit.
    pub max_connections_per_ip: usize,
    /// Time to send a complete request head.
    pub handshake_timeout: Duration,
    /// Messages per second a `/ws` session may send (0: no limit).
    pub rate_limit: u32,
    /// How long an `/echo` connection may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// Stack size of each connection thread.
    pub thread_stack: usize,
    /// Print every frame on stderr.
    pub trace: bool,

    // Several nodes over Redis (PROTOCOL.md, *added*; the `redis` feature).
    /// `--redis URL`: the Redis the nodes share; `None` serves alone.
    pub redis: Option<String>,
    /// `--node-id ID`: this node's name in logs and metrics; `None` picks
    /// a random one.
    pub node_id: Option<String>,
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
            heartbeat: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            presence_interval: Duration::from_millis(1000),
            presence_list_max: 1000,
            auth_secret: None,
            admin_token: None,
            allowed_origins: OriginPolicy::any(),
            max_message: 65536,
            echo_max_message: 16 * 1024 * 1024,
            echo_enabled: true,
            max_queue: 1024 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            handshake_timeout: Duration::from_secs(10),
            rate_limit: 0,
            idle_timeout: Duration::from_secs(300),
            thread_stack: DEFAULT_THREAD_STACK,
            trace: false,
            redis: None,
            node_id: None,
            tls_cert: None,
            tls_key: None,
            deflate: false,
            deflate_context_takeover: false,
            deflate_min_size: 256,
        }
    }
}
