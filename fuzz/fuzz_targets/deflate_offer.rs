//! permessage-deflate negotiation (`protocol::deflate`, RFC 7692 5 and
//! 7.1) on arbitrary `Sec-WebSocket-Extensions` values.
//!
//! The input is the header value (lossily UTF-8). Checked, with and
//! without context takeover:
//! - `parse_extension_offers` and `negotiate` never panic;
//! - the agreement is the one `accept_offer` gives the first offer it
//!   accepts, and every offer before that one is declined;
//! - the response is one clean header value (no CR, LF or NUL) that parses
//!   back as exactly one `permessage-deflate` offer, which the server would
//!   accept again with the same agreement; its window bits are 9 to 15.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socketbox::protocol::deflate::{accept_offer, negotiate, EXTENSION_NAME};
use socketbox::protocol::handshake::parse_extension_offers;
use socketbox::protocol::http::{parse_request, Parse};

fn request(value: &str) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {value}\r\n\r\n"
    )
    .into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data).replace(['\r', '\n'], " ");
    let bytes = request(&value);
    let Ok(Parse::Complete(req)) = parse_request(&bytes) else {
        return;
    };
    let Ok(offers) = parse_extension_offers(&req) else {
        return;
    };
    for takeover in [false, true] {
        let agreed = negotiate(&offers, takeover);
        let first = offers
            .iter()
            .position(|o| accept_offer(o, takeover).is_ok());
        assert_eq!(
            agreed,
            first.map(|at| accept_offer(&offers[at], takeover).unwrap())
        );
        let Some(agreement) = agreed else { continue };
        assert!((9..=15).contains(&agreement.server_max_window_bits));
        if !takeover {
            assert!(agreement.server_no_context_takeover && agreement.client_no_context_takeover);
        }
        let response = agreement.response();
        assert!(!response.contains(['\r', '\n', '\0']), "{response:?}");
        let echoed = request(&response);
        let Ok(Parse::Complete(back)) = parse_request(&echoed) else {
            panic!("the response does not make a clean header: {response:?}");
        };
        let again = parse_extension_offers(&back).expect("the response parses");
        assert_eq!(again.len(), 1, "{response:?}");
        assert_eq!(again[0].name, EXTENSION_NAME);
        assert_eq!(
            accept_offer(&again[0], takeover),
            Ok(agreement),
            "{response:?}"
        );
    }
});
