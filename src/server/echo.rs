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
//! Writes go through an [`EchoWriter`], a mutex around the socket's write
//! side, because one other thread may write too: the shutdown, which sends
//! Close 1001 to every connection ([`super::live`]). Both share the one
//! socket descriptor through an `Arc` (see [`super::transport`]).

use std::io;
use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::protocol::close::close_payload;
use crate::protocol::frame::{write_frame, OpCode};
use crate::protocol::{CloseCode, Config, Connection, Event, Message, State};

use super::live::GoingAway;
use super::metrics::Metrics;
use super::transport::{self, ReadOutcome, CLOSE_TIMEOUT, FAILED_LINGER};
use super::Shared;

/// Messages at least this long are echoed from where they are, by a
/// vectored write, instead of being copied into the output behind the
/// echoes of smaller ones.
const UNCOPIED_ECHO: usize = 16 * 1024;

/// The write half of an `/echo` connection, shared with the shutdown.
#[derive(Debug)]
pub struct EchoWriter {
    state: Mutex<WriterState>,
}

#[derive(Debug)]
struct WriterState {
    stream: Arc<TcpStream>,
    /// A Close frame has gone out, from either thread.
    close_sent: bool,
    /// The shutdown sent it: the connection must learn of it.
    going_away: bool,
}

impl EchoWriter {
    /// Send the connection's output, unless the shutdown has already sent
    /// a Close, in which case the connection is told and its data dropped.
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
        echo: Option<&Message>,
        metrics: &Metrics,
    ) -> io::Result<bool> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.going_away {
            // Our Close 1001 is out: nothing may follow it, not even the
            // answer to a Close the peer sent meanwhile.
            conn.close_sent_externally();
            conn.clear_output();
        }
        transport::trace_received(conn);
        if let Some(label) = trace {
            transport::trace_sent(label, conn.output());
        }
        let header = echo.and_then(|message| conn.header_for(message));
        let result = match (&header, echo) {
            (Some(header), Some(message)) => transport::write_all_counted(
                &state.stream,
                &[conn.output(), header, message.as_bytes()],
                metrics,
            ),
            _ => transport::write_counted(&state.stream, conn.output(), metrics),
        };
        conn.clear_output();
        if conn.state() != State::Open {
            state.close_sent = true;
        }
        result.map(|()| header.is_some())
    }
}

impl GoingAway for EchoWriter {
    fn going_away(&self, metrics: &Metrics) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.close_sent {
            return;
        }
        let mut frame = Vec::new();
        write_frame(
            &mut frame,
            OpCode::Close,
            &close_payload(CloseCode::GOING_AWAY, "server shutting down"),
        );
        state.close_sent = true;
        state.going_away = true;
        let _ = transport::write_counted(&state.stream, &frame, metrics);
        metrics.close_sent(CloseCode::GOING_AWAY.0);
    }
}

/// Run an upgraded `/echo` connection until it closes. `leftover` holds
/// bytes that arrived right behind the request head.
pub fn run(stream: TcpStream, leftover: &[u8], shared: &Shared) {
    let metrics = &shared.metrics;
    let mut conn = Connection::new(Config {
        max_message: shared.config.echo_max_message,
    });
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
        state: Mutex::new(WriterState {
            stream: Arc::clone(&stream),
            close_sent: false,
            going_away: false,
        }),
    });
    let _live = shared
        .live
        .register(Arc::clone(&writer) as Arc<dyn GoingAway>, metrics);
    let _ = stream.set_read_timeout(Some(shared.config.idle_timeout));
    let mut close_deadline = None;
    // Set once the protocol core has failed the connection.
    let mut failed_deadline = None;
    loop {
        let mut batch_full = false;
        loop {
            match conn.next_event() {
                Ok(Some(Event::Message(message))) => {
                    metrics.messages_in.fetch_add(1, Relaxed);
                    let sent = if message.as_bytes().len() >= UNCOPIED_ECHO && trace.is_none() {
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
                Ok(Some(Event::Close(_))) => {}
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
        // text goes through the read buffer, read by read, so that bad
        // UTF-8 fails the connection as soon as it arrives.
        let outcome = match conn.direct_payload_room() {
            Some(room) if !conn.is_receiving_text() => {
                transport::read_payload(&stream, &mut conn, room, metrics)
            }
            _ => transport::read_into(&stream, &mut conn, metrics),
        };
        match outcome {
            ReadOutcome::Data => {}
            ReadOutcome::TimedOut if conn.state() == State::Open => {
                transport::close(&mut conn, CloseCode::GOING_AWAY, "idle timeout", metrics);
            }
            ReadOutcome::TimedOut | ReadOutcome::Eof | ReadOutcome::Failed(_) => return,
        }
    }
    match failed_deadline {
        Some(deadline) => transport::linger_close_until(&stream, deadline),
        None => transport::linger_close(&stream),
    }
}
