//! The incremental UTF-8 validator (RFC 6455 5.6, 8.1), differentially
//! against `std::str::from_utf8`.
//!
//! Input layout: byte 0 gives a number of cut points (0 to 8) that follow as
//! u16 each; the rest is the byte stream, fed to the validator in the pieces
//! the cut points make. Checked:
//! - fail-fast: `feed` fails exactly at the first piece after which the
//!   bytes so far are no longer the start of any valid UTF-8 text, that is
//!   when `from_utf8` of the prefix reports an error that more bytes could
//!   not cure (`error_len() == Some(_)`), and never earlier;
//! - at the end, `finish` succeeds exactly when `from_utf8` accepts the whole;
//! - after `finish` or `reset` the validator is as new: a second pass over
//!   the same pieces gives the same answers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socketbox::protocol::utf8::Utf8Validator;
use socketbox_fuzz::{piece_ends, Choices};

fuzz_target!(|data: &[u8]| {
    let mut choices = Choices::new(data);
    let cuts = choices.cut_points(8);
    let stream = choices.rest();
    let ends = piece_ends(&cuts, stream.len());

    let mut validator = Utf8Validator::new();
    let first = validate(&mut validator, stream, &ends);
    assert_eq!(first, expected(stream, &ends));
    // Whatever state the first pass left, reset makes it fresh.
    validator.reset();
    assert_eq!(validate(&mut validator, stream, &ends), first);
});

/// The outcome: the index of the piece whose `feed` failed, or `None` and
/// whether `finish` succeeded.
#[derive(Debug, PartialEq)]
enum Outcome {
    FailedAtPiece(usize),
    Finished(bool),
}

fn validate(validator: &mut Utf8Validator, stream: &[u8], ends: &[usize]) -> Outcome {
    let mut start = 0;
    for (piece, &end) in ends.iter().enumerate() {
        if validator.feed(&stream[start..end]).is_err() {
            return Outcome::FailedAtPiece(piece);
        }
        start = end;
    }
    Outcome::Finished(validator.finish().is_ok())
}

/// What a fail-fast validator must answer, computed with std alone.
fn expected(stream: &[u8], ends: &[usize]) -> Outcome {
    for (piece, &end) in ends.iter().enumerate() {
        if let Err(error) = std::str::from_utf8(&stream[..end]) {
            if error.error_len().is_some() {
                return Outcome::FailedAtPiece(piece);
            }
        }
    }
    Outcome::Finished(std::str::from_utf8(stream).is_ok())
}
