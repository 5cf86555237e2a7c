//! Plain HTTP over a socket: reading one request head (bounded in size and
//! time) and writing one response. The grammar itself is parsed by
//! [`crate::protocol::http`]; this module only does the I/O of RFC 9112
//! section 2 (a message is a head, then a body of `Content-Length` bytes)
//! and of RFC 6455 4.2.1, whose opening handshake is such a request. Every
//! answer closes the connection (RFC 9112 9.6, `Connection: close`); the
//! answer to a HEAD is the head of the GET's answer (RFC 9110 9.3.2).

use crate::io::socket::Socket;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::protocol::http::{
    parse_request, write_response, ErrorResponse, HttpError, Parse, MAX_REQUEST_HEAD,
};

use crate::io::metrics::Metrics;
use crate::io::transport;

/// A complete request head and any bytes that followed it.
#[derive(Debug)]
pub struct Head {
    /// The bytes read so far: the head, then possibly the start of a body
    /// or of the first WebSocket frames.
    pub bytes: Vec<u8>,
}

/// Why no request head could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The bytes are not an acceptable request: answer with this error.
    Respond(HttpError),
    /// `--handshake-timeout` passed before the head was complete.
    TimedOut,
    /// The peer closed or reset the connection.
    Closed,
}

/// Read until a complete request head has arrived, at most
/// [`MAX_REQUEST_HEAD`] bytes and `timeout` in total: the deadline covers
/// the whole head, so trickling one byte at a time does not extend it.
pub fn read_head(
    stream: &mut Socket,
    timeout: Duration,
    metrics: &Metrics,
) -> Result<Head, HeadError> {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        // Never read past the limit plus one byte: enough to tell "too big".
        let room = (MAX_REQUEST_HEAD + 1)
            .saturating_sub(bytes.len())
            .clamp(1, chunk.len());
        let n = read_by(stream, deadline, &mut chunk[..room])?;
        metrics
            .bytes_in
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        bytes.extend_from_slice(&chunk[..n]);
        match parse_request(&bytes) {
            Ok(Parse::Complete(_)) => return Ok(Head { bytes }),
            Ok(Parse::Partial) => {}
            Err(error) => return Err(HeadError::Respond(error)),
        }
    }
}

/// One read that must finish by `deadline`: the deadline covers a whole
/// head or body, so a client trickling a byte at a time cannot extend it.
/// Returns at least one byte, or why there is none.
fn read_by(stream: &mut Socket, deadline: Instant, buf: &mut [u8]) -> Result<usize, HeadError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TimedOut);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Closed)?;
        match stream.read(buf) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

/// Read the body that follows a head, up to `limit` bytes, within `timeout`.
pub fn read_body(
    stream: &mut Socket,
    mut already: Vec<u8>,
    content_length: usize,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, HeadError> {
    if content_length > limit {
        return Err(HeadError::Respond(HttpError::BodyTooLarge));
    }
    let deadline = Instant::now() + timeout;
    already.truncate(content_length);
    let mut chunk = [0u8; 1024];
    while already.len() < content_length {
        let want = (content_length - already.len()).min(chunk.len());
        let n = read_by(stream, deadline, &mut chunk[..want])?;
        already.extend_from_slice(&chunk[..n]);
    }
    Ok(already)
}

/// Send one complete response and count it if it is an error.
pub fn respond(
    stream: &mut Socket,
    metrics: &Metrics,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) {
    send(
        stream,
        metrics,
        false,
        status,
        content_type,
        extra_headers,
        body,
    );
}

fn send(
    stream: &mut Socket,
    metrics: &Metrics,
    head_only: bool,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) {
    if status >= 400 {
        metrics.rejected(status);
    }
    let mut out = Vec::with_capacity(128 + body.len());
    write_response(&mut out, status, content_type, extra_headers, body);
    if head_only {
        // RFC 9110 9.3.2: "the server MUST NOT send content in the response"
        // to a HEAD; the head keeps the GET body's Content-Length (8.6).
        out.truncate(out.len() - body.len());
    }
    if transport::write_counted(stream, &out, metrics).is_ok() {
        transport::linger_close(stream);
    }
}

/// The answer to one parsed request: a HEAD gets the head a GET would get,
/// without its body (RFC 9110 9.3.2), whatever the status.
#[derive(Debug)]
pub struct Reply<'s> {
    /// The connection the request came on.
    pub stream: &'s mut Socket,
    metrics: &'s Metrics,
    head_only: bool,
}

impl<'s> Reply<'s> {
    /// The reply to a request made with `method`.
    pub fn new(stream: &'s mut Socket, metrics: &'s Metrics, method: &str) -> Self {
        Reply {
            stream,
            metrics,
            head_only: method == "HEAD",
        }
    }

    /// Whether the request was a HEAD: the answer carries no body.
    pub fn head_only(&self) -> bool {
        self.head_only
    }

    /// Send the response, its body only if the request was not a HEAD.
    pub fn send(
        &mut self,
        status: u16,
        content_type: &str,
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) {
        send(
            self.stream,
            self.metrics,
            self.head_only,
            status,
            content_type,
            extra_headers,
            body,
        );
    }

    /// Answer a failed handshake with its status, headers and reason.
    pub fn error(&mut self, error: &dyn ErrorResponse) {
        self.send(
            error.status(),
            "text/plain; charset=utf-8",
            error.extra_headers(),
            error.reason().as_bytes(),
        );
    }
}

/// Answer a failed handshake with its status, headers and reason.
pub fn respond_error(stream: &mut Socket, metrics: &Metrics, error: &dyn ErrorResponse) {
    respond(
        stream,
        metrics,
        error.status(),
        "text/plain; charset=utf-8",
        error.extra_headers(),
        error.reason().as_bytes(),
    );
}
