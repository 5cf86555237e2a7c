//! A session's outbound queue and the thread that drains it to the socket
//! (PROTOCOL.md "Heartbeat and closing": slow consumers, and the order and
//! `seq` of MESSAGEs; no RFC beyond 6455's framing).
//!
//! Other threads (senders, the presence thread, the admin API) only append
//! to the queue, under a mutex held for a few instructions; the session's
//! writer thread does the blocking writes, so a slow consumer never blocks
//! a sender. The queue is bounded by `--max-queue` bytes: past it the
//! session is dropped, its queue replaced by a Close 1008, and its TCP
//! connection shut down within [`SLOW_CONSUMER_GRACE`]. A MESSAGE for many
//! recipients is one shared [`MessageTemplate`] plus each recipient's
//! `seq`, assigned under the queue's lock in queue order. When the writer
//! sleeps with nothing queued, the sender writes a MESSAGE through to the
//! socket itself without blocking; the rest of a frame cut short that way
//! goes out before anything else, or the stream would be corrupt. Why it
//! is built this way, with the measurements: `docs/architecture.md`, "The
//! `/ws` outbox".

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::io::metrics::Metrics;
use crate::io::transport;
use crate::protocol::close::close_payload;
use crate::protocol::frame::{write_frame, FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::protocol::CloseCode;

use super::message::{self, MessageTemplate};

/// Time between a slow consumer's drop and the forced end of its TCP
/// connection (PROTOCOL.md: "closed within 10 s whatever the client does").
pub const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(6);

/// Longest a single socket write may block; the writer re-checks its state
/// between attempts.
const WRITE_STEP: Duration = Duration::from_secs(2);

/// One thing to send.
#[derive(Debug)]
enum Item {
    /// Complete frame bytes of this session's own: control frames, or the
    /// output of its protocol connection.
    Frame(Vec<u8>),
    /// One complete text frame of this session's own: a reply, an online
    /// count, a heartbeat PING. Counted in `socketbox_messages_out_total`.
    Text(Vec<u8>),
    /// A MESSAGE (1756) shared with other recipients, with this session's seq.
    Message(Arc<MessageTemplate>, u64),
    /// The rest of a frame whose beginning a sender wrote through: it must
    /// follow on the wire before anything else, even a slow consumer's
    /// Close, or the client would read the next frame as payload.
    Rest(Vec<u8>),
}

impl Item {
    fn cost(&self) -> usize {
        match self {
            Item::Frame(bytes) | Item::Text(bytes) | Item::Rest(bytes) => bytes.len(),
            Item::Message(template, _) => template.len_without_seq() + 30,
        }
    }
}

/// Where the session's output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending whatever is queued.
    Open,
    /// A Close frame is queued: nothing more is accepted; the writer sends
    /// what is queued and waits for [`Outbox::finish`].
    Closing,
    /// Dropped as a slow consumer at this instant.
    Dropped(Instant),
    /// The reader is done: flush and exit.
    Finished,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    next_seq: u64,
    phase: Phase,
    /// The latest online count not yet sent, and when and what was last sent.
    presence_pending: Option<u64>,
    presence_last_sent: Option<Instant>,
    presence_last_value: Option<u64>,
    /// When to send the next heartbeat PING, once authenticated.
    next_ping: Option<Instant>,
    /// The writer sleeps on the condition variable: only then is a wake-up
    /// (a futex system call) worth making.
    writer_waiting: bool,
    /// The writer thread's body has returned.
    writer_gone: bool,
}

/// A session's bounded outbound queue.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Signalled when the writer's body returns.
    writer_gone: Condvar,
    max_bytes: usize,
    presence_interval: Duration,
    heartbeat: Duration,
    /// The session's socket, when senders may write through to it.
    write_through: OnceLock<Arc<TcpStream>>,
    /// permessage-deflate: MESSAGEs go out compressed (see
    /// [`message_frame_parts`]).
    deflate: OnceLock<MessageDeflate>,
}

/// How a session compresses MESSAGEs: the window bits agreed, and the
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
    /// Queued.
    Yes,
    /// The session is closing or gone; nothing was queued.
    Closed,
    /// This item overflowed the queue: the session has just been dropped as
    /// a slow consumer. The caller removes it from the registry.
    Overflowed,
}

impl Outbox {
    /// An empty outbox with the server's limits.
    pub fn new(max_bytes: usize, presence_interval: Duration, heartbeat: Duration) -> Self {
        Outbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                phase: Phase::Open,
                presence_pending: None,
                presence_last_sent: None,
                presence_last_value: None,
                next_ping: None,
                writer_waiting: false,
                writer_gone: false,
            }),
            wake: Condvar::new(),
            writer_gone: Condvar::new(),
            max_bytes,
            presence_interval,
            heartbeat,
            write_through: OnceLock::new(),
            deflate: OnceLock::new(),
        }
    }

    /// Send MESSAGEs compressed from now on (permessage-deflate agreed).
    pub fn compress_messages(&self, deflate: MessageDeflate) {
        let _ = self.deflate.set(deflate);
    }

    /// Let senders write MESSAGEs straight to `stream` when the writer
    /// sleeps with nothing queued (see "Writing through" above). Not with
    /// `--trace`, where the writer prints every frame it sends.
    pub fn allow_write_through(&self, stream: Arc<TcpStream>) {
        let _ = self.write_through.set(stream);
    }

    /// The socket, if a sender may write to it now: the writer sleeps and
    /// nothing is queued ahead.
    fn write_through_socket(&self, queue: &Queue) -> Option<&TcpStream> {
        let ready = queue.phase == Phase::Open && queue.writer_waiting && queue.items.is_empty();
        self.write_through
            .get()
            .filter(|_| ready)
            .map(|stream| &**stream)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, queue: &mut Queue, item: Item, metrics: &Metrics) -> Enqueued {
        if queue.phase != Phase::Open {
            return Enqueued::Closed;
        }
        let cost = item.cost();
        if queue.bytes + cost > self.max_bytes {
            // PROTOCOL.md: a session whose outbound queue passes --max-queue
            // bytes is dropped and "sent a Close 1008 as soon as its socket
            // takes it".
            queue.items.retain(|item| matches!(item, Item::Rest(_)));
            let mut close = Vec::new();
            write_frame(
                &mut close,
                OpCode::Close,
                &close_payload(CloseCode::POLICY_VIOLATION, "slow consumer"),
            );
            queue.items.push_back(Item::Frame(close));
            queue.bytes = queue.items.iter().map(Item::cost).sum();
            queue.phase = Phase::Dropped(Instant::now());
            metrics.slow_consumers.fetch_add(1, Relaxed);
            metrics.close_sent(CloseCode::POLICY_VIOLATION.0);
            return Enqueued::Overflowed;
        }
        queue.bytes += cost;
        queue.items.push_back(item);
        Enqueued::Yes
    }

    /// Whether the writer sleeps and must be woken; clears the flag, so one
    /// wake-up serves everything queued before the writer runs. The writer
    /// looks at the queue under the same lock before it sleeps, so when it
    /// is busy no wake-up is needed and none is lost.
    fn wake_if_waiting(&self, queue: &mut Queue) -> bool {
        std::mem::take(&mut queue.writer_waiting)
    }

    /// Release the lock, then wake the writer if it sleeps, so that it does
    /// not wake up into a lock its waker still holds.
    fn unlock_and_wake(&self, mut queue: MutexGuard<'_, Queue>) {
        let wake = self.wake_if_waiting(&mut queue);
        drop(queue);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Queue frame bytes produced for this session (a reply, a pong, a
    /// Close). If they contain a Close frame the outbox stops accepting more.
    pub fn send_frames(&self, bytes: Vec<u8>, contains_close: bool, metrics: &Metrics) -> Enqueued {
        if bytes.is_empty() {
            return Enqueued::Yes;
        }
        let mut queue = self.lock();
        let result = self.push(&mut queue, Item::Frame(bytes), metrics);
        if contains_close && result == Enqueued::Yes {
            queue.phase = Phase::Closing;
        }
        self.unlock_and_wake(queue);
        result
    }

    /// Queue a text message for this session.
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
        let result = self.push(&mut queue, Item::Text(bytes), metrics);
        self.unlock_and_wake(queue);
        result
    }

    /// Queue a shared MESSAGE, numbering it with this session's next `seq`,
    /// or write it through to the socket (see "Writing through" above).
    pub fn send_message(&self, template: &Arc<MessageTemplate>, metrics: &Metrics) -> Enqueued {
        let mut queue = self.lock();
        let seq = queue.next_seq;
        if let Some(stream) = self.write_through_socket(&queue) {
            let (header, middle, seq_and_tail) =
                message_frame_parts(template, seq, self.deflate.get());
            let parts = [&header[..], &middle, &seq_and_tail];
            let written = transport::write_without_blocking(stream, &parts, metrics);
            if written > 0 {
                metrics.messages_out.fetch_add(1, Relaxed);
                queue.next_seq += 1;
                if written == parts.iter().map(|part| part.len()).sum::<usize>() {
                    return Enqueued::Yes;
                }
                // Begun on the wire: the rest goes out next, whatever the limit.
                let rest = parts.concat().split_off(written);
                queue.bytes += rest.len();
                queue.items.push_back(Item::Rest(rest));
                self.unlock_and_wake(queue);
                return Enqueued::Yes;
            }
        }
        let item = Item::Message(Arc::clone(template), seq);
        let result = self.push(&mut queue, item, metrics);
        if result == Enqueued::Yes {
            queue.next_seq += 1;
        }
        self.unlock_and_wake(queue);
        result
    }

    /// A successful AUTH: under this outbox's lock, `bind` puts the session
    /// in the registry and returns the online count; then SYSTEM 20002
    /// `true` and SYSTEM 20001 with that count are queued, the presence
    /// window starts and so do the heartbeat PINGs.
    ///
    /// Holding the lock across `bind` is what makes this one step for the
    /// other threads: nothing they queue for the session can come between
    /// its 20002 and its 20001 (PROTOCOL.md: the count is "sent to a session
    /// right after its 20002 true"), and an online count the presence thread
    /// offers once the session is in the registry waits for the lock instead
    /// of being ignored as if the session were not authenticated yet. (Lock
    /// order: outbox, then registry. Nothing takes them the other way round:
    /// routing lets the registry lock go before it queues.)
    pub fn authenticate(&self, bind: impl FnOnce() -> u64, metrics: &Metrics) -> Enqueued {
        let mut queue = self.lock();
        if queue.phase != Phase::Open {
            // Closing or dropped: it must not enter the registry.
            return Enqueued::Closed;
        }
        let count = bind();
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            OpCode::Text,
            message::system(message::codes::SYSTEM_AUTH_RESULT, true.into()).as_bytes(),
        );
        let accepted = self.push(&mut queue, Item::Text(bytes), metrics);
        if accepted != Enqueued::Yes {
            self.unlock_and_wake(queue);
            return accepted;
        }
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            OpCode::Text,
            message::system(message::codes::SYSTEM_ONLINE_COUNT, count.into()).as_bytes(),
        );
        queue.presence_pending = None;
        queue.presence_last_sent = Some(Instant::now());
        queue.presence_last_value = Some(count);
        if queue.next_ping.is_none() {
            queue.next_ping = Some(Instant::now() + self.heartbeat);
        }
        let result = self.push(&mut queue, Item::Text(bytes), metrics);
        self.unlock_and_wake(queue);
        result
    }

    /// A new online count: it is sent when this session's presence window
    /// allows, and a newer count offered before then replaces it. A count
    /// equal to the last one this session was sent is no change for it (its
    /// own login, say, which it was told about with its 20002), so nothing
    /// is sent for it.
    pub fn offer_presence(&self, count: u64) {
        let mut queue = self.lock();
        if queue.phase == Phase::Open && queue.presence_last_sent.is_some() {
            queue.presence_pending = (queue.presence_last_value != Some(count)).then_some(count);
            self.unlock_and_wake(queue);
        }
    }

    /// Queue a Close 1001 (the server is shutting down) unless a Close is
    /// already queued; nothing is accepted after it. It never blocks: the
    /// writer sends it after what is queued, if the client reads that.
    pub fn going_away(&self, metrics: &Metrics) {
        let mut close = Vec::new();
        write_frame(
            &mut close,
            OpCode::Close,
            &close_payload(CloseCode::GOING_AWAY, "server shutting down"),
        );
        let mut queue = self.lock();
        if queue.phase == Phase::Open {
            // Not subject to --max-queue: these few bytes must not turn a
            // full queue into a slow consumer's 1008 during a shutdown.
            queue.bytes += close.len();
            queue.items.push_back(Item::Frame(close));
            queue.phase = Phase::Closing;
            metrics.close_sent(CloseCode::GOING_AWAY.0);
        }
        self.unlock_and_wake(queue);
    }

    /// The peer's Close arrived: count it if it began the closing
    /// handshake, that is if no Close of ours went first: neither the
    /// connection's (it knows) nor one queued here (the shutdown's, a slow
    /// consumer's). The answer is queued right after; a shutdown Close
    /// queued in between would be counted as well, as a handshake both
    /// sides began.
    pub fn close_received(&self, conn: &crate::protocol::Connection, metrics: &Metrics) {
        let queue = self.lock();
        if let (Some(code), Phase::Open) = (conn.peer_began_closing(), queue.phase) {
            metrics.close_received(code.0);
        }
    }

    /// Whether this session was dropped as a slow consumer.
    pub fn was_dropped(&self) -> bool {
        matches!(self.lock().phase, Phase::Dropped(_))
    }

    /// The reader is done: the writer sends what is queued and exits.
    pub fn finish(&self) {
        let mut queue = self.lock();
        if !matches!(queue.phase, Phase::Dropped(_)) {
            queue.phase = Phase::Finished;
        }
        self.unlock_and_wake(queue);
    }

    /// After [`Self::finish`]: wait until the writer has sent what was
    /// queued and returned, at most until `deadline`; returns whether it
    /// did. A dropped session's writer keeps its own, later deadline
    /// ([`SLOW_CONSUMER_GRACE`] and one write step), which this waits for.
    /// The caller ends a writer still blocked on a peer that does not read
    /// by shutting the socket down.
    pub fn wait_for_writer(&self, deadline: Instant) -> bool {
        let mut queue = self.lock();
        let deadline = match queue.phase {
            Phase::Dropped(since) => deadline.max(since + SLOW_CONSUMER_GRACE + WRITE_STEP),
            _ => deadline,
        };
        while !queue.writer_gone {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = self
                .writer_gone
                .wait_timeout(queue, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        true
    }

    /// Wait for the next thing to write: a queued item, a due online count or
    /// heartbeat PING; [`Next::Stop`] once the reader is done and the queue
    /// is flushed; [`Next::ForceClose`] when a dropped session's grace ends.
    fn next_item(&self) -> Next {
        let mut queue = self.lock();
        loop {
            let now = Instant::now();
            if let Phase::Dropped(since) = queue.phase {
                if now >= since + SLOW_CONSUMER_GRACE {
                    return Next::ForceClose;
                }
            }
            if let Some(item) = queue.items.pop_front() {
                queue.bytes -= item.cost();
                return Next::Write(item);
            }
            match queue.phase {
                Phase::Finished => return Next::Stop,
                Phase::Dropped(since) => {
                    // The Close is out; give the client the rest of the grace
                    // to answer, then cut the connection.
                    let left = (since + SLOW_CONSUMER_GRACE).saturating_duration_since(now);
                    queue = self.wait(queue, Some(left));
                    continue;
                }
                Phase::Closing => {
                    queue = self.wait(queue, None);
                    continue;
                }
                Phase::Open => {}
            }
            if let (Some(count), Some(last)) = (queue.presence_pending, queue.presence_last_sent) {
                if now >= last + self.presence_interval {
                    queue.presence_pending = None;
                    queue.presence_last_sent = Some(now);
                    queue.presence_last_value = Some(count);
                    let mut bytes = Vec::new();
                    write_frame(
                        &mut bytes,
                        OpCode::Text,
                        message::system(message::codes::SYSTEM_ONLINE_COUNT, count.into())
                            .as_bytes(),
                    );
                    return Next::Write(Item::Text(bytes));
                }
            }
            if let Some(at) = queue.next_ping {
                if now >= at {
                    queue.next_ping = Some(now + self.heartbeat);
                    let mut bytes = Vec::new();
                    write_frame(&mut bytes, OpCode::Text, message::ping().as_bytes());
                    return Next::Write(Item::Text(bytes));
                }
            }
            let presence_due = match (queue.presence_pending, queue.presence_last_sent) {
                (Some(_), Some(last)) => Some(last + self.presence_interval),
                _ => None,
            };
            let wake_at = [presence_due, queue.next_ping].into_iter().flatten().min();
            queue = self.wait(queue, wake_at.map(|at| at.saturating_duration_since(now)));
        }
    }

    fn wait<'a>(
        &self,
        mut queue: MutexGuard<'a, Queue>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Queue> {
        queue.writer_waiting = true;
        let mut queue = match timeout {
            Some(timeout) => self
                .wake
                .wait_timeout(queue, timeout)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0),
            None => self
                .wake
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        queue.writer_waiting = false;
        queue
    }

    /// The writer thread's body: drain the queue into `stream` until the
    /// reader finishes, the socket fails, or a dropped session's grace ends.
    /// The reader shares the same socket (one descriptor, not a `dup()`).
    pub fn run_writer(&self, stream: &TcpStream, trace: Option<&str>, metrics: &Metrics) {
        self.write_until_done(stream, trace, metrics);
        self.lock().writer_gone = true;
        self.writer_gone.notify_all();
    }

    fn write_until_done(&self, mut stream: &TcpStream, trace: Option<&str>, metrics: &Metrics) {
        let _ = stream.set_write_timeout(Some(WRITE_STEP));
        loop {
            let item = match self.next_item() {
                Next::Write(item) => item,
                Next::Stop => return,
                Next::ForceClose => break,
            };
            if let (Some(label), Item::Frame(bytes) | Item::Text(bytes) | Item::Rest(bytes)) =
                (trace, &item)
            {
                transport::trace_sent(label, bytes);
            }
            let written = match &item {
                Item::Frame(bytes) | Item::Rest(bytes) => {
                    write_all_patiently(&mut stream, &[bytes], self)
                }
                Item::Text(bytes) => {
                    metrics.messages_out.fetch_add(1, Relaxed);
                    write_all_patiently(&mut stream, &[bytes], self)
                }
                Item::Message(template, seq) => {
                    let (header, middle, seq_and_tail) =
                        message_frame_parts(template, *seq, self.deflate.get());
                    if let Some(label) = trace {
                        let frame = [&header, &middle[..], &seq_and_tail].concat();
                        transport::trace_sent(label, &frame);
                    }
                    metrics.messages_out.fetch_add(1, Relaxed);
                    write_all_patiently(&mut stream, &[&header, &middle, &seq_and_tail], self)
                }
            };
            match written {
                Ok(n) => {
                    metrics.bytes_out.fetch_add(n as u64, Relaxed);
                }
                Err(_) => break,
            }
        }
        // The socket failed or a slow consumer's grace ran out: end the TCP
        // connection, which also wakes the reader blocked in read().
        let _ = stream.shutdown(Shutdown::Both);
    }
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

enum Next {
    Write(Item),
    Stop,
    ForceClose,
}

/// Write every slice fully. A write that times out is retried while the
/// session is healthy; once the session is dropped its grace bounds the
/// whole attempt.
fn write_all_patiently(
    stream: &mut &TcpStream,
    parts: &[&[u8]],
    outbox: &Outbox,
) -> io::Result<usize> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        // Build the slices that are still unsent.
        let mut skip = done;
        let mut slices = Vec::with_capacity(parts.len());
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices.push(IoSlice::new(&part[skip..]));
            skip = 0;
        }
        match stream.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if let Phase::Dropped(since) = outbox.lock().phase {
                    if Instant::now() >= since + SLOW_CONSUMER_GRACE {
                        return Err(e);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_closing_session_is_not_bound() {
        let outbox = outbox();
        let metrics = Metrics::default();
        let mut close = Vec::new();
        write_frame(&mut close, OpCode::Close, &[0x03, 0xe8]);
        assert_eq!(outbox.send_frames(close, true, &metrics), Enqueued::Yes);
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
    }

    #[test]
    fn only_a_changed_count_is_offered_and_the_latest_wins() {
        let outbox = outbox();
        outbox.offer_presence(5);
        assert_eq!(outbox.lock().presence_pending, None, "not authenticated");
        outbox.authenticate(|| 3, &Metrics::default());
        outbox.offer_presence(3);
        assert_eq!(outbox.lock().presence_pending, None, "its own login");
        outbox.offer_presence(4);
        outbox.offer_presence(6);
        assert_eq!(outbox.lock().presence_pending, Some(6));
        outbox.offer_presence(3);
        assert_eq!(
            outbox.lock().presence_pending,
            None,
            "back to what it was told: nothing to send"
        );
    }

    #[test]
    fn an_overflowing_queue_drops_the_session_and_keeps_only_a_close_1008() {
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
        let queue = outbox.lock();
        assert_eq!(queue.items.len(), 1);
        let Item::Frame(close) = &queue.items[0] else {
            panic!("a Close frame");
        };
        assert_eq!(&close[..4], &[0x88, 15, 0x03, 0xf0], "Close 1008");
        assert_eq!(&close[4..], b"slow consumer");
    }

    #[test]
    fn the_shutdown_close_goes_in_past_the_limit_and_nothing_after_it() {
        let outbox = Outbox::new(100, Duration::from_secs(1), Duration::from_secs(30));
        let metrics = Metrics::default();
        assert_eq!(outbox.send_text(&"x".repeat(90), &metrics), Enqueued::Yes);
        outbox.going_away(&metrics);
        assert!(!outbox.was_dropped(), "a shutdown is not a slow consumer");
        assert_eq!(metrics.slow_consumers.load(Relaxed), 0);
        assert_eq!(outbox.send_text("late", &metrics), Enqueued::Closed);
        outbox.going_away(&metrics);
        let queue = outbox.lock();
        assert_eq!(queue.items.len(), 2, "one Close");
        let Item::Frame(close) = &queue.items[1] else {
            panic!("a Close frame");
        };
        assert_eq!(&close[..4], &[0x88, 22, 0x03, 0xe9], "Close 1001");
    }

    /// A connected pair on 127.0.0.1: (the server's end, the client's end).
    fn socket_pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Arc::new(server), client)
    }

    fn template(data: &str) -> Arc<MessageTemplate> {
        Arc::new(MessageTemplate::new(
            message::codes::MESSAGE_BROADCAST,
            None,
            None,
            &serde_json::Value::from(data),
            0,
        ))
    }

    /// Reads one unmasked text frame's payload (any length) from `stream`.
    fn read_text_frame(stream: &mut TcpStream) -> io::Result<String> {
        use std::io::Read;
        let mut head = [0u8; 2];
        stream.read_exact(&mut head)?;
        if head[0] != 0x81 {
            return Err(io::Error::other(format!(
                "not a final text frame: {head:x?}"
            )));
        }
        let len = match head[1] {
            126 => {
                let mut len = [0u8; 2];
                stream.read_exact(&mut len)?;
                u16::from_be_bytes(len) as usize
            }
            127 => {
                let mut len = [0u8; 8];
                stream.read_exact(&mut len)?;
                u64::from_be_bytes(len) as usize
            }
            len => len as usize,
        };
        let mut payload = vec![0; len.min(1 << 20)];
        stream.read_exact(&mut payload)?;
        String::from_utf8(payload).map_err(io::Error::other)
    }

    /// Sends `data` MESSAGEs, each finding the writer asleep, to a client
    /// that reads nothing, until the socket is full and something had to
    /// be queued; returns how many were sent.
    fn write_through_until_queued(outbox: &Outbox, data: &str, metrics: &Metrics) -> u64 {
        let mut sent = 0;
        while outbox.lock().items.is_empty() {
            outbox.lock().writer_waiting = true;
            assert_eq!(outbox.send_message(&template(data), metrics), Enqueued::Yes);
            sent += 1;
            assert!(sent < 1_000, "the socket never filled");
        }
        sent
    }

    #[test]
    fn a_message_for_a_sleeping_writer_is_written_through_and_the_socket_stays_blocking() {
        let (server, mut client) = socket_pair();
        let outbox = outbox();
        let metrics = Metrics::default();
        outbox.allow_write_through(Arc::clone(&server));
        outbox.lock().writer_waiting = true;
        assert_eq!(
            outbox.send_message(&template("hi"), &metrics),
            Enqueued::Yes
        );
        assert!(
            outbox.lock().items.is_empty(),
            "nothing left for the writer"
        );
        assert!(outbox.lock().writer_waiting, "the writer was not woken");
        let body: serde_json::Value =
            serde_json::from_str(&read_text_frame(&mut client).unwrap()).unwrap();
        assert_eq!(body["body"]["data"], "hi");
        assert_eq!(body["body"]["seq"], 1);
        assert_eq!(metrics.messages_out.load(Relaxed), 1);
        // Blocking again: a read waits for its timeout instead of failing
        // at once with WouldBlock.
        let wait = Duration::from_millis(200);
        server.set_read_timeout(Some(wait)).unwrap();
        let started = Instant::now();
        let mut byte = [0u8; 1];
        assert!(std::io::Read::read(&mut &*server, &mut byte).is_err());
        assert!(
            started.elapsed() >= wait / 2,
            "the socket was left non-blocking"
        );
    }

    #[test]
    fn a_busy_writer_or_a_queue_gets_no_write_through() {
        let (server, _client) = socket_pair();
        let outbox = outbox();
        let metrics = Metrics::default();
        outbox.allow_write_through(server);
        assert_eq!(outbox.send_message(&template("a"), &metrics), Enqueued::Yes);
        assert_eq!(outbox.lock().items.len(), 1, "the writer is not asleep");
        outbox.lock().writer_waiting = true;
        assert_eq!(outbox.send_message(&template("b"), &metrics), Enqueued::Yes);
        assert_eq!(outbox.lock().items.len(), 2, "it would overtake the queue");
        assert_eq!(metrics.messages_out.load(Relaxed), 0);
    }

    #[test]
    fn what_a_full_socket_does_not_take_is_left_to_the_writer_in_order() {
        let (server, mut client) = socket_pair();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let outbox = outbox();
        let metrics = Metrics::default();
        outbox.allow_write_through(Arc::clone(&server));
        // The client reads nothing yet, so the socket buffers fill up and
        // a write-through is cut short; after that everything queues.
        let big = "x".repeat(50_000);
        let mut sent = write_through_until_queued(&outbox, &big, &metrics);
        for _ in 0..3 {
            outbox.send_message(&template(&big), &metrics);
            sent += 1;
        }
        let (writer, bodies) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| outbox.run_writer(&server, None, &metrics));
            let bodies: Vec<_> = (1..=sent)
                .map(|_| read_text_frame(&mut client))
                .take_while(Result::is_ok)
                .collect();
            outbox.finish();
            let _ = server.shutdown(Shutdown::Both);
            (writer.join(), bodies)
        });
        assert!(writer.is_ok());
        assert_eq!(bodies.len() as u64, sent, "a frame could not be read");
        for (seq, body) in (1..).zip(bodies) {
            let body: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
            assert_eq!(body["body"]["seq"], seq);
            assert_eq!(body["body"]["data"].as_str().map(str::len), Some(big.len()));
        }
        assert_eq!(metrics.messages_out.load(Relaxed), sent);
    }

    #[test]
    fn an_overflow_after_a_cut_short_write_through_still_finishes_that_frame_first() {
        let (server, mut client) = socket_pair();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let outbox = Outbox::new(200_000, Duration::from_secs(1), Duration::from_secs(30));
        let metrics = Metrics::default();
        outbox.allow_write_through(Arc::clone(&server));
        let big = "x".repeat(50_000);
        let sent = write_through_until_queued(&outbox, &big, &metrics);
        if !matches!(outbox.lock().items.front(), Some(Item::Rest(_))) {
            // Cut exactly between frames this time: no rest to keep.
            return;
        }
        // Queue past the limit: the session is dropped as a slow consumer.
        let mut result = Enqueued::Yes;
        while result == Enqueued::Yes {
            result = outbox.send_message(&template(&big), &metrics);
        }
        assert_eq!(result, Enqueued::Overflowed);
        let kinds: Vec<&str> = outbox
            .lock()
            .items
            .iter()
            .map(|item| match item {
                Item::Rest(_) => "rest",
                Item::Frame(_) => "frame",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["rest", "frame"], "the rest, then the Close");
        let (writer, frames) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| outbox.run_writer(&server, None, &metrics));
            let frames: Vec<_> = (0..sent).map(|_| read_text_frame(&mut client)).collect();
            let close = crate::protocol::frame::FrameHeader::parse(
                &{
                    let mut head = [0u8; 4];
                    std::io::Read::read_exact(&mut client, &mut head).map(|()| head)
                }
                .unwrap(),
            );
            outbox.finish();
            let _ = server.shutdown(Shutdown::Both);
            (writer.join(), (frames, close))
        });
        assert!(writer.is_ok());
        let (frames, close) = frames;
        for (seq, body) in (1..).zip(frames) {
            let body: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
            assert_eq!(body["body"]["seq"], seq);
        }
        assert!(
            matches!(close, Ok(crate::protocol::frame::HeaderParse::Complete { header, .. }) if header.opcode == OpCode::Close),
            "{close:?}"
        );
    }
}
