//! The chat protocol's lax JSON parser (`chat::laxjson`), differentially
//! against `serde_json`.
//!
//! On any UTF-8 input:
//! - neither `parse` nor `parse_strict` panics, and an error's offset is a
//!   character boundary within the input;
//! - `parse_strict` agrees with `serde_json::from_str` exactly: both accept
//!   with equal values, or both reject. The one allowed difference is depth:
//!   lax JSON stops at `MAX_DEPTH` (64) nested levels, serde_json at 128;
//! - the lax grammar only adds to the strict one: whatever `parse_strict`
//!   accepts, `parse` accepts with the same value; and with no single quote
//!   in the input, lax and strict are the same language;
//! - what `parse` returns, written out by serde_json, parses back strictly
//!   to the same value; `laxjson::to_string`, the writer that does not
//!   recurse, writes it byte for byte as serde_json does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use socketbox::apps::chat::laxjson::{self, LaxJsonError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lax = laxjson::parse(text);
    let strict = laxjson::parse_strict(text);
    for error in [lax.as_ref().err(), strict.as_ref().err()]
        .into_iter()
        .flatten()
    {
        assert!(
            error.offset() <= text.len() && text.is_char_boundary(error.offset()),
            "{error:?} points outside the input or inside a character"
        );
    }

    let reference = serde_json::from_str::<Value>(text);
    match (&strict, &reference) {
        (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs),
        (Err(LaxJsonError::TooDeep { .. }), Ok(_)) | (Err(_), Err(_)) => {}
        (Err(ours), Ok(_)) => panic!("parse_strict rejects JSON that serde_json accepts: {ours}"),
        (Ok(_), Err(theirs)) => panic!("parse_strict accepts what serde_json rejects: {theirs}"),
    }

    if let Ok(value) = &strict {
        assert_eq!(
            lax.as_ref().ok(),
            Some(value),
            "lax rejects or changes strict JSON"
        );
    }
    if !text.contains('\'') {
        assert_eq!(
            lax, strict,
            "without single quotes lax and strict must agree"
        );
    }

    if let Ok(value) = &lax {
        let written = value.to_string();
        assert_eq!(
            laxjson::parse_strict(&written).as_ref(),
            Ok(value),
            "{written}"
        );
        assert_eq!(laxjson::to_string(value), written);
    }
});
