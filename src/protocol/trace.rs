//! `--trace`: every frame, field by field, as text a person can read. The
//! frame tracer is how `docs/tour.md` shows real bytes, and how a learner
//! watches RFC 6455 section 5.2 (the base framing protocol) happen on a live
//! connection.
//!
//! Like the rest of the protocol core it does no I/O: it turns a frame
//! header and the first bytes of its payload into a block of text, and the
//! server shell decides where that text goes (stderr). One block looks like
//! this (a masked "Hello", the RFC 6455 5.7 example, as the server receives
//! it):
//!
//! ```text
//! IN frame, header 81 85 37 fa 21 3d, 5 payload bytes
//!     FIN      1          final frame of its message
//!     RSV      000        no extension in use
//!     opcode   0x1        TEXT, a data frame
//!     MASK     1          key 37 fa 21 3d
//!     length   5          in the 7-bit length field
//!     masked   7f 9f 4d 51 58
//!     payload  "Hello"
//!     action   text message complete, 5 bytes: handed to the application -> echoed back
//! ```
//!
//! - [`describe`] formats one frame; [`describe_frames`] every frame in a
//!   buffer of complete frames (what the server writes).
//! - [`FrameTracer`] is the [`FrameObserver`] a [`Connection`] keeps while
//!   tracing is on (see [`Connection::trace_frames`]):
//!   it collects each received frame's header and payload preview as the
//!   bytes arrive, and, when the frame ends, the `action` line saying what
//!   the connection did with it ([`outcome`]). The application may add what
//!   it did in turn after a `->` ([`FrameTracer::note`]): `echoed back` on
//!   `/echo`, the replies and deliveries of a SocketBox request on `/ws`.
//!
//! Payloads are previewed, never copied whole: at most [`PREVIEW_BYTES`]
//! bytes are kept per frame, so tracing a 16 MiB message costs 40 bytes.

use std::fmt::Write as _;

use super::close::CloseCode;
use super::connection::{Connection, Event, FrameObserver, Message, ProtocolError, State};
use super::frame::{FrameHeader, HeaderParse, OpCode, MAX_HEADER_LEN};
use super::mask::apply_mask;

/// Payload bytes kept per frame for the preview.
pub const PREVIEW_BYTES: usize = 40;

/// Bytes shown when a preview is in hex.
const HEX_BYTES: usize = 16;

/// Finished records a [`FrameTracer`] keeps before the oldest are dropped,
/// should the shell not collect them.
const MAX_PENDING: usize = 1024;

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server.
    In,
    /// From the server to the client.
    Out,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::In => "IN",
            Direction::Out => "OUT",
        }
    }
}

/// Describe one frame, one field per line, without a trailing newline.
///
/// `payload` is the start of the payload *as it travels on the wire* (still
/// masked when `header.mask` is set; the preview is unmasked here); it may
/// be shorter than `header.payload_len`, and only its first
/// [`PREVIEW_BYTES`] bytes are looked at.
pub fn describe(direction: Direction, header: &FrameHeader, payload: &[u8]) -> String {
    let mut header_bytes = Vec::with_capacity(MAX_HEADER_LEN);
    // The parser accepts only the shortest length form, and `write` emits
    // exactly that form, so these are the bytes that travelled.
    header.write(&mut header_bytes);
    let wire = payload.get(..PREVIEW_BYTES).unwrap_or(payload);
    let mut plain = wire.to_vec();
    if let Some(key) = header.mask {
        apply_mask(&mut plain, key, 0);
    }
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "{} frame, header {}, {} payload byte{}",
        direction.name(),
        hex(&header_bytes, MAX_HEADER_LEN),
        header.payload_len,
        if header.payload_len == 1 { "" } else { "s" }
    );
    let fin = if header.fin {
        "final frame of its message"
    } else {
        "more fragments follow"
    };
    field(&mut out, "FIN", &u8::from(header.fin).to_string(), fin);
    let first_data_frame = matches!(header.opcode, OpCode::Text | OpCode::Binary);
    let rsv = match header.rsv {
        0 => "no extension in use",
        // RFC 7692 6: RSV1 of a message's first frame marks it compressed.
        0b100 if first_data_frame => {
            "RSV1: a compressed message (permessage-deflate), an error unless negotiated"
        }
        _ => "set, but no extension allows it here",
    };
    field(&mut out, "RSV", &format!("{:03b}", header.rsv), rsv);
    let kind = match header.opcode {
        OpCode::Continuation => "CONTINUATION, the next fragment of a message".to_owned(),
        OpCode::Reserved(_) => format!("{}, an opcode RFC 6455 reserves", header.opcode),
        op if op.is_control() => format!("{op}, a control frame"),
        op => format!("{op}, a data frame"),
    };
    field(
        &mut out,
        "opcode",
        &format!("0x{:X}", header.opcode.bits()),
        &kind,
    );
    match (header.mask, direction) {
        (Some(key), _) => field(&mut out, "MASK", "1", &format!("key {}", hex(&key, 4))),
        (None, Direction::In) => field(&mut out, "MASK", "0", "no key, but a client MUST mask"),
        (None, Direction::Out) => field(&mut out, "MASK", "0", "servers never mask"),
    }
    let length_form = match header.payload_len {
        0..=125 => "in the 7-bit length field",
        126..=0xFFFF => "7-bit field 126: a 16-bit length follows",
        _ => "7-bit field 127: a 64-bit length follows",
    };
    field(
        &mut out,
        "length",
        &header.payload_len.to_string(),
        length_form,
    );
    if header.mask.is_some() && !wire.is_empty() {
        let _ = write!(out, "\n    masked   {}", hex(wire, HEX_BYTES));
    }
    let _ = write!(
        out,
        "\n    payload  {}",
        preview(header.opcode, &plain, header.payload_len)
    );
    out
}

/// Describe every frame in `bytes`, which holds complete frames (what the
/// server writes); bytes that do not form a complete frame are reported as
/// such at the end.
pub fn describe_frames(direction: Direction, bytes: &[u8]) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok(HeaderParse::Complete { header, header_len }) = FrameHeader::parse(rest) else {
            blocks.push(format!(
                "{} {} bytes that are not a complete frame: {}",
                direction.name(),
                rest.len(),
                hex(rest, HEX_BYTES)
            ));
            break;
        };
        let payload = rest.get(header_len..).unwrap_or_default();
        let payload_len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        let (payload, after) = payload.split_at(payload_len.min(payload.len()));
        blocks.push(describe(direction, &header, payload));
        rest = after;
    }
    blocks
}

/// What the connection did with a received frame that has just ended: the
/// `action` line of its trace.
///
/// `before` is the connection's state when the frame's last bytes arrived,
/// `result` what processing them gave, and `message_so_far` the length of
/// the fragmented message being assembled.
pub fn outcome(
    before: State,
    result: Result<Option<&Event>, &ProtocolError>,
    message_so_far: usize,
) -> String {
    match result {
        Err(error) if before == State::Open => format!(
            "failed the connection (RFC 6455 7.1.7): queued Close {} because: {error}",
            error.close_code()
        ),
        Err(error) => format!("stopped reading ({error}): the TCP connection closes"),
        Ok(Some(Event::Message(Message::Text(text)))) => format!(
            "text message complete, {} bytes: handed to the application",
            text.len()
        ),
        Ok(Some(Event::Message(Message::Binary(data)))) => format!(
            "binary message complete, {} bytes: handed to the application",
            data.len()
        ),
        Ok(Some(Event::Ping(_))) if before == State::Open => {
            "queued a PONG with the same payload (RFC 6455 5.5.2)".to_owned()
        }
        Ok(Some(Event::Ping(_))) => "not answered: our Close is already sent".to_owned(),
        Ok(Some(Event::Pong(_))) => "nothing to answer (RFC 6455 5.5.3)".to_owned(),
        Ok(Some(Event::Close(frame))) if before == State::Open => {
            let answer = match frame {
                Some(frame) => format!("Close {}", frame.code),
                None => "an empty Close".to_owned(),
            };
            format!(
                "the client starts the closing handshake: answered with {answer}; \
                 the server then closes TCP (RFC 6455 5.5.1, 7.1.1)"
            )
        }
        Ok(Some(Event::Close(_))) => {
            "the answer to our Close: closing handshake complete, the server closes TCP".to_owned()
        }
        Ok(None) if before != State::Open => {
            "discarded: our Close is already sent (RFC 6455 5.5.1)".to_owned()
        }
        Ok(None) => format!(
            "fragment stored: {message_so_far} bytes of the message so far, waiting for FIN"
        ),
    }
}

/// A received frame whose trace is being collected.
#[derive(Debug, Clone)]
enum Record {
    /// A frame with a header that parsed.
    Frame {
        header: FrameHeader,
        /// The first payload bytes as they arrived (masked).
        preview: Vec<u8>,
    },
    /// Bytes no valid frame header could start with.
    Unparseable(Vec<u8>),
}

/// The trace of the frames one connection receives. A [`Connection`] with
/// tracing on feeds it as it parses, as its [`FrameObserver`];
/// the shell collects finished blocks with [`FrameTracer::take`].
#[derive(Debug, Clone)]
pub struct FrameTracer {
    label: String,
    current: Option<Record>,
    done: Vec<String>,
    dropped: usize,
}

impl FrameTracer {
    /// A tracer whose blocks start with `[label] `.
    pub fn new(label: &str) -> Self {
        FrameTracer {
            label: label.to_owned(),
            current: None,
            done: Vec::new(),
            dropped: 0,
        }
    }

    /// A frame header has been parsed: start its record.
    pub fn frame_started(&mut self, header: FrameHeader) {
        self.current = Some(Record::Frame {
            header,
            preview: Vec::new(),
        });
    }

    /// Payload bytes of the current frame, as received (still masked),
    /// starting `offset` bytes into its payload.
    pub fn payload(&mut self, offset: usize, wire: &[u8]) {
        let Some(Record::Frame { preview, .. }) = &mut self.current else {
            return;
        };
        if offset == preview.len() && offset < PREVIEW_BYTES {
            let take = wire.len().min(PREVIEW_BYTES - offset);
            preview.extend_from_slice(wire.get(..take).unwrap_or(wire));
        }
    }

    /// The current frame has ended and this is what became of it (see
    /// [`outcome`]). Does nothing when no frame is being traced (the rest
    /// of a frame that already failed the connection, say).
    pub fn frame_done(&mut self, action: &str) {
        let block = match self.current.take() {
            None => return,
            Some(Record::Frame { header, preview }) => describe(Direction::In, &header, &preview),
            Some(Record::Unparseable(bytes)) => format!(
                "IN bytes no valid frame header starts with: {}",
                hex(&bytes, MAX_HEADER_LEN)
            ),
        };
        self.push_block(format!("{block}\n    action   {action}"));
    }

    /// Bytes that are not the start of any valid frame header; the record
    /// ends with [`Self::frame_done`] like any other.
    pub fn bad_header(&mut self, bytes: &[u8]) {
        let shown = bytes.get(..MAX_HEADER_LEN).unwrap_or(bytes);
        self.current = Some(Record::Unparseable(shown.to_vec()));
    }

    /// Add what the application did with the frame traced last (the one
    /// that completed the message it was just handed), e.g. `echoed`. When
    /// that frame's block has been taken already, the note becomes a line
    /// of its own, `[label] -> note`.
    pub fn note(&mut self, note: &str) {
        match self.done.last_mut() {
            Some(last) => {
                last.push_str(" -> ");
                last.push_str(note);
            }
            None => self.push_block(format!("-> {note}")),
        }
    }

    /// The finished blocks since the last call, each `[label] `-prefixed,
    /// oldest first.
    pub fn take(&mut self) -> Vec<String> {
        let mut blocks = std::mem::take(&mut self.done);
        if self.dropped > 0 {
            blocks.insert(
                0,
                format!(
                    "[{}] ({} frames not shown: the trace was not collected)",
                    self.label, self.dropped
                ),
            );
            self.dropped = 0;
        }
        blocks
    }

    fn push_block(&mut self, block: String) {
        if self.done.len() >= MAX_PENDING {
            self.done.remove(0);
            self.dropped += 1;
        }
        self.done.push(format!("[{}] {block}", self.label));
    }
}

impl FrameObserver for FrameTracer {
    fn frame_started(&mut self, header: FrameHeader) {
        FrameTracer::frame_started(self, header);
    }

    fn payload(&mut self, offset: usize, wire: &[u8]) {
        FrameTracer::payload(self, offset, wire);
    }

    fn bad_header(&mut self, bytes: &[u8]) {
        FrameTracer::bad_header(self, bytes);
    }

    fn frame_done(
        &mut self,
        before: State,
        result: Result<Option<&Event>, &ProtocolError>,
        message_so_far: usize,
    ) {
        FrameTracer::frame_done(self, &outcome(before, result, message_so_far));
    }

    fn note(&mut self, note: &str) {
        FrameTracer::note(self, note);
    }

    fn take_records(&mut self) -> Vec<String> {
        self.take()
    }
}

impl Connection {
    /// `--trace`: from now on, describe every frame received, field by
    /// field, with what the connection did with it (this module has the
    /// format); [`Connection::take_trace`] hands the descriptions out. Each
    /// starts with `[label]`.
    pub fn trace_frames(&mut self, label: &str) {
        self.observe_frames(Box::new(FrameTracer::new(label)));
    }
}

/// One `    NAME     VALUE      meaning` line.
fn field(out: &mut String, name: &str, value: &str, meaning: &str) {
    let _ = write!(out, "\n    {name:<8} {value:<10} {meaning}");
}

/// Up to `max` bytes as lower-case hex pairs, with `…` when there are more.
fn hex(bytes: &[u8], max: usize) -> String {
    let shown = bytes.get(..max).unwrap_or(bytes);
    let mut out = String::with_capacity(shown.len() * 3 + 4);
    for (i, byte) in shown.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{byte:02x}");
    }
    if bytes.len() > shown.len() {
        out.push_str(" …");
    }
    out
}

/// The unmasked payload preview: a Close frame's code and reason, text as an
/// escaped string, anything else as hex; with how much was left out.
fn preview(opcode: OpCode, plain: &[u8], payload_len: u64) -> String {
    if payload_len == 0 {
        return "(empty)".to_owned();
    }
    if plain.is_empty() {
        return format!("(none of its {payload_len} bytes previewed)");
    }
    let truncated = (plain.len() as u64) < payload_len;
    let as_hex = || (hex(plain, HEX_BYTES), plain.len().min(HEX_BYTES));
    let (mut out, shown) = match (opcode, plain) {
        (OpCode::Close, [hi, lo, reason @ ..]) => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            let reason = quoted(reason, truncated);
            (format!("code {code}, reason {reason}"), plain.len())
        }
        (OpCode::Close, _) => (
            format!("{} (too short for a close code)", hex(plain, HEX_BYTES)),
            plain.len(),
        ),
        (OpCode::Binary, _) => as_hex(),
        (OpCode::Text, _) => (quoted(plain, truncated), plain.len()),
        _ if looks_like_text(plain, truncated) => (quoted(plain, truncated), plain.len()),
        _ => as_hex(),
    };
    if (shown as u64) < payload_len {
        let _ = write!(out, "  (first {shown} of {payload_len} bytes)");
    }
    out
}

/// Text in double quotes, escaped like Rust's `{:?}`; bytes that are not
/// UTF-8 appear as `\xNN`. When the preview cut the payload short, a code
/// point cut in two is left out rather than shown as invalid.
fn quoted(bytes: &[u8], truncated: bool) -> String {
    let bytes = if truncated {
        without_cut_char(bytes)
    } else {
        bytes
    };
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        let _ = write!(out, "{}", chunk.valid().escape_debug());
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    if truncated {
        out.push('…');
    }
    out
}

/// A continuation, ping or pong payload is shown as text when it is UTF-8
/// without control characters (other than whitespace).
fn looks_like_text(bytes: &[u8], truncated: bool) -> bool {
    let bytes = if truncated {
        without_cut_char(bytes)
    } else {
        bytes
    };
    std::str::from_utf8(bytes).is_ok_and(|text| {
        text.chars()
            .all(|c| !c.is_control() || c.is_ascii_whitespace())
    })
}

/// `bytes` without a trailing, unfinished UTF-8 sequence.
fn without_cut_char(bytes: &[u8]) -> &[u8] {
    // The last character starts at most 3 bytes before the end.
    for back in 1..=bytes.len().min(4) {
        let start = bytes.len() - back;
        let Some(&lead) = bytes.get(start) else {
            break;
        };
        if lead & 0xC0 != 0x80 {
            let needed = match lead {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if needed > back {
                bytes.get(..start).unwrap_or(bytes)
            } else {
                bytes
            };
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::close::CloseFrame;

    fn parse(bytes: &[u8]) -> (FrameHeader, &[u8]) {
        match FrameHeader::parse(bytes) {
            Ok(HeaderParse::Complete { header, header_len }) => (header, &bytes[header_len..]),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    fn lines(block: &str) -> Vec<&str> {
        block.lines().map(str::trim_end).collect()
    }

    #[test]
    fn rfc_masked_hello_field_by_field() {
        // RFC 6455 5.7: "A single-frame masked text message".
        let (header, payload) = parse(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        let block = describe(Direction::In, &header, payload);
        assert_eq!(
            lines(&block),
            [
                "IN frame, header 81 85 37 fa 21 3d, 5 payload bytes",
                "    FIN      1          final frame of its message",
                "    RSV      000        no extension in use",
                "    opcode   0x1        TEXT, a data frame",
                "    MASK     1          key 37 fa 21 3d",
                "    length   5          in the 7-bit length field",
                "    masked   7f 9f 4d 51 58",
                "    payload  \"Hello\"",
            ]
        );
    }

    #[test]
    fn rfc_unmasked_and_fragmented_examples() {
        // "A single-frame unmasked text message", as the server sends it.
        let (header, payload) = parse(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let block = describe(Direction::Out, &header, payload);
        assert!(block.starts_with("OUT frame, header 81 05, 5 payload bytes"));
        assert!(block.contains("MASK     0          servers never mask"));
        assert!(!block.contains("masked "));
        assert!(block.ends_with("payload  \"Hello\""));
        // "A fragmented unmasked text message": "Hel" then "lo".
        let (first, payload) = parse(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        let block = describe(Direction::Out, &first, payload);
        assert!(block.contains("FIN      0          more fragments follow"));
        assert!(block.contains("opcode   0x1        TEXT"));
        let (last, payload) = parse(&[0x80, 0x02, 0x6c, 0x6f]);
        let block = describe(Direction::Out, &last, payload);
        assert!(block.contains("FIN      1"));
        assert!(block.contains("opcode   0x0        CONTINUATION"));
        assert!(block.ends_with("payload  \"lo\""));
    }

    #[test]
    fn rfc_ping_and_pong_examples() {
        // "Unmasked Ping request and masked Ping response" (the response is a Pong).
        let (ping, payload) = parse(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let block = describe(Direction::Out, &ping, payload);
        assert!(block.contains("opcode   0x9        PING, a control frame"));
        let (pong, payload) = parse(&[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        let block = describe(Direction::In, &pong, payload);
        assert!(block.contains("opcode   0xA        PONG, a control frame"));
        assert!(block.ends_with("payload  \"Hello\""));
    }

    #[test]
    fn rfc_length_forms() {
        // "256 bytes binary message in a single unmasked frame".
        let mut frame = vec![0x82, 0x7E, 0x01, 0x00];
        frame.extend((0..=255u8).collect::<Vec<_>>());
        let (header, payload) = parse(&frame);
        let block = describe(Direction::Out, &header, payload);
        assert!(block.starts_with("OUT frame, header 82 7e 01 00, 256 payload bytes"));
        assert!(block.contains("length   256        7-bit field 126: a 16-bit length follows"));
        assert!(block.contains(
            "payload  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f …  (first 16 of 256 bytes)"
        ));
        // "64KiB binary message in a single unmasked frame": only the header.
        let (header, _) = parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        let block = describe(Direction::Out, &header, &[]);
        assert!(block.contains("length   65536      7-bit field 127: a 64-bit length follows"));
    }

    #[test]
    fn close_payloads_show_code_and_reason() {
        let (header, payload) = parse(&[0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
        let block = describe(Direction::Out, &header, payload);
        assert!(
            block.ends_with("payload  code 1000, reason \"bye\""),
            "{block}"
        );
        let (header, payload) = parse(&[0x88, 0x00]);
        assert!(describe(Direction::Out, &header, payload).ends_with("payload  (empty)"));
        let (header, payload) = parse(&[0x88, 0x01, 0x03]);
        assert!(describe(Direction::Out, &header, payload)
            .ends_with("payload  03 (too short for a close code)"));
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_escaped() {
        // 39 ASCII bytes then "κ" (2 bytes): the 40-byte preview cuts it in two.
        let text = format!("{}\"κ\n", "a".repeat(38));
        let mut frame = Vec::new();
        crate::protocol::frame::write_frame(&mut frame, OpCode::Text, text.as_bytes());
        let (header, payload) = parse(&frame);
        let block = describe(Direction::Out, &header, payload);
        let expected = format!(
            "payload  \"{}\\\"\"…  (first 40 of 42 bytes)",
            "a".repeat(38)
        );
        assert!(block.ends_with(&expected), "{block}");
        let (header, payload) = parse(&[0x81, 0x02, 0xff, b'x']);
        assert!(describe(Direction::Out, &header, payload).ends_with("payload  \"\\xffx\""));
    }

    #[test]
    fn rule_breaking_headers_are_described_not_judged() {
        let (header, payload) = parse(&[0xC3, 0x01, b'x']);
        let block = describe(Direction::In, &header, payload);
        assert!(block.contains("RSV      100        set, but no extension allows it here"));
        let (rsv1_header, rsv1_payload) = parse(&[0xC1, 0x01, b'x']);
        let rsv1 = describe(Direction::In, &rsv1_header, rsv1_payload);
        assert!(rsv1.contains("RSV      100        RSV1: a compressed message"));
        assert!(block.contains("opcode   0x3        RESERVED(0x3), an opcode RFC 6455 reserves"));
        assert!(block.contains("MASK     0          no key, but a client MUST mask"));
    }

    #[test]
    fn describe_frames_splits_a_write() {
        let mut out = Vec::new();
        crate::protocol::frame::write_frame(&mut out, OpCode::Pong, b"p");
        crate::protocol::frame::write_frame(&mut out, OpCode::Close, &[0x03, 0xe8]);
        out.push(0x81);
        let blocks = describe_frames(Direction::Out, &out);
        assert_eq!(blocks.len(), 3);
        assert!(blocks[0].starts_with("OUT frame, header 8a 01, 1 payload byte\n"));
        assert!(blocks[1].ends_with("payload  code 1000, reason \"\""));
        assert_eq!(blocks[2], "OUT 1 bytes that are not a complete frame: 81");
    }

    #[test]
    fn tracer_collects_a_frame_arriving_in_pieces() {
        let mut tracer = FrameTracer::new("peer");
        let (header, payload) = parse(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        tracer.frame_started(header);
        tracer.payload(0, &payload[..2]);
        tracer.payload(2, &payload[2..]);
        let event = Event::Message(Message::Text("Hello".into()));
        tracer.frame_done(&outcome(State::Open, Ok(Some(&event)), 0));
        tracer.note("echoed");
        // A frame already ended is not ended twice.
        tracer.frame_done("again");
        let blocks = tracer.take();
        assert_eq!(blocks.len(), 1);
        tracer.note("replied");
        assert_eq!(tracer.take(), ["[peer] -> replied"]);
        assert!(blocks[0].starts_with("[peer] IN frame, header 81 85 37 fa 21 3d"));
        assert!(blocks[0].contains("payload  \"Hello\"\n"));
        assert!(blocks[0].ends_with(
            "action   text message complete, 5 bytes: handed to the application -> echoed"
        ));
        assert!(tracer.take().is_empty());
    }

    #[test]
    fn tracer_keeps_only_the_preview() {
        let mut tracer = FrameTracer::new("p");
        let (header, _) = parse(&[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]);
        tracer.frame_started(header);
        for offset in (0..65536).step_by(1000) {
            tracer.payload(offset, &[0u8; 1000]);
        }
        let Some(Record::Frame { preview, .. }) = &tracer.current else {
            panic!("a frame is being traced");
        };
        assert_eq!(preview.len(), PREVIEW_BYTES);
        tracer.bad_header(&[0x82, 0xFF, 0x80]);
        tracer.frame_done("stopped");
        let blocks = tracer.take();
        assert_eq!(
            blocks,
            ["[p] IN bytes no valid frame header starts with: 82 ff 80\n    action   stopped"]
        );
    }

    /// A masked client frame with the RFC's example key.
    fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first_byte, 0x80 | payload.len() as u8];
        out.extend_from_slice(&key);
        let mut masked = payload.to_vec();
        apply_mask(&mut masked, key, 0);
        out.extend(masked);
        out
    }

    #[test]
    fn a_tracing_connection_describes_every_frame_it_reads() {
        use crate::protocol::{Config, Connection};
        let mut conn = Connection::new(Config::default());
        assert!(conn.take_trace().is_empty(), "off until asked");
        conn.trace_frames("c1");
        let mut stream = client_frame(0x01, b"Hel");
        stream.extend(client_frame(0x89, b"!"));
        stream.extend(client_frame(0x80, b"lo"));
        stream.extend(client_frame(0x83, b"x"));
        // Byte by byte, so that every frame is assembled from pieces.
        for byte in &stream {
            conn.receive(std::slice::from_ref(byte));
            while let Ok(Some(event)) = conn.next_event() {
                if let Event::Message(_) = event {
                    conn.trace_note(|| "echoed".to_owned());
                }
            }
        }
        let blocks = conn.take_trace();
        assert_eq!(blocks.len(), 4, "{blocks:#?}");
        assert!(blocks[0].starts_with("[c1] IN frame, header 01 83 37 fa 21 3d, 3 payload bytes"));
        assert!(blocks[0].contains("payload  \"Hel\"\n"));
        assert!(
            blocks[0].ends_with("fragment stored: 3 bytes of the message so far, waiting for FIN")
        );
        assert!(blocks[1].contains("opcode   0x9        PING"));
        assert!(
            blocks[1].ends_with("action   queued a PONG with the same payload (RFC 6455 5.5.2)")
        );
        assert!(blocks[2].contains("opcode   0x0        CONTINUATION"));
        assert!(blocks[2]
            .ends_with("text message complete, 5 bytes: handed to the application -> echoed"));
        assert!(blocks[3].contains("opcode   0x3        RESERVED(0x3)"));
        assert!(blocks[3].ends_with("queued Close 1002 because: reserved opcode 0x3"));
    }

    #[test]
    fn outcomes_name_what_the_connection_did() {
        let ping = Event::Ping(Vec::new());
        assert!(outcome(State::Open, Ok(Some(&ping)), 0).starts_with("queued a PONG"));
        assert!(outcome(State::CloseSent, Ok(Some(&ping)), 0).starts_with("not answered"));
        let close = Event::Close(Some(CloseFrame {
            code: CloseCode::NORMAL,
            reason: String::new(),
        }));
        assert!(outcome(State::Open, Ok(Some(&close)), 0).contains("answered with Close 1000"));
        assert!(outcome(State::CloseSent, Ok(Some(&close)), 0).contains("handshake complete"));
        assert!(outcome(State::Open, Ok(None), 3).contains("3 bytes of the message so far"));
        assert!(outcome(State::CloseSent, Ok(None), 0).starts_with("discarded"));
        let error = ProtocolError::ReservedOpcode(3);
        assert_eq!(
            outcome(State::Open, Err(&error), 0),
            "failed the connection (RFC 6455 7.1.7): queued Close 1002 because: reserved opcode 0x3"
        );
        assert!(outcome(State::CloseSent, Err(&error), 0).starts_with("stopped reading"));
    }
}
