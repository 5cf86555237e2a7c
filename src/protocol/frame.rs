//! The frame header, RFC 6455 section 5.2: parsing what a client sends and
//! writing what the server sends.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! [`FrameHeader::parse`] looks at the first bytes of a buffer and either
//! returns a complete header with its length, or says how many bytes it needs
//! before it can; it never consumes anything, so the caller simply reads more
//! and asks again. It checks only what makes the header itself malformed;
//! the rules about what a *client* may send (masking, RSV bits, control frame
//! sizes) belong to the connection, which chooses the close code.

use std::fmt;

/// Byte 0: FIN bit.
const FIN: u8 = 0b1000_0000;
/// Byte 0: the three RSV bits.
const RSV: u8 = 0b0111_0000;
/// Byte 0: the opcode.
const OPCODE: u8 = 0b0000_1111;
/// Byte 1: MASK bit.
const MASK: u8 = 0b1000_0000;
/// Byte 1: the 7-bit payload length.
const LEN7: u8 = 0b0111_1111;
/// A 7-bit length of 126 means "the next 2 bytes are the length".
const LEN7_MEANS_16: u8 = 126;
/// A 7-bit length of 127 means "the next 8 bytes are the length".
const LEN7_MEANS_64: u8 = 127;

/// Longest possible header: 2 fixed bytes, 8 bytes of length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Control frames carry at most this many payload bytes (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a frame is (RFC 6455 5.2, "Opcode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: a further fragment of a message.
    Continuation,
    /// 0x1: the first fragment of a text message.
    Text,
    /// 0x2: the first fragment of a binary message.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping; the peer answers with a pong.
    Ping,
    /// 0xA: a pong.
    Pong,
    /// 0x3-0x7 and 0xB-0xF: "reserved for further non-control/control frames".
    Reserved(u8),
}

impl OpCode {
    /// The opcode in the low 4 bits of `bits`.
    pub fn from_bits(bits: u8) -> OpCode {
        match bits & OPCODE {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => OpCode::Reserved(other),
        }
    }

    /// The 4-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
            OpCode::Reserved(bits) => bits & OPCODE,
        }
    }

    /// Control frames are those whose opcode has its high bit set (RFC 6455 5.5).
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

impl fmt::Display for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpCode::Continuation => f.write_str("CONTINUATION"),
            OpCode::Text => f.write_str("TEXT"),
            OpCode::Binary => f.write_str("BINARY"),
            OpCode::Close => f.write_str("CLOSE"),
            OpCode::Ping => f.write_str("PING"),
            OpCode::Pong => f.write_str("PONG"),
            OpCode::Reserved(bits) => write!(f, "RESERVED(0x{bits:X})"),
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// This is the final fragment of its message.
    pub fin: bool,
    /// The three RSV bits, in the low bits (RSV1 = 0b100).
    pub rsv: u8,
    /// What the frame is.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Length of the payload that follows the header.
    pub payload_len: u64,
}

/// The answer of [`FrameHeader::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderParse {
    /// A whole header; the payload starts `header_len` bytes into the buffer.
    Complete {
        /// The header.
        header: FrameHeader,
        /// How many bytes it took.
        header_len: usize,
    },
    /// The buffer holds only part of a header: at least `needed` bytes in all
    /// are required to go on. Nothing was consumed.
    Incomplete {
        /// Total buffer length needed for the next attempt to progress.
        needed: usize,
    },
}

/// A header that no valid frame could have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// A 64-bit length with its most significant bit set.
    LengthHighBitSet,
    /// A length written with more bytes than it needs.
    NonMinimalLength,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::LengthHighBitSet => f.write_str("64-bit length with its high bit set"),
            HeaderError::NonMinimalLength => f.write_str("length not in its shortest form"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl FrameHeader {
    /// Parse the header at the start of `buf`, consuming nothing.
    pub fn parse(buf: &[u8]) -> Result<HeaderParse, HeaderError> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(HeaderParse::Incomplete { needed: 2 });
        };
        let masked = b1 & MASK != 0;
        let (extended_len_bytes, len7) = match b1 & LEN7 {
            LEN7_MEANS_16 => (2, None),
            LEN7_MEANS_64 => (8, None),
            small => (0, Some(small)),
        };
        let header_len = 2 + extended_len_bytes + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(HeaderParse::Incomplete { needed: header_len });
        }
        // From here on `rest` holds every byte the header needs.
        let (len_bytes, rest) = rest.split_at(extended_len_bytes);
        let payload_len = match (len7, len_bytes) {
            (Some(small), _) => u64::from(small),
            (None, &[hi, lo]) => {
                let len = u64::from(u16::from_be_bytes([hi, lo]));
                // RFC 6455 5.2: "the minimal number of bytes MUST be used to
                // encode the length".
                if len < u64::from(LEN7_MEANS_16) {
                    return Err(HeaderError::NonMinimalLength);
                }
                len
            }
            (None, eight) => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(eight);
                let len = u64::from_be_bytes(bytes);
                // RFC 6455 5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(HeaderError::LengthHighBitSet);
                }
                if len <= u64::from(u16::MAX) {
                    return Err(HeaderError::NonMinimalLength);
                }
                len
            }
        };
        let mask = match rest {
            [a, b, c, d, ..] if masked => Some([*a, *b, *c, *d]),
            _ => None,
        };
        Ok(HeaderParse::Complete {
            header: FrameHeader {
                fin: b0 & FIN != 0,
                rsv: (b0 & RSV) >> 4,
                opcode: OpCode::from_bits(*b0),
                mask,
                payload_len,
            },
            header_len,
        })
    }

    /// Append the header's bytes to `out`, using the shortest length form.
    pub fn write(&self, out: &mut Vec<u8>) {
        let fin = if self.fin { FIN } else { 0 };
        out.push(fin | ((self.rsv << 4) & RSV) | self.opcode.bits());
        let mask_bit = if self.mask.is_some() { MASK } else { 0 };
        match self.payload_len {
            len @ 0..=125 => out.push(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                out.push(mask_bit | LEN7_MEANS_16);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(mask_bit | LEN7_MEANS_64);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }
}

/// Append a whole unmasked, unfragmented server frame: header and payload,
/// so that the caller can send both in one write.
///
/// RFC 6455 5.1: "A server MUST NOT mask any frames that it sends to the
/// client."
pub fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    }
    .write(out);
    out.extend_from_slice(payload);
}

/// Append an unmasked, unfragmented frame with RSV1 set: a message
/// compressed by permessage-deflate (RFC 7692 6: "the "Per-Message
/// Compressed" bit" is RSV1 of the first frame).
pub fn write_compressed_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    FrameHeader {
        fin: true,
        rsv: 0b100,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    }
    .write(out);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (FrameHeader, usize) {
        match FrameHeader::parse(buf) {
            Ok(HeaderParse::Complete { header, header_len }) => (header, header_len),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 5.7: single-frame unmasked text "Hello".
        let (h, n) = complete(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(n, 2);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Text,
                mask: None,
                payload_len: 5
            }
        );
        // Masked "Hello".
        let (h, n) = complete(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f]);
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        // A fragmented "Hel": FIN clear.
        let (h, _) = complete(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h.fin);
        // 256 bytes binary in a single unmasked frame.
        let (h, n) = complete(&[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!((h.opcode, h.payload_len, n), (OpCode::Binary, 256, 4));
        // 64 KiB binary in a single unmasked frame.
        let (h, n) = complete(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn incomplete_says_how_much_more() {
        assert_eq!(
            FrameHeader::parse(&[]),
            Ok(HeaderParse::Incomplete { needed: 2 })
        );
        assert_eq!(
            FrameHeader::parse(&[0x81]),
            Ok(HeaderParse::Incomplete { needed: 2 })
        );
        assert_eq!(
            FrameHeader::parse(&[0x81, 0x85, 1, 2]),
            Ok(HeaderParse::Incomplete { needed: 6 })
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0xFF, 0, 0, 0]),
            Ok(HeaderParse::Incomplete { needed: 14 })
        );
    }

    #[test]
    fn rsv_and_reserved_opcodes_are_reported_not_judged() {
        let (h, _) = complete(&[0xF3, 0x80, 0, 0, 0, 0]);
        assert_eq!(h.rsv, 0b111);
        assert_eq!(h.opcode, OpCode::Reserved(3));
        assert!(!h.opcode.is_control());
        assert!(OpCode::Reserved(0xB).is_control());
    }

    #[test]
    fn length_rules() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::LengthHighBitSet)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7E, 0x00, 0x7D]),
            Err(HeaderError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
            Err(HeaderError::NonMinimalLength)
        );
    }

    #[test]
    fn write_then_parse_round_trips() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for opcode in [OpCode::Text, OpCode::Continuation, OpCode::Ping] {
                    let header = FrameHeader {
                        fin: len % 2 == 0,
                        rsv: 0,
                        opcode,
                        mask,
                        payload_len: len,
                    };
                    let mut out = Vec::new();
                    header.write(&mut out);
                    assert_eq!(complete(&out), (header, out.len()));
                }
            }
        }
    }

    #[test]
    fn server_frame_bytes() {
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Text, b"Hello");
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        out.clear();
        write_frame(&mut out, OpCode::Binary, &[0u8; 256]);
        assert_eq!(&out[..4], &[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        out.clear();
        write_frame(&mut out, OpCode::Pong, b"");
        assert_eq!(out, [0x8A, 0x00]);
    }
}
