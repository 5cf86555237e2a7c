//! The WebSocket opening handshake, sans IO (RFC 6455 4.2), on top of the
//! HTTP/1.1 request heads of [`super::http`]:
//!
//! - [`wants_websocket`]: does a request ask for an upgrade at all;
//! - [`validate_upgrade`]: the checks of RFC 6455 4.2.1, with an
//!   [`UpgradeError`] (its status and headers) for each failure;
//! - [`accept_key`]: `Sec-WebSocket-Accept` (RFC 6455 4.2.2, step 5.4);
//! - [`select_protocol`]: the subprotocol (RFC 6455 4.2.2);
//! - [`parse_extension_offers`]: the `Sec-WebSocket-Extensions` offers as
//!   [`ExtensionOffer`]s (RFC 6455 9.1), which `super::deflate` reads for
//!   permessage-deflate (every other extension is declined);
//! - [`write_switching_protocols`] and [`write_switching_protocols_with`]:
//!   the `101 Switching Protocols` answer, with the accepted extension.
//!
//! The `--allowed-origin` check (RFC 6455 10.2) is [`super::origin`].
//!
//! Decisions where the RFC leaves a choice (each is enforced at one place
//! below and tested):
//!
//! - A WebSocket upgrade with a method other than `GET` gets 405 with
//!   `Allow: GET`; one over HTTP/1.0 gets 400.
//! - A missing, repeated or unsupported `Sec-WebSocket-Version` gets 426 with
//!   `Sec-WebSocket-Version: 13`, and it is checked before the key, because a
//!   client speaking another draft may not send a key of our format at all.
//! - A `Sec-WebSocket-Extensions` that does not follow the grammar of RFC
//!   6455 9.1 does not fail the handshake: all its offers are declined, as
//!   answering without the header declines every offer anyway.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::http::{
    is_ows, is_tchar, push_header, push_status_line, ErrorResponse, HttpError, Request,
};

/// The GUID RFC 6455 1.3 and 4.2.2 append to the client's key.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only WebSocket version this server speaks (RFC 6455 4.2.1, item 6).
pub const WEBSOCKET_VERSION: &str = "13";

/// Every way a well-formed request can fail to be a WebSocket upgrade
/// (RFC 6455 4.2.1), with the HTTP status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpgradeError {
    /// An upgrade with a method other than `GET` (405, `Allow: GET`).
    NotGet,
    /// An upgrade over HTTP/1.0 (400).
    OldHttpVersion,
    /// No `Host` header (400); [`super::http::parse_request`] already
    /// refuses an HTTP/1.1 request without one.
    MissingHost,
    /// More than one `Host` header (400).
    DuplicateHost,
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

impl UpgradeError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        use UpgradeError::*;
        match self {
            NotGet => 405,
            NotUpgrade | MissingVersion | DuplicateVersion | UnsupportedVersion => 426,
            OldHttpVersion
            | MissingHost
            | DuplicateHost
            | MissingConnectionUpgrade
            | MissingKey
            | DuplicateKey
            | BadKey => 400,
        }
    }

    /// A short text for a person, used as the response body.
    pub fn reason(&self) -> &'static str {
        use UpgradeError::*;
        match self {
            NotGet => "a WebSocket upgrade must use GET",
            OldHttpVersion => "a WebSocket upgrade needs HTTP/1.1 or later",
            MissingHost => HttpError::MissingHost.reason(),
            DuplicateHost => HttpError::DuplicateHost.reason(),
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
        use UpgradeError::*;
        match self {
            NotGet => METHOD_NOT_ALLOWED_HEADERS,
            NotUpgrade => UPGRADE_REQUIRED_HEADERS,
            MissingVersion | DuplicateVersion | UnsupportedVersion => VERSION_REQUIRED_HEADERS,
            _ => &[],
        }
    }
}

impl ErrorResponse for UpgradeError {
    fn status(&self) -> u16 {
        UpgradeError::status(self)
    }
    fn reason(&self) -> &'static str {
        UpgradeError::reason(self)
    }
    fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        UpgradeError::extra_headers(self)
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for UpgradeError {}

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
    /// `Sec-WebSocket-Extensions`, every offer in the client's order of
    /// preference (RFC 6455 9.1); empty when the header is absent or does
    /// not parse. An extension is declined by not naming it in the answer;
    /// only permessage-deflate, with `--deflate`, is ever accepted.
    pub offered_extensions: Vec<ExtensionOffer<'a>>,
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
pub fn validate_upgrade<'a>(req: &Request<'a>) -> Result<UpgradeRequest<'a>, UpgradeError> {
    // RFC 6455 4.2.1, item 1: "An HTTP/1.1 or higher GET request".
    if req.method != "GET" {
        return Err(UpgradeError::NotGet);
    }
    // Item 3: "An |Upgrade| header field containing the value "websocket",
    // treated as an ASCII case-insensitive value." Checked before the version
    // so that any request that is not an upgrade at all gets the 426 of
    // PROTOCOL.md.
    if !wants_websocket(req) {
        return Err(UpgradeError::NotUpgrade);
    }
    if req.minor_version < 1 {
        return Err(UpgradeError::OldHttpVersion);
    }
    // Item 2: "A |Host| header field containing the server's authority."
    match req.header_count("Host") {
        0 => return Err(UpgradeError::MissingHost),
        1 => {}
        _ => return Err(UpgradeError::DuplicateHost),
    }
    // Item 4: "A |Connection| header field that includes the token
    // "Upgrade", treated as an ASCII case-insensitive value."
    if !req.has_token("Connection", "Upgrade") {
        return Err(UpgradeError::MissingConnectionUpgrade);
    }
    // Item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    // RFC 6455 4.2.2: on a mismatch the server "MUST abort the WebSocket
    // handshake ... and instead send an appropriate HTTP error code (such as
    // 426 Upgrade Required) and a |Sec-WebSocket-Version| header field
    // indicating the version(s) the server is capable of understanding."
    let mut versions = req.header_values("Sec-WebSocket-Version");
    match (versions.next(), versions.next()) {
        (None, _) => return Err(UpgradeError::MissingVersion),
        (Some(_), Some(_)) => return Err(UpgradeError::DuplicateVersion),
        (Some(version), None) if version != WEBSOCKET_VERSION => {
            return Err(UpgradeError::UnsupportedVersion)
        }
        (Some(_), None) => {}
    }
    // Item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded
    // value that, when decoded, is 16 bytes in length." RFC 6455 11.3.1:
    // it "MUST NOT appear more than once in an HTTP request."
    let mut keys = req.header_values("Sec-WebSocket-Key");
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(UpgradeError::MissingKey),
        (Some(_), Some(_)) => return Err(UpgradeError::DuplicateKey),
        (Some(key), None) => key,
    };
    if !is_valid_key(key) {
        return Err(UpgradeError::BadKey);
    }

    Ok(UpgradeRequest {
        key,
        offered_protocols: req.list_values("Sec-WebSocket-Protocol").collect(),
        // RFC 6455 4.2.1, item 7: the Origin header field is optional (only
        // browsers send it); 10.2 leaves its check to the server's policy:
        // see `super::origin::OriginPolicy`.
        origin: req.header("Origin"),
        offered_extensions: parse_extension_offers(req).unwrap_or_default(),
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

/// One extension the client offers in `Sec-WebSocket-Extensions`, with its
/// parameters in the order sent (RFC 6455 9.1), e.g.
/// `permessage-deflate; client_max_window_bits` is the name
/// `permessage-deflate` with the parameter `client_max_window_bits` and no
/// value. Names compare case-insensitively (they are tokens, RFC 9110 5.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer<'a> {
    /// The extension token, as sent.
    pub name: &'a str,
    /// Each `; name[=value]`, the value unquoted: a quoted-string value with
    /// an escape is unescaped into an owned string.
    pub params: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

/// A `Sec-WebSocket-Extensions` header that does not follow RFC 6455 9.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionSyntaxError;

impl fmt::Display for ExtensionSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sec-WebSocket-Extensions does not follow RFC 6455 9.1")
    }
}

impl std::error::Error for ExtensionSyntaxError {}

/// Every `Sec-WebSocket-Extensions` offer of a request, across all its
/// occurrences in order (RFC 9110 5.3), following RFC 6455 9.1:
///
/// ```text
/// Sec-WebSocket-Extensions = extension-list
/// extension-list  = 1#extension
/// extension       = extension-token *( ";" extension-param )
/// extension-token = registered-token
/// registered-token = token
/// extension-param = token [ "=" (token | quoted-string) ]
///     ; When using the quoted-string syntax variant, the value
///     ; after quoted-string unescaping MUST conform to the
///     ; 'token' ABNF.
/// ```
///
/// OWS is allowed around `,`, `;` and `=` and empty list elements are
/// skipped (RFC 9110 5.6.1). One malformed occurrence makes the whole
/// result an error: a comma inside a bad quoted string leaves no reliable
/// boundary between offers.
pub fn parse_extension_offers<'a>(
    req: &Request<'a>,
) -> Result<Vec<ExtensionOffer<'a>>, ExtensionSyntaxError> {
    let mut offers = Vec::new();
    for value in req.header_values("Sec-WebSocket-Extensions") {
        parse_extension_list(value, &mut offers)?;
    }
    Ok(offers)
}

/// A cursor over one header value for [`parse_extension_offers`].
struct ExtensionCursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> ExtensionCursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.pos += 1;
        }
    }

    /// `token = 1*tchar`.
    fn token(&mut self) -> Result<&'a str, ExtensionSyntaxError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        match self.text.get(start..self.pos) {
            Some(token) if !token.is_empty() => Ok(token),
            _ => Err(ExtensionSyntaxError),
        }
    }

    /// `quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE` (RFC 9110
    /// 5.6.4), the cursor on the opening quote; the value unescaped, and
    /// then, as RFC 6455 9.1 requires, a token.
    fn quoted_token(&mut self) -> Result<Cow<'a, str>, ExtensionSyntaxError> {
        self.pos += 1;
        let start = self.pos;
        let mut unescaped: Option<String> = None;
        loop {
            let byte = self.peek().ok_or(ExtensionSyntaxError)?;
            match byte {
                b'"' => break,
                b'\\' => {
                    let escaped = self.text.as_bytes().get(self.pos + 1).copied();
                    let escaped = escaped.ok_or(ExtensionSyntaxError)?;
                    let owned = unescaped.get_or_insert_with(|| {
                        self.text.get(start..self.pos).unwrap_or("").to_owned()
                    });
                    owned.push(char::from(escaped));
                    self.pos += 2;
                }
                _ => {
                    if let Some(owned) = unescaped.as_mut() {
                        owned.push(char::from(byte));
                    }
                    self.pos += 1;
                }
            }
        }
        let raw = self.text.get(start..self.pos).ok_or(ExtensionSyntaxError)?;
        self.pos += 1; // the closing quote
        let value = match unescaped {
            Some(owned) => Cow::Owned(owned),
            None => Cow::Borrowed(raw),
        };
        if value.is_empty() || !value.bytes().all(is_tchar) {
            return Err(ExtensionSyntaxError);
        }
        Ok(value)
    }
}

/// Append the offers of one header value.
fn parse_extension_list<'a>(
    text: &'a str,
    offers: &mut Vec<ExtensionOffer<'a>>,
) -> Result<(), ExtensionSyntaxError> {
    let mut cursor = ExtensionCursor { text, pos: 0 };
    loop {
        cursor.skip_ows();
        match cursor.peek() {
            None => return Ok(()),
            Some(b',') => {
                cursor.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cursor.token()?;
        let mut params = Vec::new();
        loop {
            cursor.skip_ows();
            match cursor.peek() {
                None | Some(b',') => break,
                Some(b';') => {
                    cursor.pos += 1;
                    cursor.skip_ows();
                    let param = cursor.token()?;
                    cursor.skip_ows();
                    let value = if cursor.peek() == Some(b'=') {
                        cursor.pos += 1;
                        cursor.skip_ows();
                        Some(if cursor.peek() == Some(b'"') {
                            cursor.quoted_token()?
                        } else {
                            Cow::Borrowed(cursor.token()?)
                        })
                    } else {
                        None
                    };
                    params.push((param, value));
                }
                Some(_) => return Err(ExtensionSyntaxError),
            }
        }
        offers.push(ExtensionOffer { name, params });
    }
}

/// Append the `101 Switching Protocols` response of RFC 6455 4.2.2, step 5:
/// `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Accept` and,
/// when one was selected, `Sec-WebSocket-Protocol`; no extension accepted.
pub fn write_switching_protocols(out: &mut Vec<u8>, accept: &str, protocol: Option<&str>) {
    write_switching_protocols_with(out, accept, protocol, None);
}

/// [`write_switching_protocols`], with the extension the server accepted
/// (RFC 6455 9.1: `Sec-WebSocket-Extensions`, e.g. what
/// `deflate::Agreement::response` writes); `None` declines every offer.
pub fn write_switching_protocols_with(
    out: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    push_status_line(out, 101);
    push_header(out, "Upgrade", "websocket");
    push_header(out, "Connection", "Upgrade");
    push_header(out, "Sec-WebSocket-Accept", accept);
    if let Some(protocol) = protocol {
        push_header(out, "Sec-WebSocket-Protocol", protocol);
    }
    if let Some(extensions) = extensions {
        push_header(out, "Sec-WebSocket-Extensions", extensions);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::tests::{
        complete, minimal_with, CHROMIUM, CHROMIUM_PAGE, CURL, FIREFOX, MINIMAL,
    };
    use crate::protocol::http::{
        parse_request, reason_phrase, write_error_response, Parse, MAX_HEADERS, MAX_REQUEST_HEAD,
    };
    use crate::protocol::origin::OriginPolicy;

    fn upgrade_error(buf: &[u8]) -> UpgradeError {
        match validate_upgrade(&complete(buf)) {
            Err(error) => error,
            Ok(upgrade) => panic!("expected an error, got {upgrade:?}"),
        }
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
                offered_extensions: vec![ExtensionOffer {
                    name: "permessage-deflate",
                    params: vec![("client_max_window_bits", None)],
                }],
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
        assert_eq!(validate_upgrade(&request), Err(UpgradeError::NotUpgrade));
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
        assert_eq!(
            upgrade.offered_extensions,
            vec![ExtensionOffer {
                name: "permessage-deflate",
                params: vec![],
            }]
        );
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
        use UpgradeError::*;
        let key_line = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let version_line = "Sec-WebSocket-Version: 13\r\n";
        let cases: Vec<(Vec<u8>, UpgradeError)> = vec![
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
        use UpgradeError::*;
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
            Some(UpgradeError::BadKey)
        );
        assert_eq!(
            key_error(&BASE64.encode([7u8; 17])),
            Some(UpgradeError::BadKey)
        );
        // The 13-byte "Hello, world!" key of many curl tutorials.
        assert_eq!(
            key_error("SGVsbG8sIHdvcmxkIQ=="),
            Some(UpgradeError::BadKey)
        );
        // 24 characters, but not canonical base64.
        assert_eq!(
            key_error("dGhlIHNhbXBsZSBub25jZR=="),
            Some(UpgradeError::BadKey)
        );
        assert_eq!(
            key_error("dGhlIHNhbXBsZSBub25jZQ"),
            Some(UpgradeError::BadKey)
        );
        assert_eq!(
            key_error("dGhlIHNhbXBsZSBub25jZQ=!"),
            Some(UpgradeError::BadKey)
        );
        assert_eq!(key_error(""), Some(UpgradeError::BadKey));
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
    fn error_response_bytes() {
        let mut out = Vec::new();
        write_error_response(&mut out, &UpgradeError::NotUpgrade);
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

    // --- extension offers (RFC 6455 9.1) -----------------------------------

    /// The offers of MINIMAL with these `Sec-WebSocket-Extensions` lines.
    fn offers(lines: &[&str]) -> Result<Vec<ExtensionOffer<'static>>, ExtensionSyntaxError> {
        let mut extra = String::new();
        for line in lines {
            extra.push_str("Sec-WebSocket-Extensions: ");
            extra.push_str(line);
            extra.push_str("\r\n");
        }
        let buf: &'static [u8] = minimal_with("\r\n\r\n", &format!("\r\n{extra}\r\n")).leak();
        parse_extension_offers(&complete(buf))
    }

    fn offer<'a>(name: &'a str, params: &[(&'a str, Option<&'a str>)]) -> ExtensionOffer<'a> {
        ExtensionOffer {
            name,
            params: params
                .iter()
                .map(|&(param, value)| (param, value.map(Cow::Borrowed)))
                .collect(),
        }
    }

    #[test]
    fn extension_offers_follow_the_rfc_grammar() {
        assert_eq!(offers(&[]), Ok(vec![]));
        // Firefox's, Chromium's and RFC 7692 section 7's offers.
        assert_eq!(
            offers(&["permessage-deflate"]),
            Ok(vec![offer("permessage-deflate", &[])])
        );
        assert_eq!(
            offers(&["permessage-deflate; client_max_window_bits"]),
            Ok(vec![offer(
                "permessage-deflate",
                &[("client_max_window_bits", None)]
            )])
        );
        assert_eq!(
            offers(&[
                "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
                 permessage-deflate;client_max_window_bits",
                "x-webkit-deflate-frame",
            ]),
            Ok(vec![
                offer(
                    "permessage-deflate",
                    &[
                        ("client_max_window_bits", None),
                        ("server_max_window_bits", Some("10"))
                    ]
                ),
                offer("permessage-deflate", &[("client_max_window_bits", None)]),
                offer("x-webkit-deflate-frame", &[]),
            ])
        );
        // OWS around every separator, empty list elements.
        assert_eq!(
            offers(&[" , foo \t;\tbar = 1 ;baz ,, qux ,"]),
            Ok(vec![
                offer("foo", &[("bar", Some("1")), ("baz", None)]),
                offer("qux", &[]),
            ])
        );
    }

    #[test]
    fn quoted_extension_values_are_unquoted_and_must_be_tokens() {
        assert_eq!(
            offers(&[r#"permessage-deflate; server_max_window_bits="10""#]),
            Ok(vec![offer(
                "permessage-deflate",
                &[("server_max_window_bits", Some("10"))]
            )])
        );
        // An escape gives an owned value equal to the token it stands for.
        let escaped = offers(&[r#"a; b="1\0""#]).unwrap();
        assert_eq!(escaped, vec![offer("a", &[("b", Some("10"))])]);
        assert!(matches!(escaped[0].params[0].1, Some(Cow::Owned(_))));
        // RFC 6455 9.1: after unescaping, the value "MUST conform to the
        // 'token' ABNF".
        for bad in [
            r#"a; b="""#,
            r#"a; b="x y""#,
            r#"a; b="x,y""#,
            r#"a; b="x"#,
            r#"a; b="x\"#,
        ] {
            assert_eq!(offers(&[bad]), Err(ExtensionSyntaxError), "{bad}");
        }
    }

    #[test]
    fn malformed_extension_offers_are_errors() {
        for bad in [
            "; foo",
            "foo;",
            "foo; =1",
            "foo; bar=",
            "foo bar",
            "foo; bar baz",
            "foo; bar=1 2",
            "f(o)o",
            "foo; bar==1",
        ] {
            assert_eq!(offers(&[bad]), Err(ExtensionSyntaxError), "{bad}");
        }
        // One bad occurrence spoils all of them.
        assert_eq!(offers(&["foo", "bar;"]), Err(ExtensionSyntaxError));
    }

    #[test]
    fn malformed_extension_offers_do_not_fail_the_handshake() {
        let buf = minimal_with(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate; =\r\n\r\n",
        );
        let upgrade = validate_upgrade(&complete(&buf)).unwrap();
        assert!(upgrade.offered_extensions.is_empty());
    }

    #[test]
    fn every_error_has_a_status_with_a_phrase_and_a_reason() {
        use UpgradeError::*;
        for error in [
            NotGet,
            OldHttpVersion,
            MissingHost,
            DuplicateHost,
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
                let _ = OriginPolicy::new(["http://a"]).map(|policy| policy.allows(upgrade.origin));
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
