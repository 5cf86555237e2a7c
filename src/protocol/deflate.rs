//! permessage-deflate (RFC 7692), sans IO: choosing an offer and writing
//! the response (sections 5 and 7.1), and, with the cargo feature
//! `deflate`, compressing and inflating one message's payload (7.2) with
//! the inflated size bounded while inflating.
//!
//! - [`negotiate`]: the first `permessage-deflate` offer the server can
//!   honour, as an [`Agreement`] whose [`Agreement::response`] is the
//!   `Sec-WebSocket-Extensions` value of the 101;
//! - [`Codec`] (feature `deflate`): one connection's compression state.
//!   With no context takeover it holds no DEFLATE state between messages:
//!   what a message needs comes from a process-wide pool and goes back to
//!   it, reset, when the message ends. Compressing runs on a few threads
//!   shared by every connection, so the compressor's deep stack frames
//!   never reach a connection thread's stack (docs/benchmarks.md).

use super::handshake::ExtensionOffer;

/// The extension token (RFC 7692 7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The parameters the server answers with: what both sides will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message, so the server
    /// inflates each message with a fresh window.
    pub client_no_context_takeover: bool,
    /// The LZ77 window the server compresses with (9 to 15), and whether
    /// the client asked for it (then the response names it).
    pub server_max_window_bits: u8,
    server_window_named: bool,
}

/// Why an offer was declined (for tests and `--trace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// Another extension.
    OtherExtension,
    /// A parameter RFC 7692 does not define.
    UnknownParameter,
    /// A parameter given twice.
    Duplicate,
    /// A value the grammar forbids (a flag with a value, a window size
    /// outside 8-15 or with leading zeros, `server_max_window_bits`
    /// without one).
    BadValue,
    /// `server_max_window_bits=8`: zlib's smallest raw window is 9.
    WindowTooSmall,
}

/// `server_max_window_bits` / `client_max_window_bits` value: RFC 7692
/// 7.1.2.1 "a decimal integer value without leading zeros" in 8..=15.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || value.starts_with('0') {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// Read one offer (RFC 7692 7.1): `Ok` with what the server answers, or
/// why it must be declined. `context_takeover`: `--deflate-context-takeover`.
pub fn accept_offer(
    offer: &ExtensionOffer<'_>,
    context_takeover: bool,
) -> Result<Agreement, Decline> {
    if !offer.name.eq_ignore_ascii_case(EXTENSION_NAME) {
        return Err(Decline::OtherExtension);
    }
    let mut server_nct = None;
    let mut client_nct = None;
    let mut server_bits = None;
    let mut client_bits: Option<Option<u8>> = None;
    for (name, value) in &offer.params {
        let value = value.as_deref();
        // RFC 7692 7: "A server MUST decline an extension negotiation offer
        // for this extension if any of the following conditions are met:
        // The negotiation offer contains an extension parameter not defined
        // for use in an offer. The negotiation offer contains an extension
        // parameter with an invalid value. The negotiation offer contains
        // multiple extension parameters with the same name. The server
        // doesn't support the offered configuration."
        let slot_taken = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => {
                if value.is_some() {
                    return Err(Decline::BadValue);
                }
                server_nct.replace(()).is_some()
            }
            "client_no_context_takeover" => {
                if value.is_some() {
                    return Err(Decline::BadValue);
                }
                client_nct.replace(()).is_some()
            }
            "server_max_window_bits" => {
                let bits = value.and_then(window_bits).ok_or(Decline::BadValue)?;
                server_bits.replace(bits).is_some()
            }
            "client_max_window_bits" => {
                let bits = match value {
                    None => None,
                    Some(value) => Some(window_bits(value).ok_or(Decline::BadValue)?),
                };
                client_bits.replace(bits).is_some()
            }
            _ => return Err(Decline::UnknownParameter),
        };
        if slot_taken {
            return Err(Decline::Duplicate);
        }
    }
    // zlib cannot produce a raw stream with a 256-byte window, so an offer
    // that insists on one is one the server "doesn't support".
    if server_bits == Some(8) {
        return Err(Decline::WindowTooSmall);
    }
    // client_max_window_bits, with or without a value, needs nothing from
    // us: the server inflates with a 15-bit window, which reads any
    // smaller one (RFC 7692 7.1.2.2 lets the response omit it).
    let _ = client_bits;
    Ok(Agreement {
        // RFC 7692 7.1.1.1: a server MAY include server_no_context_takeover
        // "even if the extension negotiation offer being accepted by the
        // response doesn't include" it; and 7.1.1.2 likewise for the
        // client's. Without --deflate-context-takeover the server asks for
        // both, so an idle connection needs no window.
        server_no_context_takeover: !context_takeover || server_nct.is_some(),
        client_no_context_takeover: !context_takeover || client_nct.is_some(),
        server_max_window_bits: server_bits.unwrap_or(15),
        server_window_named: server_bits.is_some(),
    })
}

/// The first `permessage-deflate` offer the server can honour (RFC 7692
/// 5: the server "accepts" one of the offers and declines the others by
/// answering with the one it picked), or `None` to decline them all.
pub fn negotiate(offers: &[ExtensionOffer<'_>], context_takeover: bool) -> Option<Agreement> {
    offers
        .iter()
        .find_map(|offer| accept_offer(offer, context_takeover).ok())
}

impl Agreement {
    /// The same, but the server resets its compressor after every message
    /// whatever the response said (a server may always refer back less).
    pub fn without_server_takeover(self) -> Agreement {
        Agreement {
            server_no_context_takeover: true,
            ..self
        }
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 (RFC 7692 5, 7.1).
    pub fn response(&self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        // RFC 7692 7.1.2.1: the server accepts an offer with
        // server_max_window_bits "by including the server_max_window_bits
        // extension parameter in the extension negotiation response with
        // the same or smaller value as the offer".
        if self.server_window_named {
            out.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        out
    }
}

#[cfg(feature = "deflate")]
pub use codec::{compress_segment, Codec, InflateError};

#[cfg(feature = "deflate")]
mod codec {
    use std::collections::VecDeque;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::{Arc, Condvar, Mutex, OnceLock};

    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

    use super::Agreement;

    /// RFC 7692 7.2.1: the tail of a sync flush, removed from each
    /// compressed message and appended again before inflating (7.2.2).
    pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

    /// The window the server inflates with: 15 bits reads any window a
    /// client may use.
    const INFLATE_WINDOW_BITS: u8 = 15;

    /// Idle DEFLATE states kept for the next message of any connection; one
    /// more than this is freed. Bounded, so a burst does not pin memory.
    const POOL_LIMIT: usize = 32;

    static INFLATERS: Mutex<Vec<Decompress>> = Mutex::new(Vec::new());
    static DEFLATERS: Mutex<Vec<(u8, Compress)>> = Mutex::new(Vec::new());

    fn lock<T>(pool: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_inflater() -> Decompress {
        lock(&INFLATERS)
            .pop()
            .unwrap_or_else(|| Decompress::new_with_window_bits(false, INFLATE_WINDOW_BITS))
    }

    fn give_inflater(mut inflater: Decompress) {
        inflater.reset(false);
        let mut pool = lock(&INFLATERS);
        if pool.len() < POOL_LIMIT {
            pool.push(inflater);
        }
    }

    fn take_deflater(bits: u8) -> Compress {
        let mut pool = lock(&DEFLATERS);
        match pool.iter().rposition(|(b, _)| *b == bits) {
            Some(at) => pool.swap_remove(at).1,
            None => new_deflater(bits),
        }
    }

    fn new_deflater(bits: u8) -> Compress {
        Compress::new_with_window_bits(Compression::default(), false, bits)
    }

    fn give_deflater(bits: u8, mut deflater: Compress) {
        deflater.reset();
        let mut pool = lock(&DEFLATERS);
        if pool.len() < POOL_LIMIT {
            pool.push((bits, deflater));
        }
    }

    /// Why an inflating message was refused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum InflateError {
        /// The payload is not a DEFLATE stream.
        Corrupt,
        /// It inflates past the limit.
        TooBig,
    }

    /// One connection's permessage-deflate state.
    #[derive(Debug)]
    pub struct Codec {
        agreement: Agreement,
        min_size: usize,
        /// Kept between messages only with server context takeover.
        deflater: Option<Compress>,
        /// Present while a compressed message is inflating, and between
        /// messages only with client context takeover.
        inflater: Option<Decompress>,
        /// The stream of the current message ended (a final block): the
        /// rest of its payload, the restored tail included, is ignored.
        stream_ended: bool,
    }

    impl Codec {
        /// The state for an agreed extension; messages shorter than
        /// `min_size` go out uncompressed.
        pub fn new(agreement: Agreement, min_size: usize) -> Self {
            Codec {
                agreement,
                min_size,
                deflater: None,
                inflater: None,
                stream_ended: false,
            }
        }

        /// What was agreed.
        pub fn agreement(&self) -> Agreement {
            self.agreement
        }

        /// Whether a message of `len` bytes is sent compressed.
        pub fn compresses(&self, len: usize) -> bool {
            len >= self.min_size
        }

        /// Whether DEFLATE state is held between messages (none with no
        /// context takeover, the default).
        pub fn holds_state(&self) -> bool {
            self.deflater.is_some() || self.inflater.is_some()
        }

        /// The compressed payload of one message (RFC 7692 7.2.1): DEFLATE
        /// with a sync flush, its `00 00 ff ff` tail removed.
        pub fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
            let bits = self.agreement.server_max_window_bits;
            let deflater = self.deflater.take().unwrap_or_else(|| take_deflater(bits));
            let (deflater, out) = deflate_sync(bits, deflater, payload);
            if self.agreement.server_no_context_takeover {
                give_deflater(bits, deflater);
            } else {
                self.deflater = Some(deflater);
            }
            out
        }

        /// Inflate more of the current compressed message's payload onto
        /// `out`, never letting `out` grow past `limit` bytes: past it, the
        /// message is refused before the memory is spent.
        pub fn inflate(
            &mut self,
            input: &[u8],
            out: &mut Vec<u8>,
            limit: usize,
        ) -> Result<(), InflateError> {
            if self.stream_ended {
                return Ok(());
            }
            let inflater = self.inflater.get_or_insert_with(take_inflater);
            let mut rest = input;
            loop {
                let room = limit - out.len().min(limit);
                // One byte beyond the limit tells "exactly the limit" from
                // "more than the limit".
                let want = (room + 1).min(16 * 1024);
                if out.capacity() - out.len() < want {
                    // Grow geometrically, but never past one byte over the
                    // limit: the inflater fills all the spare room it gets.
                    out.reserve_exact(out.len().max(want).min(room + 1));
                }
                let before_in = inflater.total_in();
                let before_out = out.len();
                let status = inflater.decompress_vec(rest, out, FlushDecompress::Sync);
                // Over the limit is refused first, even when the data turns
                // out corrupt further on: the buffer is bounded either way.
                if out.len() > limit {
                    // The spare room may exceed the limit by a little (a
                    // Vec's smallest allocation is 8 bytes): keep no more
                    // than the one byte that proves the message too big.
                    out.truncate(limit + 1);
                    return Err(InflateError::TooBig);
                }
                let status = status.map_err(|_| InflateError::Corrupt)?;
                let used = (inflater.total_in() - before_in) as usize;
                rest = &rest[used..];
                if status == Status::StreamEnd {
                    self.stream_ended = true;
                    return Ok(());
                }
                let produced = out.len() - before_out;
                let full = out.len() == out.capacity();
                if rest.is_empty() && !full {
                    return Ok(());
                }
                if used == 0 && produced == 0 && !full {
                    // No progress and room to spare: the input is stuck.
                    return Err(InflateError::Corrupt);
                }
            }
        }

        /// The current message's payload is all in: restore the tail
        /// (RFC 7692 7.2.2), inflate what it flushes, and end the message.
        pub fn finish_message(
            &mut self,
            out: &mut Vec<u8>,
            limit: usize,
        ) -> Result<(), InflateError> {
            let result = self.inflate(&TAIL, out, limit);
            self.end_message(result.is_ok());
            result
        }

        /// Forget the message being inflated (also when it was refused).
        pub fn end_message(&mut self, clean: bool) {
            self.stream_ended = false;
            let keep = !self.agreement.client_no_context_takeover && clean;
            if !keep {
                if let Some(inflater) = self.inflater.take() {
                    give_inflater(inflater);
                }
            }
        }
    }

    /// A piece of a compressed message that refers to nothing before it,
    /// so that pieces compressed apart can be concatenated into one message
    /// (DEFLATE blocks may follow one another; RFC 7692 7.2.1 only asks that
    /// the message end with a sync flush whose tail is then removed): a
    /// broadcast compresses its shared part once for every recipient and
    /// only the part that differs per recipient each time. `last`: the
    /// message's final piece, whose tail is removed.
    pub fn compress_segment(window_bits: u8, bytes: &[u8], last: bool) -> Vec<u8> {
        let deflater = take_deflater(window_bits);
        let (deflater, mut out) = deflate_sync(window_bits, deflater, bytes);
        give_deflater(window_bits, deflater);
        if !last {
            out.extend_from_slice(&TAIL);
        }
        out
    }

    /// Threads that run every compression. zlib-rs's compressor reaches
    /// one stack page deeper than anything else a connection thread does,
    /// and a thread's stack pages stay resident once touched: compressing
    /// here keeps that page off every connection (docs/benchmarks.md).
    /// As many as the cores the process may use (two on the machine the
    /// figures come from); asked once, when the first message is compressed.
    fn compress_threads() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// A payload to compress with a deflater, and where to send both back.
    struct Job {
        deflater: Compress,
        payload: Vec<u8>,
        reply: Arc<Reply>,
    }

    /// A finished job: the deflater and the compressed bytes, or `None`
    /// when the compressor panicked.
    type Done = Option<(Compress, Vec<u8>)>;

    /// Where a compression thread leaves a job's result.
    ///
    /// A mutex and a condition variable rather than a channel per job:
    /// std's channels allocate cache-line-aligned state (`memalign`), which
    /// fragments the heap a little on every message, and build it on the
    /// connection thread's stack, whose frame then reached a third page.
    #[derive(Default)]
    struct Reply {
        result: Mutex<Option<Done>>,
        done: Condvar,
    }

    impl Reply {
        fn send(&self, result: Done) {
            *lock(&self.result) = Some(result);
            self.done.notify_one();
        }

        fn wait(&self) -> Done {
            wait_for(&self.result, &self.done, Option::take)
        }
    }

    /// The jobs waiting for a compression thread.
    #[derive(Default)]
    struct Queue {
        jobs: Mutex<VecDeque<Job>>,
        ready: Condvar,
    }

    impl Queue {
        fn push(&self, job: Job) {
            lock(&self.jobs).push_back(job);
            self.ready.notify_one();
        }

        fn pop(&self) -> Job {
            wait_for(&self.jobs, &self.ready, VecDeque::pop_front)
        }
    }

    /// Wait on `signal` until `take` finds something in `state`.
    fn wait_for<T, R>(
        state: &Mutex<T>,
        signal: &Condvar,
        mut take: impl FnMut(&mut T) -> Option<R>,
    ) -> R {
        let mut guard = lock(state);
        loop {
            if let Some(found) = take(&mut guard) {
                return found;
            }
            guard = signal.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// One compression thread: jobs in, results out, for the process's life.
    /// A panic in the compressor is caught and reported to the one waiting
    /// connection, which compresses by itself; the thread goes on.
    fn compress_jobs(queue: &Queue) {
        loop {
            let Job {
                mut deflater,
                payload,
                reply,
            } = queue.pop();
            let out = catch_unwind(AssertUnwindSafe(|| deflate_here(&mut deflater, &payload)));
            reply.send(out.ok().map(|out| (deflater, out)));
        }
    }

    /// The compression threads' queue, started on first use; `None` when
    /// no thread could be started (then callers compress themselves).
    /// Never inlined, like [`deflate_here`]: the connection thread calls
    /// [`deflate_sync`] on every compressed message, and a frame swollen by
    /// the start-up code would reach the idle thread's third stack page.
    #[inline(never)]
    fn compress_queue() -> Option<&'static Queue> {
        static QUEUE: OnceLock<Option<Arc<Queue>>> = OnceLock::new();
        QUEUE
            .get_or_init(|| {
                let queue = Arc::new(Queue::default());
                let mut started = 0;
                for i in 0..compress_threads() {
                    let queue = Arc::clone(&queue);
                    let spawned = std::thread::Builder::new()
                        .name(format!("deflate-{i}"))
                        .spawn(move || compress_jobs(&queue));
                    started += usize::from(spawned.is_ok());
                }
                (started > 0).then_some(queue)
            })
            .as_deref()
    }

    /// DEFLATE `payload` with a sync flush and remove the flush's tail, on
    /// a compression thread (or here if none runs).
    fn deflate_sync(bits: u8, deflater: Compress, payload: &[u8]) -> (Compress, Vec<u8>) {
        let here = |mut deflater: Compress| {
            let out = deflate_here(&mut deflater, payload);
            (deflater, out)
        };
        let Some(queue) = compress_queue() else {
            return here(deflater);
        };
        let reply = Arc::new(Reply::default());
        queue.push(Job {
            deflater,
            payload: payload.to_vec(),
            reply: Arc::clone(&reply),
        });
        // The compressor panicked: compress here with a fresh compressor,
        // whose blocks refer to nothing before them and so still follow
        // any earlier message.
        reply.wait().unwrap_or_else(|| here(new_deflater(bits)))
    }

    /// DEFLATE `payload` with a sync flush and remove the flush's tail, on
    /// this thread. Never inlined: its frame belongs on the compression
    /// threads, not in [`deflate_sync`]'s on every connection thread.
    #[inline(never)]
    fn deflate_here(deflater: &mut Compress, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut rest = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let before_in = deflater.total_in();
            // Compression into a Vec with room cannot fail: flate2 reports
            // an error only for a stream-end misuse, which never happens.
            let _ = deflater.compress_vec(rest, &mut out, FlushCompress::Sync);
            rest = &rest[(deflater.total_in() - before_in) as usize..];
            // The flush is complete once all input is in and the output
            // did not fill up (zlib's rule for a finished flush).
            if rest.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn offer<'a>(params: &[(&'a str, Option<&'a str>)]) -> ExtensionOffer<'a> {
        ExtensionOffer {
            name: EXTENSION_NAME,
            params: params
                .iter()
                .map(|&(p, v)| (p, v.map(Cow::Borrowed)))
                .collect(),
        }
    }

    fn response(params: &[(&str, Option<&str>)], takeover: bool) -> Result<String, Decline> {
        accept_offer(&offer(params), takeover).map(|a| a.response())
    }

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn every_parameter() {
        assert_eq!(response(&[], false).as_deref(), Ok(BOTH));
        // Chromium's and Firefox's offer.
        assert_eq!(
            response(&[("client_max_window_bits", None)], false).as_deref(),
            Ok(BOTH)
        );
        assert_eq!(
            response(&[("client_max_window_bits", Some("10"))], false).as_deref(),
            Ok(BOTH)
        );
        for bits in 9..=15 {
            let value = bits.to_string();
            assert_eq!(
                response(&[("server_max_window_bits", Some(&value))], false),
                Ok(format!("{BOTH}; server_max_window_bits={bits}"))
            );
        }
        assert_eq!(
            response(&[("server_max_window_bits", Some("8"))], false),
            Err(Decline::WindowTooSmall)
        );
        // With context takeover, only what the client asked for.
        assert_eq!(response(&[], true).as_deref(), Ok("permessage-deflate"));
        assert_eq!(
            response(&[("server_no_context_takeover", None)], true).as_deref(),
            Ok("permessage-deflate; server_no_context_takeover")
        );
        assert_eq!(
            response(&[("client_no_context_takeover", None)], true).as_deref(),
            Ok("permessage-deflate; client_no_context_takeover")
        );
        // Names are tokens: case-insensitive.
        assert_eq!(
            response(&[("Server_No_Context_Takeover", None)], true).as_deref(),
            Ok("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn bad_offers_are_declined() {
        type Params<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: &[(Params, Decline)] = &[
            (&[("x", None)], Decline::UnknownParameter),
            (
                &[("server_no_context_takeover", Some("1"))],
                Decline::BadValue,
            ),
            (
                &[("client_no_context_takeover", Some("x"))],
                Decline::BadValue,
            ),
            (&[("server_max_window_bits", None)], Decline::BadValue),
            (&[("server_max_window_bits", Some("16"))], Decline::BadValue),
            (&[("server_max_window_bits", Some("7"))], Decline::BadValue),
            (
                &[("server_max_window_bits", Some("010"))],
                Decline::BadValue,
            ),
            (&[("client_max_window_bits", Some("0"))], Decline::BadValue),
            (&[("client_max_window_bits", Some("x"))], Decline::BadValue),
            (
                &[
                    ("client_max_window_bits", None),
                    ("client_max_window_bits", Some("10")),
                ],
                Decline::Duplicate,
            ),
            (
                &[
                    ("server_no_context_takeover", None),
                    ("server_no_context_takeover", None),
                ],
                Decline::Duplicate,
            ),
        ];
        for (params, why) in cases {
            assert_eq!(response(params, false), Err(*why), "{params:?}");
        }
        let other = ExtensionOffer {
            name: "x-webkit-deflate-frame",
            params: vec![],
        };
        assert_eq!(accept_offer(&other, false), Err(Decline::OtherExtension));
    }

    /// RFC 7692 5.2's example: the first offer asks for a window the
    /// server can give, the second is the fallback.
    #[test]
    fn the_first_offer_the_server_can_honour() {
        let offers = [
            offer(&[("server_max_window_bits", Some("8"))]),
            offer(&[("server_max_window_bits", Some("10")), ("bogus", None)]),
            offer(&[("client_max_window_bits", None)]),
            offer(&[("server_max_window_bits", Some("12"))]),
        ];
        assert_eq!(
            negotiate(&offers, false).map(|a| a.response()).as_deref(),
            Some(BOTH)
        );
        assert_eq!(
            negotiate(&offers[3..], false).map(|a| a.server_max_window_bits),
            Some(12)
        );
        assert_eq!(negotiate(&offers[..2], false), None);
        assert_eq!(negotiate(&[], false), None);
    }

    #[cfg(feature = "deflate")]
    mod codec {
        use super::super::*;
        use super::offer;

        fn codec(takeover: bool) -> Codec {
            Codec::new(accept_offer(&offer(&[]), takeover).unwrap(), 0)
        }

        fn inflate_all(
            codec: &mut Codec,
            wire: &[u8],
            limit: usize,
        ) -> Result<Vec<u8>, InflateError> {
            let mut out = Vec::new();
            codec.inflate(wire, &mut out, limit)?;
            codec.finish_message(&mut out, limit)?;
            Ok(out)
        }

        /// RFC 7692 7.2.3.1: "Hello" compressed is `f2 48 cd c9 c9 07 00`.
        #[test]
        fn rfc_hello() {
            let mut c = codec(false);
            assert_eq!(
                c.compress(b"Hello"),
                [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
            );
            assert!(!c.holds_state());
            let wire = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
            assert_eq!(inflate_all(&mut c, &wire, 100).unwrap(), b"Hello");
            assert!(!c.holds_state());
            // 7.2.3.3: a stored (uncompressed) block, and 7.2.3.4 a final
            // block, are read too.
            let stored = [
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ];
            assert_eq!(inflate_all(&mut c, &stored, 100).unwrap(), b"Hello");
            let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
            assert_eq!(inflate_all(&mut c, &bfinal, 100).unwrap(), b"Hello");
        }

        /// RFC 7692 7.2.3.2: with context takeover the second "Hello"
        /// refers back to the first.
        #[test]
        fn context_takeover_shares_the_window() {
            let mut c = codec(true);
            let first = c.compress(b"Hello");
            let second = c.compress(b"Hello");
            assert_eq!(first, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
            assert!(second.len() < first.len(), "{second:x?}");
            assert!(c.holds_state());
            assert_eq!(inflate_all(&mut c, &first, 100).unwrap(), b"Hello");
            assert_eq!(inflate_all(&mut c, &second, 100).unwrap(), b"Hello");
        }

        #[test]
        fn the_limit_holds_while_inflating() {
            let mut c = codec(false);
            let zeros = vec![0u8; 1 << 20];
            let wire = c.compress(&zeros);
            assert!(wire.len() < 2000);
            assert_eq!(inflate_all(&mut c, &wire, 1 << 20).unwrap().len(), 1 << 20);
            let mut out = Vec::new();
            let refused = c.inflate(&wire, &mut out, 1000);
            assert_eq!(refused, Err(InflateError::TooBig));
            assert_eq!(out.len(), 1001);
            assert!(out.capacity() <= 16 * 1024 + 1001, "{}", out.capacity());
            c.end_message(false);
            // A limit under a Vec's smallest allocation.
            let mut out = Vec::new();
            assert_eq!(c.inflate(&wire, &mut out, 1), Err(InflateError::TooBig));
            assert_eq!(out.len(), 2);
            c.end_message(false);
            assert_eq!(
                inflate_all(&mut c, &[0xff, 0xff, 0xff], 100),
                Err(InflateError::Corrupt)
            );
            c.end_message(false);
            assert!(!c.holds_state());
        }

        #[test]
        fn segments_compressed_apart_make_one_message() {
            let mut wire =
                compress_segment(15, b"{\"shared\": \"part, shared part\", \"seq\":", false);
            wire.extend(compress_segment(15, b"42}}", true));
            let mut c = codec(false);
            assert_eq!(
                inflate_all(&mut c, &wire, 1000).unwrap(),
                b"{\"shared\": \"part, shared part\", \"seq\":42}}"
            );
        }

        #[test]
        fn round_trips_in_pieces() {
            let text: Vec<u8> = (0..50_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect();
            for takeover in [false, true] {
                let mut c = codec(takeover);
                for _ in 0..3 {
                    let wire = c.compress(&text);
                    let mut out = Vec::new();
                    for piece in wire.chunks(7) {
                        c.inflate(piece, &mut out, text.len()).unwrap();
                    }
                    c.finish_message(&mut out, text.len()).unwrap();
                    assert_eq!(out, text);
                }
            }
        }
    }
}
