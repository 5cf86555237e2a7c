//! `GET /echo`: every text and binary message is sent straight back (the
//! endpoint conformance suites and benchmarks talk to). Everything RFC 6455
//! asks of an endpoint (5 framing, 5.5 control frames, 7 closing, 8.1
//! UTF-8) is the protocol core's; this module only moves bytes, and with
//! `--trace` prints each frame ([`crate::protocol::trace`]).
//!
//! One thread does everything: read, let the protocol core turn bytes into
//! events, queue the echoes, write them. While more input is already
//! buffered the echoes of several messages go out in one write. A large
//! binary message is never copied inside the server: its payload is read
//! straight into the message ([`Connection::read_payload_with`]) and
//! written back from there, behind its header, in one vectored write.
//!
//! The connection sits behind a lock in an [`EchoWriter`], because one
//! other thread may close it: the shutdown, which sends Close 1001 to every
//! connection (`crate::io::live`). Both share the one socket (plain TCP or
//! TLS) through an `Arc` (see `crate::io::transport`). The connection's thread
//! holds the lock while it processes, writes and reads inside a message,
//! and lets it go while it waits for the next message. The shutdown must
//! never wait for this connection, whose thread may be blocked for seconds
//! writing to a client that does not read: so it only tries the lock. When
//! it gets it (the thread waits for a message) it closes the connection
//! and writes the Close at once without blocking; otherwise it leaves the
//! Close to the connection's thread, which sends it when its write ends.
//! Either way the Close is the connection's own, so its closing handshake
//! goes on as after any Close it sent.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::protocol::{CloseCode, Config, Connection, Event, Message, State};

use crate::io::app::{Context, Upgraded, WebSocketHandler};
use crate::io::live::GoingAway;
use crate::io::metrics::Metrics;
use crate::io::socket::Socket;
use crate::io::transport::{self, ReadOutcome, CLOSE_TIMEOUT, FAILED_LINGER};

/// Messages at least this long are echoed from where they are, by a
/// vectored write, instead of being copied into the output behind the
/// echoes of smaller ones.
const UNCOPIED_ECHO: usize = 16 * 1024;

/// Bytes an idle connection waits for on its thread's stack.
const IDLE_READ: usize = 1024;

/// An `/echo` connection's protocol state and write half, shared with the
/// shutdown.
#[derive(Debug)]
pub struct EchoWriter {
    stream: Arc<Socket>,
    /// Held by the connection's thread except while it waits for a message.
    conn: Mutex<Connection>,
    /// Held for a few instructions at a time, never across a blocking write.
    farewell: Mutex<Farewell>,
}

/// Where the shutdown's Close 1001 stands.
#[derive(Debug, Default)]
enum Farewell {
    /// No shutdown.
    #[default]
    None,
    /// The shutdown found the connection busy: its thread closes it with
    /// 1001 when its write ends.
    Requested,
    /// The shutdown closed the connection and wrote its output, or the
    /// part of it the socket took: the rest (often nothing) must follow
    /// before anything else.
    Sent { rest: Vec<u8> },
    /// The connection's thread has taken the farewell in.
    Done,
}

impl EchoWriter {
    fn farewell(&self) -> MutexGuard<'_, Farewell> {
        self.farewell.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the shutdown has begun saying goodbye: a read may then have
    /// ended early with `WouldBlock` while it wrote (see
    /// [`transport::write_without_blocking`]), which is no read timeout.
    fn saying_goodbye(&self) -> bool {
        !matches!(*self.farewell(), Farewell::None)
    }

    /// Before the connection's thread writes: take in what the shutdown did
    /// meanwhile. Returns the rest of the shutdown's write, which must go
    /// out first and alone.
    fn begin_write(&self, conn: &mut Connection, metrics: &Metrics) -> Vec<u8> {
        let mut farewell = self.farewell();
        match std::mem::take(&mut *farewell) {
            Farewell::None => Vec::new(),
            Farewell::Requested => {
                *farewell = Farewell::Done;
                transport::close(conn, CloseCode::GOING_AWAY, SHUTTING_DOWN, metrics);
                Vec::new()
            }
            Farewell::Sent { rest } => {
                *farewell = Farewell::Done;
                rest
            }
            Farewell::Done => {
                *farewell = Farewell::Done;
                Vec::new()
            }
        }
    }

    /// After the write: whether the shutdown asked for a Close 1001 during it.
    fn end_write(&self) -> bool {
        matches!(*self.farewell(), Farewell::Requested)
    }

    /// Send the connection's output, taking in the shutdown's Close 1001.
    fn flush(
        &self,
        conn: &mut Connection,
        trace: Option<&str>,
        metrics: &Metrics,
    ) -> io::Result<()> {
        self.flush_then_echo(conn, trace, None, metrics).map(|_| ())
    }

    /// [`Self::flush`], then send `echo` (when given) in the same vectored
    /// write, its payload straight from the message: a large message is
    /// not copied into the output first. Returns whether the echo was sent
    /// (not once a Close has gone out).
    fn flush_then_echo(
        &self,
        conn: &mut Connection,
        trace: Option<&str>,
        mut echo: Option<&Message>,
        metrics: &Metrics,
    ) -> io::Result<bool> {
        let mut echoed = false;
        loop {
            let rest = self.begin_write(conn, metrics);
            transport::trace_received(conn);
            let result = if rest.is_empty() {
                if let Some(label) = trace {
                    transport::trace_sent(label, conn.output());
                }
                let echo = echo.take();
                let header = echo.and_then(|message| conn.header_for(message));
                let result = match (&header, echo) {
                    (Some(header), Some(message)) => transport::write_all_counted(
                        &self.stream,
                        &[conn.output(), header, message.as_bytes()],
                        metrics,
                    ),
                    _ => transport::write_counted(&self.stream, conn.output(), metrics),
                };
                conn.clear_output();
                echoed |= header.is_some();
                result
            } else {
                transport::write_counted(&self.stream, &rest, metrics)
            };
            let requested = self.end_write();
            result?;
            if !requested {
                return Ok(echoed);
            }
        }
    }
}

/// The peer's Close arrived: count it if it began the closing handshake.
/// Every Close of ours, the shutdown's too, goes through the connection,
/// so it knows whether one went first.
fn close_received(conn: &Connection, metrics: &Metrics) {
    if let Some(code) = conn.peer_began_closing() {
        metrics.close_received(code.0);
    }
}

/// The reason of the shutdown's Close 1001.
const SHUTTING_DOWN: &str = "server shutting down";

impl GoingAway for EchoWriter {
    fn going_away(&self, metrics: &Metrics) {
        let mut farewell = self.farewell();
        if !matches!(*farewell, Farewell::None) {
            return;
        }
        let mut conn = match self.conn.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // Busy processing, writing or reading a message: its thread
                // sends the Close when its write ends.
                *farewell = Farewell::Requested;
                return;
            }
        };
        // Its thread waits for the next message: the Close goes out from
        // here, holding the connection (so that no write can start
        // meanwhile) and without blocking. A client whose socket buffer is
        // full gets it later, if ever.
        transport::close(&mut conn, CloseCode::GOING_AWAY, SHUTTING_DOWN, metrics);
        let mut output = conn.take_output();
        let written = transport::write_without_blocking(&self.stream, &[&output], metrics);
        *farewell = Farewell::Sent {
            rest: output.split_off(written),
        };
    }
}

/// Wait for the next message, holding nothing, and give what arrives to the
/// connection. Never inlined, so that its read buffer is off the stack
/// before processing grows it: an idle connection's stack stays at the
/// pages that processing touches.
#[inline(never)]
fn read_between_messages(writer: &EchoWriter, metrics: &Metrics) -> ReadOutcome {
    let mut buffer = [0u8; IDLE_READ];
    let (outcome, n) = transport::read_bytes(&writer.stream, &mut buffer, metrics);
    writer.connection().receive(&buffer[..n]);
    outcome
}

/// The echo's settings, from the flags that only `/echo` reads.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Whether `/echo` is mounted at all (`--no-echo`: 404).
    pub enabled: bool,
    /// Largest message (`--echo-max-message`): past it, close 1009
    /// (RFC 6455 7.4.1).
    pub max_message: usize,
    /// How long a connection may stay silent before it is closed
    /// (`--idle-timeout`).
    pub idle_timeout: Duration,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            enabled: true,
            max_message: 16 * 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// `/echo` as a WebSocket application.
#[derive(Debug, Default)]
pub struct Echo {
    config: EchoConfig,
}

impl Echo {
    /// The echo with these settings.
    pub fn new(config: EchoConfig) -> Echo {
        Echo { config }
    }
}

impl WebSocketHandler for Echo {
    fn serve(&self, upgraded: Upgraded<'_>) {
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut conn = Connection::new(Config {
            max_message: self.config.max_message,
        });
        #[cfg(feature = "deflate")]
        if let Some(agreement) = upgraded.deflate {
            conn.use_deflate(agreement, upgraded.context.config.deflate_min_size);
        }
        run(
            upgraded.stream,
            conn,
            &upgraded.leftover,
            upgraded.context,
            self.config.idle_timeout,
        );
    }
}

/// Run an upgraded `/echo` connection until it closes, or until it has
/// been silent for `idle_timeout`. `leftover` holds bytes that arrived
/// right behind the request head.
pub fn run(
    stream: Socket,
    mut conn: Connection,
    leftover: &[u8],
    shared: &Context,
    idle_timeout: Duration,
) {
    let metrics = &shared.metrics;
    conn.receive(leftover);
    let trace = shared
        .config
        .trace
        .then(|| transport::trace_label(&stream, "/echo"));
    if let Some(label) = &trace {
        conn.trace_frames(label);
    }
    let stream = Arc::new(stream);
    let writer = Arc::new(EchoWriter {
        stream: Arc::clone(&stream),
        conn: Mutex::new(conn),
        farewell: Mutex::default(),
    });
    let mut conn = writer.connection();
    let _live = shared.live.register(
        Arc::clone(&writer) as Arc<dyn GoingAway>,
        Arc::clone(&stream),
        metrics,
    );
    let _ = stream.set_read_timeout(Some(idle_timeout));
    let mut close_deadline = None;
    // Set once the protocol core has failed the connection.
    let mut failed_deadline = None;
    loop {
        let mut batch_full = false;
        loop {
            match conn.next_event() {
                Ok(Some(Event::Message(message))) => {
                    metrics.messages_in.fetch_add(1, Relaxed);
                    let len = message.as_bytes().len();
                    // A message sent compressed is new bytes anyway.
                    let uncopied = len >= UNCOPIED_ECHO && !conn.compresses(len);
                    let sent = if uncopied && trace.is_none() {
                        match writer.flush_then_echo(&mut conn, None, Some(&message), metrics) {
                            Ok(sent) => sent,
                            Err(_) => return,
                        }
                    } else {
                        match &message {
                            Message::Text(text) => conn.send_text(text),
                            Message::Binary(data) => conn.send_binary(data),
                        }
                    };
                    if sent {
                        metrics.messages_out.fetch_add(1, Relaxed);
                        conn.trace_note(|| "echoed back".to_owned());
                    }
                }
                Ok(Some(Event::Close(_))) => close_received(&conn, metrics),
                Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
                Ok(None) => break,
                Err(error) => {
                    metrics.close_sent(error.close_code().0);
                }
            }
            // Coalesce: keep going while input is buffered, but do not let
            // the output grow past a few reads' worth before writing.
            if conn.output().len() >= 64 * 1024 {
                batch_full = true;
                break;
            }
        }
        if conn.state() == State::Failed && failed_deadline.is_none() {
            // The last bytes get what is left of FAILED_LINGER to go out: a
            // peer that does not read cannot hold the thread with them.
            failed_deadline = Some(Instant::now() + FAILED_LINGER);
            let _ = stream.set_write_timeout(Some(FAILED_LINGER));
        }
        if writer.flush(&mut conn, trace.as_deref(), metrics).is_err() {
            return;
        }
        match conn.state() {
            State::Closed | State::Failed => break,
            State::CloseSent if close_deadline.is_none() => {
                close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
                let _ = stream.set_read_timeout(Some(CLOSE_TIMEOUT));
            }
            _ => {}
        }
        if batch_full {
            // More events may be waiting in the buffered input.
            continue;
        }
        if close_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // A binary frame's payload is read whole, straight into the message;
        // the core offers no room for text, whose bytes must reach the UTF-8
        // check read by read.
        let outcome = match conn.direct_payload_room() {
            Some(room) => transport::read_payload(&stream, &mut conn, room, metrics),
            None if conn.is_between_messages() => {
                // Waiting for the next message: the connection is let go,
                // so that the shutdown can close it meanwhile.
                conn.release_idle_buffers();
                drop(conn);
                let outcome = read_between_messages(&writer, metrics);
                conn = writer.connection();
                outcome
            }
            None => transport::read_into(&stream, &mut conn, metrics),
        };
        match outcome {
            ReadOutcome::Data => {}
            // Not a timeout, most likely: the next flush takes the
            // shutdown's Close in, and the closing handshake's deadline
            // bounds the rest.
            ReadOutcome::TimedOut if writer.saying_goodbye() => {}
            ReadOutcome::TimedOut if conn.state() == State::Open => {
                transport::close(&mut conn, CloseCode::GOING_AWAY, "idle timeout", metrics);
            }
            ReadOutcome::TimedOut | ReadOutcome::Eof | ReadOutcome::Failed => return,
        }
    }
    drop(conn);
    match failed_deadline {
        Some(deadline) => transport::linger_close_until(&stream, deadline),
        None => transport::linger_close(&stream),
    }
}
