//! Incremental, fail-fast UTF-8 validation of text messages, RFC 6455
//! sections 5.6 and 8.1.
//!
//! A text message may arrive in many frames, and each frame in many reads; a
//! code point may be split anywhere. RFC 6455 8.1: "When an endpoint is to
//! interpret a byte stream as UTF-8 but finds that the byte stream is not, in
//! fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
//! Connection_." We fail as soon as the first invalid byte arrives, not at the
//! end of the frame or message: a peer cannot make us buffer a megabyte of
//! garbage before we notice.
//!
//! The validator keeps at most three bytes of an unfinished code point.
//! Everything else is checked by `std::str::from_utf8`, whose error tells
//! apart "invalid here" (`error_len() == Some(_)`) from "valid so far but cut
//! short" (`error_len() == None`): std checks each continuation byte against
//! the lead byte's allowed range, so overlong forms, surrogates and code points
//! past U+10FFFF are rejected at the first byte that rules them out.

use std::fmt;

/// The bytes seen so far are not a prefix of any valid UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a stream of bytes fed in arbitrary pieces.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of a code point whose remaining bytes have not arrived yet.
    pending: [u8; 4],
    pending_len: usize,
}

/// How many bytes the UTF-8 sequence led by `lead` has (1 for anything that
/// cannot lead a multi-byte sequence; std reports those as invalid).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Check the next piece of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len > 0 {
            let want = sequence_len(self.pending[0]);
            let take = (want - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(Utf8Error),
                // Still cut short: all input went into `pending`.
                Err(_) => return Ok(()),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            Err(e) => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    /// The message ended: a code point still waiting for bytes is an error.
    /// Leaves the validator ready for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    /// Forget any unfinished code point.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(bytes: &[u8]) -> bool {
        let expected = std::str::from_utf8(bytes).is_ok();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&bytes[..a]).is_ok()
                    && v.feed(&bytes[a..b]).is_ok()
                    && v.feed(&bytes[b..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, expected, "{bytes:x?} split {a},{b}");
            }
        }
        expected
    }

    #[test]
    fn valid_text_in_any_split() {
        assert!(check_all_splits("κόσμε".as_bytes()));
        assert!(check_all_splits("Hello-µ@ßöäüàá-UTF-8!!".as_bytes()));
        assert!(check_all_splits(
            "\u{10FFFF}\u{FFFF}\u{800}\u{80}a".as_bytes()
        ));
    }

    #[test]
    fn invalid_text_in_any_split() {
        for bad in [
            &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"[..],
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xa0\x80",
            b"\xff",
            b"abc\xe2\x82",
        ] {
            assert!(!check_all_splits(bad));
        }
    }

    #[test]
    fn fails_at_the_first_bad_byte() {
        // Autobahn 6.4.1: the frame is cut right after F4 90; the 90 alone
        // proves the text cannot be valid.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert_eq!(v.feed(b"\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(Utf8Error));
    }

    #[test]
    fn truncated_sequence_fails_at_finish_only() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xe2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(Utf8Error));
        // finish() leaves the validator clean for the next message.
        assert_eq!(v.feed(b"ok"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
