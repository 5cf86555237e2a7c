//! One `/ws` connection: its reader thread reads frames through the
//! protocol core and hands each text message to [`super::step`], which
//! decides what the request does; this shell carries that out against the
//! registry, the outboxes and the connection.
//! Everything it sends goes through the session's [`Outbox`], so its replies
//! and the messages other threads send it leave in one order.
//!
//! The reader holds nothing while it waits for the client: the connection
//! lives in the outbox, and the reader takes it only to process what
//! arrived, so the timer and the shutdown can close the session through
//! it meanwhile. The reader keeps no timers of its own (PROTOCOL.md
//! "Heartbeat and closing"): the AUTH deadline (4001), the silence limit
//! (4000) and the end of a closing handshake are the chat's timer thread's
//! (`super::timer`). A connection the protocol core failed (RFC 6455 7.1.7)
//! is not read any more: its last bytes and its lingering close share
//! [`FAILED_LINGER`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::io::app::Context as ServerContext;
use crate::io::live::LiveEntry;
use crate::io::metrics::Metrics;
use crate::io::socket::Socket;
use crate::io::transport::{self, ReadOutcome, CLOSE_TIMEOUT, FAILED_LINGER};
use crate::protocol::deflate::Agreement;
use crate::protocol::{CloseCode, Config, Connection, Event, Message, ProtocolError, State};

use super::message::{self, codes, MessageTemplate, UserId};
use super::outbox::{Enqueued, Outbox};
use super::registry::{Session, SubscribeRefusal};
use super::step::{self, Action, Context, Deliver, RateLimit};
use super::{unix_millis, Hub, Reach};

/// Bytes the reader waits for on its own stack: an idle session costs no
/// heap for its reads; only what arrives is copied into the connection.
const READ_BUFFER: usize = 1024;

/// Wait for bytes from the client, holding nothing, and give them to the
/// connection. A function of its own, never inlined, so that its read
/// buffer is off the stack before the processing that follows grows it:
/// an idle session's stack stays at the pages that processing touches.
#[inline(never)]
fn read_into_connection(stream: &Socket, outbox: &Outbox, metrics: &Metrics) -> ReadOutcome {
    let mut buffer = [0u8; READ_BUFFER];
    let (outcome, n) = transport::read_bytes(stream, &mut buffer, metrics);
    if let ReadOutcome::Data = outcome {
        // PROTOCOL.md: "Every frame from the client counts as life."
        outbox.sign_of_life();
        outbox.connection().receive(&buffer[..n]);
    }
    outcome
}

/// The reader's view of its session.
struct Reader<'a> {
    hub: &'a Hub,
    metrics: &'a Metrics,
    session: Arc<Session>,
    rate: RateLimit,
}

/// Run an upgraded `/ws` connection until it ends.
pub fn run(
    stream: Socket,
    leftover: &[u8],
    deflate: Option<Agreement>,
    shared: &Arc<ServerContext>,
    hub: &Hub,
) {
    let session = new_session(shared, hub, &stream, deflate);
    let stream = Arc::new(stream);
    let mut end = SessionEnd::begin(shared, hub, &session, &stream);
    let mut reader = Reader {
        hub,
        metrics: &shared.metrics,
        session: Arc::clone(&session),
        rate: RateLimit::new(hub.config.rate_limit, Instant::now()),
    };
    if reader.read_loop(&stream, leftover) == State::Failed {
        end.failed_at = Some(Instant::now());
    }
}

/// A session and its connection, built on the heap. Never inlined: the
/// structures pass through this frame, which is gone before the reader's
/// deepest call, so an idle session's stack keeps fewer pages.
#[inline(never)]
fn new_session(
    shared: &ServerContext,
    hub: &Hub,
    stream: &Socket,
    deflate: Option<Agreement>,
) -> Arc<Session> {
    let config = &hub.config;
    let session = Arc::new(Session {
        id: hub.next_session_id(),
        user: OnceLock::new(),
        outbox: Outbox::new(config.max_queue, config.presence_interval, config.heartbeat),
    });
    {
        let mut conn = session.outbox.connection();
        *conn = Connection::new(Config {
            max_message: config.max_message,
        });
        if shared.config.trace {
            conn.trace_frames(&transport::trace_label(stream, "/ws"));
        }
        #[cfg(feature = "deflate")]
        if let Some(agreement) = deflate {
            use_deflate(
                &mut conn,
                &session.outbox,
                agreement,
                shared.config.deflate_min_size,
            );
        }
        #[cfg(not(feature = "deflate"))]
        let _ = deflate;
    }
    session
}

/// permessage-deflate on a session: the connection inflates what arrives,
/// the outbox compresses MESSAGEs and long replies. Frames leave by more
/// than one path (the connection's output, the outbox's own items) that
/// the client inflates as one stream, so the server never compresses with
/// context takeover here, as RFC 7692 7.1.1.1 lets it (a server may always
/// refer back less than it is allowed to).
#[cfg(feature = "deflate")]
fn use_deflate(
    conn: &mut Connection,
    outbox: &super::outbox::Outbox,
    agreement: Agreement,
    min_size: usize,
) {
    let agreement = agreement.without_server_takeover();
    conn.use_deflate(agreement, min_size);
    outbox.compress_messages(super::outbox::MessageDeflate {
        window_bits: agreement.server_max_window_bits,
        min_size,
    });
}

/// The end of a session, however it ends: as a drop guard it also runs
/// while a panicking reader unwinds, so that a bug in one session can
/// leave no stale registry entry (PEER to it would be queued forever) and
/// no timer entry.
struct SessionEnd<'a> {
    shared: &'a ServerContext,
    hub: &'a Hub,
    session: &'a Session,
    stream: &'a Socket,
    /// When the protocol core failed the connection, if it did.
    failed_at: Option<Instant>,
    /// Dropped last, after the fields above: the shutdown waits for it.
    _live: LiveEntry<'a>,
}

impl<'a> SessionEnd<'a> {
    /// Connect the session's outbox to its socket, hand the session to the
    /// timer, count it and register it for the shutdown.
    fn begin(
        shared: &'a Arc<ServerContext>,
        hub: &'a Hub,
        session: &'a Arc<Session>,
        stream: &'a Arc<Socket>,
    ) -> Self {
        session.outbox.attach(
            Arc::clone(stream),
            Arc::downgrade(session),
            shared,
            hub.drainers(shared.config.connection_stack()),
            hub.config.auth_timeout,
        );
        hub.timers.add(session);
        shared.metrics.sessions.fetch_add(1, Relaxed);
        let live = shared.live.register(
            Arc::clone(session) as Arc<dyn crate::io::live::GoingAway>,
            Arc::clone(stream),
            &shared.metrics,
        );
        SessionEnd {
            shared,
            hub,
            session,
            stream,
            failed_at: None,
            _live: live,
        }
    }
}

impl Drop for SessionEnd<'_> {
    fn drop(&mut self) {
        let metrics = &self.shared.metrics;
        self.hub.leave(self.session, metrics);
        self.hub.timers.remove(self.session.id);
        self.session.outbox.finish();
        let deadline = match self.failed_at {
            Some(failed_at) => failed_at + FAILED_LINGER,
            None => Instant::now() + CLOSE_TIMEOUT,
        };
        if !self.session.outbox.wait_until_drained(deadline) {
            // What is left is for a peer that does not read: cutting the
            // connection off ends the write that waits for it.
            transport::cut_off(self.stream);
        }
        metrics.sessions.fetch_sub(1, Relaxed);
        if !self.session.outbox.was_dropped() {
            match self.failed_at {
                Some(_) => transport::linger_close_until(self.stream, deadline),
                None => transport::linger_close(self.stream),
            }
        }
    }
}

impl Reader<'_> {
    /// Read and process until the connection is closed, failed or cut
    /// off; returns the connection's last state.
    fn read_loop(&mut self, stream: &Socket, leftover: &[u8]) -> State {
        let session = Arc::clone(&self.session);
        {
            let mut conn = session.outbox.connection();
            conn.receive(leftover);
            if !self.process(&mut conn) {
                return conn.state();
            }
        }
        loop {
            match read_into_connection(stream, &session.outbox, self.metrics) {
                ReadOutcome::Data => {
                    let mut conn = session.outbox.connection();
                    if !self.process(&mut conn) {
                        return conn.state();
                    }
                }
                // No read timeout is set: this is a sender's write-through,
                // which switches the descriptor to non-blocking for an
                // instant (`transport::write_without_blocking`).
                ReadOutcome::TimedOut => {}
                ReadOutcome::Eof | ReadOutcome::Failed => {
                    return session.outbox.connection().state();
                }
            }
        }
    }

    /// Carry out what arrived; false once nothing more is to be read.
    fn process(&mut self, conn: &mut Connection) -> bool {
        self.handle_events(conn);
        if self.flush(conn).is_err() {
            return true;
        }
        match conn.state() {
            State::Closed | State::Failed => return false,
            // A Close was sent or received: no message can reach this
            // session any more, so it is no longer online.
            State::CloseSent => self.hub.leave(&self.session, self.metrics),
            State::Open => {}
        }
        if conn.is_between_messages() {
            conn.release_idle_buffers();
        }
        true
    }

    fn close(&mut self, conn: &mut Connection, code: CloseCode, reason: &str) {
        transport::close(conn, code, reason, self.metrics);
    }

    /// Move the connection's own output (pongs, Close frames) to the outbox.
    fn flush(&mut self, conn: &mut Connection) -> Result<(), ()> {
        transport::trace_received(conn);
        match self.session.outbox.hand_over(conn, self.metrics) {
            Enqueued::Overflowed => {
                self.hub.leave(&self.session, self.metrics);
                Err(())
            }
            Enqueued::Yes | Enqueued::Closed => Ok(()),
        }
    }

    fn handle_events(&mut self, conn: &mut Connection) {
        loop {
            match conn.next_event() {
                Ok(Some(Event::Message(Message::Text(text)))) => {
                    self.metrics.messages_in.fetch_add(1, Relaxed);
                    // --trace: the frame before the replies.
                    transport::trace_received(conn);
                    self.request(conn, &text);
                }
                Ok(Some(Event::Message(Message::Binary(_)))) => {
                    // PROTOCOL.md: "A binary message on /ws is closed with 1003."
                    // An ordinary closing handshake (RFC 6455 7.1.2), not a
                    // failure (7.1.7): the message was well-formed and the
                    // application declines its type (7.4.1: 1003 "an
                    // endpoint that understands only text data MAY send this
                    // if it receives a binary message"), so the client's
                    // Close is awaited as after any Close.
                    conn.trace_note(|| "closing with 1003".to_owned());
                    self.close(
                        conn,
                        CloseCode::UNSUPPORTED_DATA,
                        "binary messages are not part of the SocketBox protocol",
                    );
                }
                Ok(Some(Event::Close(_))) => {
                    // Counted when it began the closing handshake: every
                    // Close of ours goes through the connection, so it knows.
                    if let Some(code) = conn.peer_began_closing() {
                        self.metrics.close_received(code.0);
                    }
                }
                Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
                Ok(None) => return,
                Err(error) => {
                    if let ProtocolError::MessageTooBig { limit } = error {
                        // PROTOCOL.md: "41300 ... (fatal: the ERROR, then close 1009)".
                        let text = message::error(
                            codes::ERROR_TOO_LARGE,
                            &format!("message over {limit} bytes"),
                        );
                        conn.send_text_before_close(&text);
                    }
                    self.metrics.close_sent(error.close_code().0);
                }
            }
            if self.flush(conn).is_err() {
                return;
            }
        }
    }

    fn reply(&mut self, conn: &mut Connection, text: &str) {
        conn.trace_note(|| format!("replied {text}"));
        if self.session.outbox.send_text(text, self.metrics) == Enqueued::Overflowed {
            self.hub.leave(&self.session, self.metrics);
        }
    }

    /// One SocketBox request: [`step::text`] decides, this carries it out.
    fn request(&mut self, conn: &mut Connection, text: &str) {
        if conn.state() != State::Open {
            return;
        }
        let context = Context {
            auth_secret: self.hub.config.auth_secret.as_deref(),
            now_millis: unix_millis(),
            now: Instant::now(),
        };
        let mut routes = Routes {
            hub: self.hub,
            metrics: self.metrics,
            session: &self.session,
            conn,
        };
        let user = self.session.user.get();
        let actions = step::text(user, &mut self.rate, text, &context, &mut routes);
        for action in actions {
            match action {
                Action::Reply(text) => self.reply(conn, &text),
                Action::Bind(id) => self.bind(conn, id),
                Action::Subscribe => self.subscribe(conn),
                Action::Close(code, reason) => self.close(conn, code, reason),
            }
        }
    }

    /// Bind the session to `id`: registered, then SYSTEM 20002 true and
    /// 20001 sent together by the outbox.
    fn bind(&mut self, conn: &mut Connection, id: UserId) {
        let _ = self.session.user.set(id.clone());
        let mut changed = false;
        let authenticated = self.session.outbox.authenticate(
            || {
                let (count, user_added) = self.hub.registry.bind(&id, &self.session);
                changed = user_added;
                count as u64
            },
            self.metrics,
        );
        conn.trace_note(|| format!("authenticated as {id}: SYSTEM 20002 true, 20001 queued"));
        if authenticated == Enqueued::Overflowed {
            // Bound, then dropped at once: a --max-queue too small for two replies.
            self.hub.leave(&self.session, self.metrics);
        }
        if changed {
            self.hub.presence_changed(self.metrics);
        }
    }
}

impl Reader<'_> {
    /// 10004 from a bound session: SYSTEM 20004 from the hub, or ERROR
    /// 40003 when more ids are online than `--presence-list-max`.
    fn subscribe(&mut self, conn: &mut Connection) {
        let list_max = self.hub.config.presence_list_max;
        match self.hub.subscribe(&self.session, list_max, self.metrics) {
            Ok(()) => {
                conn.trace_note(|| "subscribed to the online list: SYSTEM 20004 queued".to_owned())
            }
            Err(SubscribeRefusal::TooMany) => self.reply(
                conn,
                &message::error(
                    codes::ERROR_LIST_TOO_LONG,
                    &format!("the online list is over {list_max} ids: ask again later"),
                ),
            ),
            // Left the registry (closing, or dropped): nothing more to say.
            Err(SubscribeRefusal::NotOnline) => {}
        }
    }
}

/// The registry and the other sessions' outboxes, as [`step`] reaches them.
struct Routes<'a> {
    hub: &'a Hub,
    metrics: &'a Metrics,
    session: &'a Session,
    conn: &'a mut Connection,
}

impl Deliver for Routes<'_> {
    fn to_user(&mut self, to: &UserId, template: Arc<MessageTemplate>) -> Reach {
        let reach = self.hub.send_to_user(to, &template, self.metrics);
        self.conn.trace_note(|| match reach {
            Reach::Delivered(n) => format!("MESSAGE 30001 queued for {n} session(s) of {to}"),
            Reach::NotOnline => format!("MESSAGE 30001 queued for 0 session(s) of {to}"),
            Reach::Unreachable => format!("MESSAGE 30001 for {to}: another node is out of reach"),
        });
        reach
    }

    fn to_others(&mut self, template: Arc<MessageTemplate>) -> usize {
        let delivered = self
            .hub
            .send_to_everyone(Some(self.session.id), &template, self.metrics);
        self.conn
            .trace_note(|| format!("MESSAGE 30002 queued for {delivered} other session(s)"));
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::config::ServerConfig;
    use std::io::Read;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::thread;
    use std::time::Duration;

    /// A reader that panics (a bug; no input can make it panic on purpose)
    /// still takes its session out of the registry and the timer's list
    /// and closes its socket, because [`SessionEnd`] runs while unwinding.
    #[test]
    fn a_panicking_reader_still_ends_its_session() {
        let shared = Arc::new(ServerContext::new(ServerConfig::default()));
        let hub = Arc::new(Hub::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let config = &hub.config;
        let session = Arc::new(Session {
            id: hub.next_session_id(),
            user: OnceLock::new(),
            outbox: Outbox::new(config.max_queue, config.presence_interval, config.heartbeat),
        });
        let alice = UserId::new("alice").unwrap();
        session.user.set(alice.clone()).unwrap();
        hub.registry.bind(&alice, &session);

        let reader_shared = Arc::clone(&shared);
        let reader_session = Arc::clone(&session);
        let reader_hub = Arc::clone(&hub);
        let reader = thread::spawn(move || {
            let stream = Arc::new(Socket::plain(accepted));
            let _end = SessionEnd::begin(&reader_shared, &reader_hub, &reader_session, &stream);
            assert_eq!(reader_shared.metrics.sessions.load(Relaxed), 1);
            panic!("a bug in the reader");
        });
        // Our FIN lets the lingering close finish at once.
        client.shutdown(Shutdown::Write).unwrap();
        assert!(reader.join().is_err(), "the reader panicked");

        assert!(hub.registry.sessions_of(&alice).is_empty());
        assert_eq!(shared.metrics.sessions.load(Relaxed), 0);
        assert_eq!(shared.metrics.threads.load(Relaxed), 0, "no thread left");
        assert!(shared.live.wait_until_empty(Duration::ZERO));
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("EOF, not a timeout");
    }
}
