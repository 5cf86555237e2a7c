//! The socket side of one WebSocket connection: feeding socket bytes to the
//! sans-IO [`Connection`], writing its output, and closing TCP the way RFC
//! 6455 7.1.1 asks.
//!
//! Closing deserves care. A `close()` on a socket that still has unread
//! bytes makes the kernel send RST instead of FIN, and a peer that gets RST
//! may lose our Close frame before reading it. So the server half-closes
//! (`shutdown(Write)`, which sends FIN after the queued bytes), then reads
//! and discards until the peer closes its side or a bounded time passes
//! ("lingering close", as HTTP servers do it): [`CLOSE_TIMEOUT`] after a
//! closing handshake, [`FAILED_LINGER`] after the server failed the
//! connection (RFC 6455 7.1.7), whose peer may well go on streaming.
//!
//! Every function takes `&Socket` ([`Socket`]: plain TCP or TLS), which is
//! `Read` and `Write` through a shared reference, as `&TcpStream` is: the
//! threads of one connection (a reader, a writer, the shutdown) share one
//! socket descriptor instead of `dup()`ing it. A thread per connection
//! already costs a thread; it should not cost two descriptors as well
//! (10,000 connections would need `ulimit -n` over 20,000).

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::protocol::trace::{describe_frames, Direction};
use crate::protocol::{CloseCode, Connection, State};

use super::metrics::Metrics;
use super::socket::Socket;

/// How long the server waits for the peer's Close after sending its own,
/// and for the peer's FIN after sending its last bytes.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection the server failed (RFC 6455 7.1.7: a protocol
/// error, bad UTF-8, a message too big) may take, from the failure, to send
/// its last bytes and see the peer's FIN before its socket is closed,
/// whatever the peer still sends. Long enough for a healthy peer to take
/// our Close and hang up, short enough that a hostile one cannot hold a
/// thread by streaming the payload it was refused.
pub const FAILED_LINGER: Duration = Duration::from_secs(1);

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Some bytes arrived.
    Data,
    /// The peer closed TCP.
    Eof,
    /// Nothing arrived within the read timeout.
    TimedOut,
    /// The socket failed (reset, for instance).
    Failed,
}

/// Bytes an idle connection waits for on its thread's stack.
const IDLE_READ: usize = 1024;

/// Read once from `stream` into the connection.
///
/// Between messages the connection gives its buffers back and the thread
/// blocks reading into a small buffer on its own stack, so an idle
/// connection costs no heap; only what arrives is copied in. Inside a
/// message it reads straight into the connection's buffer, in large chunks.
pub fn read_into(mut stream: &Socket, conn: &mut Connection, metrics: &Metrics) -> ReadOutcome {
    let mut idle_buffer = [0u8; IDLE_READ];
    let idle = conn.is_between_messages();
    let result = if idle {
        conn.release_idle_buffers();
        stream.read(&mut idle_buffer)
    } else {
        stream.read(conn.read_space())
    };
    match result {
        Ok(0) => ReadOutcome::Eof,
        Ok(n) => {
            if idle {
                conn.receive(&idle_buffer[..n]);
            } else {
                conn.commit_read(n);
            }
            metrics.bytes_in.fetch_add(n as u64, Relaxed);
            ReadOutcome::Data
        }
        Err(e) => classify_error(e),
    }
}

/// Read once from `stream` into `buffer`, blocking until something arrives
/// (or the read timeout, if one is set); returns how many bytes came with
/// [`ReadOutcome::Data`]. For a thread that must not hold its connection
/// while it waits (the `/ws` reader: other threads close through it).
pub fn read_bytes(
    mut stream: &Socket,
    buffer: &mut [u8],
    metrics: &Metrics,
) -> (ReadOutcome, usize) {
    match stream.read(buffer) {
        Ok(0) => (ReadOutcome::Eof, 0),
        Ok(n) => {
            metrics.bytes_in.fetch_add(n as u64, Relaxed);
            (ReadOutcome::Data, n)
        }
        Err(e) => (classify_error(e), 0),
    }
}

fn classify_error(e: io::Error) -> ReadOutcome {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReadOutcome::TimedOut,
        io::ErrorKind::Interrupted => ReadOutcome::Data,
        _ => ReadOutcome::Failed,
    }
}

/// Read the rest of a data frame's payload, `room` bytes (see
/// [`Connection::direct_payload_room`]), straight into the message being
/// assembled: no copy through the read buffer, and no zeroing of memory
/// the kernel is about to fill (std reads into a `Vec`'s spare capacity).
/// Returns once all `room` bytes are in, the peer closes, or one read waits
/// longer than the read timeout. Only for binary messages on `/echo`: text
/// is checked read by read so that bad UTF-8 fails at once (Autobahn 6.4.3
/// and 6.4.4 wait for that), and `/ws` re-checks its deadlines between
/// reads (its messages are small anyway).
pub fn read_payload(
    stream: &Socket,
    conn: &mut Connection,
    room: usize,
    metrics: &Metrics,
) -> ReadOutcome {
    let (n, result) = conn.read_payload_with(|message| {
        let before = message.len();
        let result = stream.take(room as u64).read_to_end(message);
        (message.len() - before, result)
    });
    metrics.bytes_in.fetch_add(n as u64, Relaxed);
    match result {
        Ok(_) if n < room => ReadOutcome::Eof,
        Ok(_) => ReadOutcome::Data,
        Err(e) => classify_error(e),
    }
}

/// Write all of `bytes`, counting them.
pub fn write_counted(mut stream: &Socket, bytes: &[u8], metrics: &Metrics) -> io::Result<()> {
    if !bytes.is_empty() {
        stream.write_all(bytes)?;
        metrics.bytes_out.fetch_add(bytes.len() as u64, Relaxed);
    }
    // With TLS, ciphertext a write left behind (or a write that did not
    // block began) goes out too; plain TCP has none.
    stream.flush()
}

/// Write all of `parts`, in order, with as few vectored writes as the
/// kernel allows, counting them.
pub fn write_all_counted(
    mut stream: &Socket,
    parts: &[&[u8]],
    metrics: &Metrics,
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
    let mut unsent = &mut slices[..];
    IoSlice::advance_slices(&mut unsent, 0);
    while !unsent.is_empty() {
        match stream.write_vectored(unsent) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                metrics.bytes_out.fetch_add(n as u64, Relaxed);
                IoSlice::advance_slices(&mut unsent, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

/// Write `parts` to `stream` without blocking, for a thread that must not
/// wait on this peer (a sender writing through to a `/ws` session, the
/// shutdown saying goodbye); returns how many bytes went out (0 when the
/// socket buffer was full). The descriptor is switched to non-blocking mode
/// for this one `writev` and back: the mode belongs to the descriptor the
/// connection's own threads share, so a read that runs during that instant
/// may end early with `WouldBlock`, which they take for a read timeout.
///
/// With TLS, bytes "went out" once encrypted: some of their records may
/// still wait in the socket (bounded, see [`Socket::output_pending`]); then
/// [`output_pending`] is true and a thread that may block must [`flush`]
/// them (or [`write_counted`] anything, which flushes first).
pub fn write_without_blocking(stream: &Socket, parts: &[&[u8]], metrics: &Metrics) -> usize {
    let written = stream.write_without_blocking(parts);
    metrics.bytes_out.fetch_add(written as u64, Relaxed);
    written
}

/// Whether bytes a write took still wait in the socket for the kernel
/// (TLS only; see [`Socket::output_pending`]).
pub fn output_pending(stream: &Socket) -> bool {
    stream.output_pending()
}

/// Send what earlier writes left in the socket (TLS records the kernel did
/// not take yet), blocking within the write timeout; nothing for plain TCP.
pub fn flush_pending(mut stream: &Socket) -> io::Result<()> {
    stream.flush()
}

/// One vectored write of `parts` (blocking up to the socket's write
/// timeout), counting what went out; returns how many bytes did. A write
/// that times out or is interrupted returns `Ok(0)`, so that the caller can
/// look at its deadlines and try again.
pub fn write_some(mut stream: &Socket, parts: &[&[u8]], metrics: &Metrics) -> io::Result<usize> {
    let slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
    match stream.write_vectored(&slices) {
        Ok(0) if parts.iter().any(|part| !part.is_empty()) => Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => {
            metrics.bytes_out.fetch_add(n as u64, Relaxed);
            Ok(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// Bound every blocking write on `stream` to `limit`.
pub fn set_write_timeout(stream: &Socket, limit: Duration) {
    let _ = stream.set_write_timeout(Some(limit));
}

/// End the TCP connection both ways at once, without lingering: every
/// thread blocked reading from or writing to it wakes up (a slow consumer
/// past its grace, a closing handshake past its deadline).
pub fn cut_off(stream: &Socket) {
    let _ = stream.shutdown(Shutdown::Both);
}

/// Start the closing handshake from the server's side and count the code.
pub fn close(conn: &mut Connection, code: CloseCode, reason: &str, metrics: &Metrics) {
    if conn.state() == State::Open {
        conn.close(code, reason);
        metrics.close_sent(code.0);
    }
}

/// Half-close, then drain until the peer's FIN or [`CLOSE_TIMEOUT`]. The
/// stream is dropped (fully closed) by the caller afterwards.
pub fn linger_close(stream: &Socket) {
    linger_close_until(stream, Instant::now() + CLOSE_TIMEOUT);
}

/// Half-close, then drain until the peer's FIN or `deadline`.
pub fn linger_close_until(mut stream: &Socket, deadline: Instant) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// `--trace`: how a connection's frames are labelled, `PEER-ADDRESS PATH`.
pub fn trace_label(stream: &Socket, path: &str) -> String {
    match stream.peer_addr() {
        Ok(peer) => format!("{peer} {path}"),
        Err(_) => path.to_owned(),
    }
}

/// `--trace`: print on stderr, one block per frame, the frames `conn` has
/// received since the last call (nothing when tracing is off).
pub fn trace_received(conn: &mut Connection) {
    for block in conn.take_trace() {
        eprintln!("{block}");
    }
}

/// `--trace`: print on stderr each frame in `bytes` (complete frames the
/// server is about to send on the connection `label` names).
pub fn trace_sent(label: &str, bytes: &[u8]) {
    for block in describe_frames(Direction::Out, bytes) {
        eprintln!("[{label}] {block}");
    }
}
