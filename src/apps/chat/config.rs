//! The chat's settings, one field per command-line flag that only `/ws`
//! and `/api/*` read (the flag table in `PROTOCOL.md`), with the defaults
//! `socketbox` uses when run with no flags. The shell's own settings
//! (listening, connection limits, TLS, compression) are
//! [`crate::io::config::ServerConfig`]; the shell never sees these.

use std::time::Duration;

/// Everything the chat can be told on the command line.
#[derive(Debug, Clone)]
pub struct ChatConfig {
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
    /// Largest message on `/ws`: past it, ERROR 41300 and close 1009
    /// (RFC 6455 7.4.1).
    pub max_message: usize,
    /// Outbound bytes a `/ws` session may have queued before it is dropped.
    pub max_queue: usize,
    /// Messages per second a `/ws` session may send (0: no limit).
    pub rate_limit: u32,
    // Several nodes over Redis (PROTOCOL.md, *added*; the `redis` feature).
    /// `--redis URL`: the Redis the nodes share; `None` serves alone.
    pub redis: Option<String>,
    /// `--node-id ID`: this node's name in logs and metrics; `None` picks
    /// a random one.
    pub node_id: Option<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            heartbeat: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            presence_interval: Duration::from_millis(1000),
            presence_list_max: 1000,
            auth_secret: None,
            admin_token: None,
            max_message: 65536,
            max_queue: 1024 * 1024,
            rate_limit: 0,
            redis: None,
            node_id: None,
        }
    }
}
