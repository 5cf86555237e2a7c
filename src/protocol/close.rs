//! Close frames and status codes, RFC 6455 sections 5.5.1, 7.1.5-7.1.6 and 7.4.
//!
//! A Close frame's payload is either empty or a 2-byte big-endian status code
//! followed by a UTF-8 reason. This module parses the payload a peer sent,
//! decides which codes a peer may send (7.4.1, 7.4.2 and the IANA registry),
//! and builds the payload of the Close frames the server sends.

use std::fmt;

/// A close status code (RFC 6455 7.4). The constants are the codes RFC 6455
/// 7.4.1 defines; an application's own codes (4000-4999, 7.4.2) live with
/// the application (the chat's are in `chat::message::codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose for which the connection was established is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is going down, or a browser left the page.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept (binary on `/ws`).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reserved; stands for "the Close frame had no code". Never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reserved; stands for "closed without a Close frame". Never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message that is not UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message that violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// May a peer put this code in a Close frame?
    ///
    /// RFC 6455 7.4.1 and 7.4.2: 1004, 1005, 1006 and 1015 are reserved and
    /// "MUST NOT be set as a status code in a Close control frame by an
    /// endpoint"; 0-999 are not used; 1000-2999 are for the protocol and its
    /// extensions, so only the registered ones (1000-1003, 1007-1011, and
    /// 1012-1014 registered with IANA since) are meaningful; 3000-3999 are
    /// for libraries and 4000-4999 for applications.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The content of a Close frame that carried a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, for people to read; may be empty.
    pub reason: String,
}

/// What is wrong with a Close frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// One byte: too short for a code, and a code is the only thing allowed
    /// before the reason (RFC 6455 5.5.1).
    OneByte,
    /// A code that no endpoint may send (RFC 6455 7.4).
    InvalidCode(u16),
    /// The reason is not UTF-8.
    ReasonNotUtf8,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::OneByte => f.write_str("close payload of one byte"),
            CloseError::InvalidCode(c) => write!(f, "invalid close code {c}"),
            CloseError::ReasonNotUtf8 => f.write_str("close reason is not UTF-8"),
        }
    }
}

impl std::error::Error for CloseError {}

/// Longest reason that fits a control frame: 125 bytes of payload minus the
/// 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// Parse the (already unmasked) payload of a Close frame a peer sent.
/// `Ok(None)` is an empty payload: a close with no status code.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, CloseError> {
    match payload {
        [] => Ok(None),
        // RFC 6455 5.5.1: "If there is a body, the first two bytes of the body
        // MUST be a 2-byte unsigned integer (in network byte order)".
        [_] => Err(CloseError::OneByte),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(CloseError::InvalidCode(code.0));
            }
            // RFC 6455 5.5.1: the body after the code is "data [that] is not
            // guaranteed to be human readable" but is UTF-8 ("the data MUST
            // be UTF-8-encoded" for the reason), so invalid UTF-8 fails.
            let reason = std::str::from_utf8(reason).map_err(|_| CloseError::ReasonNotUtf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// Build the payload of a Close frame: the code, then as much of `reason` as
/// fits in 123 bytes without cutting a character in two.
pub fn close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.0.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_is_no_code() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
    }

    #[test]
    fn one_byte_is_an_error() {
        assert_eq!(parse_close_payload(&[0x03]), Err(CloseError::OneByte));
    }

    #[test]
    fn code_and_reason() {
        assert_eq!(
            parse_close_payload(b"\x03\xe8bye"),
            Ok(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: "bye".into()
            }))
        );
    }

    #[test]
    fn valid_and_invalid_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(
                parse_close_payload(&u16::to_be_bytes(code)).is_ok(),
                "{code}"
            );
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                parse_close_payload(&u16::to_be_bytes(code)),
                Err(CloseError::InvalidCode(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn reason_must_be_utf8() {
        assert_eq!(
            parse_close_payload(
                b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
            ),
            Err(CloseError::ReasonNotUtf8)
        );
    }

    #[test]
    fn payload_is_truncated_on_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let payload = close_payload(CloseCode::GOING_AWAY, &reason);
        assert_eq!(payload.len(), 2 + 122);
        assert_eq!(&payload[..2], &[0x03, 0xe9]);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
