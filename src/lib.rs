//! SocketBox: a WebSocket server written from first principles.
//!
//! RFC 6455 by hand, one std thread per connection, and a mutex-guarded
//! registry that routes the SocketBox chat protocol between users. The crate
//! is split the way the bytes flow:
//!
//! - [`protocol`]: the sans-IO core: handshake, frames, masking, UTF-8, close
//!   codes, message assembly. Bytes in, events out; no sockets.
//! - [`io`]: socket I/O and lingering close, the live set for shutdown,
//!   metrics, connection threads: what the shell and the applications share.
//! - [`server`]: the std::net shell: accept loop, limits, routing, shutdown.
//!   It mounts applications it does not name.
//! - [`apps`]: the applications: the SocketBox chat on `/ws` ([`apps::chat`]:
//!   registry, routing, presence, admin API), `/echo`, the demo page,
//!   `/healthz` and `/metrics`, and the binary's route table.
//! - [`cli`]: the command line of the `socketbox` binary, and [`malloc`]: how
//!   the binary sets up glibc's allocator for one thread per connection.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod apps;
pub mod cli;
pub mod io;
pub mod malloc;
pub mod protocol;
pub mod server;
