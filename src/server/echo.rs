//! `GET /echo`: every text and binary message is sent straight back (the
//! endpoint conformance suites and benchmarks talk to).
//!
//! One thread does everything: read, let the protocol core turn bytes into
//! events, queue the echoes, write them. While more input is already
//! buffered the echoes of several messages go out in one write.

use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::protocol::{CloseCode, Config, Connection, Event, Message, State};

use super::transport::{self, ReadOutcome, CLOSE_TIMEOUT};
use super::Shared;

/// Run an upgraded `/echo` connection until it closes. `leftover` holds
/// bytes that arrived right behind the request head.
pub fn run(mut stream: TcpStream, leftover: &[u8], shared: &Shared) {
    let metrics = &shared.metrics;
    let mut conn = Connection::new(Config {
        max_message: shared.config.echo_max_message,
    });
    conn.receive(leftover);
    let _ = stream.set_read_timeout(Some(shared.config.idle_timeout));
    let mut close_deadline = None;
    loop {
        let mut batch_full = false;
        loop {
            match conn.next_event() {
                Ok(Some(Event::Message(message))) => {
                    metrics.messages_in.fetch_add(1, Relaxed);
                    let sent = match &message {
                        Message::Text(text) => conn.send_text(text),
                        Message::Binary(data) => conn.send_binary(data),
                    };
                    if sent {
                        metrics.messages_out.fetch_add(1, Relaxed);
                    }
                }
                Ok(Some(Event::Close(_))) => {}
                Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
                Ok(None) => break,
                Err(error) => {
                    metrics.close_sent(error.close_code().0);
                    if shared.config.trace {
                        eprintln!("echo: failing connection: {error}");
                    }
                }
            }
            // Coalesce: keep going while input is buffered, but do not let
            // the output grow past a few reads' worth before writing.
            if conn.output().len() >= 64 * 1024 {
                batch_full = true;
                break;
            }
        }
        if transport::flush(&mut stream, &mut conn, metrics).is_err() {
            return;
        }
        match conn.state() {
            State::Closed => break,
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
        match transport::read_into(&mut stream, &mut conn, metrics) {
            ReadOutcome::Data => {}
            ReadOutcome::TimedOut if conn.state() == State::Open => {
                transport::close(&mut conn, CloseCode::GOING_AWAY, "idle timeout", metrics);
            }
            ReadOutcome::TimedOut | ReadOutcome::Eof | ReadOutcome::Failed(_) => return,
        }
    }
    transport::linger_close(&mut stream);
}
