//! The WebSocket protocol itself, RFC 6455, with no I/O: every function here
//! turns bytes into values or values into bytes, so tests and fuzz targets
//! drive it directly and the server is a thin loop around it.
//!
//! | module | RFC 6455 | owns |
//! | --- | --- | --- |
//! | [`http`] | (RFC 9112) | HTTP/1.1 request heads and responses, the layer under the handshake |
//! | [`handshake`] | 4.1, 4.2, 9.1 | the Upgrade request, its extension offers and the 101 response |
//! | [`origin`] | 10.2 | the `--allowed-origin` policy |
//! | [`frame`] | 5.2 | the frame header: parse and write |
//! | [`mask`] | 5.3 | client-to-server masking |
//! | [`utf8`] | 5.6, 8.1 | incremental, fail-fast UTF-8 validation |
//! | [`close`] | 5.5.1, 7.4 | Close frame payloads and status codes |
//! | [`deflate`] | (RFC 7692) | permessage-deflate: the offer the server accepts, and with the feature `deflate` each message's compression |
//! | [`connection`] | 5, 7 | one connection's state machine: messages, control frames, closing |
//! | [`trace`] | 5.2 | `--trace`: each frame field by field, and what the connection did with it |

pub mod close;
pub mod connection;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod origin;
pub mod trace;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{Config, Connection, Event, Message, ProtocolError, State};
