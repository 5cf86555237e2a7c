//! One `/ws` connection: its reader thread reads frames through the
//! protocol core and hands each text message to [`super::step`], which
//! decides what the request does; this shell carries that out against the
//! registry, the outboxes and the connection.
//! Everything it sends goes through the session's [`Outbox`], so its replies
//! and the messages other threads queue for it leave in one order.
//!
//! Timers (PROTOCOL.md "Heartbeat and closing") are the reader's read
//! timeout: before AUTH it is the `--auth-timeout` deadline (close 4001);
//! after, two heartbeat intervals plus 5 s since the last sign of life
//! (close 4000); after a Close is sent, the RFC 6455 closing handshake's
//! bounded wait. A connection the protocol core failed (RFC 6455 7.1.7) is
//! not read any more: its last bytes and its lingering close share
//! [`FAILED_LINGER`].

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::io::app::Context as ServerContext;
use crate::io::live::LiveEntry;
use crate::io::metrics::Metrics;
use crate::io::threads::ThreadCount;
use crate::io::transport::{self, ReadOutcome, CLOSE_TIMEOUT, FAILED_LINGER};
use crate::protocol::deflate::Agreement;
use crate::protocol::{CloseCode, Config, Connection, Event, Message, ProtocolError, State};

use super::message::{self, codes, MessageTemplate, UserId};
use super::outbox::{Enqueued, Outbox};
use super::registry::{Session, SubscribeRefusal};
use super::step::{self, Action, Context, Deliver, RateLimit};
use super::{unix_millis, Hub};

/// Grace added to two heartbeat intervals before a silent session is closed.
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(5);

/// The reader's view of its session.
struct Reader<'a> {
    shared: &'a ServerContext,
    hub: &'a Hub,
    metrics: &'a Metrics,
    session: Arc<Session>,
    conn: Connection,
    rate: RateLimit,
}

/// Run an upgraded `/ws` connection until it ends.
pub fn run(
    stream: TcpStream,
    leftover: &[u8],
    deflate: Option<Agreement>,
    shared: &Arc<ServerContext>,
    hub: &Hub,
) {
    let config = &shared.config;
    let session = Arc::new(Session {
        id: hub.next_session_id(),
        user: OnceLock::new(),
        outbox: Outbox::new(config.max_queue, config.presence_interval, config.heartbeat),
    });
    // The writer shares the reader's socket: one descriptor per session.
    let stream = Arc::new(stream);
    let mut end = match SessionEnd::begin(shared, hub, &session, &stream) {
        Ok(end) => end,
        Err(e) => {
            // No writer (the thread limits of docs/operations.md): say so
            // on the socket directly and give up.
            eprintln!("socketbox: cannot spawn a session writer thread: {e}");
            let mut conn = Connection::new(Config::default());
            transport::close(
                &mut conn,
                CloseCode::INTERNAL_ERROR,
                "server busy",
                &shared.metrics,
            );
            let _ = transport::flush(&stream, &mut conn, &shared.metrics);
            transport::linger_close(&stream);
            return;
        }
    };
    let mut reader = Reader {
        shared,
        hub,
        metrics: &shared.metrics,
        session: Arc::clone(&session),
        conn: Connection::new(Config {
            max_message: config.max_message,
        }),
        rate: RateLimit::new(config.rate_limit, Instant::now()),
    };
    if config.trace {
        reader
            .conn
            .trace_frames(&transport::trace_label(&stream, "/ws"));
    }
    #[cfg(feature = "deflate")]
    if let Some(agreement) = deflate {
        use_deflate(&mut reader.conn, &session.outbox, agreement, config);
    }
    #[cfg(not(feature = "deflate"))]
    let _ = deflate;
    reader.conn.receive(leftover);
    reader.read_loop(&stream);
    if reader.conn.state() == State::Failed {
        end.failed_at = Some(Instant::now());
    }
}

/// permessage-deflate on a session: the reader inflates, MESSAGEs go out
/// compressed through the outbox. Frames leave by two paths (the reader's
/// own replies, the outbox's MESSAGEs) that the client inflates as one
/// stream, so the server never compresses with context takeover here, as
/// RFC 7692 7.1.1.1 lets it ("the server MAY" reset its context for each
/// message even when allowed not to).
#[cfg(feature = "deflate")]
fn use_deflate(
    conn: &mut Connection,
    outbox: &super::outbox::Outbox,
    agreement: Agreement,
    config: &crate::io::config::ServerConfig,
) {
    let agreement = agreement.without_server_takeover();
    conn.use_deflate(agreement, config.deflate_min_size);
    outbox.compress_messages(super::outbox::MessageDeflate {
        window_bits: agreement.server_max_window_bits,
        min_size: config.deflate_min_size,
    });
}

/// The end of a session, however it ends: as a drop guard it also runs
/// while a panicking reader unwinds, so that a bug in one session can
/// leave no stale registry entry (PEER to it would be queued forever) and
/// no writer thread waiting on its condition variable forever.
struct SessionEnd<'a> {
    shared: &'a ServerContext,
    hub: &'a Hub,
    session: &'a Session,
    stream: &'a TcpStream,
    writer: Option<thread::JoinHandle<()>>,
    /// When the protocol core failed the connection, if it did.
    failed_at: Option<Instant>,
    /// Dropped last, after the fields above: the shutdown waits for it.
    _live: LiveEntry<'a>,
}

impl<'a> SessionEnd<'a> {
    /// Start the session's writer thread, count the session and register it
    /// for the shutdown. Fails only when no thread can be spawned.
    fn begin(
        shared: &'a Arc<ServerContext>,
        hub: &'a Hub,
        session: &'a Arc<Session>,
        stream: &'a Arc<TcpStream>,
    ) -> std::io::Result<Self> {
        if !shared.thread_available() {
            return Err(std::io::Error::other("connection thread budget reached"));
        }
        let writer = {
            let session = Arc::clone(session);
            let shared = Arc::clone(shared);
            let stream = Arc::clone(stream);
            let trace = (shared.config.trace).then(|| transport::trace_label(&stream, "/ws"));
            thread::Builder::new()
                .name("ws-writer".into())
                .stack_size(shared.config.thread_stack)
                .spawn(move || {
                    let _thread = ThreadCount::enter(&shared.metrics);
                    session
                        .outbox
                        .run_writer(&stream, trace.as_deref(), &shared.metrics);
                })?
        };
        if !shared.config.trace {
            session.outbox.allow_write_through(Arc::clone(stream));
        }
        shared.metrics.sessions.fetch_add(1, Relaxed);
        let live = shared.live.register(
            Arc::clone(session) as Arc<dyn crate::io::live::GoingAway>,
            Arc::clone(stream),
            &shared.metrics,
        );
        Ok(SessionEnd {
            shared,
            hub,
            session,
            stream,
            writer: Some(writer),
            failed_at: None,
            _live: live,
        })
    }
}

impl Drop for SessionEnd<'_> {
    fn drop(&mut self) {
        let metrics = &self.shared.metrics;
        self.hub.leave(self.session, metrics);
        self.session.outbox.finish();
        let deadline = match self.failed_at {
            Some(failed_at) => failed_at + FAILED_LINGER,
            None => Instant::now() + CLOSE_TIMEOUT,
        };
        if !self.session.outbox.wait_for_writer(deadline) {
            // What is left is for a peer that does not read: shutting the
            // socket down ends the write that waits for it.
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
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
    fn read_loop(&mut self, stream: &TcpStream) {
        let config = &self.shared.config;
        let auth_deadline = Instant::now() + config.auth_timeout;
        let silence_limit = config.heartbeat * 2 + HEARTBEAT_GRACE;
        let mut last_life = Instant::now();
        let mut close_deadline: Option<Instant> = None;
        loop {
            self.handle_events();
            if self.flush().is_err() || matches!(self.conn.state(), State::Closed | State::Failed) {
                return;
            }
            if self.conn.state() != State::Open {
                // A Close was sent or received: no message can reach this
                // session any more, so it is no longer online.
                self.hub.leave(&self.session, self.metrics);
            }
            let now = Instant::now();
            let deadline = match (self.conn.state(), self.session.user.get()) {
                (State::Open, None) => auth_deadline,
                (State::Open, Some(_)) => last_life + silence_limit,
                _ => *close_deadline.get_or_insert(now + CLOSE_TIMEOUT),
            };
            if now >= deadline {
                match self.conn.state() {
                    State::Open if self.session.user.get().is_none() => {
                        self.close(codes::CLOSE_AUTH_TIMEOUT, "no AUTH in time");
                    }
                    State::Open => self.close(codes::CLOSE_HEARTBEAT_TIMEOUT, "no sign of life"),
                    _ => return,
                }
                continue;
            }
            if stream.set_read_timeout(Some(deadline - now)).is_err() {
                return;
            }
            match transport::read_into(stream, &mut self.conn, self.metrics) {
                // PROTOCOL.md: "Every frame from the client counts as life."
                ReadOutcome::Data => last_life = Instant::now(),
                ReadOutcome::TimedOut => {}
                ReadOutcome::Eof | ReadOutcome::Failed => return,
            }
            if self.session.outbox.was_dropped() {
                return;
            }
        }
    }

    fn close(&mut self, code: CloseCode, reason: &str) {
        transport::close(&mut self.conn, code, reason, self.metrics);
    }

    /// Move the connection's own output (pongs, Close frames) to the outbox.
    fn flush(&mut self) -> Result<(), ()> {
        transport::trace_received(&mut self.conn);
        let closing = self.conn.state() != State::Open;
        let bytes = self.conn.take_output();
        match self
            .session
            .outbox
            .send_frames(bytes, closing, self.metrics)
        {
            Enqueued::Overflowed => {
                self.hub.leave(&self.session, self.metrics);
                Err(())
            }
            Enqueued::Yes | Enqueued::Closed => Ok(()),
        }
    }

    fn handle_events(&mut self) {
        loop {
            match self.conn.next_event() {
                Ok(Some(Event::Message(Message::Text(text)))) => {
                    self.metrics.messages_in.fetch_add(1, Relaxed);
                    // --trace: the frame before the replies the writer prints.
                    transport::trace_received(&mut self.conn);
                    self.request(&text);
                }
                Ok(Some(Event::Message(Message::Binary(_)))) => {
                    // PROTOCOL.md: "A binary message on /ws is closed with 1003."
                    // An ordinary closing handshake (RFC 6455 7.1.2), not a
                    // failure (7.1.7): the message was well-formed and the
                    // application declines its type (7.4.1: 1003 "an
                    // endpoint that understands only text data MAY send this
                    // if it receives a binary message"), so the client's
                    // Close is awaited as after any Close.
                    self.conn.trace_note(|| "closing with 1003".to_owned());
                    self.close(
                        CloseCode::UNSUPPORTED_DATA,
                        "binary messages are not part of the SocketBox protocol",
                    );
                }
                Ok(Some(Event::Close(_))) => {
                    self.session.outbox.close_received(&self.conn, self.metrics)
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
                        self.conn.send_text_before_close(&text);
                    }
                    self.metrics.close_sent(error.close_code().0);
                }
            }
            if self.flush().is_err() {
                return;
            }
        }
    }

    fn reply(&mut self, text: &str) {
        self.conn.trace_note(|| format!("replied {text}"));
        if self.session.outbox.send_text(text, self.metrics) == Enqueued::Overflowed {
            self.hub.leave(&self.session, self.metrics);
        }
    }

    /// One SocketBox request: [`step::text`] decides, this carries it out.
    fn request(&mut self, text: &str) {
        if self.conn.state() != State::Open {
            return;
        }
        let context = Context {
            auth_secret: self.shared.config.auth_secret.as_deref(),
            now_millis: unix_millis(),
            now: Instant::now(),
        };
        let mut routes = Routes {
            hub: self.hub,
            metrics: self.metrics,
            session: &self.session,
            conn: &mut self.conn,
        };
        let user = self.session.user.get();
        for action in step::text(user, &mut self.rate, text, &context, &mut routes) {
            match action {
                Action::Reply(text) => self.reply(&text),
                Action::Bind(id) => self.bind(id),
                Action::Subscribe => self.subscribe(),
                Action::Close(code, reason) => self.close(code, reason),
            }
        }
    }

    /// Bind the session to `id`: registered, then SYSTEM 20002 true and
    /// 20001 queued together by the outbox.
    fn bind(&mut self, id: UserId) {
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
        self.conn
            .trace_note(|| format!("authenticated as {id}: SYSTEM 20002 true, 20001 queued"));
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
    fn subscribe(&mut self) {
        let list_max = self.shared.config.presence_list_max;
        match self.hub.subscribe(&self.session, list_max, self.metrics) {
            Ok(()) => self
                .conn
                .trace_note(|| "subscribed to the online list: SYSTEM 20004 queued".to_owned()),
            Err(SubscribeRefusal::TooMany) => self.reply(&message::error(
                codes::ERROR_LIST_TOO_LONG,
                &format!("the online list is over {list_max} ids: ask again later"),
            )),
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
    fn to_user(&mut self, to: &UserId, template: Arc<MessageTemplate>) -> usize {
        let recipients = self.hub.registry.sessions_of(to);
        let delivered = self.hub.deliver(&template, &recipients, self.metrics);
        self.conn
            .trace_note(|| format!("MESSAGE 30001 queued for {delivered} session(s) of {to}"));
        delivered
    }

    fn to_others(&mut self, template: Arc<MessageTemplate>) -> usize {
        let mut recipients = self.hub.registry.all_sessions();
        recipients.retain(|s| s.id != self.session.id);
        let delivered = self.hub.deliver(&template, &recipients, self.metrics);
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
    use std::net::{Shutdown, TcpListener};

    /// A reader that panics (a bug; no input can make it panic on purpose)
    /// still takes its session out of the registry, stops its writer thread
    /// and closes its socket, because [`SessionEnd`] runs while unwinding.
    #[test]
    fn a_panicking_reader_still_ends_its_session() {
        let shared = Arc::new(ServerContext::new(ServerConfig::default()));
        let hub = Arc::new(Hub::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let config = &shared.config;
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
            let stream = Arc::new(accepted);
            let _end =
                SessionEnd::begin(&reader_shared, &reader_hub, &reader_session, &stream).unwrap();
            assert_eq!(reader_shared.metrics.sessions.load(Relaxed), 1);
            panic!("a bug in the reader");
        });
        // Our FIN lets the lingering close finish at once.
        client.shutdown(Shutdown::Write).unwrap();
        assert!(reader.join().is_err(), "the reader panicked");

        assert!(hub.registry.sessions_of(&alice).is_empty());
        assert_eq!(shared.metrics.sessions.load(Relaxed), 0);
        assert_eq!(shared.metrics.threads.load(Relaxed), 0, "writer ended");
        assert!(shared.live.wait_until_empty(Duration::ZERO));
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("EOF, not a timeout");
    }
}
