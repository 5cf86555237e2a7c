//! HTTP/1.1 request heads in, responses out, sans IO: the layer under the
//! WebSocket opening handshake ([`super::handshake`]) and under every plain
//! HTTP route of the server.
//!
//! - Parsing an HTTP/1.1 request head (RFC 9112 sections 2-5, which replace
//!   RFC 7230 3), zero-copy: every string in a [`Request`] borrows from the
//!   caller's buffer, and [`parse_request`] answers [`Parse::Partial`] until
//!   the head is complete, so the caller may feed it whatever it has read;
//! - `Content-Length` (RFC 9110 8.6, RFC 9112 6);
//! - writing responses ([`write_response`], [`write_error_response`]) with
//!   the reason phrases of RFC 9110 15;
//! - [`HttpError`]: every way a request head can be refused, with its status.
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

use std::fmt;

/// Largest request head (request line + headers + final CRLF CRLF) we accept: 8 KiB.
pub const MAX_REQUEST_HEAD: usize = 8192;

/// Most header fields in one request; one more gets 431.
pub const MAX_HEADERS: usize = 64;

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
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        let mut length = None;
        for value in self.header_values("Content-Length") {
            // Unlike `list_values`, an empty element here is an error.
            for element in value.split(',') {
                let element_length = parse_decimal(trim_ows(element))?;
                match length {
                    Some(previous) if previous != element_length => {
                        return Err(HttpError::ConflictingContentLength)
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
        return Err(HttpError::BadContentLength);
    }
    text.bytes().try_fold(0usize, |total, byte| {
        if !byte.is_ascii_digit() {
            return Err(HttpError::BadContentLength);
        }
        total
            .checked_mul(10)
            .and_then(|total| total.checked_add(usize::from(byte - b'0')))
            .ok_or(HttpError::BadContentLength)
    })
}

/// Every way a request head (or its body) can be refused, with the HTTP
/// status to answer. All but the last two come from [`parse_request`] and
/// [`Request::content_length`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpError {
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
}

/// What an error response is made of; [`write_error_response`] writes one
/// for any error of any layer ([`HttpError`], the handshake's
/// [`super::handshake::UpgradeError`]).
pub trait ErrorResponse {
    /// The HTTP status code to answer with.
    fn status(&self) -> u16;
    /// A short text for a person, used as the response body.
    fn reason(&self) -> &'static str;
    /// The headers the error response needs besides `Content-Type`,
    /// `Content-Length` and `Connection: close`.
    fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

impl HttpError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        use HttpError::*;
        match self {
            HeadTooLarge | TooManyHeaders => 431,
            UnsupportedHttpVersion => 505,
            UnsupportedTransferEncoding => 501,
            BodyTooLarge => 413,
            RequestTimeout => 408,
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
            | ConflictingContentLength => 400,
        }
    }

    /// A short text for a person, used as the response body.
    pub fn reason(&self) -> &'static str {
        use HttpError::*;
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
        }
    }
}

impl ErrorResponse for HttpError {
    fn status(&self) -> u16 {
        HttpError::status(self)
    }
    fn reason(&self) -> &'static str {
        HttpError::reason(self)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HttpError {}

// ---------------------------------------------------------------------------
// Parsing the request head (RFC 9112)
// ---------------------------------------------------------------------------

/// RFC 9110 5.6.2:
///
/// ```text
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// RFC 9110 5.5: `OWS = *( SP / HTAB )`.
pub(crate) fn is_ows(byte: u8) -> bool {
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
/// [`HttpError::HeadTooLarge`] when the head does not end within the
/// first [`MAX_REQUEST_HEAD`] bytes of a longer `buf`. Lines already
/// complete are checked as they arrive, so a client that is not speaking
/// HTTP (a TLS hello, say) gets its 400 without waiting for the timeout.
pub fn parse_request(buf: &[u8]) -> Result<Parse<Request<'_>>, HttpError> {
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
                    return Err(HttpError::TooManyHeaders);
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
fn incomplete<T>(buf: &[u8]) -> Result<Parse<T>, HttpError> {
    if buf.len() > MAX_REQUEST_HEAD {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(Parse::Partial)
    }
}

/// Reject early a request line whose first bytes cannot start a method.
/// A CR may be the first half of a CRLF that ends the line; the full line is
/// judged once it is complete.
fn check_partial_method(partial_line: &[u8]) -> Result<(), HttpError> {
    let method_so_far = partial_line
        .iter()
        .take_while(|&&byte| byte != b' ' && byte != b'\r');
    for &byte in method_so_far {
        if !is_tchar(byte) {
            return Err(HttpError::MalformedMethod);
        }
    }
    Ok(())
}

/// `request-line = method SP request-target SP HTTP-version`, split on
/// single spaces: RFC 9112 3 lets a recipient split on any whitespace, but
/// the strict grammar leaves no room for request smuggling through odd
/// spacing.
fn parse_request_line(line: &[u8]) -> Result<(&str, &str, u8), HttpError> {
    let mut parts = line.splitn(3, |&byte| byte == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::MalformedRequestLine);
    };
    if method.is_empty() || target.is_empty() {
        return Err(HttpError::MalformedRequestLine);
    }
    if !method.iter().all(|&byte| is_tchar(byte)) {
        return Err(HttpError::MalformedMethod);
    }
    // RFC 9112 3.2: the request-target never holds whitespace; browsers
    // percent-encode everything else outside visible ASCII.
    if !target.iter().all(|byte| (0x21..=0x7e).contains(byte)) {
        return Err(HttpError::MalformedTarget);
    }
    let minor_version = parse_version(version)?;
    let method = std::str::from_utf8(method).map_err(|_| HttpError::MalformedMethod)?;
    let target = std::str::from_utf8(target).map_err(|_| HttpError::MalformedTarget)?;
    Ok((method, target, minor_version))
}

/// `HTTP-version = HTTP-name "/" DIGIT "." DIGIT`, `HTTP-name = %s"HTTP"`
/// (case-sensitive, RFC 9112 2.3). Returns the minor version of HTTP/1.x.
fn parse_version(version: &[u8]) -> Result<u8, HttpError> {
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major == b'1' {
                Ok(minor - b'0')
            } else {
                Err(HttpError::UnsupportedHttpVersion)
            }
        }
        _ => Err(HttpError::MalformedVersion),
    }
}

/// `field-line = field-name ":" OWS field-value OWS`.
fn parse_header_line(line: &[u8]) -> Result<Header<'_>, HttpError> {
    // RFC 9112 5.2: obs-fold is deprecated; a server that receives it outside
    // message/http "MUST either reject the message by sending a 400 (Bad
    // Request)... or replace each received obs-fold with one or more SP".
    // RFC 9112 2.2: whitespace between the start-line and the first field
    // line "MUST either reject the message as invalid or consume each
    // whitespace-preceded line". We reject both.
    if line.first().is_some_and(|&byte| is_ows(byte)) {
        return Err(HttpError::ObsoleteLineFolding);
    }
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or(HttpError::MissingColon)?;
    let (name, colon_and_value) = line.split_at(colon);
    let value = colon_and_value.get(1..).unwrap_or(&[]);

    if name.is_empty() {
        return Err(HttpError::MalformedHeaderName);
    }
    // RFC 9112 5.1: "A server MUST reject, with a response status code of
    // 400 (Bad Request), any received request message that contains
    // whitespace between a header field name and colon."
    if name.last().is_some_and(|&byte| is_ows(byte)) {
        return Err(HttpError::WhitespaceBeforeColon);
    }
    if !name.iter().all(|&byte| is_tchar(byte)) {
        return Err(HttpError::MalformedHeaderName);
    }
    // RFC 9110 5.5: "Field values containing CR, LF, or NUL characters are
    // invalid and dangerous"; a recipient "MUST either reject the message or
    // replace each of those characters with SP". We reject them, and the
    // other control characters with them.
    if !value.iter().all(|&byte| is_field_value_byte(byte)) {
        return Err(HttpError::MalformedHeaderValue);
    }
    let value = trim_ows_bytes(value);

    let name = std::str::from_utf8(name).map_err(|_| HttpError::MalformedHeaderName)?;
    let value = std::str::from_utf8(value).map_err(|_| HttpError::NonUtf8Header)?;
    Ok(Header { name, value })
}

/// RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code
/// to any HTTP/1.1 request message that lacks a Host header field and to any
/// request message that contains more than one Host header field line".
fn check_host(request: &Request<'_>) -> Result<(), HttpError> {
    match request.header_count("Host") {
        0 if request.minor_version >= 1 => Err(HttpError::MissingHost),
        0 | 1 => Ok(()),
        _ => Err(HttpError::DuplicateHost),
    }
}

// ---------------------------------------------------------------------------
// Writing responses
// ---------------------------------------------------------------------------

/// Append `name: value\r\n`. A CR, LF or NUL in either (none should reach
/// here: names are ours and values come from parsed, checked headers) is
/// written as SP, so a header can never end early and inject another.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
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
pub(crate) fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
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

/// Append the response for a refused request: its status, its
/// [`ErrorResponse::extra_headers`], and its reason as a `text/plain` body.
pub fn write_error_response(out: &mut Vec<u8>, error: &dyn ErrorResponse) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Captured from headless Chromium 156 opening
    /// `new WebSocket('ws://' + location.host + '/ws', ['socketbox.v1'])`.
    pub(crate) const CHROMIUM: &[u8] = b"GET /ws HTTP/1.1\r\n\
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
    pub(crate) const CHROMIUM_PAGE: &[u8] = b"GET / HTTP/1.1\r\n\
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
    pub(crate) const FIREFOX: &[u8] = b"GET /ws HTTP/1.1\r\n\
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
    pub(crate) const CURL: &[u8] = b"GET /echo HTTP/1.1\r\n\
Host: 127.0.0.1:34075\r\n\
User-Agent: curl/7.88.1\r\n\
Accept: */*\r\n\
Connection: Upgrade\r\n\
Upgrade: websocket\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

    /// A minimal valid upgrade, for the error cases to modify.
    pub(crate) const MINIMAL: &str = "GET /ws HTTP/1.1\r\n\
Host: example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

    pub(crate) fn complete(buf: &[u8]) -> Request<'_> {
        match parse_request(buf) {
            Ok(Parse::Complete(request)) => request,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    pub(crate) fn parse_error(buf: &[u8]) -> HttpError {
        match parse_request(buf) {
            Err(error) => error,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// MINIMAL with one header line replaced (or removed when `new` is empty).
    pub(crate) fn minimal_with(old: &str, new: &str) -> Vec<u8> {
        assert!(MINIMAL.contains(old), "{old}");
        MINIMAL.replacen(old, new, 1).into_bytes()
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
            HttpError::MalformedMethod
        );
        assert_eq!(parse_error(b"GET\r\n"), HttpError::MalformedRequestLine);
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
        assert_eq!(parse_error(&buf), HttpError::HeadTooLarge);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        // With only 8192 bytes of it read, it is still partial.
        assert_eq!(parse_request(&buf[..8192]), Ok(Parse::Partial));
    }

    #[test]
    fn unfinished_head_longer_than_the_limit_is_431() {
        let buf = format!("GET / HTTP/1.1\r\nX-Pad: {}", "p".repeat(9000));
        assert_eq!(parse_error(buf.as_bytes()), HttpError::HeadTooLarge);
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
        assert_eq!(parse_error(&too_many), HttpError::TooManyHeaders);
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        // Detected as soon as the 65th line is complete.
        let end = too_many.len() - 2;
        assert_eq!(parse_error(&too_many[..end]), HttpError::TooManyHeaders);
    }

    // --- malformed requests ------------------------------------------------

    #[test]
    fn malformed_request_lines() {
        use HttpError::*;
        let cases: &[(&[u8], HttpError)] = &[
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
        use HttpError::*;
        let cases: &[(&[u8], HttpError)] = &[
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
        use HttpError::*;
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

    // --- responses ----------------------------------------------------------

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
        use HttpError::*;
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
        ] {
            assert!(!reason_phrase(error.status()).is_empty(), "{error:?}");
            assert!(!error.reason().is_empty(), "{error:?}");
            assert!(error.extra_headers().is_empty(), "{error:?}");
        }
    }
}
