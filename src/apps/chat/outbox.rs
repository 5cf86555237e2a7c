//! A session's output: its protocol connection (every Close the server
//! sends goes through it) and its bounded outbound queue (PROTOCOL.md
//! "Heartbeat and closing": slow consumers, and the order and `seq` of
//! MESSAGEs; no RFC beyond 6455's framing and closing, 7.1.2).
//!
//! Whatever produces a frame for the session (its reader, a sender, the
//! presence thread, the admin API, the timer, the shutdown) writes it
//! through to the socket at once, without blocking, when nothing is queued
//! ahead of it. What the socket does not take is queued, and only then a
//! drain job, run by a thread borrowed from the chat's thread cache,
//! writes the queue out and returns the thread when the queue is empty. So
//! a healthy session holds one thread, its reader, and a slow consumer
//! never blocks a sender. The queue is bounded by `--max-queue` bytes:
//! past it the session is dropped, its queue emptied (but for the rest of
//! a frame already begun on the wire) and a Close 1008 sent through its
//! connection; the timer cuts its TCP connection [`SLOW_CONSUMER_GRACE`]
//! after the drop whatever the client does. A MESSAGE for many recipients
//! is one shared [`MessageTemplate`] plus each recipient's `seq`, assigned
//! under the queue's lock in queue order. The periodic work (heartbeat
//! PINGs, online counts, the AUTH and silence deadlines, the end of a
//! closing handshake) is [`Outbox::tick`], which the chat's one timer
//! thread runs for every session. Why it is built this way:
//! `docs/architecture.md`, "The `/ws` outbox".
//!
//! Lock order: the connection, then the queue. A thread holding a queue's
//! lock never takes a connection's; a reader holds only its own connection.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::time::{Duration, Instant};

use crate::io::app::Context as ServerContext;
use crate::io::metrics::Metrics;
use crate::io::socket::Socket;
use crate::io::threads::{ThreadCache, ThreadCount};
use crate::io::transport::{self, CLOSE_TIMEOUT};
use crate::protocol::frame::{write_frame, FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::protocol::{CloseCode, Config, Connection, State};

use super::message::{self, codes, MessageTemplate};
use super::registry::Session;

/// Time between a slow consumer's drop and the forced end of its TCP
/// connection (PROTOCOL.md: "closed within 10 s whatever the client does").
pub const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(6);

/// Longest a single socket write of a drain job may block; it re-checks the
/// session's deadlines between attempts.
const WRITE_STEP: Duration = Duration::from_secs(2);

/// The threads that drain queues, lent for as long as a queue has bytes.
pub(crate) type Drainers = ThreadCache<Arc<Session>>;

/// A cache of drain threads with `stack` bytes of stack each.
pub(crate) fn drainers(stack: usize) -> Arc<Drainers> {
    ThreadCache::new(stack, |session: Arc<Session>| session.outbox.drain())
}

/// One thing to send.
#[derive(Debug)]
enum Item {
    /// Output of the session's protocol connection: pongs, Close frames.
    Frame(Vec<u8>),
    /// One complete text frame of this session's own: a reply, an online
    /// count, a heartbeat PING. Counted in `socketbox_messages_out_total`.
    Text(Vec<u8>),
    /// A MESSAGE (1756) shared with other recipients, with this session's seq.
    Message(Arc<MessageTemplate>, u64),
    /// The rest of a frame whose beginning went out: it must follow on the
    /// wire before anything else, even a slow consumer's Close, or the
    /// client would read the next frame as payload.
    Rest(Vec<u8>),
}

impl Item {
    fn cost(&self) -> usize {
        match self {
            Item::Frame(bytes) | Item::Text(bytes) | Item::Rest(bytes) => bytes.len(),
            Item::Message(template, _) => template.len_without_seq() + 30,
        }
    }

    fn is_message(&self) -> bool {
        matches!(self, Item::Text(_) | Item::Message(..))
    }

    /// Run `f` on the item's bytes, in order (a MESSAGE compressed when
    /// `deflate` is given, see [`message_frame_parts`]).
    fn with_parts<R>(&self, deflate: Option<&MessageDeflate>, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        match self {
            Item::Frame(bytes) | Item::Text(bytes) | Item::Rest(bytes) => f(&[bytes]),
            Item::Message(template, seq) => {
                let (header, middle, seq_and_tail) = message_frame_parts(template, *seq, deflate);
                f(&[&header, &middle, &seq_and_tail])
            }
        }
    }
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    next_seq: u64,
    /// A drain job owns the socket's writing: nobody writes through.
    draining: bool,
    /// When a Close of ours (or our answer to the peer's) went into the
    /// queue, taken from the connection's state as its output is handed
    /// over: nothing is accepted after it.
    close_queued: Option<Instant>,
    /// The reader has ended: nothing more is accepted.
    finished: bool,
    /// When the session was dropped as a slow consumer.
    dropped_at: Option<Instant>,
    /// A Close the connection is to send at the next hand-over (a slow
    /// consumer's 1008, chosen by a thread that may not take the
    /// connection's lock).
    close_pending: Option<(CloseCode, &'static str)>,
    /// Until when the session may go without AUTH.
    auth_deadline: Option<Instant>,
    /// The last frame from the client (PROTOCOL.md: "Every frame from the
    /// client counts as life").
    last_life: Instant,
    /// The latest online count not yet sent, and when and what was last
    /// sent; `presence_last_sent` is set once authenticated.
    presence_pending: Option<u64>,
    presence_last_sent: Option<Instant>,
    presence_last_value: Option<u64>,
    /// When to send the next heartbeat PING, once authenticated.
    next_ping: Option<Instant>,
}

impl Queue {
    fn accepting(&self) -> bool {
        !self.finished && self.close_queued.is_none() && self.dropped_at.is_none()
    }
}

/// Where the session's bytes go, once its connection is upgraded.
#[derive(Debug)]
struct Attachment {
    stream: Arc<Socket>,
    session: Weak<Session>,
    context: Arc<ServerContext>,
    drainers: Arc<Drainers>,
    /// `--trace`: the session's label.
    trace: Option<String>,
}

/// A session's connection and bounded outbound queue.
#[derive(Debug)]
pub struct Outbox {
    /// The protocol connection: its reader parses with it; any thread that
    /// closes the session closes it.
    conn: Mutex<Connection>,
    queue: Mutex<Queue>,
    /// Signalled when a drain job ends.
    drained: Condvar,
    max_bytes: usize,
    presence_interval: Duration,
    heartbeat: Duration,
    attached: OnceLock<Attachment>,
    /// permessage-deflate: MESSAGEs and long replies go out compressed
    /// (see [`message_frame_parts`]).
    deflate: OnceLock<MessageDeflate>,
}

/// How a session compresses what it sends: the window bits agreed, and the
/// smallest message compressed (`--deflate-min-size`).
#[derive(Debug, Clone, Copy)]
pub struct MessageDeflate {
    /// `server_max_window_bits` as agreed (15 unless the client asked).
    pub window_bits: u8,
    /// `--deflate-min-size`.
    pub min_size: usize,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Sent or queued.
    Yes,
    /// The session is closing or gone; nothing was queued.
    Closed,
    /// This item overflowed the queue: the session has just been dropped as
    /// a slow consumer. The caller removes it from the registry.
    Overflowed,
}

/// A lock whose holder panicked still guards consistent data here (every
/// critical section leaves it whole), so it is taken over.
fn relock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Outbox {
    /// An empty outbox with the server's limits.
    pub fn new(max_bytes: usize, presence_interval: Duration, heartbeat: Duration) -> Self {
        Outbox {
            conn: Mutex::new(Connection::new(Config::default())),
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                draining: false,
                close_queued: None,
                finished: false,
                dropped_at: None,
                close_pending: None,
                auth_deadline: None,
                last_life: Instant::now(),
                presence_pending: None,
                presence_last_sent: None,
                presence_last_value: None,
                next_ping: None,
            }),
            drained: Condvar::new(),
            max_bytes,
            presence_interval,
            heartbeat,
            attached: OnceLock::new(),
            deflate: OnceLock::new(),
        }
    }

    /// Send MESSAGEs and long replies compressed from now on
    /// (permessage-deflate agreed).
    pub fn compress_messages(&self, deflate: MessageDeflate) {
        let _ = self.deflate.set(deflate);
    }

    /// Connect the outbox to the session's socket: from now on what it is
    /// given is written to `stream`, the AUTH deadline runs, and a queue
    /// that builds up is drained by `drainers`.
    pub(crate) fn attach(
        &self,
        stream: Arc<Socket>,
        session: Weak<Session>,
        context: &Arc<ServerContext>,
        drainers: Arc<Drainers>,
        auth_timeout: Duration,
    ) {
        transport::set_write_timeout(&stream, WRITE_STEP);
        let trace = (context.config.trace).then(|| transport::trace_label(&stream, "/ws"));
        let attachment = Attachment {
            stream,
            session,
            context: Arc::clone(context),
            drainers,
            trace,
        };
        let mut queue = self.lock();
        queue.auth_deadline = Some(Instant::now() + auth_timeout);
        queue.last_life = Instant::now();
        let _ = self.attached.set(attachment);
    }

    /// The session's protocol connection.
    pub(crate) fn connection(&self) -> MutexGuard<'_, Connection> {
        relock(&self.conn)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        relock(&self.queue)
    }

    /// Move the connection's output (pongs, a Close) to the socket or the
    /// queue, after sending through it a Close that another thread chose
    /// (a slow consumer's 1008). The caller holds the connection's lock.
    /// Once our Close is queued nothing more is accepted (RFC 6455 5.5.1:
    /// "After sending a Close frame, the endpoint MUST NOT send any further
    /// data frames"); a Close goes in past `--max-queue`, so that a full
    /// queue cannot turn a shutdown's 1001 into a slow consumer's 1008.
    pub(crate) fn hand_over(&self, conn: &mut Connection, metrics: &Metrics) -> Enqueued {
        let mut queue = self.lock();
        let mut result = Enqueued::Yes;
        loop {
            if let Some((code, reason)) = queue.close_pending.take() {
                transport::close(conn, code, reason, metrics);
            }
            let bytes = conn.take_output();
            if bytes.is_empty() {
                return result;
            }
            if queue.finished || queue.close_queued.is_some() {
                return Enqueued::Closed;
            }
            if conn.state() != State::Open {
                queue.close_queued = Some(Instant::now());
                self.send(&mut queue, Item::Frame(bytes), false, metrics);
                return result;
            }
            if queue.dropped_at.is_some() {
                // A dropped session is sent its Close 1008 and nothing else.
                return Enqueued::Closed;
            }
            match self.send(&mut queue, Item::Frame(bytes), true, metrics) {
                // The pending Close 1008 goes out on the next round.
                Enqueued::Overflowed => result = Enqueued::Overflowed,
                other => return other,
            }
        }
    }

    /// A frame arrived from the client: a sign of life.
    pub(crate) fn sign_of_life(&self) {
        self.lock().last_life = Instant::now();
    }

    /// Queue (or write through) a text message for this session.
    pub fn send_text(&self, text: &str, metrics: &Metrics) -> Enqueued {
        let mut bytes = Vec::with_capacity(text.len() + 4);
        #[cfg(feature = "deflate")]
        match self.deflate.get() {
            // A reply (an online list can be long) compressed like a MESSAGE.
            Some(deflate) if text.len() >= deflate.min_size => {
                let compressed = crate::protocol::deflate::compress_segment(
                    deflate.window_bits,
                    text.as_bytes(),
                    true,
                );
                crate::protocol::frame::write_compressed_frame(
                    &mut bytes,
                    OpCode::Text,
                    &compressed,
                );
            }
            _ => write_frame(&mut bytes, OpCode::Text, text.as_bytes()),
        }
        #[cfg(not(feature = "deflate"))]
        write_frame(&mut bytes, OpCode::Text, text.as_bytes());
        let mut queue = self.lock();
        self.push(&mut queue, Item::Text(bytes), metrics)
    }

    /// Send a shared MESSAGE, numbered with this session's next `seq`.
    pub fn send_message(&self, template: &Arc<MessageTemplate>, metrics: &Metrics) -> Enqueued {
        let mut queue = self.lock();
        let item = Item::Message(Arc::clone(template), queue.next_seq);
        let result = self.push(&mut queue, item, metrics);
        if result == Enqueued::Yes {
            queue.next_seq += 1;
        }
        result
    }

    fn push(&self, queue: &mut Queue, item: Item, metrics: &Metrics) -> Enqueued {
        if !queue.accepting() {
            return Enqueued::Closed;
        }
        self.send(queue, item, true, metrics)
    }

    /// Write `item` through to the socket without blocking when nothing is
    /// ahead of it; queue what the socket does not take (within
    /// `--max-queue` when `limited`) and make sure a drain job runs.
    fn send(&self, queue: &mut Queue, item: Item, limited: bool, metrics: &Metrics) -> Enqueued {
        let attached = self.attached.get();
        if let Some(label) = attached.and_then(|a| a.trace.as_deref()) {
            item.with_parts(self.deflate.get(), |parts| {
                transport::trace_sent(label, &parts.concat())
            });
        }
        if let (Some(attached), false, true) = (attached, queue.draining, queue.items.is_empty()) {
            let (written, total) = item.with_parts(self.deflate.get(), |parts| {
                let written = transport::write_without_blocking(&attached.stream, parts, metrics);
                (written, parts.iter().map(|part| part.len()).sum::<usize>())
            });
            if written > 0 && item.is_message() {
                metrics.messages_out.fetch_add(1, Relaxed);
            }
            if written == total {
                // TLS: the frame is encrypted, but its records may still
                // wait in the socket for the kernel; a drain job sends them.
                if transport::output_pending(&attached.stream) {
                    self.start_drain(queue);
                }
                return Enqueued::Yes;
            }
            if written > 0 {
                // Begun on the wire: the rest goes out next, whatever the limit.
                let rest = item
                    .with_parts(self.deflate.get(), |parts| parts.concat())
                    .split_off(written);
                queue.bytes += rest.len();
                queue.items.push_back(Item::Rest(rest));
                self.start_drain(queue);
                return Enqueued::Yes;
            }
        }
        let cost = item.cost();
        if limited && queue.bytes + cost > self.max_bytes {
            self.drop_slow_consumer(queue, metrics);
            return Enqueued::Overflowed;
        }
        queue.bytes += cost;
        queue.items.push_back(item);
        self.start_drain(queue);
        Enqueued::Yes
    }

    /// PROTOCOL.md: a session whose outbound queue passes --max-queue bytes
    /// is dropped and "sent a Close 1008 as soon as its socket takes it".
    /// The Close is the connection's, sent by whoever next holds it (a drain
    /// job started here, or the reader).
    fn drop_slow_consumer(&self, queue: &mut Queue, metrics: &Metrics) {
        queue.items.retain(|item| matches!(item, Item::Rest(_)));
        queue.bytes = queue.items.iter().map(Item::cost).sum();
        queue.dropped_at = Some(Instant::now());
        queue.close_pending = Some((CloseCode::POLICY_VIOLATION, "slow consumer"));
        metrics.slow_consumers.fetch_add(1, Relaxed);
        self.start_drain(queue);
    }

    /// Lend a thread to drain the queue, unless one drains it already or
    /// there is nothing to do. Without a thread to lend (the thread budget
    /// is spent) the timer tries again on its next round.
    fn start_drain(&self, queue: &mut Queue) {
        let Some(attached) = self.attached.get() else {
            return;
        };
        let idle = queue.items.is_empty()
            && queue.close_pending.is_none()
            && !transport::output_pending(&attached.stream);
        if queue.draining || idle {
            return;
        }
        let Some(session) = attached.session.upgrade() else {
            return;
        };
        if !attached.context.thread_available() {
            return;
        }
        queue.draining = true;
        if attached.drainers.run(session).is_err() {
            queue.draining = false;
        }
    }

    /// A drain job: write the queue out, blocking on this session's socket
    /// only, until it is empty; then give the thread back.
    fn drain(&self) {
        let Some(attached) = self.attached.get() else {
            return;
        };
        let metrics = &attached.context.metrics;
        let _thread = ThreadCount::enter(metrics);
        loop {
            if self.lock().close_pending.is_some() {
                let mut conn = self.connection();
                self.hand_over(&mut conn, metrics);
            }
            let item = {
                let mut queue = self.lock();
                if queue.close_pending.is_some() {
                    continue;
                }
                match queue.items.pop_front() {
                    Some(item) => {
                        queue.bytes -= item.cost();
                        item
                    }
                    None if transport::output_pending(&attached.stream) => {
                        // TLS records the kernel did not take yet: send
                        // them (without the lock), then look again.
                        drop(queue);
                        if !self.write_patiently(&attached.stream, &[], metrics) {
                            self.give_up(&attached.stream);
                            return;
                        }
                        continue;
                    }
                    None => {
                        queue.draining = false;
                        drop(queue);
                        self.drained.notify_all();
                        return;
                    }
                }
            };
            if item.is_message() {
                metrics.messages_out.fetch_add(1, Relaxed);
            }
            if !item.with_parts(self.deflate.get(), |parts| {
                self.write_patiently(&attached.stream, parts, metrics)
            }) {
                self.give_up(&attached.stream);
                return;
            }
        }
    }

    /// The socket failed, or the session's time is up: end the TCP
    /// connection, which also wakes the reader, and end the drain job.
    fn give_up(&self, stream: &Socket) {
        transport::cut_off(stream);
        let mut queue = self.lock();
        queue.items.clear();
        queue.bytes = 0;
        queue.close_pending = None;
        queue.draining = false;
        drop(queue);
        self.drained.notify_all();
    }

    /// Write every part fully. A write that times out is retried while the
    /// session has time: a dropped session until its grace ends, a closing
    /// one until its closing handshake's deadline.
    fn write_patiently(&self, stream: &Socket, parts: &[&[u8]], metrics: &Metrics) -> bool {
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let mut done = 0;
        while done < total {
            let mut skip = done;
            let mut unsent = Vec::with_capacity(parts.len());
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                unsent.push(&part[skip..]);
                skip = 0;
            }
            match transport::write_some(stream, &unsent, metrics) {
                Ok(0) => {
                    if self.out_of_time(&self.lock(), Instant::now()) {
                        return false;
                    }
                }
                Ok(n) => done += n,
                Err(_) => return false,
            }
        }
        // TLS: the last records may still wait in the socket; plain TCP has
        // nothing pending and returns at once.
        loop {
            match transport::flush_pending(stream) {
                Ok(()) => return true,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.out_of_time(&self.lock(), Instant::now()) {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Whether a dropped session's grace, or a closing handshake, is over.
    fn out_of_time(&self, queue: &Queue, now: Instant) -> bool {
        queue
            .dropped_at
            .is_some_and(|at| now >= at + SLOW_CONSUMER_GRACE)
            || queue
                .close_queued
                .is_some_and(|at| now >= at + CLOSE_TIMEOUT)
    }

    /// A successful AUTH: under this outbox's lock, `bind` puts the session
    /// in the registry and returns the online count; then SYSTEM 20002
    /// `true` and SYSTEM 20001 with that count are sent, the presence
    /// window starts and so do the heartbeat PINGs.
    ///
    /// Holding the lock across `bind` is what makes this one step for the
    /// other threads: nothing they send the session can come between its
    /// 20002 and its 20001 (PROTOCOL.md: the count is "sent to a session
    /// right after its 20002 true"), and an online count the presence thread
    /// offers once the session is in the registry waits for the lock instead
    /// of being ignored as if the session were not authenticated yet. (Lock
    /// order: outbox, then registry. Nothing takes them the other way round:
    /// routing lets the registry lock go before it queues.)
    pub fn authenticate(&self, bind: impl FnOnce() -> u64, metrics: &Metrics) -> Enqueued {
        let mut queue = self.lock();
        if !queue.accepting() {
            // Closing or dropped: it must not enter the registry.
            return Enqueued::Closed;
        }
        let count = bind();
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            OpCode::Text,
            message::system(codes::SYSTEM_AUTH_RESULT, true.into()).as_bytes(),
        );
        let accepted = self.push(&mut queue, Item::Text(bytes), metrics);
        if accepted != Enqueued::Yes {
            return accepted;
        }
        let now = Instant::now();
        queue.presence_pending = None;
        queue.presence_last_sent = Some(now);
        queue.presence_last_value = Some(count);
        queue.auth_deadline = None;
        if queue.next_ping.is_none() {
            queue.next_ping = Some(now + self.heartbeat);
        }
        self.push(&mut queue, Item::Text(online_count(count)), metrics)
    }

    /// A new online count: it is sent at once when this session's presence
    /// window allows, else when the window ends, a newer count offered
    /// before then replacing it; returns that time. A count equal to the
    /// last one this session was sent is no change for it (its own login,
    /// say, which it was told about with its 20002), so nothing is sent for
    /// it.
    pub fn offer_presence(&self, count: u64, metrics: &Metrics) -> Option<Instant> {
        let mut queue = self.lock();
        let last_sent = queue.presence_last_sent?;
        if !queue.accepting() {
            return None;
        }
        queue.presence_pending = (queue.presence_last_value != Some(count)).then_some(count);
        queue.presence_pending?;
        let due = last_sent + self.presence_interval;
        if Instant::now() < due {
            return Some(due);
        }
        self.send_presence(&mut queue, metrics);
        None
    }

    fn send_presence(&self, queue: &mut Queue, metrics: &Metrics) {
        if let Some(count) = queue.presence_pending.take() {
            queue.presence_last_sent = Some(Instant::now());
            queue.presence_last_value = Some(count);
            self.push(queue, Item::Text(online_count(count)), metrics);
        }
    }

    /// The server is shutting down: Close 1001 through the connection,
    /// unless a Close went out already. It never blocks on the peer: the
    /// Close goes after what is queued, if the client reads that.
    pub fn going_away(&self, metrics: &Metrics) {
        let mut conn = self.connection();
        transport::close(
            &mut conn,
            CloseCode::GOING_AWAY,
            "server shutting down",
            metrics,
        );
        self.hand_over(&mut conn, metrics);
    }

    /// Whether this session was dropped as a slow consumer.
    pub fn was_dropped(&self) -> bool {
        self.lock().dropped_at.is_some()
    }

    /// The reader is done: nothing more is accepted; what is queued still
    /// goes out.
    pub fn finish(&self) {
        self.lock().finished = true;
    }

    /// After [`Self::finish`]: wait until the queue is written out, at most
    /// until `deadline`; returns whether it was. The caller ends a drain
    /// job still blocked on a peer that does not read by cutting the
    /// connection off.
    pub fn wait_until_drained(&self, deadline: Instant) -> bool {
        let mut queue = self.lock();
        self.start_drain(&mut queue);
        while queue.draining {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = self
                .drained
                .wait_timeout(queue, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        queue.items.is_empty()
    }

    /// The timer's round for this session at `now`: send a due online count
    /// or heartbeat PING; close a session that did not authenticate in time
    /// (4001) or went silent for `silence_limit` (4000); cut off a slow
    /// consumer whose grace is over, or a closing handshake past its
    /// deadline; lend a drain job a thread if one was missing. Returns when
    /// this session next needs the timer.
    pub(crate) fn tick(
        &self,
        now: Instant,
        silence_limit: Duration,
        metrics: &Metrics,
    ) -> Option<Instant> {
        let mut queue = self.lock();
        if queue.finished {
            return None;
        }
        if self.out_of_time(&queue, now) {
            drop(queue);
            if let Some(attached) = self.attached.get() {
                transport::cut_off(&attached.stream);
            }
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut due = |at: Instant| next = Some(next.map_or(at, |next| next.min(at)));
        if let Some(at) = queue.dropped_at {
            due(at + SLOW_CONSUMER_GRACE);
        }
        if let Some(at) = queue.close_queued {
            due(at + CLOSE_TIMEOUT);
        }
        self.start_drain(&mut queue);
        if !queue.accepting() {
            return next;
        }
        let close = match (queue.presence_last_sent, queue.auth_deadline) {
            (Some(last_sent), _) => {
                if queue.presence_pending.is_some() {
                    if now >= last_sent + self.presence_interval {
                        self.send_presence(&mut queue, metrics);
                    } else {
                        due(last_sent + self.presence_interval);
                    }
                }
                if let Some(at) = queue.next_ping {
                    if now >= at {
                        // On the interval's own beat: a late round does not
                        // delay the PINGs after it.
                        let following = (at + self.heartbeat).max(now);
                        queue.next_ping = Some(following);
                        let mut bytes = Vec::new();
                        write_frame(&mut bytes, OpCode::Text, message::ping().as_bytes());
                        self.push(&mut queue, Item::Text(bytes), metrics);
                        due(following);
                    } else {
                        due(at);
                    }
                }
                let silent_until = queue.last_life + silence_limit;
                if now >= silent_until {
                    Some((codes::CLOSE_HEARTBEAT_TIMEOUT, "no sign of life"))
                } else {
                    due(silent_until);
                    None
                }
            }
            (None, Some(deadline)) if now >= deadline => {
                Some((codes::CLOSE_AUTH_TIMEOUT, "no AUTH in time"))
            }
            (None, Some(deadline)) => {
                due(deadline);
                None
            }
            (None, None) => None,
        };
        drop(queue);
        if let Some((code, reason)) = close {
            // A reader busy with a request holds the connection: next round.
            let mut conn = match self.conn.try_lock() {
                Ok(conn) => conn,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return Some(now),
            };
            transport::close(&mut conn, code, reason, metrics);
            self.hand_over(&mut conn, metrics);
            return Some(now + CLOSE_TIMEOUT);
        }
        next
    }
}

/// A SYSTEM 20001 frame with `count`.
fn online_count(count: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_frame(
        &mut bytes,
        OpCode::Text,
        message::system(codes::SYSTEM_ONLINE_COUNT, count.into()).as_bytes(),
    );
    bytes
}

/// The frame of a MESSAGE for the recipient whose `seq` this is, in
/// three parts: the header, the shared middle (the template's prefix), and
/// the `seq`-and-tail. With `deflate`, a message from the minimum size on
/// is compressed: the middle compressed once for all recipients, the rest
/// apart (`crate::protocol::deflate::compress_segment`), RSV1 set.
fn message_frame_parts<'t>(
    template: &'t MessageTemplate,
    seq: u64,
    deflate: Option<&MessageDeflate>,
) -> (Vec<u8>, std::borrow::Cow<'t, [u8]>, Vec<u8>) {
    let mut seq_and_tail = Vec::with_capacity(32);
    template.write_seq_and_tail(seq, &mut seq_and_tail);
    #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
    let (mut middle, mut rsv) = (std::borrow::Cow::Borrowed(template.prefix()), 0);
    #[cfg(feature = "deflate")]
    if let Some(deflate) = deflate {
        if middle.len() + seq_and_tail.len() >= deflate.min_size {
            use crate::protocol::deflate::compress_segment;
            middle = template.deflated_prefix(deflate.window_bits);
            seq_and_tail = compress_segment(deflate.window_bits, &seq_and_tail, true);
            rsv = 0b100;
        }
    }
    #[cfg(not(feature = "deflate"))]
    let _ = deflate;
    let mut header = Vec::with_capacity(MAX_HEADER_LEN);
    FrameHeader {
        fin: true,
        rsv,
        opcode: OpCode::Text,
        mask: None,
        payload_len: (middle.len() + seq_and_tail.len()) as u64,
    }
    .write(&mut header);
    (header, middle, seq_and_tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{FrameHeader, HeaderParse};

    fn outbox() -> Outbox {
        Outbox::new(1 << 20, Duration::from_secs(1), Duration::from_secs(30))
    }

    /// The payload of a queued text frame (replies here are under 126 bytes).
    fn text(item: &Item) -> &str {
        let Item::Text(bytes) = item else {
            panic!("not a text item: {item:?}");
        };
        assert_eq!(bytes[0], 0x81, "one final text frame");
        std::str::from_utf8(&bytes[2..]).unwrap()
    }

    /// The close code of the Close frame at the end of a queued frame item.
    fn close_code(item: &Item) -> u16 {
        let Item::Frame(bytes) = item else {
            panic!("not a frame item: {item:?}");
        };
        let HeaderParse::Complete { header, header_len } = FrameHeader::parse(bytes).unwrap()
        else {
            panic!("an incomplete header");
        };
        assert_eq!(header.opcode, OpCode::Close);
        u16::from_be_bytes([bytes[header_len], bytes[header_len + 1]])
    }

    #[test]
    fn authenticate_binds_then_queues_20002_and_20001_back_to_back() {
        let outbox = outbox();
        let metrics = Metrics::default();
        assert_eq!(outbox.authenticate(|| 3, &metrics), Enqueued::Yes);
        let queue = outbox.lock();
        let queued: Vec<&str> = queue.items.iter().map(text).collect();
        assert_eq!(
            queued,
            [
                r#"{"code":988,"extend":{"code":20002,"mess":true}}"#,
                r#"{"code":988,"extend":{"code":20001,"mess":3}}"#,
            ]
        );
        assert_eq!(queue.presence_last_value, Some(3));
        assert!(queue.next_ping.is_some(), "heartbeat PINGs start");
    }

    #[test]
    fn a_session_whose_connection_closed_is_not_bound_and_accepts_nothing() {
        let outbox = outbox();
        let metrics = Metrics::default();
        {
            let mut conn = outbox.connection();
            transport::close(&mut conn, CloseCode::NORMAL, "bye", &metrics);
            assert_eq!(outbox.hand_over(&mut conn, &metrics), Enqueued::Yes);
        }
        let mut bound = false;
        let result = outbox.authenticate(
            || {
                bound = true;
                1
            },
            &metrics,
        );
        assert_eq!(result, Enqueued::Closed);
        assert!(!bound);
        assert_eq!(outbox.send_text("late", &metrics), Enqueued::Closed);
        assert_eq!(outbox.lock().items.len(), 1, "only the Close");
    }

    #[test]
    fn only_a_changed_count_is_offered_and_the_latest_wins_until_its_window_ends() {
        let outbox = outbox();
        let metrics = Metrics::default();
        assert_eq!(
            outbox.offer_presence(5, &metrics),
            None,
            "not authenticated"
        );
        assert_eq!(outbox.lock().presence_pending, None);
        outbox.authenticate(|| 3, &metrics);
        assert_eq!(outbox.offer_presence(3, &metrics), None, "its own login");
        let due = outbox
            .offer_presence(4, &metrics)
            .expect("the window is open");
        outbox.offer_presence(6, &metrics);
        assert_eq!(outbox.lock().presence_pending, Some(6));
        assert_eq!(
            outbox.offer_presence(3, &metrics),
            None,
            "back to what it knows"
        );
        assert_eq!(outbox.lock().presence_pending, None);
        // The timer sends a pending count once the window has ended.
        outbox.offer_presence(7, &metrics);
        outbox.tick(due, Duration::from_secs(65), &metrics);
        let queue = outbox.lock();
        assert_eq!(queue.presence_pending, None);
        assert_eq!(
            text(queue.items.back().unwrap()),
            r#"{"code":988,"extend":{"code":20001,"mess":7}}"#
        );
    }

    #[test]
    fn an_overflowing_queue_drops_the_session_and_its_close_1008_goes_through_the_connection() {
        let outbox = Outbox::new(100, Duration::from_secs(1), Duration::from_secs(30));
        let metrics = Metrics::default();
        assert_eq!(outbox.send_text(&"x".repeat(60), &metrics), Enqueued::Yes);
        assert_eq!(
            outbox.send_text(&"y".repeat(60), &metrics),
            Enqueued::Overflowed
        );
        assert!(outbox.was_dropped());
        assert_eq!(metrics.slow_consumers.load(Relaxed), 1);
        assert_eq!(outbox.send_text("z", &metrics), Enqueued::Closed);
        assert!(outbox.lock().items.is_empty(), "the queue was emptied");
        // Whoever holds the connection next sends the pending Close.
        let mut conn = outbox.connection();
        outbox.hand_over(&mut conn, &metrics);
        assert_eq!(conn.state(), State::CloseSent);
        let queue = outbox.lock();
        assert_eq!(queue.items.len(), 1);
        assert_eq!(close_code(&queue.items[0]), 1008);
    }

    #[test]
    fn the_shutdown_close_goes_through_the_connection_past_the_limit_and_nothing_after_it() {
        let outbox = Outbox::new(100, Duration::from_secs(1), Duration::from_secs(30));
        let metrics = Metrics::default();
        assert_eq!(outbox.send_text(&"x".repeat(90), &metrics), Enqueued::Yes);
        outbox.going_away(&metrics);
        assert!(!outbox.was_dropped(), "a shutdown is not a slow consumer");
        assert_eq!(outbox.connection().state(), State::CloseSent);
        assert_eq!(outbox.send_text("late", &metrics), Enqueued::Closed);
        outbox.going_away(&metrics);
        let queue = outbox.lock();
        assert_eq!(queue.items.len(), 2, "one Close");
        assert_eq!(close_code(&queue.items[1]), 1001);
    }

    #[test]
    fn the_timer_closes_a_session_without_auth_in_time_with_4001_and_pings_the_authenticated() {
        let metrics = Metrics::default();
        let silent = outbox();
        let now = Instant::now();
        silent.lock().auth_deadline = Some(now + Duration::from_secs(10));
        assert!(silent
            .tick(now, Duration::from_secs(65), &metrics)
            .is_some());
        assert_eq!(silent.connection().state(), State::Open, "not yet");
        silent.tick(
            now + Duration::from_secs(10),
            Duration::from_secs(65),
            &metrics,
        );
        assert_eq!(silent.connection().state(), State::CloseSent);
        assert_eq!(close_code(silent.lock().items.back().unwrap()), 4001);

        let talking = outbox();
        talking.authenticate(|| 1, &metrics);
        let beat = talking.lock().next_ping.unwrap();
        // A late round sends the PING; the next one stays on the beat.
        talking.tick(
            beat + Duration::from_secs(2),
            Duration::from_secs(65),
            &metrics,
        );
        let queue = talking.lock();
        assert_eq!(text(queue.items.back().unwrap()), r#"{"code":476}"#);
        assert_eq!(queue.next_ping, Some(beat + Duration::from_secs(30)));
    }
}
