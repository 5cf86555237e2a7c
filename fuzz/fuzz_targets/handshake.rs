//! The opening handshake's HTTP request parser (`protocol::handshake`,
//! RFC 9112 and RFC 6455 4.2.1) on arbitrary bytes.
//!
//! The input is the bytes a client sent. Checked:
//! - `parse_request` never panics and allocates at most the header table;
//! - `Partial` only while the buffer is within `MAX_REQUEST_HEAD`;
//! - a verdict never depends on where the reads stopped: if the buffer holds
//!   a complete head, every longer buffer gives the same request with the
//!   same `head_len`, the head alone gives it too, and every shorter prefix
//!   of the head is `Partial` (never a premature error, never a different
//!   head); an error stays an error whatever follows;
//! - a complete request's head ends with its empty line, names are tokens,
//!   at most `MAX_HEADERS` of them;
//! - what the server does next with a complete request does not panic, and
//!   the 101 or error response it writes is a well-formed HTTP head that
//!   nothing from the request can break into extra lines.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socketbox::protocol::handshake::{
    accept_key, parse_extension_offers, select_protocol, validate_upgrade,
    write_switching_protocols,
};
use socketbox::protocol::http::{
    parse_request, write_error_response, ErrorResponse, Parse, Request, MAX_HEADERS,
    MAX_REQUEST_HEAD,
};
use socketbox::protocol::origin::OriginPolicy;
use socketbox_fuzz::peak_heap_growth;

/// Bytes a client might send after its head: its first WebSocket frame, or
/// a second request.
const AFTER_HEAD: &[u8] =
    b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\r\n\r\nGET / HTTP/1.1\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let (parsed, allocated) = peak_heap_growth(|| parse_request(data));
    let header_table = MAX_HEADERS * std::mem::size_of::<socketbox::protocol::http::Header>();
    assert!(allocated <= 2 * header_table, "allocated {allocated} bytes");

    let mut longer = data.to_vec();
    longer.extend_from_slice(AFTER_HEAD);
    match parsed {
        Ok(Parse::Partial) => assert!(data.len() <= MAX_REQUEST_HEAD),
        Err(error) => {
            assert!(
                parse_request(&longer).is_err(),
                "{error:?} went away with more bytes"
            );
            check_error_response(&error);
        }
        Ok(Parse::Complete(request)) => {
            check_complete(data, &request);
            assert_eq!(parse_request(&longer), Ok(Parse::Complete(request.clone())));
            let head = &data[..request.head_len];
            assert_eq!(parse_request(head), Ok(Parse::Complete(request.clone())));
            // Every line boundary inside the head, and its last two bytes.
            let cuts = head
                .iter()
                .enumerate()
                .filter(|(_, &byte)| byte == b'\n')
                .map(|(at, _)| at + 1)
                .chain([request.head_len.saturating_sub(2), request.head_len - 1]);
            for cut in cuts.filter(|&cut| cut < request.head_len) {
                assert_eq!(
                    parse_request(&head[..cut]),
                    Ok(Parse::Partial),
                    "cut at {cut}"
                );
            }
            serve(&request);
        }
    }
});

fn check_complete(data: &[u8], request: &Request<'_>) {
    let head_len = request.head_len;
    assert!(head_len <= data.len() && head_len <= MAX_REQUEST_HEAD);
    assert!(data[..head_len].ends_with(b"\n"));
    assert!(request.headers.len() <= MAX_HEADERS);
    for header in &request.headers {
        assert!(!header.name.is_empty());
        assert!(!header
            .name
            .bytes()
            .any(|byte| byte.is_ascii_whitespace() || byte == b':'));
        assert!(!header
            .value
            .bytes()
            .any(|byte| matches!(byte, b'\r' | b'\n' | 0)));
    }
    assert!(!request.method.is_empty() && !request.target.is_empty());
}

/// What the server does with a complete request: must not panic, and any
/// response it writes must be a clean HTTP head.
fn serve(request: &Request<'_>) {
    let _ = (request.path(), request.query(), request.header("Host"));
    let _ = request.content_length();
    match validate_upgrade(request) {
        Ok(upgrade) => {
            let accept = accept_key(upgrade.key);
            assert_eq!(accept.len(), 28);
            let protocol = select_protocol(&upgrade.offered_protocols, &["chat", "superchat"]);
            let allowed = OriginPolicy::new(["http://localhost:8080"]).expect("a valid origin");
            let _ = allowed.allows(upgrade.origin);
            // The offers validate_upgrade keeps are the parser's, or none.
            match parse_extension_offers(request) {
                Ok(offers) => assert_eq!(offers, upgrade.offered_extensions),
                Err(_) => assert!(upgrade.offered_extensions.is_empty()),
            }
            let mut out = Vec::new();
            write_switching_protocols(&mut out, &accept, protocol);
            check_response_head(&out, 101);
        }
        Err(error) => check_error_response(&error),
    }
}

fn check_error_response<E: ErrorResponse + std::fmt::Debug>(error: &E) {
    let mut out = Vec::new();
    write_error_response(&mut out, error);
    assert!((400..600).contains(&error.status()), "{error:?}");
    let head_end = out
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("the response head ends")
        + 4;
    check_response_head(&out[..head_end], error.status());
}

/// `HTTP/1.1 NNN reason` then `name: value` lines, CRLF each, then CRLF, and
/// nothing else.
fn check_response_head(head: &[u8], status: u16) {
    let text = std::str::from_utf8(head).expect("response head is UTF-8");
    let body = text
        .strip_suffix("\r\n\r\n")
        .expect("head ends with an empty line");
    let mut lines = body.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(
        status_line.starts_with(&format!("HTTP/1.1 {status} ")),
        "{status_line:?}"
    );
    for line in lines {
        let (name, _value) = line.split_once(": ").expect("a header line");
        assert!(
            !name.is_empty() && !name.contains(char::is_whitespace),
            "{line:?}"
        );
        assert!(!line.contains(['\r', '\n']), "{line:?}");
    }
}
