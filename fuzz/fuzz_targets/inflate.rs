//! Inflating a compressed message with a limit (`protocol::deflate::Codec`,
//! RFC 7692 7.2.2): the decompression-bomb defence.
//!
//! Input layout: two bytes give the limit (0 to 65535 inflated bytes), one
//! byte a number of cut points (0 to 8, u16 each), the rest is the
//! compressed payload as a client sends it (tail removed). Checked:
//! - no panic; the inflated output never exceeds the limit (one byte past
//!   it, only with the refusal), and its allocation never exceeds the
//!   limit by more than one read step;
//! - the result (inflated bytes, too big, corrupt) does not depend on the
//!   pieces the payload arrives in;
//! - the codec holds no state after the message (no context takeover), and
//!   the next message inflates as if the codec were new;
//! - what the server compresses inflates back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socketbox::protocol::deflate::{accept_offer, Agreement, Codec, InflateError};
use socketbox::protocol::handshake::ExtensionOffer;
use socketbox_fuzz::{piece_ends, Choices};

fn agreement() -> Agreement {
    let offer = ExtensionOffer {
        name: "permessage-deflate",
        params: vec![],
    };
    accept_offer(&offer, false).unwrap()
}

fn inflate(
    codec: &mut Codec,
    payload: &[u8],
    ends: &[usize],
    limit: usize,
) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut result = Ok(());
    for &end in ends {
        result = codec.inflate(&payload[start..end], &mut out, limit);
        // One byte past the limit is how "too big" is told from "exactly
        // the limit"; never more, and never without the refusal.
        assert!(
            out.len() <= limit || (out.len() == limit + 1 && result == Err(InflateError::TooBig))
        );
        assert!(
            out.capacity() <= limit + 1 + 16 * 1024,
            "{} for {limit}",
            out.capacity()
        );
        if result.is_err() {
            break;
        }
        start = end;
    }
    if result.is_ok() {
        result = codec.finish_message(&mut out, limit);
        assert!(
            out.len() <= limit || (out.len() == limit + 1 && result == Err(InflateError::TooBig))
        );
    } else {
        codec.end_message(false);
    }
    assert!(!codec.holds_state());
    result.map(|()| out)
}

fuzz_target!(|data: &[u8]| {
    let mut choices = Choices::new(data);
    let limit = usize::from(choices.u16());
    let cuts = choices.cut_points(8);
    let payload = choices.rest();
    let ends = piece_ends(&cuts, payload.len());

    let mut codec = Codec::new(agreement(), 0);
    let whole = inflate(&mut codec, payload, &[payload.len()], limit);
    let pieces = inflate(&mut codec, payload, &ends, limit);
    assert_eq!(whole, pieces);
    let fresh = inflate(&mut Codec::new(agreement(), 0), payload, &ends, limit);
    assert_eq!(pieces, fresh);

    let compressed = codec.compress(payload);
    let back = inflate(&mut codec, &compressed, &[compressed.len()], payload.len());
    assert_eq!(back.as_deref(), Ok(payload));
});
