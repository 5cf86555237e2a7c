//! The opening handshake, sans IO: HTTP/1.1 request heads in, responses out.
//!
//! This module owns everything that happens before the first WebSocket frame:
//!
//! - parsing an HTTP/1.1 request head (RFC 9112 sections 2-5, which replace
//!   RFC 7230 3), zero-copy: every string in a [`Request`] borrows from the
//!   caller's buffer, and [`parse_request`] answers [`Parse::Partial`] until
//!   the head is complete, so the caller may feed it whatever it has read;
//! - validating a WebSocket upgrade request (RFC 6455 4.2.1) and choosing a
//!   subprotocol (RFC 6455 4.2.2);
//! - computing `Sec-WebSocket-Accept` (RFC 6455 4.2.2, step 5.4);
//! - writing the `101 Switching Protocols` answer and plain HTTP responses,
//!   including the error responses of [`HandshakeError`];
//! - the `--allowed-origin` check (RFC 6454 origins, RFC 6455 10.2).
//!
//! It never touches a socket: the server shell reads bytes, calls
//! [`parse_request`], decides, and writes the bytes this module builds.
//! Bytes after [`Request::head_len`] are not part of the head: for an upgrade
//! they are the client's first frames, for a `POST` its body; the caller keeps
//! them.
//!
//! Decisions where the RFCs leave a choice (each is enforced at one place
//! below and tested):
//!
//! - Line endings: CRLF, and a bare LF is tolerated as a line terminator
//!   (RFC 9112 2.2 allows it). A bare CR anywhere else is rejected (400).
//! - Empty lines before the request line are skipped (RFC 9112 2.2 SHOULD);
//!   they count in `head_len` and against [`MAX_REQUEST_HEAD`].
//! - Versions: `HTTP/1.x` (any single digit `x`) is accepted; any other
//!   well-formed version (`HTTP/0.9`, `HTTP/2.0`) gets 505, and anything that
//!   is not `HTTP/DIGIT.DIGIT` gets 400.
//! - Header bytes: a value may hold HTAB, SP, visible ASCII and obs-text
//!   (bytes >= 0x80), but must then be valid UTF-8 because it is handed out as
//!   `&str`; other bytes get 400. Names are tokens.
//! - `Host`: an HTTP/1.1 request without one, or any request with two, gets
//!   400 from [`parse_request`] itself (RFC 9112 3.2 MUST).
//! - A WebSocket upgrade with a method other than `GET` gets 405 with
//!   `Allow: GET`; one over HTTP/1.0 gets 400.
//! - A missing, repeated or unsupported `Sec-WebSocket-Version` gets 426 with
//!   `Sec-WebSocket-Version: 13`, and it is checked before the key, because a
//!   client speaking another draft may not send a key of our format at all.
//! - Origins compare scheme and host case-insensitively, and an absent port
//!   equals the scheme's default port (see [`origin_allowed`]).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Largest request head (request line + headers + final CRLF CRLF) we accept: 8 KiB.
pub const MAX_REQUEST_HEAD: usize = 8192;

/// Most header fields in one request; one more gets 431.
pub const MAX_HEADERS: usize = 64;

/// The GUID RFC 6455 1.3 and 4.2.2 append to the client's key.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only WebSocket version this server speaks (RFC 6455 4.2.1, item 6).
pub const WEBSOCKET_VERSION: &str = "13";

/// The result of parsing a buffer that may not hold the whole head yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// The head is complete and valid.
    Complete(T),
    /// The head is not complete yet: read more bytes and parse the whole
    /// buffer again. Nothing was consumed.
    Partial,
}

impl<T> Parse<T> {
    /// True for [`Parse::Partial`].
    pub fn is_partial(&self) -> bool {
        matches!(self, Parse::Partial)
    }
}

/// One header field line, borrowed from the request buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The field name as sent (compare it case-insensitively).
    pub name: &'a str,
    /// The field value with leading and trailing OWS (SP / HTAB) removed.
    pub value: &'a str,
}

/// A parsed HTTP/1.x request head, borrowed from the request buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method, case-sensitive (RFC 9110 9.1): `GET`, `POST`...
    pub method: &'a str,
    /// The request-target as sent, e.g. `/ws?x=1`.
    pub target: &'a str,
    /// The `x` of `HTTP/1.x`.
    pub minor_version: u8,
    /// The header fields in the order they were sent (at most [`MAX_HEADERS`]).
    pub headers: Vec<Header<'a>>,
    /// Bytes of the head, including the empty line that ends it; a body or
    /// the first WebSocket frames, if any, start here.
    pub head_len: usize,
}

impl<'a> Request<'a> {
    /// The path of the target, without `?query`.
    ///
    /// For the absolute-form a server must also accept (RFC 9112 3.2.2,
    /// `GET http://host:8080/ws HTTP/1.1`), the path after the authority, or
    /// `/` when there is none. Other forms (`*`, authority-form) are returned
    /// without their query, as they are.
    pub fn path(&self) -> &'a str {
        let without_query = match self.target.split_once('?') {
            Some((before, _)) => before,
            None => self.target,
        };
        if without_query.starts_with('/') {
            return without_query;
        }
        match without_query.split_once("://") {
            Some((_scheme, authority_and_path)) => match authority_and_path.find('/') {
                Some(slash) => authority_and_path.get(slash..).unwrap_or("/"),
                None => "/",
            },
            None => without_query,
        }
    }

    /// The query of the target, without its `?`; `None` when there is no `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// The values of every header named `name` (case-insensitive), in order.
    pub fn header_values<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'a str> + 'r {
        self.headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }

    /// How many headers are named `name` (case-insensitive).
    pub fn header_count(&self, name: &str) -> usize {
        self.header_values(name).count()
    }

    /// The elements of the comma-separated list in every header named `name`,
    /// OWS trimmed, empty elements skipped (RFC 9110 5.6.1: "a recipient MUST
    /// parse and ignore a reasonable number of empty list elements"), and
    /// all occurrences concatenated in order (RFC 9110 5.3).
    pub fn list_values<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'a str> + 'r {
        self.header_values(name).flat_map(split_list)
    }

    /// Does the comma-separated list in the headers named `name` contain
    /// `token`? Both name and token compare case-insensitively, so this is
    /// the check for `Connection: keep-alive, Upgrade` and `Upgrade: websocket`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list_values(name)
            .any(|element| element.eq_ignore_ascii_case(token))
    }

    /// The length of the body: 0 when there is no `Content-Length`.
    ///
    /// RFC 9110 8.6: `Content-Length = 1*DIGIT`. Repeated headers or a list
    /// (`5, 5`) are accepted only when every value is the same (the RFC lets
    /// a recipient take such a list as the single value); differing values
    /// get 400, as does a value that is not digits or overflows `usize`.
    /// A `Transfer-Encoding` gets 501: this server does not decode chunked
    /// bodies (RFC 9112 6.1: a server that receives a transfer coding it does
    /// not understand "SHOULD respond with 501"), and refusing it also closes
    /// the door to request smuggling with both headers (RFC 9112 6.3).
    pub fn content_length(&self) -> Result<usize, HttpError> {
        if self.header_count("Transfer-Encoding") > 0 {
            return Err(HandshakeError::UnsupportedTransferEncoding);
        }
        let mut length = None;
        for value in self.header_values("Content-Length") {
            // Unlike `list_values`, an empty element here is an error.
            for element in value.split(',') {
                let element_length = parse_decimal(trim_ows(element))?;
                match length {
                    Some(previous) if previous != element_length => {
                        return Err(HandshakeError::ConflictingContentLength)
                    }
                    _ => length = Some(element_length),
                }
            }
        }
        Ok(length.unwrap_or(0))
    }
}

/// `1*DIGIT` as a `usize`, without overflow.
fn parse_decimal(text: &str) -> Result<usize, HttpError> {
    if text.is_empty() {
        return Err(HandshakeError::BadContentLength);
    }
    text.bytes().try_fold(0usize, |total, byte| {
        if !byte.is_ascii_digit() {
            return Err(HandshakeError::BadContentLength);
        }
        total
            .checked_mul(10)
            .and_then(|total| total.checked_add(usize::from(byte - b'0')))
            .ok_or(HandshakeError::BadContentLength)
    })
}

/// Every way an opening handshake can fail, with the HTTP status to answer.
///
/// The first group comes from [`parse_request`] and [`Request::content_length`],
/// the second from [`validate_upgrade`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeError {
    /// The head is longer than [`MAX_REQUEST_HEAD`] bytes (431).
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields (431).
    TooManyHeaders,
    /// The request line is not `method SP request-target SP HTTP-version` (400).
    MalformedRequestLine,
    /// The method is not a token (400).
    MalformedMethod,
    /// The request-target is not visible ASCII (400).
    MalformedTarget,
    /// The version is not `HTTP/DIGIT.DIGIT` (400).
    MalformedVersion,
    /// A well-formed version other than HTTP/1.x (505).
    UnsupportedHttpVersion,
    /// A header line starts with whitespace: obsolete line folding, or
    /// whitespace between the request line and the first header (400).
    ObsoleteLineFolding,
    /// A header line has no colon (400).
    MissingColon,
    /// A header name is empty or not a token (400).
    MalformedHeaderName,
    /// Whitespace between a header name and its colon (400).
    WhitespaceBeforeColon,
    /// A header value holds a control character such as NUL or a bare CR (400).
    MalformedHeaderValue,
    /// A header value is not UTF-8 (400).
    NonUtf8Header,
    /// An HTTP/1.1 request without `Host` (400).
    MissingHost,
    /// More than one `Host` header (400).
    DuplicateHost,
    /// `Content-Length` is not a decimal number that fits (400).
    BadContentLength,
    /// Several `Content-Length` values that differ (400).
    ConflictingContentLength,
    /// A `Transfer-Encoding`, which this server does not decode (501).
    UnsupportedTransferEncoding,
    /// A body longer than the caller's limit (413); never returned by this
    /// module, which does not know the limit, but answered like the others.
    BodyTooLarge,
    /// The head did not arrive within the handshake timeout (408); never
    /// returned by this module, which has no clock.
    RequestTimeout,

    /// An upgrade with a method other than `GET` (405, `Allow: GET`).
    NotGet,
    /// An upgrade over HTTP/1.0 (400).
    OldHttpVersion,
    /// No `websocket` token in `Upgrade` (426, `Upgrade: websocket`).
    NotUpgrade,
    /// No `Upgrade` token in `Connection` (400).
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key` (400).
    MissingKey,
    /// More than one `Sec-WebSocket-Key` (400).
    DuplicateKey,
    /// A `Sec-WebSocket-Key` that is not base64 of 16 bytes (400).
    BadKey,
    /// No `Sec-WebSocket-Version` (426, `Sec-WebSocket-Version: 13`).
    MissingVersion,
    /// More than one `Sec-WebSocket-Version` (426, `Sec-WebSocket-Version: 13`).
    DuplicateVersion,
    /// A `Sec-WebSocket-Version` other than 13 (426, `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
}

/// The HTTP-level error type of this module: every HTTP failure is a
/// [`HandshakeError`] (a plain request's parse errors included).
pub type HttpError = HandshakeError;

/// RFC 9110 15.5.22: a 426 "MUST send an Upgrade header field"; 7.8: its
/// sender "MUST also send an "upgrade" connection option".
const UPGRADE_REQUIRED_HEADERS: &[(&str, &str)] =
    &[("Upgrade", "websocket"), ("Connection", "Upgrade")];

/// A 426 for the version, plus RFC 6455 4.2.2's "|Sec-WebSocket-Version|
/// header field indicating the version(s) the server is capable of understanding".
const VERSION_REQUIRED_HEADERS: &[(&str, &str)] = &[
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
];

/// RFC 9110 15.5.6: a 405 "MUST generate an Allow header field".
const METHOD_NOT_ALLOWED_HEADERS: &[(&str, &str)] = &[("Allow", "GET")];

impl HandshakeError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        use HandshakeError::*;
        match self {
            HeadTooLarge | TooManyHeaders => 431,
            UnsupportedHttpVersion => 505,
            UnsupportedTransferEncoding => 501,
            NotGet => 405,
            BodyTooLarge => 413,
            RequestTimeout => 408,
            NotUpgrade | MissingVersion | DuplicateVersion | UnsupportedVersion => 426,
            MalformedRequestLine
            | MalformedMethod
            | MalformedTarget
            | MalformedVersion
            | ObsoleteLineFolding
            | MissingColon
            | MalformedHeaderName
            | WhitespaceBeforeColon
            | MalformedHeaderValue
            | NonUtf8Header
            | MissingHost
            | DuplicateHost
            | BadContentLength
            | ConflictingContentLength
            | OldHttpVersion
            | MissingConnectionUpgrade
            | MissingKey
            | DuplicateKey
            | BadKey => 400,
        }
    }

    /// A short text for a person, used as the response body.
    pub fn reason(&self) -> &'static str {
        use HandshakeError::*;
        match self {
            HeadTooLarge => "request head larger than 8192 bytes",
            TooManyHeaders => "more than 64 header fields",
            MalformedRequestLine => {
                "request line must be: method SP request-target SP HTTP-version"
            }
            MalformedMethod => "method must be a token",
            MalformedTarget => "request-target must be visible ASCII",
            MalformedVersion => "HTTP version must be HTTP/DIGIT.DIGIT",
            UnsupportedHttpVersion => "only HTTP/1.x is supported",
            ObsoleteLineFolding => "header line starts with whitespace (obsolete line folding)",
            MissingColon => "header line has no colon",
            MalformedHeaderName => "header name must be a token",
            WhitespaceBeforeColon => "whitespace between header name and colon",
            MalformedHeaderValue => "header value contains a control character",
            NonUtf8Header => "header value is not UTF-8",
            MissingHost => "HTTP/1.1 request without Host",
            DuplicateHost => "more than one Host header",
            BadContentLength => "Content-Length must be a decimal number",
            ConflictingContentLength => "conflicting Content-Length values",
            UnsupportedTransferEncoding => "Transfer-Encoding is not supported",
            BodyTooLarge => "request body too large",
            RequestTimeout => "request head not received in time",
            NotGet => "a WebSocket upgrade must use GET",
            OldHttpVersion => "a WebSocket upgrade needs HTTP/1.1 or later",
            NotUpgrade => "this resource requires Upgrade: websocket",
            MissingConnectionUpgrade => "Connection header must contain Upgrade",
            MissingKey => "missing Sec-WebSocket-Key",
            DuplicateKey => "more than one Sec-WebSocket-Key",
            BadKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            MissingVersion => "missing Sec-WebSocket-Version; this server speaks 13",
            DuplicateVersion => "more than one Sec-WebSocket-Version",
            UnsupportedVersion => "unsupported Sec-WebSocket-Version; this server speaks 13",
        }
    }

    /// The headers the error response needs besides `Content-Type`,
    /// `Content-Length` and `Connection: close`.
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        use HandshakeError::*;
        match self {
            NotGet => METHOD_NOT_ALLOWED_HEADERS,
            NotUpgrade => UPGRADE_REQUIRED_HEADERS,
            MissingVersion | DuplicateVersion | UnsupportedVersion => VERSION_REQUIRED_HEADERS,
            _ => &[],
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HandshakeError {}

// ---------------------------------------------------------------------------
// Parsing the request head (RFC 9112)
// ---------------------------------------------------------------------------

/// RFC 9110 5.6.2:
///
/// ```text
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// RFC 9110 5.5: `OWS = *( SP / HTAB )`.
fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// RFC 9110 5.5: `field-vchar = VCHAR / obs-text`, plus the SP and HTAB a
/// value may hold between them. Everything else is a control character.
fn is_field_value_byte(byte: u8) -> bool {
    byte == b'\t' || (0x20..=0x7e).contains(&byte) || byte >= 0x80
}

/// Trim OWS from both ends.
fn trim_ows(text: &str) -> &str {
    text.trim_matches(|c| c == ' ' || c == '\t')
}

/// Trim OWS from both ends of a byte slice.
fn trim_ows_bytes(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_ows(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_ows(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// The non-empty, OWS-trimmed elements of one comma-separated list value.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// Hands out the lines of a buffer one at a time.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// The next complete line without its terminator, or `None` when no line
    /// terminator follows. RFC 9112 2.2: lines end in CRLF, but "a recipient
    /// MAY recognize a single LF as a line terminator and ignore any
    /// preceding CR"; we do.
    fn next_line(&mut self) -> Option<&'a [u8]> {
        let rest = self.buf.get(self.pos..)?;
        let lf = rest.iter().position(|&byte| byte == b'\n')?;
        self.pos += lf + 1;
        let line = rest.get(..lf)?;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// The bytes not handed out yet.
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }
}

/// Parse a request head.
///
/// The grammar, RFC 9112 2.1, 3 and 5 (with RFC 9110 5.6.2 for tokens):
///
/// ```text
/// HTTP-message   = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]
/// request-line   = method SP request-target SP HTTP-version
/// method         = token
/// request-target = 1*( visible ASCII )   ; origin-form, absolute-form, "*"...
/// HTTP-version   = "HTTP" "/" DIGIT "." DIGIT
/// field-line     = field-name ":" OWS field-value OWS
/// field-name     = token
/// field-value    = *( field-vchar / SP / HTAB )   ; then UTF-8 as a whole
/// token          = 1*tchar
/// ```
///
/// Answers [`Parse::Partial`] while the empty line that ends the head has
/// not arrived and `buf` is at most [`MAX_REQUEST_HEAD`] bytes long, and
/// [`HandshakeError::HeadTooLarge`] when the head does not end within the
/// first [`MAX_REQUEST_HEAD`] bytes of a longer `buf`. Lines already
/// complete are checked as they arrive, so a client that is not speaking
/// HTTP (a TLS hello, say) gets its 400 without waiting for the timeout.
pub fn parse_request(buf: &[u8]) -> Result<Parse<Request<'_>>, HandshakeError> {
    let window = buf.get(..MAX_REQUEST_HEAD).unwrap_or(buf);
    let mut lines = Lines {
        buf: window,
        pos: 0,
    };

    let request_line = loop {
        match lines.next_line() {
            // RFC 9112 2.2: a server "SHOULD ignore at least one empty line
            // (CRLF) received prior to the request-line".
            Some([]) => continue,
            Some(line) => break line,
            None => {
                check_partial_method(lines.rest())?;
                return incomplete(buf);
            }
        }
    };
    let (method, target, minor_version) = parse_request_line(request_line)?;

    let mut headers = Vec::new();
    loop {
        match lines.next_line() {
            Some([]) => break,
            Some(line) => {
                if headers.len() == MAX_HEADERS {
                    return Err(HandshakeError::TooManyHeaders);
                }
                headers.push(parse_header_line(line)?);
            }
            None => return incomplete(buf),
        }
    }

    let request = Request {
        method,
        target,
        minor_version,
        headers,
        head_len: lines.pos,
    };
    check_host(&request)?;
    Ok(Parse::Complete(request))
}

/// The head has not ended within the bytes we looked at.
fn incomplete<T>(buf: &[u8]) -> Result<Parse<T>, HandshakeError> {
    if buf.len() > MAX_REQUEST_HEAD {
        Err(HandshakeError::HeadTooLarge)
    } else {
        Ok(Parse::Partial)
    }
}

/// Reject early a request line whose first bytes cannot start a method.
/// A CR may be the first half of a CRLF that ends the line; the full line is
/// judged once it is complete.
fn check_partial_method(partial_line: &[u8]) -> Result<(), HandshakeError> {
    let method_so_far = partial_line
        .iter()
        .take_while(|&&byte| byte != b' ' && byte != b'\r');
    for &byte in method_so_far {
        if !is_tchar(byte) {
            return Err(HandshakeError::MalformedMethod);
        }
    }
    Ok(())
}

/// `request-line = method SP request-target SP HTTP-version`, split on
/// single spaces: RFC 9112 3 lets a recipient split on any whitespace, but
/// the strict grammar leaves no room for request smuggling through odd
/// spacing.
fn parse_request_line(line: &[u8]) -> Result<(&str, &str, u8), HandshakeError> {
    let mut parts = line.splitn(3, |&byte| byte == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HandshakeError::MalformedRequestLine);
    };
    if method.is_empty() || target.is_empty() {
        return Err(HandshakeError::MalformedRequestLine);
    }
    if !method.iter().all(|&byte| is_tchar(byte)) {
        return Err(HandshakeError::MalformedMethod);
    }
    // RFC 9112 3.2: the request-target never holds whitespace; browsers
    // percent-encode everything else outside visible ASCII.
    if !target.iter().all(|byte| (0x21..=0x7e).contains(byte)) {
        return Err(HandshakeError::MalformedTarget);
    }
    let minor_version = parse_version(version)?;
    let method = std::str::from_utf8(method).map_err(|_| HandshakeError::MalformedMethod)?;
    let target = std::str::from_utf8(target).map_err(|_| HandshakeError::MalformedTarget)?;
    Ok((method, target, minor_version))
}

/// `HTTP-version = HTTP-name "/" DIGIT "." DIGIT`, `HTTP-name = %s"HTTP"`
/// (case-sensitive, RFC 9112 2.3). Returns the minor version of HTTP/1.x.
fn parse_version(version: &[u8]) -> Result<u8, HandshakeError> {
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major == b'1' {
                Ok(minor - b'0')
            } else {
                Err(HandshakeError::UnsupportedHttpVersion)
            }
        }
        _ => Err(HandshakeError::MalformedVersion),
    }
}

/// `field-line = field-name ":" OWS field-value OWS`.
fn parse_header_line(line: &[u8]) -> Result<Header<'_>, HandshakeError> {
    // RFC 9112 5.2: obs-fold is deprecated; a server that receives it outside
    // message/http "MUST either reject the message by sending a 400 (Bad
    // Request)... or replace each received obs-fold with one or more SP".
    // RFC 9112 2.2: whitespace between the start-line and the first field
    // line "MUST either reject the message as invalid or consume each
    // whitespace-preceded line". We reject both.
    if line.first().is_some_and(|&byte| is_ows(byte)) {
        return Err(HandshakeError::ObsoleteLineFolding);
    }
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or(HandshakeError::MissingColon)?;
    let (name, colon_and_value) = line.split_at(colon);
    let value = colon_and_value.get(1..).unwrap_or(&[]);

    if name.is_empty() {
        return Err(HandshakeError::MalformedHeaderName);
    }
    // RFC 9112 5.1: "A server MUST reject, with a response status code of
    // 400 (Bad Request), any received request message that contains
    // whitespace between a header field name and colon."
    if name.last().is_some_and(|&byte| is_ows(byte)) {
        return Err(HandshakeError::WhitespaceBeforeColon);
    }
    if !name.iter().all(|&byte| is_tchar(byte)) {
        return Err(HandshakeError::MalformedHeaderName);
    }
    // RFC 9110 5.5: "Field values containing CR, LF, or NUL characters are
    // invalid and dangerous"; a recipient "MUST either reject the message or
    // replace each of those characters with SP". We reject them, and the
    // other control characters with them.
    if !value.iter().all(|&byte| is_field_value_byte(byte)) {
        return Err(HandshakeError::MalformedHeaderValue);
    }
    let value = trim_ows_bytes(value);

    let name = std::str::from_utf8(name).map_err(|_| HandshakeError::MalformedHeaderName)?;
    let value = std::str::from_utf8(value).map_err(|_| HandshakeError::NonUtf8Header)?;
    Ok(Header { name, value })
}

/// RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code
/// to any HTTP/1.1 request message that lacks a Host header field and to any
/// request message that contains more than one Host header field line".
fn check_host(request: &Request<'_>) -> Result<(), HandshakeError> {
    match request.header_count("Host") {
        0 if request.minor_version >= 1 => Err(HandshakeError::MissingHost),
        0 | 1 => Ok(()),
        _ => Err(HandshakeError::DuplicateHost),
    }
}

// ---------------------------------------------------------------------------
// The WebSocket upgrade (RFC 6455 4.2)
// ---------------------------------------------------------------------------

/// What a valid WebSocket upgrade request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest<'a> {
    /// `Sec-WebSocket-Key`, to feed to [`accept_key`].
    pub key: &'a str,
    /// `Sec-WebSocket-Protocol`: the comma lists of every occurrence, in the
    /// client's order of preference.
    pub offered_protocols: Vec<&'a str>,
    /// The first `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// `Sec-WebSocket-Extensions`, raw list elements with their parameters
    /// (`permessage-deflate; client_max_window_bits`). We decline every
    /// extension by not answering with this header (RFC 6455 9.1).
    pub offered_extensions: Vec<&'a str>,
}

/// True when the request asks for a WebSocket upgrade at all: `Upgrade`
/// contains the token `websocket`. A plain `GET /ws` without it gets 426.
pub fn wants_websocket(req: &Request<'_>) -> bool {
    req.has_token("Upgrade", "websocket")
}

/// Validate a WebSocket opening handshake, RFC 6455 4.2.1, and return what it
/// asked for.
///
/// Checks, in order: method `GET` (else 405); `Upgrade: websocket` (else
/// 426); HTTP/1.1 or later (else 400); exactly one `Host`; `Connection`
/// containing `Upgrade`; exactly one `Sec-WebSocket-Version: 13` (else 426
/// with `Sec-WebSocket-Version: 13`); exactly one `Sec-WebSocket-Key` that is
/// base64 of 16 bytes.
pub fn validate_upgrade<'a>(req: &Request<'a>) -> Result<UpgradeRequest<'a>, HandshakeError> {
    // RFC 6455 4.2.1, item 1: "An HTTP/1.1 or higher GET request".
    if req.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    // Item 3: "An |Upgrade| header field containing the value "websocket",
    // treated as an ASCII case-insensitive value." Checked before the version
    // so that any request that is not an upgrade at all gets the 426 of
    // PROTOCOL.md.
    if !wants_websocket(req) {
        return Err(HandshakeError::NotUpgrade);
    }
    if req.minor_version < 1 {
        return Err(HandshakeError::OldHttpVersion);
    }
    // Item 2: "A |Host| header field containing the server's authority."
    match req.header_count("Host") {
        0 => return Err(HandshakeError::MissingHost),
        1 => {}
        _ => return Err(HandshakeError::DuplicateHost),
    }
    // Item 4: "A |Connection| header field that includes the token
    // "Upgrade", treated as an ASCII case-insensitive value."
    if !req.has_token("Connection", "Upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    // Item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    // RFC 6455 4.2.2: on a mismatch the server "MUST abort the WebSocket
    // handshake ... and instead send an appropriate HTTP error code (such as
    // 426 Upgrade Required) and a |Sec-WebSocket-Version| header field
    // indicating the version(s) the server is capable of understanding."
    let mut versions = req.header_values("Sec-WebSocket-Version");
    match (versions.next(), versions.next()) {
        (None, _) => return Err(HandshakeError::MissingVersion),
        (Some(_), Some(_)) => return Err(HandshakeError::DuplicateVersion),
        (Some(version), None) if version != WEBSOCKET_VERSION => {
            return Err(HandshakeError::UnsupportedVersion)
        }
        (Some(_), None) => {}
    }
    // Item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded
    // value that, when decoded, is 16 bytes in length." RFC 6455 11.3.1:
    // it "MUST NOT appear more than once in an HTTP request."
    let mut keys = req.header_values("Sec-WebSocket-Key");
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(HandshakeError::MissingKey),
        (Some(_), Some(_)) => return Err(HandshakeError::DuplicateKey),
        (Some(key), None) => key,
    };
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }

    Ok(UpgradeRequest {
        key,
        offered_protocols: req.list_values("Sec-WebSocket-Protocol").collect(),
        // RFC 6455 4.2.1, item 7: the Origin header field is optional (only
        // browsers send it); 10.2 leaves its check to the server's policy:
        // see `origin_allowed`.
        origin: req.header("Origin"),
        offered_extensions: req.list_values("Sec-WebSocket-Extensions").collect(),
    })
}

/// Is `key` the base64 of exactly 16 bytes? That is always 24 characters
/// ending in `==`; the decoder also rejects non-canonical trailing bits.
fn is_valid_key(key: &str) -> bool {
    // Checking the length first bounds the decoder's allocation.
    key.len() == 24 && matches!(BASE64.decode(key), Ok(bytes) if bytes.len() == 16)
}

/// `Sec-WebSocket-Accept` for a key: RFC 6455 4.2.2, step 5.4, "the base64-
/// encoded SHA-1 of the concatenation of the |Sec-WebSocket-Key| (as a
/// string, not base64-decoded) with the string
/// "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"".
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha1.digest().bytes())
}

/// Pick the first protocol, in the client's order of preference, that the
/// server supports; names compare exactly. RFC 6455 4.2.2: the value the
/// server answers "MUST be derived from the values in the
/// |Sec-WebSocket-Protocol| header field in the client's handshake", so the
/// client's own spelling is returned. `None`: answer no protocol.
pub fn select_protocol<'a>(offered: &[&'a str], supported: &[&str]) -> Option<&'a str> {
    offered
        .iter()
        .copied()
        .find(|protocol| supported.contains(protocol))
}

// ---------------------------------------------------------------------------
// Writing responses
// ---------------------------------------------------------------------------

/// Append `name: value\r\n`. A CR, LF or NUL in either (none should reach
/// here: names are ours and values come from parsed, checked headers) is
/// written as SP, so a header can never end early and inject another.
fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    push_field_text(out, name);
    out.extend_from_slice(b": ");
    push_field_text(out, value);
    out.extend_from_slice(b"\r\n");
}

fn push_field_text(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().map(|byte| match byte {
        b'\r' | b'\n' | 0 => b' ',
        other => other,
    }));
}

/// `status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF`.
fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Append the `101 Switching Protocols` response of RFC 6455 4.2.2, step 5:
/// `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Accept` and,
/// when one was selected, `Sec-WebSocket-Protocol`. Never
/// `Sec-WebSocket-Extensions`: we accept no extension.
pub fn write_switching_protocols(out: &mut Vec<u8>, accept: &str, protocol: Option<&str>) {
    push_status_line(out, 101);
    push_header(out, "Upgrade", "websocket");
    push_header(out, "Connection", "Upgrade");
    push_header(out, "Sec-WebSocket-Accept", accept);
    if let Some(protocol) = protocol {
        push_header(out, "Sec-WebSocket-Protocol", protocol);
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a complete HTTP/1.1 response: status line, `Content-Type`,
/// `Content-Length`, `Connection: close`, `extra_headers` in order, the
/// empty line and `body`. The server closes the connection after every
/// plain response, which is what `Connection: close` announces (RFC 9112 9.6).
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) {
    push_status_line(out, status);
    push_header(out, "Content-Type", content_type);
    push_header(out, "Content-Length", &body.len().to_string());
    push_header(out, "Connection", "close");
    for (name, value) in extra_headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Append the response for a failed handshake: its status, its
/// [`HandshakeError::extra_headers`], and its reason as a `text/plain` body.
pub fn write_error_response(out: &mut Vec<u8>, error: &HandshakeError) {
    let mut body = String::with_capacity(error.reason().len() + 1);
    body.push_str(error.reason());
    body.push('\n');
    write_response(
        out,
        error.status(),
        "text/plain; charset=utf-8",
        error.extra_headers(),
        body.as_bytes(),
    );
}

/// The standard reason phrase for a status (RFC 9110 15); empty for a status
/// this server never sends, which the grammar allows.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// An IMF-fixdate for a `Date` header (RFC 9110 5.6.7), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`, from seconds since the Unix epoch.
/// RFC 9110 6.6.1: an origin server with a clock "MUST generate a Date header
/// field in all 2xx, 3xx, and 4xx responses"; the caller reads the clock and
/// passes `("Date", &http_date(now))` among the extra headers.
pub fn http_date(unix_secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month_name = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic
/// Gregorian calendar, after Howard Hinnant's `civil_from_days`, in eras of
/// 400 years (146 097 days) starting on 0000-03-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------
// Origin checks (--allowed-origin)
// ---------------------------------------------------------------------------

/// An origin reduced to what is compared: RFC 6454 4, the (scheme, host,
/// port) triple.
#[derive(Debug, PartialEq, Eq)]
struct OriginParts {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// Parse `scheme "://" host [ ":" port ]`, the serialization of RFC 6454
/// 6.2, tolerating one trailing `/` (a habit of people writing
/// `--allowed-origin`). Scheme and host are lower-cased; a missing port
/// becomes the scheme's default (80 for http and ws, 443 for https and wss).
/// `None` for anything else: `null`, paths, user info, a bad port.
fn parse_origin(text: &str) -> Option<OriginParts> {
    let text = text.strip_suffix('/').unwrap_or(text);
    let (scheme, authority) = text.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"+-.".contains(&byte))
    {
        return None;
    }
    if authority.is_empty()
        || authority
            .bytes()
            .any(|byte| b"/?#@\\".contains(&byte) || byte <= b' ' || byte == 0x7f)
    {
        return None;
    }
    // An IPv6 literal keeps its colons inside brackets: [::1]:8080.
    let (host, port) = match authority.strip_prefix('[') {
        Some(after_bracket) => {
            let (inside, after) = after_bracket.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (authority.get(..inside.len() + 2)?, port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let port = match port {
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
        None => match scheme.as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        },
    };
    Some(OriginParts {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// May a request with this `Origin` connect, given the `--allowed-origin`
/// list?
///
/// - `allowed` empty: any origin (the flag is not set).
/// - `origin` `None`: allowed. Browsers always send `Origin` on a WebSocket
///   handshake (RFC 6455 4.1, 10.2), so its absence means a non-browser
///   client, which the check cannot protect against anyway.
/// - Otherwise allowed when some entry has the same scheme, host and port:
///   scheme and host compare case-insensitively, and `http://a` equals
///   `http://a:80` (`https`/`wss` 443, `ws` 80). An origin that is not
///   `scheme://host[:port]` (`null`, say) matches only an entry spelled
///   byte-for-byte the same.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if allowed.is_empty() {
        return true;
    }
    match parse_origin(origin) {
        Some(parts) => allowed
            .iter()
            .any(|entry| parse_origin(entry).as_ref() == Some(&parts)),
        None => allowed.iter().any(|entry| entry == origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from headless Chromium 156 opening
    /// `new WebSocket('ws://' + location.host + '/ws', ['socketbox.v1'])`.
    const CHROMIUM: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: 127.0.0.1:38819\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://127.0.0.1:38819\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: Jqm2MDRMxIc1h+nYpSNxkQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: socketbox.v1\r\n\
\r\n";

    /// Captured from the same Chromium loading the page: a plain GET whose
    /// `Upgrade-Insecure-Requests` must not be mistaken for an upgrade.
    const CHROMIUM_PAGE: &[u8] = b"GET / HTTP/1.1\r\n\
Host: 127.0.0.1:46217\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Not:A-Brand\";v=\"8\", \"Chromium\";v=\"156\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/jxl,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
\r\n";

    /// Firefox's header order and values (Firefox 12x on Linux), notably
    /// `Connection: keep-alive, Upgrade`. Written from Firefox's documented
    /// behaviour, not captured: no Firefox on the build machine.
    const FIREFOX: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: localhost:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Protocol: chat, socketbox.v1\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-Fetch-Dest: empty\r\n\
Sec-Fetch-Mode: websocket\r\n\
Sec-Fetch-Site: same-origin\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\
\r\n";

    /// Captured from `curl --include --no-buffer -H "Connection: Upgrade"
    /// -H "Upgrade: websocket" -H "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw=="
    /// -H "Sec-WebSocket-Version: 13" http://127.0.0.1:34075/echo` (curl 7.88.1).
    const CURL: &[u8] = b"GET /echo HTTP/1.1\r\n\
Host: 127.0.0.1:34075\r\n\
User-Agent: curl/7.88.1\r\n\
Accept: */*\r\n\
Connection: Upgrade\r\n\
Upgrade: websocket\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

    /// A minimal valid upgrade, for the error cases to modify.
    const MINIMAL: &str = "GET /ws HTTP/1.1\r\n\
Host: example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

    fn complete(buf: &[u8]) -> Request<'_> {
        match parse_request(buf) {
            Ok(Parse::Complete(request)) => request,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn parse_error(buf: &[u8]) -> HandshakeError {
        match parse_request(buf) {
            Err(error) => error,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn upgrade_error(buf: &[u8]) -> HandshakeError {
        match validate_upgrade(&complete(buf)) {
            Err(error) => error,
            Ok(upgrade) => panic!("expected an error, got {upgrade:?}"),
        }
    }

    /// MINIMAL with one header line replaced (or removed when `new` is empty).
    fn minimal_with(old: &str, new: &str) -> Vec<u8> {
        assert!(MINIMAL.contains(old), "{old}");
        MINIMAL.replacen(old, new, 1).into_bytes()
    }

    // --- real clients -------------------------------------------------------

    #[test]
    fn chromium_upgrade() {
        let request = complete(CHROMIUM);
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/ws");
        assert_eq!(request.path(), "/ws");
        assert_eq!(request.minor_version, 1);
        assert_eq!(request.headers.len(), 13);
        assert_eq!(request.head_len, CHROMIUM.len());
        assert!(wants_websocket(&request));
        let upgrade = validate_upgrade(&request).unwrap();
        assert_eq!(
            upgrade,
            UpgradeRequest {
                key: "Jqm2MDRMxIc1h+nYpSNxkQ==",
                offered_protocols: vec!["socketbox.v1"],
                origin: Some("http://127.0.0.1:38819"),
                offered_extensions: vec!["permessage-deflate; client_max_window_bits"],
            }
        );
        assert_eq!(
            select_protocol(&upgrade.offered_protocols, &["socketbox.v1"]),
            Some("socketbox.v1")
        );
    }

    #[test]
    fn chromium_page_is_not_an_upgrade() {
        let request = complete(CHROMIUM_PAGE);
        assert_eq!(request.path(), "/");
        assert_eq!(request.headers.len(), 14);
        assert_eq!(
            request.header("SEC-CH-UA"),
            Some(r#""Not:A-Brand";v="8", "Chromium";v="156""#)
        );
        assert!(!wants_websocket(&request));
        assert_eq!(validate_upgrade(&request), Err(HandshakeError::NotUpgrade));
        assert_eq!(request.content_length(), Ok(0));
    }

    #[test]
    fn firefox_upgrade_with_keep_alive_upgrade() {
        let request = complete(FIREFOX);
        assert!(request.has_token("connection", "upgrade"));
        assert!(request.has_token("Connection", "KEEP-ALIVE"));
        assert!(!request.has_token("Connection", "close"));
        let upgrade = validate_upgrade(&request).unwrap();
        assert_eq!(upgrade.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(upgrade.offered_protocols, vec!["chat", "socketbox.v1"]);
        assert_eq!(upgrade.offered_extensions, vec!["permessage-deflate"]);
        assert_eq!(upgrade.origin, Some("http://localhost:8080"));
    }

    #[test]
    fn curl_upgrade() {
        let request = complete(CURL);
        assert_eq!(request.path(), "/echo");
        let upgrade = validate_upgrade(&request).unwrap();
        assert_eq!(upgrade.key, "x3JJHMbDL1EzLkh9GBhXDw==");
        assert!(upgrade.offered_protocols.is_empty());
        assert!(upgrade.offered_extensions.is_empty());
        assert_eq!(upgrade.origin, None);
    }

    // --- incremental parsing -----------------------------------------------

    #[test]
    fn partial_at_every_split_point() {
        for fixture in [CHROMIUM, CHROMIUM_PAGE, FIREFOX, CURL, MINIMAL.as_bytes()] {
            let whole = complete(fixture);
            for split in 0..fixture.len() {
                assert_eq!(
                    parse_request(&fixture[..split]),
                    Ok(Parse::Partial),
                    "split at {split}"
                );
            }
            // Bytes after the head (frames, a body) change nothing.
            let mut with_more = fixture.to_vec();
            with_more.extend_from_slice(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
            assert_eq!(complete(&with_more), whole);
        }
    }

    #[test]
    fn bare_lf_line_endings_are_tolerated() {
        let lf = MINIMAL.replace("\r\n", "\n");
        let request = complete(lf.as_bytes());
        assert_eq!(request.head_len, lf.len());
        assert!(validate_upgrade(&request).is_ok());
        for split in 0..lf.len() {
            assert!(parse_request(&lf.as_bytes()[..split]).unwrap().is_partial());
        }
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let buf = format!("\r\n\n{MINIMAL}");
        let request = complete(buf.as_bytes());
        assert_eq!(request.head_len, buf.len());
        assert_eq!(request.method, "GET");
    }

    #[test]
    fn non_http_is_rejected_before_the_head_ends() {
        // The first bytes of a TLS ClientHello.
        assert_eq!(
            parse_error(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            HandshakeError::MalformedMethod
        );
        assert_eq!(
            parse_error(b"GET\r\n"),
            HandshakeError::MalformedRequestLine
        );
        assert_eq!(parse_request(b"GE"), Ok(Parse::Partial));
        assert_eq!(parse_request(b"\r"), Ok(Parse::Partial));
    }

    // --- size limits -------------------------------------------------------

    /// A request whose head is exactly `len` bytes, padded with one header.
    fn head_of_len(len: usize) -> Vec<u8> {
        let start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
        let end = "\r\n\r\n";
        let pad = len - start.len() - end.len();
        format!("{start}{}{end}", "p".repeat(pad)).into_bytes()
    }

    #[test]
    fn head_of_exactly_8192_bytes_is_accepted() {
        let buf = head_of_len(MAX_REQUEST_HEAD);
        assert_eq!(buf.len(), 8192);
        assert_eq!(complete(&buf).head_len, 8192);
        // Still accepted with a body after it making the buffer longer.
        let mut with_body = buf.clone();
        with_body.extend_from_slice(b"body");
        assert_eq!(complete(&with_body).head_len, 8192);
    }

    #[test]
    fn head_of_8193_bytes_is_431() {
        let buf = head_of_len(MAX_REQUEST_HEAD + 1);
        assert_eq!(buf.len(), 8193);
        assert_eq!(parse_error(&buf), HandshakeError::HeadTooLarge);
        assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
        // With only 8192 bytes of it read, it is still partial.
        assert_eq!(parse_request(&buf[..8192]), Ok(Parse::Partial));
    }

    #[test]
    fn unfinished_head_longer_than_the_limit_is_431() {
        let buf = format!("GET / HTTP/1.1\r\nX-Pad: {}", "p".repeat(9000));
        assert_eq!(parse_error(buf.as_bytes()), HandshakeError::HeadTooLarge);
    }

    fn with_headers(count: usize) -> Vec<u8> {
        let mut buf = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..count {
            buf.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        buf.push_str("\r\n");
        buf.into_bytes()
    }

    #[test]
    fn header_count_limit() {
        assert_eq!(complete(&with_headers(MAX_HEADERS)).headers.len(), 64);
        let too_many = with_headers(MAX_HEADERS + 1);
        assert_eq!(parse_error(&too_many), HandshakeError::TooManyHeaders);
        assert_eq!(HandshakeError::TooManyHeaders.status(), 431);
        // Detected as soon as the 65th line is complete.
        let end = too_many.len() - 2;
        assert_eq!(
            parse_error(&too_many[..end]),
            HandshakeError::TooManyHeaders
        );
    }

    // --- malformed requests ------------------------------------------------

    #[test]
    fn malformed_request_lines() {
        use HandshakeError::*;
        let cases: &[(&[u8], HandshakeError)] = &[
            (b"GET /\r\nHost: a\r\n\r\n", MalformedRequestLine), // HTTP/0.9 style
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", MalformedRequestLine),
            (b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", MalformedRequestLine),
            (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", MalformedVersion),
            (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", MalformedMethod),
            (b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", MalformedTarget),
            (
                b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
                MalformedTarget,
            ),
            (b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", MalformedTarget),
            (b"GET / HTTP/1.1\rX\r\nHost: a\r\n\r\n", MalformedVersion),
            (b"GET / http/1.1\r\nHost: a\r\n\r\n", MalformedVersion),
            (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", MalformedVersion),
            (b"GET / HTTP/1\r\nHost: a\r\n\r\n", MalformedVersion),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", UnsupportedHttpVersion),
            (b"GET / HTTP/0.9\r\n\r\n", UnsupportedHttpVersion),
        ];
        for (buf, expected) in cases {
            assert_eq!(
                parse_error(buf),
                *expected,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        assert_eq!(MalformedRequestLine.status(), 400);
        assert_eq!(UnsupportedHttpVersion.status(), 505);
    }

    #[test]
    fn malformed_headers() {
        use HandshakeError::*;
        let cases: &[(&[u8], HandshakeError)] = &[
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n",
                ObsoleteLineFolding,
            ),
            (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", ObsoleteLineFolding),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\tX: 1\r\n\r\n",
                ObsoleteLineFolding,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
                MissingColon,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
                MalformedHeaderName,
            ),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", WhitespaceBeforeColon),
            (
                b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
                WhitespaceBeforeColon,
            ),
            (b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", MalformedHeaderName),
            (
                b"GET / HTTP/1.1\r\nH\xc3\xa9: a\r\n\r\n",
                MalformedHeaderName,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
                MalformedHeaderValue,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
                MalformedHeaderValue,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
                MalformedHeaderValue,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\xfe\r\n\r\n",
                NonUtf8Header,
            ),
            (b"GET / HTTP/1.1\r\n\r\n", MissingHost),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
                DuplicateHost,
            ),
            (
                b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
                DuplicateHost,
            ),
        ];
        for (buf, expected) in cases {
            assert_eq!(
                parse_error(buf),
                *expected,
                "{}",
                String::from_utf8_lossy(buf)
            );
            assert_eq!(expected.status(), 400);
        }
    }

    #[test]
    fn header_values_are_trimmed_utf8_and_may_be_empty() {
        let request =
            complete("GET / HTTP/1.0\r\nX-Name: \t caf\u{e9} \t\r\nX-Empty:\r\n\r\n".as_bytes());
        assert_eq!(request.minor_version, 0);
        assert_eq!(request.header("x-name"), Some("caf\u{e9}"));
        assert_eq!(request.header("X-EMPTY"), Some(""));
        assert_eq!(request.header("Host"), None);
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_first_wins() {
        let request = complete(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nhOsT: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        assert_eq!(request.header("HOST"), Some("h"));
        assert_eq!(request.header("X-A"), Some("1"));
        assert_eq!(request.header_count("x-A"), 2);
        assert_eq!(request.header_values("x-a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(request.path(), "/a/b");
        assert_eq!(request.query(), Some("x=1&y=2"));
    }

    #[test]
    fn tokens_across_occurrences_and_lists() {
        let request = complete(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nCONNECTION: ,, UpGrAdE\t,\r\n\r\n",
        );
        assert!(request.has_token("connection", "upgrade"));
        assert!(request.has_token("Connection", "Keep-Alive"));
        assert!(!request.has_token("Connection", "Upgrade,"));
        assert!(!request.has_token("Connection", ""));
        assert!(!request.has_token("Upgrade", "websocket"));
        assert_eq!(
            request.list_values("connection").collect::<Vec<_>>(),
            ["keep-alive", "UpGrAdE"]
        );
    }

    #[test]
    fn absolute_form_and_other_targets() {
        let path_of = |target: &str| {
            let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let request = complete(buf.as_bytes());
            request.path().to_owned()
        };
        assert_eq!(path_of("http://h:8080/ws?x"), "/ws");
        assert_eq!(path_of("http://h:8080"), "/");
        assert_eq!(path_of("http://h?x"), "/");
        assert_eq!(path_of("*"), "*");
        assert_eq!(path_of("/?"), "/");
    }

    #[test]
    fn content_length() {
        use HandshakeError::*;
        let length_of = |headers: &str| {
            let buf = format!("POST /api/push HTTP/1.1\r\nHost: h\r\n{headers}\r\n");
            complete(buf.as_bytes()).content_length()
        };
        assert_eq!(length_of(""), Ok(0));
        assert_eq!(length_of("Content-Length: 17\r\n"), Ok(17));
        assert_eq!(length_of("content-length: 0\r\n"), Ok(0));
        assert_eq!(
            length_of("Content-Length: 5\r\nContent-Length: 5\r\n"),
            Ok(5)
        );
        assert_eq!(length_of("Content-Length: 5, 5\r\n"), Ok(5));
        assert_eq!(
            length_of("Content-Length: 5\r\nContent-Length: 6\r\n"),
            Err(ConflictingContentLength)
        );
        assert_eq!(
            length_of("Content-Length: 5, 6\r\n"),
            Err(ConflictingContentLength)
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "0x10",
            "1 2",
            "5,",
            "99999999999999999999999",
        ] {
            assert_eq!(
                length_of(&format!("Content-Length: {bad}\r\n")),
                Err(BadContentLength),
                "{bad:?}"
            );
        }
        assert_eq!(
            length_of("Transfer-Encoding: chunked\r\n"),
            Err(UnsupportedTransferEncoding)
        );
        assert_eq!(UnsupportedTransferEncoding.status(), 501);
        assert_eq!(ConflictingContentLength.status(), 400);
    }

    // --- upgrade validation ------------------------------------------------

    #[test]
    fn minimal_upgrade_is_valid() {
        let request = complete(MINIMAL.as_bytes());
        let upgrade = validate_upgrade(&request).unwrap();
        assert_eq!(upgrade.key, "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn upgrade_headers_are_case_insensitive() {
        let buf = "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nconnection: UPGRADE\r\n\
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n";
        assert!(validate_upgrade(&complete(buf.as_bytes())).is_ok());
    }

    #[test]
    fn upgrade_errors() {
        use HandshakeError::*;
        let key_line = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let version_line = "Sec-WebSocket-Version: 13\r\n";
        let cases: Vec<(Vec<u8>, HandshakeError)> = vec![
            (minimal_with("GET", "POST"), NotGet),
            (minimal_with("Upgrade: websocket\r\n", ""), NotUpgrade),
            (
                minimal_with("Upgrade: websocket", "Upgrade: h2c"),
                NotUpgrade,
            ),
            (minimal_with("HTTP/1.1", "HTTP/1.0"), OldHttpVersion),
            (
                MINIMAL
                    .replacen("HTTP/1.1", "HTTP/1.0", 1)
                    .replacen("Host: example.com\r\n", "", 1)
                    .into_bytes(),
                OldHttpVersion,
            ),
            (
                minimal_with("Connection: Upgrade\r\n", ""),
                MissingConnectionUpgrade,
            ),
            (
                minimal_with("Connection: Upgrade", "Connection: keep-alive"),
                MissingConnectionUpgrade,
            ),
            (minimal_with(key_line, ""), MissingKey),
            (
                minimal_with(key_line, &format!("{key_line}{key_line}")),
                DuplicateKey,
            ),
            (minimal_with(version_line, ""), MissingVersion),
            (
                minimal_with(version_line, &format!("{version_line}{version_line}")),
                DuplicateVersion,
            ),
            (
                minimal_with(version_line, "Sec-WebSocket-Version: 8\r\n"),
                UnsupportedVersion,
            ),
            (
                minimal_with(version_line, "Sec-WebSocket-Version: 13, 8\r\n"),
                UnsupportedVersion,
            ),
            (
                minimal_with(version_line, "Sec-WebSocket-Version: 013\r\n"),
                UnsupportedVersion,
            ),
        ];
        for (buf, expected) in cases {
            assert_eq!(
                upgrade_error(&buf),
                expected,
                "{}",
                String::from_utf8_lossy(&buf)
            );
        }
    }

    #[test]
    fn upgrade_error_statuses_and_headers() {
        use HandshakeError::*;
        assert_eq!(NotGet.status(), 405);
        assert_eq!(NotGet.extra_headers(), &[("Allow", "GET")]);
        assert_eq!(NotUpgrade.status(), 426);
        assert!(NotUpgrade
            .extra_headers()
            .contains(&("Upgrade", "websocket")));
        for error in [MissingVersion, DuplicateVersion, UnsupportedVersion] {
            assert_eq!(error.status(), 426);
            assert!(error
                .extra_headers()
                .contains(&("Sec-WebSocket-Version", "13")));
        }
        for error in [
            OldHttpVersion,
            MissingConnectionUpgrade,
            MissingKey,
            DuplicateKey,
            BadKey,
        ] {
            assert_eq!(error.status(), 400);
            assert!(error.extra_headers().is_empty());
        }
        assert_eq!(
            BadKey.reason(),
            "Sec-WebSocket-Key must be base64 of 16 bytes"
        );
        assert_eq!(
            BadKey.to_string(),
            "400 Sec-WebSocket-Key must be base64 of 16 bytes"
        );
    }

    #[test]
    fn version_8_gets_426_with_the_version_header() {
        let buf = minimal_with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
        let error = upgrade_error(&buf);
        let mut out = Vec::new();
        write_error_response(&mut out, &error);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
    }

    #[test]
    fn keys_must_be_base64_of_16_bytes() {
        let key_error = |key: &str| {
            let line = format!("Sec-WebSocket-Key: {key}");
            validate_upgrade(&complete(&minimal_with(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                &line,
            )))
            .err()
        };
        assert_eq!(BASE64.encode([7u8; 16]).len(), 24);
        assert_eq!(key_error(&BASE64.encode([7u8; 16])), None);
        // 15 and 17 bytes.
        assert_eq!(
            key_error(&BASE64.encode([7u8; 15])),
            Some(HandshakeError::BadKey)
        );
        assert_eq!(
            key_error(&BASE64.encode([7u8; 17])),
            Some(HandshakeError::BadKey)
        );
        // The 13-byte "Hello, world!" key of many curl tutorials.
        assert_eq!(
            key_error("SGVsbG8sIHdvcmxkIQ=="),
            Some(HandshakeError::BadKey)
        );
        // 24 characters, but not canonical base64.
        assert_eq!(
            key_error("dGhlIHNhbXBsZSBub25jZR=="),
            Some(HandshakeError::BadKey)
        );
        assert_eq!(
            key_error("dGhlIHNhbXBsZSBub25jZQ"),
            Some(HandshakeError::BadKey)
        );
        assert_eq!(
            key_error("dGhlIHNhbXBsZSBub25jZQ=!"),
            Some(HandshakeError::BadKey)
        );
        assert_eq!(key_error(""), Some(HandshakeError::BadKey));
        // Surrounding OWS is not part of the value.
        assert_eq!(key_error("  dGhlIHNhbXBsZSBub25jZQ==\t"), None);
    }

    // --- accept key and protocols -------------------------------------------

    #[test]
    fn accept_key_rfc_6455_example() {
        // RFC 6455 1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" gives
        // "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" (also what Python's hashlib gives).
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn protocol_selection_follows_client_order() {
        let supported = ["socketbox.v1", "chat"];
        assert_eq!(
            select_protocol(&["chat", "socketbox.v1"], &supported),
            Some("chat")
        );
        assert_eq!(
            select_protocol(&["x", "socketbox.v1"], &supported),
            Some("socketbox.v1")
        );
        assert_eq!(select_protocol(&["SocketBox.v1"], &supported), None);
        assert_eq!(select_protocol(&[], &supported), None);
        assert_eq!(select_protocol(&["chat"], &[]), None);
    }

    // --- responses ----------------------------------------------------------

    #[test]
    fn switching_protocols_bytes() {
        let mut out = Vec::new();
        write_switching_protocols(&mut out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
\r\n"
        );
        out.clear();
        write_switching_protocols(
            &mut out,
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            Some("socketbox.v1"),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
Sec-WebSocket-Protocol: socketbox.v1\r\n\
\r\n"
        );
    }

    #[test]
    fn plain_response_bytes() {
        let mut out = b"kept".to_vec();
        write_response(
            &mut out,
            200,
            "text/plain",
            &[("Cache-Control", "no-store")],
            b"ok",
        );
        assert_eq!(
            out,
            b"keptHTTP/1.1 200 OK\r\n\
Content-Type: text/plain\r\n\
Content-Length: 2\r\n\
Connection: close\r\n\
Cache-Control: no-store\r\n\
\r\n\
ok"
        );
    }

    #[test]
    fn error_response_bytes() {
        let mut out = Vec::new();
        write_error_response(&mut out, &HandshakeError::NotUpgrade);
        assert_eq!(
            out,
            b"HTTP/1.1 426 Upgrade Required\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 42\r\n\
Connection: close\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
\r\n\
this resource requires Upgrade: websocket\n"
                .as_slice()
        );
    }

    #[test]
    fn header_injection_is_neutralised() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            404,
            "text/plain",
            &[("X", "a\r\nSet-Cookie: b")],
            b"",
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nX: a  Set-Cookie: b\r\n"), "{text}");
    }

    #[test]
    fn reason_phrases() {
        for (status, phrase) in [
            (101, "Switching Protocols"),
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (426, "Upgrade Required"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
        ] {
            assert_eq!(reason_phrase(status), phrase);
        }
        assert_eq!(reason_phrase(299), "");
        let mut out = Vec::new();
        write_response(&mut out, 299, "text/plain", &[], b"");
        assert!(out.starts_with(b"HTTP/1.1 299 \r\n"));
    }

    #[test]
    fn every_error_has_a_status_with_a_phrase_and_a_reason() {
        use HandshakeError::*;
        for error in [
            HeadTooLarge,
            TooManyHeaders,
            MalformedRequestLine,
            MalformedMethod,
            MalformedTarget,
            MalformedVersion,
            UnsupportedHttpVersion,
            ObsoleteLineFolding,
            MissingColon,
            MalformedHeaderName,
            WhitespaceBeforeColon,
            MalformedHeaderValue,
            NonUtf8Header,
            MissingHost,
            DuplicateHost,
            BadContentLength,
            ConflictingContentLength,
            UnsupportedTransferEncoding,
            BodyTooLarge,
            RequestTimeout,
            NotGet,
            OldHttpVersion,
            NotUpgrade,
            MissingConnectionUpgrade,
            MissingKey,
            DuplicateKey,
            BadKey,
            MissingVersion,
            DuplicateVersion,
            UnsupportedVersion,
        ] {
            assert!(!reason_phrase(error.status()).is_empty(), "{error:?}");
            assert!(!error.reason().is_empty(), "{error:?}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 9110 5.6.7's example.
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(http_date(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert!(http_date(u64::MAX).ends_with(" GMT"));
    }

    // --- origins ------------------------------------------------------------

    #[test]
    fn origins() {
        let allowed = |list: &[&str]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        let list = allowed(&["https://Chat.Example.com", "http://localhost:8080"]);

        assert!(origin_allowed(None, &list));
        assert!(origin_allowed(Some("http://evil.test"), &[]));

        assert!(origin_allowed(Some("https://chat.example.com"), &list));
        assert!(origin_allowed(Some("HTTPS://CHAT.EXAMPLE.COM"), &list));
        assert!(origin_allowed(Some("https://chat.example.com:443"), &list));
        assert!(origin_allowed(Some("http://localhost:8080"), &list));

        assert!(!origin_allowed(Some("http://chat.example.com"), &list)); // scheme
        assert!(!origin_allowed(
            Some("https://chat.example.com:8443"),
            &list
        )); // port
        assert!(!origin_allowed(
            Some("https://chat.example.com.evil.test"),
            &list
        ));
        assert!(!origin_allowed(
            Some("https://evil.test/https://chat.example.com"),
            &list
        ));
        assert!(!origin_allowed(Some("http://localhost"), &list)); // 80 is not 8080
        assert!(!origin_allowed(Some("http://localhost:8081"), &list));
        assert!(!origin_allowed(Some("http://user@localhost:8080"), &list));
        assert!(!origin_allowed(Some("http://localhost:"), &list));
        assert!(!origin_allowed(Some("null"), &list));
        assert!(!origin_allowed(Some(""), &list));

        // Default ports both ways, a trailing slash in the configuration.
        let list = allowed(&["http://example.com:80/", "https://[::1]:8443", "null"]);
        assert!(origin_allowed(Some("http://example.com"), &list));
        assert!(origin_allowed(Some("http://EXAMPLE.com:80"), &list));
        assert!(origin_allowed(Some("https://[::1]:8443"), &list));
        assert!(!origin_allowed(Some("https://[::1]"), &list));
        assert!(!origin_allowed(Some("https://[::2]:8443"), &list));
        assert!(origin_allowed(Some("null"), &list));
        assert!(!origin_allowed(Some("NULL"), &list));
    }

    // --- robustness ---------------------------------------------------------

    /// Exercise everything that reads a parsed request.
    fn use_everything(buf: &[u8]) {
        if let Ok(Parse::Complete(request)) = parse_request(buf) {
            assert!(request.head_len <= buf.len().min(MAX_REQUEST_HEAD));
            assert!(request.headers.len() <= MAX_HEADERS);
            let _ = request.path();
            let _ = request.query();
            let _ = request.content_length();
            let _ = wants_websocket(&request);
            if let Ok(upgrade) = validate_upgrade(&request) {
                let _ = accept_key(upgrade.key);
                let _ = select_protocol(&upgrade.offered_protocols, &["socketbox.v1"]);
                let _ = origin_allowed(upgrade.origin, &["http://a".to_string()]);
            }
            let mut out = Vec::new();
            write_switching_protocols(&mut out, "x", request.header("X"));
        }
    }

    /// A small deterministic generator (xorshift64), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn no_panic_on_random_bytes() {
        let mut rng = Rng(0x5eed_5eed_5eed_5eed);
        let interesting = b"GET / HTTP/1.1\r\n: ,\t\0\x7f\xff\xc3\xa9?[]";
        for _ in 0..20_000 {
            let len = rng.below(200);
            let buf: Vec<u8> = (0..len)
                .map(|_| match rng.below(3) {
                    0 => rng.next() as u8,
                    _ => interesting[rng.below(interesting.len())],
                })
                .collect();
            use_everything(&buf);
        }
    }

    #[test]
    fn no_panic_on_mutated_requests() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let fixtures = [CHROMIUM, FIREFOX, CURL, MINIMAL.as_bytes()];
        let mut completes = 0;
        for round in 0..20_000 {
            let mut buf = fixtures[round % fixtures.len()].to_vec();
            for _ in 0..=rng.below(3) {
                let at = rng.below(buf.len());
                match rng.below(3) {
                    0 => buf[at] = rng.next() as u8,
                    1 => {
                        buf.remove(at);
                    }
                    _ => buf.insert(at, b"\r\n:, \t"[rng.below(6)]),
                }
            }
            if matches!(parse_request(&buf), Ok(Parse::Complete(_))) {
                completes += 1;
            }
            use_everything(&buf);
        }
        // The mutations must leave many requests valid, or this test would
        // only exercise the error paths.
        assert!(completes > 1_000, "{completes}");
    }
}
