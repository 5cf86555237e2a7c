//! One server-side WebSocket connection after the opening handshake, as a
//! state machine with no I/O: bytes in, [`Event`]s out, and bytes to send.
//!
//! It implements RFC 6455 sections 5 (framing: 5.1 masking rules, 5.2 the
//! base framing protocol, 5.4 fragmentation, 5.5 control frames, 5.6 data
//! frames), 7 (closing the connection) and 8.1 (UTF-8 handling); with the
//! feature `deflate` and an agreed permessage-deflate, RFC 7692 6 (RSV1
//! marks a compressed message) and 7.2 (inflating as frames arrive, the
//! limit applied to the inflated size; compressing what is sent).
//!
//! The I/O layer drives it like this:
//!
//! 1. read socket bytes into [`Connection::read_space`], then call
//!    [`Connection::commit_read`] (or hand over a slice with
//!    [`Connection::receive`]); inside a data frame, when
//!    [`Connection::direct_payload_room`] says so, read the payload straight
//!    into the message with [`Connection::read_payload_with`];
//! 2. call [`Connection::next_event`] until it returns `Ok(None)`;
//! 3. write out [`Connection::output`] and call [`Connection::clear_output`];
//! 4. when [`Connection::state`] is [`State::Closed`], close the TCP
//!    connection (RFC 6455 7.1.1: the server closes TCP first); when it is
//!    [`State::Failed`], close it too, without waiting for anything the peer
//!    still sends (RFC 6455 7.1.7).
//!
//! Payload bytes are processed as they arrive rather than when a frame is
//! complete: they are unmasked, checked for UTF-8 and appended to the
//! message, so invalid text fails the connection at the first bad byte and a
//! frame's size never has to fit in the read buffer. Memory is bounded by the
//! read chunk plus `max_message`: a frame that would make a message longer
//! than the limit fails the connection when its header arrives.
//!
//! Every rule violation is a [`ProtocolError`], and [`ProtocolError::close_code`]
//! is the one place that chooses the close code a violation earns.

use std::fmt;

use super::close::{close_payload, parse_close_payload, CloseCode, CloseError, CloseFrame};
#[cfg(feature = "deflate")]
use super::deflate::{Codec, InflateError};
#[cfg(feature = "deflate")]
use super::frame::write_compressed_frame;
use super::frame::{
    write_frame, FrameHeader, HeaderError, HeaderParse, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// How many bytes the read buffer offers per read.
pub const READ_CHUNK: usize = 8 * 1024;

/// Limits for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Largest message, in payload bytes summed over its fragments, that is
    /// accepted. A message of exactly this size is accepted.
    pub max_message: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message: 16 * 1024 * 1024,
        }
    }
}

/// Where the closing handshake stands (RFC 6455 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// The server has started the closing handshake (RFC 6455 7.1.2) with
    /// nothing wrong on the wire, and waits for the peer's Close; data that
    /// still arrives is discarded.
    CloseSent,
    /// Both Close frames have been exchanged: once the output is flushed,
    /// close the TCP connection.
    Closed,
    /// The peer broke a rule and the connection was failed (RFC 6455 7.1.7,
    /// _Fail the WebSocket Connection_): a Close with the code the error
    /// earns is queued (unless a Close had gone out already) and no more
    /// input is read, not even the peer's Close. Once the output is
    /// flushed, close the TCP connection without waiting for the peer.
    Failed,
}

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; always valid UTF-8.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// The payload, as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}

/// Something the peer did that the application may want to know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message arrived.
    Message(Message),
    /// A ping arrived; its pong is already queued in the output.
    Ping(Vec<u8>),
    /// A pong arrived.
    Pong(Vec<u8>),
    /// The peer's Close frame arrived (`None`: it carried no status code).
    /// If the peer started the closing handshake, our answering Close is
    /// already queued. The state is now [`State::Closed`].
    Close(Option<CloseFrame>),
}

/// A rule of RFC 6455 the peer broke. The connection has queued a Close
/// frame with [`ProtocolError::close_code`] (unless it had sent one already)
/// and entered [`State::Failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame header itself is malformed.
    Header(HeaderError),
    /// RSV bits set that no negotiated extension defines (with
    /// permessage-deflate: RSV1 is allowed on a message's first frame only).
    ReservedBits(u8),
    /// A compressed message that does not inflate (RFC 7692 7.2.2).
    BadCompressedData,
    /// An opcode RFC 6455 reserves.
    ReservedOpcode(u8),
    /// A frame from the client without a mask.
    Unmasked,
    /// A control frame longer than 125 bytes.
    ControlFrameTooLong(u64),
    /// A control frame with FIN clear.
    FragmentedControlFrame,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    ExpectedContinuation,
    /// A message over the configured limit.
    MessageTooBig {
        /// The limit it broke.
        limit: usize,
    },
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// A malformed Close frame.
    BadClose(CloseError),
}

impl ProtocolError {
    /// The close code this violation earns: the one place that decides it.
    pub fn close_code(&self) -> CloseCode {
        match self {
            // RFC 6455 7.4.1: 1007 "indicates that an endpoint is terminating
            // the connection because it has received data within a message
            // that was not consistent with the type of the message (e.g.,
            // non-UTF-8 [RFC3629] data within a text message)".
            // A compressed payload that does not inflate is data "not
            // consistent with the type of the message" too: RFC 7692 names
            // no code, and 1007 is what peers such as Node's ws send.
            ProtocolError::InvalidUtf8
            | ProtocolError::BadCompressedData
            | ProtocolError::BadClose(CloseError::ReasonNotUtf8) => CloseCode::INVALID_PAYLOAD,
            // 1009 "a message that is too big for it to process".
            ProtocolError::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            // 1002 "terminating the connection due to a protocol error".
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Header(e) => write!(f, "bad frame header: {e}"),
            ProtocolError::ReservedBits(bits) => {
                write!(f, "RSV bits {bits:03b} set where no extension allows them")
            }
            ProtocolError::BadCompressedData => f.write_str("compressed data does not inflate"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode 0x{op:X}"),
            ProtocolError::Unmasked => f.write_str("client frame not masked"),
            ProtocolError::ControlFrameTooLong(len) => write!(f, "control frame of {len} bytes"),
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame with no message to continue")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new message before the previous one ended")
            }
            ProtocolError::MessageTooBig { limit } => write!(f, "message over {limit} bytes"),
            ProtocolError::InvalidUtf8 => f.write_str("text message is not UTF-8"),
            ProtocolError::BadClose(e) => write!(f, "bad close frame: {e}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The kind of the message being assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// The frame whose payload is arriving.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    header: FrameHeader,
    /// Payload bytes of this frame already processed.
    received: u64,
}

impl FrameInProgress {
    fn remaining(&self) -> u64 {
        self.header.payload_len - self.received
    }
}

/// Watches the frames a [`Connection`] receives, as it parses them: what
/// `--trace` is made of (`trace::FrameTracer` implements it). The
/// connection only reports; it never depends on what an observer does.
pub trait FrameObserver: fmt::Debug {
    /// A frame header has been parsed.
    fn frame_started(&mut self, header: FrameHeader);
    /// Payload bytes of the current frame, as received (still masked),
    /// starting `offset` bytes into its payload.
    fn payload(&mut self, offset: usize, wire: &[u8]);
    /// Bytes that are not the start of any valid frame header; the frame
    /// ends with [`FrameObserver::frame_done`] like any other.
    fn bad_header(&mut self, bytes: &[u8]);
    /// The current frame has ended: `before` is the connection's state when
    /// its last bytes arrived, `result` what processing them gave, and
    /// `message_so_far` the length of the fragmented message being assembled.
    fn frame_done(
        &mut self,
        before: State,
        result: Result<Option<&Event>, &ProtocolError>,
        message_so_far: usize,
    );
    /// What the application did with the message the connection just
    /// handed it (see [`Connection::trace_note`]).
    fn note(&mut self, note: &str);
    /// The observer's finished records since the last call, oldest first.
    fn take_records(&mut self) -> Vec<String>;
}

/// The server side of one WebSocket connection.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    /// Received bytes; `input[start..end]` is not processed yet.
    input: Vec<u8>,
    start: usize,
    end: usize,
    frame: Option<FrameInProgress>,
    /// The kind of the fragmented message in progress, if any.
    message_kind: Option<MessageKind>,
    message: Vec<u8>,
    /// Bytes at the end of `message` that [`Self::read_payload_with`] put
    /// there and [`Self::next_event`] has not unmasked and checked yet.
    unchecked_payload: usize,
    utf8: Utf8Validator,
    output: Vec<u8>,
    /// Where in `output` the Close frame we queued starts, while unsent.
    close_at: Option<usize>,
    /// The code of the peer's Close, when it began the closing handshake.
    peer_began_closing: Option<CloseCode>,
    /// `--trace`: who watches the frames received, when tracing is on.
    trace: Option<Box<dyn FrameObserver + Send>>,
    /// permessage-deflate, when negotiated (RFC 7692).
    #[cfg(feature = "deflate")]
    deflate: Option<Box<Codec>>,
    /// Wire bytes of the compressed message being inflated; `None` when the
    /// message in progress (if any) is not compressed.
    #[cfg(feature = "deflate")]
    inflating: Option<u64>,
    /// `--trace`: the wire and inflated sizes of the message just inflated.
    #[cfg(feature = "deflate")]
    inflated_sizes: Option<(u64, usize)>,
}

impl Connection {
    /// A connection in the [`State::Open`] state, right after the handshake.
    pub fn new(config: Config) -> Self {
        Connection {
            config,
            state: State::Open,
            input: Vec::new(),
            start: 0,
            end: 0,
            frame: None,
            message_kind: None,
            message: Vec::new(),
            unchecked_payload: 0,
            utf8: Utf8Validator::new(),
            output: Vec::new(),
            close_at: None,
            peer_began_closing: None,
            trace: None,
            #[cfg(feature = "deflate")]
            deflate: None,
            #[cfg(feature = "deflate")]
            inflating: None,
            #[cfg(feature = "deflate")]
            inflated_sizes: None,
        }
    }

    /// From now on, speak permessage-deflate as agreed in the handshake
    /// (RFC 7692): RSV1 marks a compressed message, and messages of at
    /// least `min_size` bytes are sent compressed.
    #[cfg(feature = "deflate")]
    pub fn use_deflate(&mut self, agreement: super::deflate::Agreement, min_size: usize) {
        self.deflate = Some(Box::new(Codec::new(agreement, min_size)));
    }

    /// Whether a message of `len` bytes would be sent compressed: such a
    /// message must go through [`Self::send_text`] or [`Self::send_binary`],
    /// not [`Self::header_for`].
    pub fn compresses(&self, len: usize) -> bool {
        #[cfg(feature = "deflate")]
        if let Some(codec) = &self.deflate {
            return codec.compresses(len);
        }
        let _ = len;
        false
    }

    /// Whether permessage-deflate is in use.
    pub fn deflate_negotiated(&self) -> bool {
        #[cfg(feature = "deflate")]
        return self.deflate.is_some();
        #[cfg(not(feature = "deflate"))]
        false
    }

    /// Whether compression state is held between messages: never with no
    /// context takeover, the default.
    pub fn holds_compression_state(&self) -> bool {
        #[cfg(feature = "deflate")]
        return self
            .deflate
            .as_ref()
            .is_some_and(|codec| codec.holds_state());
        #[cfg(not(feature = "deflate"))]
        false
    }

    /// From now on, report every frame received to `observer`
    /// (`--trace` passes a `trace::FrameTracer`, through
    /// `Connection::trace_frames`); [`Self::take_trace`] hands its records out.
    pub fn observe_frames(&mut self, observer: Box<dyn FrameObserver + Send>) {
        self.trace = Some(observer);
    }

    /// The observer's records since the last call, oldest first; empty when
    /// no observer is set.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace
            .as_deref_mut()
            .map(FrameObserver::take_records)
            .unwrap_or_default()
    }

    /// Add what the application did with the message [`Self::next_event`]
    /// just returned to the description of the frame that completed it
    /// (`echoed`, `delivered to 2 sessions`). `note` runs only when tracing.
    pub fn trace_note(&mut self, note: impl FnOnce() -> String) {
        if let Some(tracer) = self.trace.as_deref_mut() {
            tracer.note(&note());
        }
    }

    /// The connection's limits.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// Free space to read socket bytes into; follow with [`Self::commit_read`].
    pub fn read_space(&mut self) -> &mut [u8] {
        self.compact_input();
        if self.input.len() - self.end < READ_CHUNK {
            self.input.resize(self.end + READ_CHUNK, 0);
        }
        &mut self.input[self.end..]
    }

    /// Record that `n` bytes were read into [`Self::read_space`].
    pub fn commit_read(&mut self, n: usize) {
        self.end = (self.end + n).min(self.input.len());
    }

    /// Hand over received bytes by copying them in.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.compact_input();
        // Only the bytes given are allocated: no zeroed spare room.
        self.input.truncate(self.end);
        self.input.extend_from_slice(bytes);
        self.end = self.input.len();
    }

    /// How many payload bytes may be read straight into the message being
    /// assembled with [`Self::read_payload_with`], skipping the read buffer:
    /// `Some` only inside a binary message's frame whose payload is still
    /// arriving, with no input buffered, while open. (RFC 6455 5.2: the
    /// payload follows the header as-is, so the next bytes on the wire can
    /// only be this frame's payload, up to its length.)
    ///
    /// Never for text: its bytes are checked for UTF-8 as each read brings
    /// them, so that bad text fails the connection at once (RFC 6455 8.1:
    /// "When an endpoint is to interpret a byte stream as UTF-8 but finds
    /// that the byte stream is not, in fact, a valid UTF-8 stream, that
    /// endpoint MUST _Fail the WebSocket Connection_"), and an I/O layer
    /// that waits to fill the room in one go would delay that.
    pub fn direct_payload_room(&self) -> Option<usize> {
        let frame = self.frame.as_ref()?;
        let open = self.state == State::Open;
        let data = !frame.header.opcode.is_control();
        let binary = self.message_kind == Some(MessageKind::Binary);
        if !open || !data || !binary || self.is_inflating() || self.start != self.end {
            return None;
        }
        let room = frame.remaining() - self.unchecked_payload as u64;
        (room > 0).then_some(room as usize)
    }

    /// Let `read` append received bytes to the message itself, saving a
    /// copy through the read buffer for a large frame: it gets the message
    /// with room reserved for [`Self::direct_payload_room`] bytes, and
    /// should append at most that many; bytes beyond are kept as input.
    /// [`Self::next_event`] then unmasks and checks them as if they had
    /// come through [`Self::receive`]. When there is no room (see
    /// [`Self::direct_payload_room`]), `read` appends to a scratch vector
    /// that is handed to [`Self::receive`]. Returns what `read` returns.
    pub fn read_payload_with<R>(&mut self, read: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let Some(room) = self.direct_payload_room() else {
            let mut scratch = Vec::new();
            let result = read(&mut scratch);
            self.receive(&scratch);
            return result;
        };
        let before = self.message.len();
        self.message.reserve(room);
        let result = read(&mut self.message);
        let beyond = self.message.len().saturating_sub(before + room);
        if beyond > 0 {
            let next_frames = self.message.split_off(before + room);
            self.receive(&next_frames);
        }
        self.unchecked_payload += self.message.len() - before;
        result
    }

    /// Whether the connection waits for the first byte of a new frame with
    /// no message half-assembled: the moment an I/O layer can read into a
    /// small buffer of its own instead of [`Self::read_space`].
    pub fn is_between_messages(&self) -> bool {
        self.start == self.end && self.frame.is_none() && self.message_kind.is_none()
    }

    /// Give back the memory of empty buffers, so that a connection waiting
    /// for its next message holds none (memory per idle connection is what
    /// a thread-per-connection server on a small host is judged by).
    pub fn release_idle_buffers(&mut self) {
        if self.start == self.end {
            self.input = Vec::new();
            self.start = 0;
            self.end = 0;
        }
        if self.output.is_empty() {
            self.output = Vec::new();
        }
    }

    /// Received bytes not yet turned into events.
    pub fn buffered_input(&self) -> usize {
        self.end - self.start
    }

    /// Bytes waiting to be sent to the peer.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Forget the output, after it has been sent.
    pub fn clear_output(&mut self) {
        self.close_at = None;
        self.output.clear();
        if self.output.capacity() > 4 * READ_CHUNK {
            self.output = Vec::new();
        }
    }

    /// Take the output, leaving it empty.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.close_at = None;
        std::mem::take(&mut self.output)
    }

    /// Queue a text message. Returns false (and sends nothing) once the
    /// closing handshake has begun.
    pub fn send_text(&mut self, text: &str) -> bool {
        self.send(OpCode::Text, text.as_bytes())
    }

    /// Queue a binary message; false once the closing handshake has begun.
    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.send(OpCode::Binary, data)
    }

    /// Queue a ping (at most 125 bytes of payload are sent).
    pub fn send_ping(&mut self, payload: &[u8]) -> bool {
        let len = payload.len().min(MAX_CONTROL_PAYLOAD);
        self.send(OpCode::Ping, &payload[..len])
    }

    /// The header of a frame carrying `message`, to send a large payload
    /// without copying it into the output: write the output, then this
    /// header, then [`Message::as_bytes`], in one vectored write. `None`
    /// once the closing handshake has begun, as for [`Self::send_text`].
    pub fn header_for(&self, message: &Message) -> Option<Vec<u8>> {
        // RFC 6455 5.5.1: no data frames after a Close (see `send`).
        if self.state != State::Open {
            return None;
        }
        let mut header = Vec::with_capacity(MAX_HEADER_LEN);
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode: message.opcode(),
            mask: None,
            payload_len: message.as_bytes().len() as u64,
        }
        .write(&mut header);
        Some(header)
    }

    fn send(&mut self, opcode: OpCode, payload: &[u8]) -> bool {
        // RFC 6455 5.5.1: "After sending a Close frame, the endpoint MUST NOT
        // send any further data frames."
        if self.state != State::Open {
            return false;
        }
        #[cfg(feature = "deflate")]
        if !opcode.is_control() && self.compresses(payload.len()) {
            if let Some(codec) = self.deflate.as_deref_mut() {
                let compressed = codec.compress(payload);
                write_compressed_frame(&mut self.output, opcode, &compressed);
                let (plain, wire) = (payload.len(), compressed.len());
                self.trace_note(|| format!("sent compressed: {plain} bytes as {wire} on the wire"));
                return true;
            }
        }
        write_frame(&mut self.output, opcode, payload);
        true
    }

    /// Start the closing handshake (RFC 6455 7.1.2). Does nothing unless open.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.state == State::Open {
            self.close_at = Some(self.output.len());
            write_frame(
                &mut self.output,
                OpCode::Close,
                &close_payload(code, reason),
            );
            self.state = State::CloseSent;
            self.drop_partial_message();
        }
    }

    /// Forget the message being assembled: once our Close is queued, no
    /// message will be delivered, and the rest of its frames is skipped.
    fn drop_partial_message(&mut self) {
        // Payload read straight into the message has left the wire: the
        // frame must count it, or it would wait for those bytes again.
        if let Some(frame) = self.frame.as_mut() {
            frame.received += std::mem::take(&mut self.unchecked_payload) as u64;
        }
        self.message_kind = None;
        self.message = Vec::new();
        self.unchecked_payload = 0;
        self.utf8.reset();
        #[cfg(feature = "deflate")]
        if self.inflating.take().is_some() {
            if let Some(codec) = self.deflate.as_deref_mut() {
                codec.end_message(false);
            }
        }
    }

    /// When the peer's Close began the closing handshake (it arrived before
    /// this connection had sent a Close), its code: 1005 for a Close without
    /// one (RFC 6455 7.1.5: the close code "is considered to be 1005"). A
    /// Close the connection could not parse began nothing: the connection
    /// failed with 1002 instead.
    pub fn peer_began_closing(&self) -> Option<CloseCode> {
        self.peer_began_closing
    }

    /// Queue a last text message *ahead of* the Close frame the connection
    /// has queued and not yet handed out, so that an application can say
    /// why before the connection closes (SocketBox sends ERROR 41300 before
    /// Close 1009). Returns false when there is no such Close frame.
    pub fn send_text_before_close(&mut self, text: &str) -> bool {
        let Some(at) = self.close_at else {
            return false;
        };
        let close = self.output.split_off(at);
        write_frame(&mut self.output, OpCode::Text, text.as_bytes());
        self.close_at = Some(self.output.len());
        self.output.extend_from_slice(&close);
        true
    }

    /// _Fail the WebSocket Connection_ (RFC 6455 7.1.7): send a Close frame
    /// with the code the error earns, if no Close went out yet ("the
    /// endpoint SHOULD send a Close frame with an appropriate status code"),
    /// and stop reading.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        self.close(error.close_code(), &error.to_string());
        // RFC 6455 7.1.7: "An endpoint MUST NOT continue to attempt to
        // process data (including a responding Close frame) from the remote
        // endpoint after being instructed to _Fail the WebSocket
        // Connection_." So the rest of the input is dropped unparsed, and
        // the I/O layer closes TCP once the output is out, instead of
        // skipping whatever the peer still streams in search of its Close.
        self.state = State::Failed;
        self.start = self.end;
        self.frame = None;
        self.drop_partial_message();
        error
    }

    /// `--trace`: the frame being traced has ended; record what became of it.
    fn trace_frame_end(&mut self, before: State, handled: &Result<Option<Event>, ProtocolError>) {
        if let Some(tracer) = self.trace.as_deref_mut() {
            let handled = handled.as_ref().map(Option::as_ref);
            tracer.frame_done(before, handled, self.message.len());
        }
    }

    fn compact_input(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Turn buffered input into the next event. `Ok(None)`: more input is
    /// needed (or the connection is closed or failed: nothing more is read).
    /// After an `Err` the state is [`State::Failed`]: send the output, then
    /// close TCP.
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            if matches!(self.state, State::Closed | State::Failed) {
                self.start = self.end;
                return Ok(None);
            }
            let Some(frame) = self.frame else {
                if !self.start_frame()? {
                    return Ok(None);
                }
                continue;
            };
            if frame.header.opcode.is_control() {
                // Control payloads are at most 125 bytes: wait for all of it.
                let len = frame.header.payload_len as usize;
                if self.end - self.start < len {
                    return Ok(None);
                }
                let mut payload = self.input[self.start..self.start + len].to_vec();
                if let Some(tracer) = self.trace.as_deref_mut() {
                    tracer.payload(0, &payload);
                }
                if let Some(key) = frame.header.mask {
                    apply_mask(&mut payload, key, 0);
                }
                self.start += len;
                self.frame = None;
                let before = self.state;
                let handled = self.control_frame(frame.header.opcode, payload);
                self.trace_frame_end(before, &handled);
                if let Some(event) = handled? {
                    return Ok(Some(event));
                }
            } else {
                let before = self.state;
                let handled = self.data_payload(frame).map(|m| m.map(Event::Message));
                if self.frame.is_none() || handled.is_err() {
                    self.trace_frame_end(before, &handled);
                    #[cfg(feature = "deflate")]
                    if let Some((wire, inflated)) = self.inflated_sizes.take() {
                        self.trace_note(|| {
                            format!("permessage-deflate: {wire} bytes on the wire inflated to {inflated}")
                        });
                    }
                }
                if let Some(event) = handled? {
                    return Ok(Some(event));
                }
                if self.frame.is_some() {
                    return Ok(None);
                }
            }
        }
    }

    /// Parse the next frame header, if it has arrived, and check it against
    /// what a client may send. Returns whether a frame was started.
    fn start_frame(&mut self) -> Result<bool, ProtocolError> {
        let (header, header_len) = match FrameHeader::parse(&self.input[self.start..self.end]) {
            Ok(HeaderParse::Complete { header, header_len }) => (header, header_len),
            Ok(HeaderParse::Incomplete { .. }) => return Ok(false),
            Err(e) => {
                if let Some(tracer) = self.trace.as_deref_mut() {
                    tracer.bad_header(&self.input[self.start..self.end]);
                }
                return Err(self.reject(ProtocolError::Header(e)));
            }
        };
        self.start += header_len;
        if let Some(tracer) = self.trace.as_deref_mut() {
            tracer.frame_started(header);
        }
        if let Err(error) = self.check_header(&header) {
            return Err(self.reject(error));
        }
        self.frame = Some(FrameInProgress {
            header,
            received: 0,
        });
        Ok(true)
    }

    /// A frame we cannot accept: fail the connection (after our own Close,
    /// when a Close was already sent, just stop reading).
    fn reject(&mut self, error: ProtocolError) -> ProtocolError {
        self.trace_frame_end(self.state, &Err(error));
        self.fail(error)
    }

    fn check_header(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 5.2: RSV1-3 "MUST be 0 unless an extension is negotiated
        // that defines meanings for non-zero values. If a nonzero value is
        // received and none of the negotiated extensions defines the meaning
        // of such a nonzero value, the receiving endpoint MUST _Fail the
        // WebSocket Connection_." permessage-deflate defines RSV1, and RFC
        // 7692 6.1 allows it on the first frame of a data message only: "An
        // endpoint MUST NOT set the "Per-Message Compressed" bit of control
        // frames and non-first fragments of a data message."
        if header.rsv & !self.allowed_rsv(header) != 0 {
            return Err(ProtocolError::ReservedBits(header.rsv));
        }
        // RFC 6455 5.2: "If an unknown opcode is received, the receiving
        // endpoint MUST _Fail the WebSocket Connection_."
        if let OpCode::Reserved(bits) = header.opcode {
            return Err(ProtocolError::ReservedOpcode(bits));
        }
        // RFC 6455 5.1: "The server MUST close the connection upon receiving
        // a frame that is not masked."
        if header.mask.is_none() {
            return Err(ProtocolError::Unmasked);
        }
        if header.opcode.is_control() {
            // RFC 6455 5.5: "All control frames MUST have a payload length of
            // 125 bytes or less and MUST NOT be fragmented."
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong(header.payload_len));
            }
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            return Ok(());
        }
        if self.state != State::Open {
            // Data after our Close is skipped, not judged.
            return Ok(());
        }
        // RFC 6455 5.4: a fragmented message is one frame with FIN clear and
        // a non-zero opcode, any number of continuation frames (opcode 0),
        // and a final continuation frame with FIN set.
        match (header.opcode, self.message_kind) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        let limit = self.config.max_message as u64;
        #[cfg(feature = "deflate")]
        if self.deflate.is_some() {
            let wire_so_far = match header.opcode {
                OpCode::Continuation => self.inflating,
                _ => (header.rsv != 0).then_some(0),
            };
            if let Some(wire_so_far) = wire_so_far {
                // The inflated size is checked while inflating; the wire
                // size too is bounded, with room for incompressible data
                // (DEFLATE adds at most 5 bytes per 16 KiB stored block).
                let wire_limit = limit + limit / 1024 + 64;
                if header.payload_len > wire_limit - wire_so_far.min(wire_limit) {
                    return Err(ProtocolError::MessageTooBig {
                        limit: self.config.max_message,
                    });
                }
                return Ok(());
            }
        }
        if header.payload_len > limit - (self.message.len() as u64).min(limit) {
            return Err(ProtocolError::MessageTooBig {
                limit: self.config.max_message,
            });
        }
        Ok(())
    }

    /// The RSV bits a frame may carry: RSV1 on a data message's first frame
    /// once permessage-deflate is negotiated, nothing else.
    fn allowed_rsv(&self, header: &FrameHeader) -> u8 {
        let first_data_frame = matches!(header.opcode, OpCode::Text | OpCode::Binary);
        if first_data_frame && self.deflate_negotiated() {
            0b100
        } else {
            0
        }
    }

    /// Take in the payload bytes of a data frame that have arrived (in the
    /// read buffer, or appended to the message by
    /// [`Self::read_payload_with`]); returns the message when its last byte
    /// is in.
    fn data_payload(
        &mut self,
        mut frame: FrameInProgress,
    ) -> Result<Option<Message>, ProtocolError> {
        let direct = std::mem::take(&mut self.unchecked_payload);
        let take = if direct > 0 {
            direct
        } else {
            frame.remaining().min((self.end - self.start) as u64) as usize
        };
        let skipping = self.state != State::Open;
        if frame.received == 0 && direct == 0 && !skipping {
            let first = match frame.header.opcode {
                OpCode::Text => Some(MessageKind::Text),
                OpCode::Binary => Some(MessageKind::Binary),
                _ => None,
            };
            if first.is_some() {
                self.message_kind = first;
                #[cfg(feature = "deflate")]
                if frame.header.rsv & 0b100 != 0 {
                    self.inflating = Some(0);
                }
            }
            if self.message.capacity() == 0 && frame.header.fin && !self.is_inflating() {
                self.message
                    .reserve_exact(frame.header.payload_len as usize);
            }
        }
        let inflating = self.is_inflating();
        // Where this step's payload bytes are: at the end of the message, or
        // next in the read buffer.
        let (bytes, range) = if direct > 0 {
            let at = self.message.len() - direct;
            (&mut self.message, at..at + direct)
        } else {
            self.start += take;
            (&mut self.input, self.start - take..self.start)
        };
        let chunk = &mut bytes[range.clone()];
        let offset = frame.received as usize;
        if let Some(tracer) = self.trace.as_deref_mut() {
            tracer.payload(offset, chunk);
        }
        frame.received += take as u64;
        self.frame = (frame.remaining() > 0).then_some(frame);
        if !skipping {
            if let Some(key) = frame.header.mask {
                apply_mask(chunk, key, offset);
            }
            if inflating {
                // Never read direct (see `direct_payload_room`): the
                // compressed bytes are in the read buffer.
                self.inflate_more(range)?;
            } else {
                if self.message_kind == Some(MessageKind::Text) && self.utf8.feed(chunk).is_err() {
                    return Err(self.fail(ProtocolError::InvalidUtf8));
                }
                if direct == 0 {
                    self.message.extend_from_slice(&self.input[range]);
                }
            }
        }
        if self.frame.is_some() || skipping || !frame.header.fin {
            return Ok(None);
        }
        if inflating {
            self.finish_inflating()?;
        }
        let bytes = std::mem::take(&mut self.message);
        match self.message_kind.take() {
            Some(MessageKind::Text) => {
                // RFC 6455 8.1: a code point cut off by the end of the message.
                if self.utf8.finish().is_err() {
                    return Err(self.fail(ProtocolError::InvalidUtf8));
                }
                match String::from_utf8(bytes) {
                    Ok(text) => Ok(Some(Message::Text(text))),
                    Err(_) => Err(self.fail(ProtocolError::InvalidUtf8)),
                }
            }
            _ => Ok(Some(Message::Binary(bytes))),
        }
    }

    /// Whether the message in progress is compressed.
    fn is_inflating(&self) -> bool {
        #[cfg(feature = "deflate")]
        return self.inflating.is_some();
        #[cfg(not(feature = "deflate"))]
        false
    }

    /// Inflate `self.input[range]`, compressed payload, onto the message,
    /// checking the inflated text for UTF-8 as it is produced (RFC 6455
    /// 8.1 applies to the message the extension hands over).
    #[cfg(feature = "deflate")]
    fn inflate_more(&mut self, range: std::ops::Range<usize>) -> Result<(), ProtocolError> {
        if let Some(wire) = self.inflating.as_mut() {
            *wire += range.len() as u64;
        }
        let limit = self.config.max_message;
        let before = self.message.len();
        let result = match self.deflate.as_deref_mut() {
            Some(codec) => codec.inflate(&self.input[range], &mut self.message, limit),
            None => Ok(()),
        };
        self.after_inflating(before, result)
    }

    #[cfg(not(feature = "deflate"))]
    fn inflate_more(&mut self, _range: std::ops::Range<usize>) -> Result<(), ProtocolError> {
        Ok(())
    }

    /// The compressed message's payload is all in: RFC 7692 7.2.2, "Append 4
    /// octets of 0x00 0x00 0xff 0xff to the tail end of the payload of the
    /// message" and inflate.
    #[cfg(feature = "deflate")]
    fn finish_inflating(&mut self) -> Result<(), ProtocolError> {
        let limit = self.config.max_message;
        let before = self.message.len();
        let result = match self.deflate.as_deref_mut() {
            Some(codec) => codec.finish_message(&mut self.message, limit),
            None => Ok(()),
        };
        self.after_inflating(before, result)?;
        let wire = self.inflating.take().unwrap_or(0);
        if self.trace.is_some() {
            // Noted once the frame's own record is finished.
            self.inflated_sizes = Some((wire, self.message.len()));
        }
        Ok(())
    }

    #[cfg(not(feature = "deflate"))]
    fn finish_inflating(&mut self) -> Result<(), ProtocolError> {
        Ok(())
    }

    #[cfg(feature = "deflate")]
    fn after_inflating(
        &mut self,
        before: usize,
        result: Result<(), InflateError>,
    ) -> Result<(), ProtocolError> {
        match result {
            Err(InflateError::TooBig) => Err(self.fail(ProtocolError::MessageTooBig {
                limit: self.config.max_message,
            })),
            Err(InflateError::Corrupt) => Err(self.fail(ProtocolError::BadCompressedData)),
            Ok(()) => {
                let text = self.message_kind == Some(MessageKind::Text);
                if text && self.utf8.feed(&self.message[before..]).is_err() {
                    return Err(self.fail(ProtocolError::InvalidUtf8));
                }
                Ok(())
            }
        }
    }

    fn control_frame(
        &mut self,
        opcode: OpCode,
        payload: Vec<u8>,
    ) -> Result<Option<Event>, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                if self.state == State::Open {
                    // RFC 6455 5.5.2: "Upon receipt of a Ping frame, an
                    // endpoint MUST send a Pong frame in response", and 5.5.3:
                    // "A Pong frame sent in response to a Ping frame must
                    // have identical "Application data"".
                    write_frame(&mut self.output, OpCode::Pong, &payload);
                }
                Ok(Some(Event::Ping(payload)))
            }
            // RFC 6455 5.5.3: "A response to an unsolicited Pong frame is not
            // expected."
            OpCode::Pong => Ok(Some(Event::Pong(payload))),
            _ => self.close_frame(&payload).map(Some),
        }
    }

    fn close_frame(&mut self, payload: &[u8]) -> Result<Event, ProtocolError> {
        let parsed = parse_close_payload(payload);
        if self.state == State::Open {
            let frame = parsed.map_err(|e| self.fail(ProtocolError::BadClose(e)))?;
            // RFC 6455 5.5.1: "If an endpoint receives a Close frame and did
            // not previously send a Close frame, the endpoint MUST send a
            // Close frame in response. (When sending a Close frame in
            // response, the endpoint typically echos the status code it
            // received.)"
            let reply = match &frame {
                Some(frame) => close_payload(frame.code, ""),
                None => Vec::new(),
            };
            write_frame(&mut self.output, OpCode::Close, &reply);
            self.state = State::Closed;
            self.peer_began_closing = Some(
                frame
                    .as_ref()
                    .map_or(CloseCode::NO_STATUS, |frame| frame.code),
            );
            return Ok(Event::Close(frame));
        }
        // The peer's answer to our Close: the closing handshake is complete.
        self.state = State::Closed;
        Ok(Event::Close(parsed.ok().flatten()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            fin,
            rsv: 0,
            opcode: OpCode::from_bits(opcode),
            mask: Some(KEY),
            payload_len: payload.len() as u64,
        }
        .write(&mut out);
        let mut masked = payload.to_vec();
        apply_mask(&mut masked, KEY, 0);
        out.extend_from_slice(&masked);
        out
    }

    fn events(conn: &mut Connection) -> Result<Vec<Event>, ProtocolError> {
        let mut all = Vec::new();
        while let Some(e) = conn.next_event()? {
            all.push(e);
        }
        Ok(all)
    }

    fn conn() -> Connection {
        Connection::new(Config { max_message: 1000 })
    }

    /// An observer that writes down each call, to check what the connection
    /// reports without the `--trace` format.
    #[derive(Debug, Default)]
    struct Recorder(Vec<String>);

    impl FrameObserver for Recorder {
        fn frame_started(&mut self, header: FrameHeader) {
            self.0
                .push(format!("start {:?} {}", header.opcode, header.payload_len));
        }
        fn payload(&mut self, offset: usize, wire: &[u8]) {
            self.0.push(format!("payload {offset} {}", wire.len()));
        }
        fn bad_header(&mut self, bytes: &[u8]) {
            self.0.push(format!("bad {}", bytes.len()));
        }
        fn frame_done(
            &mut self,
            before: State,
            result: Result<Option<&Event>, &ProtocolError>,
            message_so_far: usize,
        ) {
            let what = match result {
                Ok(Some(_)) => "event".to_owned(),
                Ok(None) => "none".to_owned(),
                Err(error) => error.close_code().to_string(),
            };
            self.0
                .push(format!("done {before:?} {what} {message_so_far}"));
        }
        fn note(&mut self, note: &str) {
            self.0.push(format!("note {note}"));
        }
        fn take_records(&mut self) -> Vec<String> {
            std::mem::take(&mut self.0)
        }
    }

    #[test]
    fn an_observer_sees_every_frame_and_note() {
        let mut c = conn();
        assert!(c.take_trace().is_empty());
        c.observe_frames(Box::<Recorder>::default());
        let mut input = frame(false, 0x1, b"He");
        input.extend(frame(true, 0x0, b"llo"));
        c.receive(&input);
        assert_eq!(
            events(&mut c),
            Ok(vec![Event::Message(Message::Text("Hello".into()))])
        );
        c.trace_note(|| "echoed".to_owned());
        // A 16-bit length of 5: not in its shortest form.
        c.receive(&[0x82, 0xfe, 0x00, 0x05, 0, 0, 0, 0]);
        assert!(events(&mut c).is_err());
        assert_eq!(
            c.take_trace(),
            [
                "start Text 2",
                "payload 0 2",
                "done Open none 2",
                "start Continuation 3",
                "payload 0 3",
                "done Open event 0",
                "note echoed",
                "bad 8",
                "done Open 1002 0",
            ]
        );
    }

    fn close_code_sent(conn: &Connection) -> u16 {
        let out = conn.output();
        let close_at = out
            .windows(1)
            .position(|w| w[0] == 0x88)
            .expect("a close frame in the output");
        u16::from_be_bytes([out[close_at + 2], out[close_at + 3]])
    }

    #[test]
    fn rfc_masked_hello() {
        let mut c = conn();
        c.receive(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(
            events(&mut c),
            Ok(vec![Event::Message(Message::Text("Hello".into()))])
        );
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let mut stream = frame(false, 1, "Hel".as_bytes());
        stream.extend(frame(true, 9, b"ping!"));
        stream.extend(frame(true, 0, "lo κόσμε".as_bytes()));
        stream.extend(frame(true, 2, &[0, 1, 2]));
        stream.extend(frame(true, 8, &[0x03, 0xe8]));
        let mut whole = conn();
        whole.receive(&stream);
        let expected = events(&mut whole).unwrap();
        assert_eq!(expected.len(), 4);
        let mut bytewise = conn();
        let mut got = Vec::new();
        for b in &stream {
            bytewise.receive(std::slice::from_ref(b));
            got.extend(events(&mut bytewise).unwrap());
        }
        assert_eq!(got, expected);
        assert_eq!(bytewise.output(), whole.output());
        assert_eq!(bytewise.state(), State::Closed);
    }

    #[test]
    fn fragmented_message_with_interleaved_ping() {
        let mut c = conn();
        c.receive(&frame(false, 1, b"frag"));
        c.receive(&frame(true, 9, b"x"));
        c.receive(&frame(false, 0, b"men"));
        c.receive(&frame(true, 0, b"ted"));
        assert_eq!(
            events(&mut c),
            Ok(vec![
                Event::Ping(b"x".to_vec()),
                Event::Message(Message::Text("fragmented".into()))
            ])
        );
        assert_eq!(c.output(), &[0x8A, 0x01, b'x']);
    }

    #[test]
    fn empty_messages() {
        let mut c = conn();
        c.receive(&frame(true, 1, b""));
        c.receive(&frame(false, 2, b""));
        c.receive(&frame(true, 0, b""));
        assert_eq!(
            events(&mut c),
            Ok(vec![
                Event::Message(Message::Text(String::new())),
                Event::Message(Message::Binary(Vec::new()))
            ])
        );
    }

    fn fails_with_state(stream: &[u8], code: u16, state: State) -> ProtocolError {
        let mut c = conn();
        c.receive(stream);
        let err = events(&mut c).expect_err("the connection should fail");
        assert_eq!(close_code_sent(&c), code);
        assert_eq!(c.state(), state, "{err}");
        err
    }

    fn fails_with(stream: &[u8], code: u16) -> ProtocolError {
        let mut c = conn();
        c.receive(stream);
        let err = events(&mut c).expect_err("the connection should fail");
        assert_eq!(err.close_code().0, code, "{err}");
        assert_eq!(close_code_sent(&c), code);
        assert_eq!(c.state(), State::Failed, "{err}");
        err
    }

    #[test]
    fn header_rules() {
        let mut rsv = frame(true, 1, b"x");
        rsv[0] |= 0x40;
        assert_eq!(fails_with(&rsv, 1002), ProtocolError::ReservedBits(0b100));
        assert_eq!(
            fails_with(&frame(true, 3, b""), 1002),
            ProtocolError::ReservedOpcode(3)
        );
        assert_eq!(
            fails_with(&frame(true, 0xB, b""), 1002),
            ProtocolError::ReservedOpcode(0xB)
        );
        assert_eq!(
            fails_with(&[0x81, 0x01, b'x'], 1002),
            ProtocolError::Unmasked
        );
        assert_eq!(
            fails_with(&frame(true, 9, &[0; 126]), 1002),
            ProtocolError::ControlFrameTooLong(126)
        );
        assert_eq!(
            fails_with(&frame(false, 9, b""), 1002),
            ProtocolError::FragmentedControlFrame
        );
        assert_eq!(
            fails_with(&frame(true, 0, b"x"), 1002),
            ProtocolError::UnexpectedContinuation
        );
        let mut two_starts = frame(false, 1, b"a");
        two_starts.extend(frame(true, 1, b"b"));
        assert_eq!(
            fails_with(&two_starts, 1002),
            ProtocolError::ExpectedContinuation
        );
        assert_eq!(
            fails_with(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1002),
            ProtocolError::Header(HeaderError::LengthHighBitSet)
        );
    }

    #[test]
    fn message_size_limit() {
        let mut c = conn();
        c.receive(&frame(true, 2, &[7; 1000]));
        assert_eq!(
            events(&mut c).unwrap().len(),
            1,
            "exactly the limit is accepted"
        );
        let mut over = frame(false, 2, &[7; 600]);
        over.extend(frame(true, 0, &[7; 401]));
        assert_eq!(
            fails_with(&over, 1009),
            ProtocolError::MessageTooBig { limit: 1000 }
        );
        // The header alone is enough to refuse: no payload is buffered.
        let mut c = conn();
        c.receive(&[0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]);
        assert!(events(&mut c).is_err());
        assert_eq!(c.buffered_input(), 0);
    }

    #[test]
    fn utf8_fails_fast_inside_a_frame() {
        // The frame announces 20 bytes but only the bad prefix has arrived.
        let payload =
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65";
        let whole = frame(true, 1, payload);
        let mut c = conn();
        c.receive(&whole[..6 + 12]);
        assert_eq!(events(&mut c), Ok(vec![]));
        c.receive(&whole[18..19]);
        assert_eq!(events(&mut c), Err(ProtocolError::InvalidUtf8));
        assert_eq!(close_code_sent(&c), 1007);
    }

    #[test]
    fn utf8_split_across_frames() {
        let text = "κόσμε".as_bytes();
        let mut ok = conn();
        for split in 0..=text.len() {
            ok.receive(&frame(false, 1, &text[..split]));
            ok.receive(&frame(true, 0, &text[split..]));
        }
        assert_eq!(events(&mut ok).unwrap().len(), text.len() + 1);
        // A code point left unfinished by the last fragment.
        let mut cut = frame(false, 1, b"ok");
        cut.extend(frame(true, 0, b"\xce"));
        assert_eq!(fails_with(&cut, 1007), ProtocolError::InvalidUtf8);
    }

    #[test]
    fn peer_close_is_echoed_and_closes() {
        let mut c = conn();
        c.receive(&frame(true, 8, b"\x03\xe8bye"));
        assert_eq!(
            events(&mut c),
            Ok(vec![Event::Close(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: "bye".into()
            }))])
        );
        assert_eq!(c.output(), &[0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(c.state(), State::Closed);
        assert_eq!(c.peer_began_closing(), Some(CloseCode::NORMAL));
        assert!(!c.send_text("too late"));
        // An empty close is answered with an empty close.
        let mut c = conn();
        c.receive(&frame(true, 8, b""));
        assert_eq!(events(&mut c), Ok(vec![Event::Close(None)]));
        assert_eq!(c.output(), &[0x88, 0x00]);
        assert_eq!(c.peer_began_closing(), Some(CloseCode::NO_STATUS));
        // A Close that cannot be parsed begins nothing: the connection fails.
        let mut c = conn();
        c.receive(&frame(true, 8, &[3]));
        assert!(events(&mut c).is_err());
        assert_eq!(c.peer_began_closing(), None);
    }

    #[test]
    fn bad_close_frames() {
        assert_eq!(
            fails_with(&frame(true, 8, &[3]), 1002),
            ProtocolError::BadClose(CloseError::OneByte)
        );
        assert_eq!(
            fails_with(&frame(true, 8, &[0x03, 0xed]), 1002),
            ProtocolError::BadClose(CloseError::InvalidCode(1005))
        );
        assert_eq!(
            fails_with(&frame(true, 8, b"\x03\xe8\xff"), 1007),
            ProtocolError::BadClose(CloseError::ReasonNotUtf8)
        );
    }

    #[test]
    fn server_close_waits_for_the_peer() {
        let mut c = conn();
        c.close(CloseCode::GOING_AWAY, "shutting down");
        assert_eq!(c.state(), State::CloseSent);
        assert_eq!(close_code_sent(&c), 1001);
        c.clear_output();
        // Data still in flight is discarded, pings are not answered.
        c.receive(&frame(true, 1, b"late"));
        c.receive(&frame(true, 9, b""));
        c.receive(&frame(true, 8, b"\x03\xe9"));
        let got = events(&mut c).unwrap();
        assert_eq!(
            got.last(),
            Some(&Event::Close(Some(CloseFrame {
                code: CloseCode::GOING_AWAY,
                reason: String::new()
            })))
        );
        assert_eq!(c.state(), State::Closed);
        assert!(c.output().is_empty());
        assert_eq!(c.peer_began_closing(), None, "the peer only answered");
    }

    #[test]
    fn a_refused_close_fails_the_connection_too() {
        let too_long = frame(true, 8, &[b'x'; 126]);
        assert_eq!(
            fails_with_state(&too_long, 1002, State::Failed),
            ProtocolError::ControlFrameTooLong(126)
        );
        assert_eq!(
            fails_with_state(&frame(false, 8, b"\x03\xe8"), 1002, State::Failed),
            ProtocolError::FragmentedControlFrame
        );
    }

    /// RFC 6455 7.1.7: nothing is processed after the connection failed,
    /// not even the peer's Close: it is neither answered nor reported.
    #[test]
    fn after_failure_nothing_more_is_read() {
        let mut stream = frame(true, 1, b"\xff");
        stream.extend(frame(true, 1, b"valid"));
        stream.extend(frame(true, 9, b"ping"));
        stream.extend(frame(true, 8, b"\x03\xe8"));
        for split in [stream.len(), 7] {
            let mut c = conn();
            c.receive(&stream[..split]);
            assert_eq!(c.next_event(), Err(ProtocolError::InvalidUtf8));
            c.receive(&stream[split..]);
            assert_eq!(events(&mut c), Ok(vec![]));
            assert_eq!(c.state(), State::Failed);
            assert_eq!(c.buffered_input(), 0, "the rest is dropped unparsed");
            assert_eq!(close_code_sent(&c), 1007);
            assert_eq!(c.output()[0], 0x88, "only our Close: no pong, no answer");
            assert_eq!(c.output().len(), 2 + c.output()[1] as usize);
        }
    }

    /// A frame that breaks a rule after our own Close (the peer has not
    /// answered yet) ends the reading too; no second Close is sent.
    #[test]
    fn a_bad_frame_after_our_close_stops_reading() {
        let mut c = conn();
        c.close(CloseCode::GOING_AWAY, "bye");
        c.clear_output();
        let mut stream = frame(true, 1, b"late, skipped unjudged: \xff");
        stream.extend(frame(true, 3, b""));
        stream.extend(frame(true, 8, b"\x03\xe9"));
        c.receive(&stream);
        assert_eq!(c.next_event(), Err(ProtocolError::ReservedOpcode(3)));
        assert_eq!(events(&mut c), Ok(vec![]));
        assert_eq!(c.state(), State::Failed);
        assert!(c.output().is_empty());
    }

    #[test]
    fn last_words_go_before_the_close() {
        let mut c = conn();
        assert!(!c.send_text_before_close("nothing to precede"));
        c.receive(&frame(true, 9, b"p"));
        c.receive(&frame(true, 2, &[0; 1001]));
        assert!(events(&mut c).is_err());
        assert!(c.send_text_before_close("too big"));
        let out = c.output();
        assert_eq!(&out[..3], &[0x8A, 0x01, b'p'], "the pong stays first");
        assert_eq!(&out[3..12], b"\x81\x07too big");
        assert_eq!(out[12], 0x88);
        assert_eq!(&out[14..16], &[0x03, 0xf1]);
        c.clear_output();
        assert!(!c.send_text_before_close("the close is gone already"));
    }

    #[test]
    fn idle_connections_hold_no_buffers() {
        let mut c = conn();
        c.receive(&frame(false, 1, b"part"));
        assert!(events(&mut c).unwrap().is_empty());
        assert!(!c.is_between_messages(), "a message is half-assembled");
        c.receive(&frame(true, 0, b"ial"));
        c.receive(&frame(true, 9, b"")[..3]);
        assert_eq!(events(&mut c).unwrap().len(), 1);
        assert!(!c.is_between_messages(), "a frame header is half-read");
        c.receive(&frame(true, 9, b"")[3..]);
        assert_eq!(events(&mut c).unwrap().len(), 1);
        assert!(c.is_between_messages());
        c.clear_output();
        c.release_idle_buffers();
        assert_eq!((c.input.capacity(), c.output.capacity()), (0, 0));
        c.receive(&frame(true, 1, b"again"));
        assert_eq!(
            events(&mut c),
            Ok(vec![Event::Message(Message::Text("again".into()))])
        );
    }

    #[test]
    fn server_frames() {
        let mut c = conn();
        assert!(c.send_text("Hello"));
        assert!(c.send_binary(&[1, 2]));
        assert!(c.send_ping(b""));
        assert_eq!(
            c.output(),
            &[0x81, 5, b'H', b'e', b'l', b'l', b'o', 0x82, 2, 1, 2, 0x89, 0]
        );
    }

    #[test]
    fn input_stays_small_for_large_messages() {
        let mut c = Connection::new(Config::default());
        let big = frame(true, 2, &vec![9; 1 << 20]);
        let mut got = Vec::new();
        for chunk in big.chunks(5000) {
            c.receive(chunk);
            got.extend(events(&mut c).unwrap());
            assert!(c.buffered_input() < 14);
            assert!(c.input.len() <= 2 * READ_CHUNK);
        }
        assert_eq!(got, vec![Event::Message(Message::Binary(vec![9; 1 << 20]))]);
    }

    /// Feeds `stream` the way `/echo` reads: through the read buffer, but
    /// straight into the message whenever the connection offers room,
    /// `step` bytes at most per read (sometimes more than the room, so the
    /// next frame's first bytes arrive with the payload's last).
    fn feed_direct(
        c: &mut Connection,
        stream: &[u8],
        step: usize,
    ) -> Vec<Result<Event, ProtocolError>> {
        let mut all = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let n = step.min(rest.len());
            if c.direct_payload_room().is_some() {
                c.read_payload_with(|message| message.extend_from_slice(&rest[..n]));
            } else {
                c.receive(&rest[..n]);
            }
            rest = &rest[n..];
            while let Some(event) = c.next_event().transpose() {
                all.push(event);
            }
        }
        all
    }

    #[test]
    fn payload_read_into_the_message_gives_the_same_events() {
        let text = "κόσμε ".repeat(3000);
        let binary: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let mut stream = frame(true, 1, text.as_bytes());
        stream.extend(frame(false, 2, &binary[..9000]));
        stream.extend(frame(true, 9, b"ping"));
        stream.extend(frame(true, 0, &binary[9000..]));
        stream.extend(frame(true, 8, &[0x03, 0xe8]));
        let config = Config {
            max_message: 1 << 20,
        };
        let mut whole = Connection::new(config);
        whole.receive(&stream);
        let expected: Vec<_> = std::iter::from_fn(|| whole.next_event().transpose()).collect();
        assert_eq!(expected.len(), 4);
        for step in [1, 7, 1000, 4096, 8192, 50_000] {
            let mut c = Connection::new(config);
            assert_eq!(feed_direct(&mut c, &stream, step), expected, "step {step}");
            assert_eq!(c.output(), whole.output(), "step {step}");
            assert_eq!(c.state(), State::Closed);
        }
    }

    #[test]
    fn room_is_offered_only_inside_a_data_frame_while_open() {
        let mut c = conn();
        assert_eq!(c.direct_payload_room(), None, "no frame yet");
        let stream = frame(true, 2, &[7; 600]);
        c.receive(&stream[..8 + 100]);
        assert_eq!(events(&mut c), Ok(vec![]));
        assert_eq!(c.direct_payload_room(), Some(500));
        c.read_payload_with(|message| message.extend_from_slice(&stream[108..408]));
        assert_eq!(
            c.direct_payload_room(),
            Some(200),
            "300 read, not yet checked"
        );
        c.close(CloseCode::GOING_AWAY, "bye");
        assert_eq!(c.direct_payload_room(), None, "closing: data is skipped");
        c.receive(&stream[408..]);
        assert_eq!(events(&mut c), Ok(vec![]), "the message is dropped");
        assert!(c.is_between_messages());
    }

    #[test]
    fn bad_utf8_read_into_the_message_fails_the_connection() {
        let mut payload = vec![b'a'; 10_000];
        payload[9_000] = 0xff;
        let stream = frame(true, 1, &payload);
        let mut c = Connection::new(Config {
            max_message: 1 << 20,
        });
        c.receive(&stream[..8 + 100]);
        assert_eq!(events(&mut c), Ok(vec![]));
        assert_eq!(c.direct_payload_room(), None, "text is never read direct");
        let events = feed_direct(&mut c, &stream[108..], 4096);
        assert_eq!(events, vec![Err(ProtocolError::InvalidUtf8)]);
        assert_eq!(close_code_sent(&c), 1007);
        assert_eq!(c.direct_payload_room(), None);
    }
}

/// permessage-deflate inside the connection (RFC 7692 6, 7.2).
#[cfg(all(test, feature = "deflate"))]
mod deflate_tests {
    use super::*;
    use crate::protocol::deflate::{accept_offer, Agreement, Codec};
    use crate::protocol::handshake::ExtensionOffer;

    const KEY: [u8; 4] = [1, 2, 3, 4];

    fn agreement() -> Agreement {
        let offer = ExtensionOffer {
            name: "permessage-deflate",
            params: vec![],
        };
        accept_offer(&offer, false).unwrap()
    }

    fn conn(limit: usize) -> Connection {
        let mut c = Connection::new(Config { max_message: limit });
        c.use_deflate(agreement(), 10);
        c
    }

    fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            fin: first_byte & 0x80 != 0,
            rsv: (first_byte >> 4) & 0b111,
            opcode: OpCode::from_bits(first_byte & 0xF),
            mask: Some(KEY),
            payload_len: payload.len() as u64,
        }
        .write(&mut out);
        let mut masked = payload.to_vec();
        apply_mask(&mut masked, KEY, 0);
        out.extend(masked);
        out
    }

    fn compressed(payload: &[u8]) -> Vec<u8> {
        Codec::new(agreement(), 0).compress(payload)
    }

    fn run(c: &mut Connection, stream: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        c.receive(stream);
        let mut all = Vec::new();
        while let Some(event) = c.next_event()? {
            all.push(event);
        }
        Ok(all)
    }

    fn text(s: &str) -> Event {
        Event::Message(Message::Text(s.into()))
    }

    #[test]
    fn compressed_messages_whole_and_fragmented() {
        let wire = compressed("Hello, Hello, Hello".as_bytes());
        let mut c = conn(1000);
        // RFC 7692 7.2.3.1's "Hello", RSV1 set on a text frame.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut stream = frame(0xC1, &hello);
        // Fragmented: RSV1 on the first frame only, a ping in between.
        stream.extend(frame(0x41, &wire[..3]));
        stream.extend(frame(0x89, b"p"));
        stream.extend(frame(0x80, &wire[3..]));
        // An uncompressed message is still fine.
        stream.extend(frame(0x81, b"plain"));
        assert_eq!(
            run(&mut c, &stream),
            Ok(vec![
                text("Hello"),
                Event::Ping(b"p".to_vec()),
                text("Hello, Hello, Hello"),
                text("plain")
            ])
        );
        assert!(!c.holds_compression_state());
        assert_eq!(c.direct_payload_room(), None);
    }

    #[test]
    fn rsv1_where_it_must_not_be() {
        let wire = compressed(b"abc");
        // On a continuation frame.
        let mut stream = frame(0x01, b"a");
        stream.extend(frame(0xC0, &wire));
        assert_eq!(
            run(&mut conn(1000), &stream),
            Err(ProtocolError::ReservedBits(0b100))
        );
        // On a control frame.
        assert_eq!(
            run(&mut conn(1000), &frame(0xC9, &wire)),
            Err(ProtocolError::ReservedBits(0b100))
        );
        // RSV2 and RSV3 are never allowed.
        assert_eq!(
            run(&mut conn(1000), &frame(0xA1, b"x")),
            Err(ProtocolError::ReservedBits(0b010))
        );
        // Without the extension, RSV1 is a protocol error as before.
        let mut plain = Connection::new(Config { max_message: 1000 });
        assert_eq!(
            run(&mut plain, &frame(0xC1, &wire)),
            Err(ProtocolError::ReservedBits(0b100))
        );
    }

    #[test]
    fn bombs_bad_data_and_bad_text() {
        let bomb = compressed(&vec![0; 1 << 20]);
        let mut c = conn(64 * 1024);
        let err = run(&mut c, &frame(0xC2, &bomb)).unwrap_err();
        assert_eq!(err, ProtocolError::MessageTooBig { limit: 64 * 1024 });
        assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
        assert!(!c.holds_compression_state());
        let err = run(&mut conn(1000), &frame(0xC1, &[0xff, 0xff, 0xff])).unwrap_err();
        assert_eq!(err, ProtocolError::BadCompressedData);
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
        // Bad UTF-8 fails as soon as it is inflated, before the message ends.
        let mut bad = vec![b'a'; 100];
        bad[50] = 0xff;
        let wire = compressed(&bad);
        let mut c = conn(1000);
        c.receive(&frame(0x41, &wire));
        assert_eq!(c.next_event(), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn sends_compress_from_the_minimum_size() {
        let mut c = conn(1000);
        assert!(c.send_text("short"));
        assert_eq!(c.output(), b"\x81\x05short");
        c.clear_output();
        let long = "0123456789".repeat(10);
        assert!(c.compresses(long.len()) && !c.compresses(9));
        assert!(c.send_text(&long));
        let out = c.output().to_vec();
        assert_eq!(out[0], 0xC1, "FIN, RSV1, text");
        assert!((out[1] as usize) < long.len());
        let mut inflater = Codec::new(agreement(), 0);
        let mut plain = Vec::new();
        inflater.inflate(&out[2..], &mut plain, 1000).unwrap();
        inflater.finish_message(&mut plain, 1000).unwrap();
        assert_eq!(plain, long.as_bytes());
        c.clear_output();
        assert!(c.send_ping(&[7; 100]));
        assert_eq!(c.output()[0], 0x89, "control frames are never compressed");
    }
}
