//! SocketBox: a WebSocket server.
#![forbid(unsafe_code)]
pub mod protocol;
