//! The SocketBox message model: decoding what a client sends, encoding what
//! the server sends (PROTOCOL.md "Messages").
//!
//! Client messages are read with the lax parser of [`super::laxjson`], so the
//! seed client's `{'code':10016}` works; server messages are always strict
//! JSON, in the envelope `{"code":C,"body":B,"extend":E}` with absent parts
//! left out. Everything here is pure: no I/O, no clock, no shared state.
//!
//! Choices where PROTOCOL.md is silent:
//! - `code` must be a JSON number (a string `"10000"` is 40000). JavaScript
//!   has one number type, so `10000`, `10000.0` and `1e4` are all the code
//!   10000; a number that is no integer (`10000.5`) or lies beyond `i64` is an
//!   unknown code, 40001. Ids follow the same rule (`42.0` is the id `"42"`).
//! - A `data` string is decoded once, when it parses as a strict JSON object
//!   or array ([`super::laxjson::parse_strict`]): the seed and `socketbox.js`
//!   both put `JSON.stringify` output there, and strictness keeps a user's
//!   text such as `['a']` from being turned into an array.
//! - A message nests at most [`laxjson::MAX_DEPTH`] arrays and objects, its
//!   own braces included; deeper is 40000, since the parser refuses the
//!   text before any field is read. A `data` string holding JSON is a text
//!   of its own, and one too deep stays a string. Decoded messages hold
//!   `data` in a [`StackSafeValue`] and [`MessageTemplate`] writes it with
//!   [`laxjson::write`], so no depth a client may send costs stack.
//! - BROADCAST without `data` broadcasts `null`.
//! - AUTH's `token` may be absent or `null`; anything but a string is 40002.
//! - Other fields of a request are ignored.
//! - In a MESSAGE body `seq` comes last, so that the part shared by every
//!   recipient of a broadcast is serialized once ([`MessageTemplate`]). JSON
//!   key order carries no meaning, and clients must not rely on it.

use super::laxjson::{self, LaxJsonError, StackSafeValue};
use serde_json::{Map, Number, Value};
use std::fmt::{self, Write as _};

/// Every code of the protocol, as PROTOCOL.md numbers them.
pub mod codes {
    use crate::protocol::CloseCode;

    /// Client AUTH: bind the connection to a user id.
    pub const AUTH: i64 = 10000;
    /// Client PEER text message (the seed's `MessageCode.MESS_CODE`).
    pub const PEER: i64 = 10002;
    /// Client BROADCAST to every other authenticated session.
    pub const BROADCAST: i64 = 10003;
    /// Client PRESENCE: subscribe to the online list (20004, then 20005s).
    pub const PRESENCE: i64 = 10004;
    /// Client PING: the server answers [`SERVER_PONG`].
    pub const PING: i64 = 10015;
    /// Client PONG: the answer to [`SERVER_PING`]; no reply.
    pub const PONG: i64 = 10016;

    /// Server PING (`1<<8|220`), sent every heartbeat interval.
    pub const SERVER_PING: i64 = (1 << 8) | 220;
    /// Server PONG (`2<<8|220`), the answer to a client PING.
    pub const SERVER_PONG: i64 = (2 << 8) | 220;
    /// Server SYSTEM (`3<<8|220`): `extend` is `{"code":X,"mess":M}` with an X of `SYSTEM_*`.
    pub const SERVER_SYSTEM: i64 = (3 << 8) | 220;
    /// Server ERROR (`4<<8|220`): `extend` is `{"code":X,"mess":text}` with an X of `ERROR_*`.
    pub const SERVER_ERROR: i64 = (4 << 8) | 220;
    /// Server AUTH (`5<<8|220`): a PEER or BROADCAST before authenticating was dropped.
    pub const SERVER_AUTH: i64 = (5 << 8) | 220;
    /// Server MESSAGE (`6<<8|220`): `body` carries a delivered message.
    pub const SERVER_MESSAGE: i64 = (6 << 8) | 220;

    /// SYSTEM 20001: number of distinct authenticated user ids.
    pub const SYSTEM_ONLINE_COUNT: i64 = 20001;
    /// SYSTEM 20002: the result of an AUTH, `true` or `false`.
    pub const SYSTEM_AUTH_RESULT: i64 = 20002;
    /// SYSTEM 20003: a notice text from the server.
    pub const SYSTEM_NOTICE: i64 = 20003;
    /// SYSTEM: the whole online list, the answer to [`PRESENCE`].
    pub const SYSTEM_ONLINE_LIST: i64 = 20004;
    /// SYSTEM: the net change to the online list since the last 20004 or 20005.
    pub const SYSTEM_ONLINE_CHANGES: i64 = 20005;

    /// MESSAGE type 30001: a PEER message (`MessageCode.PEER_MESSAGE`).
    pub const MESSAGE_PEER: i64 = 30001;
    /// MESSAGE type 30002: a BROADCAST message (`MessageCode.BROADCAST_MESSAGE`).
    pub const MESSAGE_BROADCAST: i64 = 30002;
    /// MESSAGE type 30003: a server push from `/api/push` or `/api/broadcast`.
    pub const MESSAGE_PUSH: i64 = 30003;

    /// ERROR 40000: not JSON, not an object, or no numeric `code`.
    pub const ERROR_BAD_REQUEST: i64 = 40000;
    /// ERROR 40001: unknown code.
    pub const ERROR_UNKNOWN_CODE: i64 = 40001;
    /// ERROR 40002: a required field missing or invalid.
    pub const ERROR_INVALID_FIELD: i64 = 40002;
    /// ERROR: the online list is over `--presence-list-max`.
    pub const ERROR_LIST_TOO_LONG: i64 = 40003;
    /// 40100: authentication required (sent in a [`SERVER_AUTH`] message).
    pub const ERROR_AUTH_REQUIRED: i64 = 40100;
    /// ERROR 40101: authentication rejected (fatal: close 1008 follows).
    pub const ERROR_AUTH_REJECTED: i64 = 40101;
    /// ERROR 40400: the recipient is not online.
    pub const ERROR_NOT_ONLINE: i64 = 40400;
    /// ERROR 40900: a second AUTH with another id on a bound connection.
    pub const ERROR_ID_CONFLICT: i64 = 40900;
    /// ERROR 41300: message over the `/ws` limit (fatal: close 1009 follows).
    pub const ERROR_TOO_LARGE: i64 = 41300;
    /// ERROR 42900: over `--rate-limit`; the message was dropped.
    pub const ERROR_RATE_LIMITED: i64 = 42900;
    /// Not delivered: another node could not be reached (several nodes).
    pub const ERROR_NODE_UNREACHABLE: i64 = 50300;

    /// WebSocket close 4000 (in RFC 6455 7.4.2's 4000-4999, "reserved for
    /// private use"): no sign of life for two heartbeat intervals plus grace.
    pub const CLOSE_HEARTBEAT_TIMEOUT: CloseCode = CloseCode(4000);
    /// WebSocket close 4001: no AUTH within `--auth-timeout`.
    pub const CLOSE_AUTH_TIMEOUT: CloseCode = CloseCode(4001);
}

/// A user id: 1 to [`UserId::MAX_LEN`] characters of `A-Z a-z 0-9 _ . @ -`.
///
/// On the wire it is a JSON string, or a non-negative integer taken as its
/// decimal string (so `42` and `"42"` are one user, and `"042"` another).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// The longest id, in characters.
    pub const MAX_LEN: usize = 64;

    /// The id spelled `text`, if it is a valid id.
    pub fn new(text: &str) -> Option<UserId> {
        let valid = (1..=Self::MAX_LEN).contains(&text.len())
            && text.bytes().all(|byte| {
                byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'@' | b'-')
            });
        valid.then(|| UserId(text.to_owned()))
    }

    /// The id a JSON value names: a valid id string, or a non-negative integer.
    pub fn parse(value: &Value) -> Option<UserId> {
        match value {
            Value::String(text) => UserId::new(text),
            Value::Number(number) => {
                let integer = u64::try_from(integer_value(number)?).ok()?;
                UserId::new(&integer.to_string())
            }
            _ => None,
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The integer a JSON number stands for, read as JavaScript reads numbers:
/// `10000`, `10000.0` and `1e4` are one number. `None` for a fraction, or
/// past 2^64 in size.
fn integer_value(number: &Number) -> Option<i128> {
    if let Some(integer) = number.as_i64() {
        return Some(integer.into());
    }
    if let Some(integer) = number.as_u64() {
        return Some(integer.into());
    }
    let float = number.as_f64()?;
    const TWO_TO_THE_64: f64 = 18_446_744_073_709_551_616.0;
    // An integral f64 below 2^64 in size converts to i128 exactly.
    (float.fract() == 0.0 && float.abs() < TWO_TO_THE_64).then_some(float as i128)
}

/// A request a client sent on `/ws`.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// 10000: bind the connection to `id`.
    Auth {
        /// The user id.
        id: UserId,
        /// The token, required when the server has `--auth-secret`.
        token: Option<String>,
    },
    /// 10002: a message for every session of user `to`.
    Peer {
        /// The recipient, read from `data.to`.
        to: UserId,
        /// The whole `data` object, `to` included, as delivered to the recipient.
        data: StackSafeValue,
    },
    /// 10003: a message for every other authenticated session.
    Broadcast {
        /// Any JSON value (`null` when the request has no `data`).
        data: StackSafeValue,
    },
    /// 10004: subscribe to the online list.
    Presence,
    /// 10015: the client asks for a PONG.
    Ping,
    /// 10016: the client answers a PING.
    Pong,
}

/// Why a request was refused; each maps to an ERROR code of PROTOCOL.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// 40000: the text is not (lax) JSON, or nests deeper than
    /// [`laxjson::MAX_DEPTH`] ([`LaxJsonError::TooDeep`]).
    NotJson(LaxJsonError),
    /// 40000: JSON, but not an object.
    NotObject,
    /// 40000: no `code`, or a `code` that is not a JSON number.
    NoCode,
    /// 40001: an integer `code` the protocol does not define.
    UnknownCode(i64),
    /// 40001: a numeric `code` that is no integer (`10000.5`) or lies beyond `i64`.
    NonIntegerCode(Number),
    /// 40002: a required field missing or invalid; names the field (`"data"`, `"data.to"`).
    InvalidField(&'static str),
    /// 40101: an AUTH whose `id` is missing or malformed. PROTOCOL.md: it "is a
    /// rejected AUTH (20002 `false`, 40101, Close 1008)", secret or not.
    InvalidAuthId,
}

impl RequestError {
    /// The ERROR code (`extend.code` of a 1244 message) for this refusal.
    pub fn error_code(&self) -> i64 {
        match self {
            RequestError::NotJson(_) | RequestError::NotObject | RequestError::NoCode => {
                codes::ERROR_BAD_REQUEST
            }
            RequestError::UnknownCode(_) | RequestError::NonIntegerCode(_) => {
                codes::ERROR_UNKNOWN_CODE
            }
            RequestError::InvalidField(_) => codes::ERROR_INVALID_FIELD,
            RequestError::InvalidAuthId => codes::ERROR_AUTH_REJECTED,
        }
    }

    /// A text a person can read, for `extend.mess`.
    pub fn message(&self) -> String {
        match self {
            RequestError::NotJson(error @ LaxJsonError::TooDeep { .. }) => {
                format!("refused: {error}")
            }
            RequestError::NotJson(error) => format!("not JSON: {error}"),
            RequestError::NotObject => "a message must be a JSON object".to_owned(),
            RequestError::NoCode => "a message needs a numeric \"code\"".to_owned(),
            RequestError::UnknownCode(code) => format!("unknown code {code}"),
            RequestError::NonIntegerCode(code) => {
                format!("unknown code {code}: codes are integers")
            }
            RequestError::InvalidField(field @ "data.to") => {
                format!("missing or invalid \"{field}\": {ID_RULE}")
            }
            RequestError::InvalidAuthId => format!("missing or invalid \"id\": {ID_RULE}"),
            RequestError::InvalidField("data") => {
                "missing or invalid \"data\": a PEER needs an object with \"to\"".to_owned()
            }
            RequestError::InvalidField(field) => format!("missing or invalid \"{field}\""),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for RequestError {}

/// What a well-formed id is, for refusals a person reads.
const ID_RULE: &str =
    "an id is 1 to 64 characters of A-Z a-z 0-9 _ . @ - or a non-negative integer";

/// Decodes one text message from a client.
///
/// The message is held as a [`StackSafeValue`], so that whatever of it is
/// left when this returns (all of it, on a refusal) is dropped without
/// recursion.
pub fn decode(text: &str) -> Result<ClientMessage, RequestError> {
    let mut value = StackSafeValue::new(laxjson::parse(text).map_err(RequestError::NotJson)?);
    let Value::Object(request) = &mut *value else {
        return Err(RequestError::NotObject);
    };
    match request_code(request.get("code"))? {
        codes::AUTH => decode_auth(request),
        codes::PEER => decode_peer(request.remove("data")),
        codes::BROADCAST => Ok(ClientMessage::Broadcast {
            data: decode_data(request.remove("data")),
        }),
        codes::PRESENCE => Ok(ClientMessage::Presence),
        codes::PING => Ok(ClientMessage::Ping),
        codes::PONG => Ok(ClientMessage::Pong),
        unknown => Err(RequestError::UnknownCode(unknown)),
    }
}

/// PROTOCOL.md: "A `code` must be a JSON number."
fn request_code(code: Option<&Value>) -> Result<i64, RequestError> {
    let Some(Value::Number(number)) = code else {
        return Err(RequestError::NoCode);
    };
    integer_value(number)
        .and_then(|integer| i64::try_from(integer).ok())
        .ok_or_else(|| RequestError::NonIntegerCode(number.clone()))
}

fn decode_auth(request: &Map<String, Value>) -> Result<ClientMessage, RequestError> {
    let id = request
        .get("id")
        .and_then(UserId::parse)
        .ok_or(RequestError::InvalidAuthId)?;
    let token = match request.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => return Err(RequestError::InvalidField("token")),
    };
    Ok(ClientMessage::Auth { id, token })
}

fn decode_peer(data: Option<Value>) -> Result<ClientMessage, RequestError> {
    let data = decode_data(data);
    let Value::Object(fields) = &*data else {
        return Err(RequestError::InvalidField("data"));
    };
    let to = fields
        .get("to")
        .and_then(UserId::parse)
        .ok_or(RequestError::InvalidField("data.to"))?;
    Ok(ClientMessage::Peer { to, data })
}

/// PROTOCOL.md: "a `data` string, however quoted, is decoded when it parses
/// as a JSON object or array, and kept as a string otherwise."
fn decode_data(data: Option<Value>) -> StackSafeValue {
    let data = match data {
        None => Value::Null,
        Some(Value::String(text)) => match laxjson::parse_strict(&text) {
            Ok(decoded @ (Value::Object(_) | Value::Array(_))) => decoded,
            _ => Value::String(text),
        },
        Some(other) => other,
    };
    StackSafeValue::new(data)
}

/// `{"code":C,"extend":{"code":X,"mess":M}}` with `mess` already serialized.
fn with_extend(code: i64, extend_code: i64, mess_json: &str) -> String {
    format!("{{\"code\":{code},\"extend\":{{\"code\":{extend_code},\"mess\":{mess_json}}}}}")
}

/// A JSON string literal for `text`, escaped by `serde_json`.
fn json_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// Server PING: `{"code":476}`.
pub fn ping() -> String {
    format!("{{\"code\":{}}}", codes::SERVER_PING)
}

/// Server PONG: `{"code":732}`.
pub fn pong() -> String {
    format!("{{\"code\":{}}}", codes::SERVER_PONG)
}

/// Server SYSTEM: `{"code":988,"extend":{"code":CODE,"mess":MESS}}`, with
/// CODE one of `codes::SYSTEM_*`.
pub fn system(code: i64, mess: Value) -> String {
    with_extend(codes::SERVER_SYSTEM, code, &mess.to_string())
}

/// Server ERROR: `{"code":1244,"extend":{"code":CODE,"mess":"MESS"}}`, with
/// CODE one of `codes::ERROR_*`.
pub fn error(code: i64, mess: &str) -> String {
    with_extend(codes::SERVER_ERROR, code, &json_string(mess))
}

/// The ERROR message for a refused request.
pub fn request_error(refusal: &RequestError) -> String {
    error(refusal.error_code(), &refusal.message())
}

/// Server AUTH: `{"code":1500,"extend":{"code":40100,"mess":...}}`, the answer
/// to a PEER or BROADCAST from a connection that has not authenticated.
pub fn auth_required() -> String {
    with_extend(
        codes::SERVER_AUTH,
        codes::ERROR_AUTH_REQUIRED,
        &json_string("authenticate first: send {\"code\":10000,\"id\":...}"),
    )
}

/// A MESSAGE (1756) serialized once for all its recipients, waiting for each
/// recipient's `seq`.
///
/// The body is `{"type","from","to","data","time","seq"}`; only `seq`
/// differs between the sessions a broadcast reaches, so it is put last and
/// [`MessageTemplate::render`] is a copy of the shared prefix, the digits,
/// and `}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate {
    /// Everything up to and including `"seq":`.
    prefix: String,
    /// `--deflate`: the prefix compressed once for every recipient, with
    /// the window bits it was compressed for.
    #[cfg(feature = "deflate")]
    deflated_prefix: std::sync::OnceLock<(u8, Vec<u8>)>,
}

impl MessageTemplate {
    /// The closing of the body and of the envelope after the `seq` digits.
    const SUFFIX: &'static str = "}}";

    /// Serializes a MESSAGE of type `kind` (one of `codes::MESSAGE_*`); a
    /// missing `from` or `to` is `null`; `time_ms` is unix time in milliseconds.
    pub fn new(
        kind: i64,
        from: Option<&UserId>,
        to: Option<&UserId>,
        data: &Value,
        time_ms: u64,
    ) -> Self {
        let id_json = |id: Option<&UserId>| {
            id.map_or_else(|| "null".to_owned(), |id| json_string(id.as_str()))
        };
        let mut prefix = format!(
            "{{\"code\":{},\"body\":{{\"type\":{kind},\"from\":{},\"to\":{},\"data\":",
            codes::SERVER_MESSAGE,
            id_json(from),
            id_json(to),
        );
        // Without recursion: `data` may nest as deep as a client may send.
        laxjson::write(data, &mut prefix);
        // Writing to a `String` cannot fail.
        let _ = write!(prefix, ",\"time\":{time_ms},\"seq\":");
        MessageTemplate {
            prefix,
            #[cfg(feature = "deflate")]
            deflated_prefix: std::sync::OnceLock::new(),
        }
    }

    /// The prefix as the first piece of a compressed message
    /// (`crate::protocol::deflate::compress_segment`), compressed once for
    /// all recipients that use `window_bits`.
    #[cfg(feature = "deflate")]
    pub fn deflated_prefix(&self, window_bits: u8) -> std::borrow::Cow<'_, [u8]> {
        use crate::protocol::deflate::compress_segment;
        let (bits, bytes) = self.deflated_prefix.get_or_init(|| {
            (
                window_bits,
                compress_segment(window_bits, self.prefix(), false),
            )
        });
        if *bits == window_bits {
            std::borrow::Cow::Borrowed(bytes)
        } else {
            std::borrow::Cow::Owned(compress_segment(window_bits, self.prefix(), false))
        }
    }

    /// A template from the [`Self::prefix`] another node rendered.
    #[cfg(feature = "redis")]
    pub fn from_prefix(prefix: String) -> Self {
        MessageTemplate {
            prefix,
            #[cfg(feature = "deflate")]
            deflated_prefix: std::sync::OnceLock::new(),
        }
    }

    /// The shared bytes: everything before the `seq` digits.
    pub fn prefix(&self) -> &[u8] {
        self.prefix.as_bytes()
    }

    /// Append the bytes that follow [`Self::prefix`] for `seq`: the digits
    /// and the closing braces. Together they make [`Self::render`].
    pub fn write_seq_and_tail(&self, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(Self::SUFFIX.as_bytes());
    }

    /// The size of the message without its `seq` digits.
    pub fn len_without_seq(&self) -> usize {
        self.prefix.len() + Self::SUFFIX.len()
    }

    /// The message for the recipient whose next `seq` is `seq`.
    pub fn render(&self, seq: u64) -> String {
        let seq = seq.to_string();
        let mut out = String::with_capacity(self.prefix.len() + seq.len() + Self::SUFFIX.len());
        out.push_str(&self.prefix);
        out.push_str(&seq);
        out.push_str(Self::SUFFIX);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(text: &str) -> UserId {
        UserId::new(text).expect("valid id")
    }

    fn peer(to: &str, data: Value) -> ClientMessage {
        ClientMessage::Peer {
            to: id(to),
            data: data.into(),
        }
    }

    #[test]
    fn server_codes_follow_the_seed_formula() {
        assert_eq!(
            [
                codes::SERVER_PING,
                codes::SERVER_PONG,
                codes::SERVER_SYSTEM,
                codes::SERVER_ERROR,
                codes::SERVER_AUTH,
                codes::SERVER_MESSAGE
            ],
            [476, 732, 988, 1244, 1500, 1756]
        );
    }

    #[test]
    fn decodes_every_message_the_seed_client_sends() {
        // pingInvake
        assert_eq!(decode("{'code':10016}"), Ok(ClientMessage::Pong));
        // openInvake: JSON.stringify({code: 10000, id: fromId})
        assert_eq!(
            decode(r#"{"code":10000,"id":"alice"}"#),
            Ok(ClientMessage::Auth {
                id: id("alice"),
                token: None
            })
        );
        assert_eq!(
            decode(r#"{"code":10000,"id":42}"#),
            Ok(ClientMessage::Auth {
                id: id("42"),
                token: None
            })
        );
        // sendPeerTextMessage({to: "bob", text: 'hi "x"'})
        assert_eq!(
            decode(r#"{'code':10002,'data':'{"to":"bob","text":"hi \"x\""}'}"#),
            Ok(peer("bob", json!({"to": "bob", "text": "hi \"x\""})))
        );
        // sendPeerTextMessage({to: 7, text: "C:\\dir\n你好"})
        assert_eq!(
            decode(r#"{'code':10002,'data':'{"to":7,"text":"C:\\dir\n你好"}'}"#),
            Ok(peer("7", json!({"to": 7, "text": "C:\\dir\n你好"})))
        );
    }

    #[test]
    fn the_seed_apostrophe_bug_is_a_bad_request() {
        let refusal = decode(r#"{'code':10002,'data':'{"to":"bob","text":"it's"}'}"#)
            .expect_err("the apostrophe closes the single-quoted string");
        assert!(matches!(refusal, RequestError::NotJson(_)));
        assert_eq!(refusal.error_code(), 40000);
    }

    #[test]
    fn decodes_what_socketbox_js_sends_in_strict_json() {
        assert_eq!(
            decode(r#"{"code":10000,"id":"alice","token":"1.ab"}"#),
            Ok(ClientMessage::Auth {
                id: id("alice"),
                token: Some("1.ab".to_owned())
            })
        );
        assert_eq!(
            decode(r#"{"code":10002,"data":{"to":"bob","text":"it's"}}"#),
            Ok(peer("bob", json!({"to": "bob", "text": "it's"})))
        );
        assert_eq!(
            decode(r#"{"code":10003,"data":{"text":"hello"}}"#),
            Ok(ClientMessage::Broadcast {
                data: json!({"text": "hello"}).into()
            })
        );
        assert_eq!(decode(r#"{"code":10015}"#), Ok(ClientMessage::Ping));
        assert_eq!(decode(r#" {"code":10016} "#), Ok(ClientMessage::Pong));
    }

    #[test]
    fn code_must_be_a_json_number() {
        let cases = [
            ("hello", 40000),
            ("", 40000),
            ("{'code':10016", 40000),
            ("[10015]", 40000),
            ("10015", 40000),
            ("'{\"code\":10015}'", 40000),
            ("null", 40000),
            ("{}", 40000),
            (r#"{"id":"alice"}"#, 40000),
            (r#"{"code":"10000","id":"alice"}"#, 40000),
            (r#"{"code":null}"#, 40000),
            (r#"{"code":[10015]}"#, 40000),
            (r#"{"code":12345}"#, 40001),
            (r#"{"code":-1}"#, 40001),
            (r#"{"code":0}"#, 40001),
            (r#"{"code":10000.5}"#, 40001),
            (r#"{"code":1e300}"#, 40001),
            (r#"{"code":18446744073709551615}"#, 40001),
        ];
        for (text, error_code) in cases {
            let refusal = decode(text).expect_err(text);
            assert_eq!(refusal.error_code(), error_code, "{text}");
        }
        assert_eq!(
            decode(r#"{"code":12345}"#),
            Err(RequestError::UnknownCode(12345))
        );
        assert_eq!(decode("[1]"), Err(RequestError::NotObject));
        assert_eq!(decode("{'code':'10016'}"), Err(RequestError::NoCode));
    }

    #[test]
    fn too_deep_is_a_bad_request_that_says_why() {
        let limit = laxjson::MAX_DEPTH;
        let deepest = format!(
            "{{\"code\":10003,\"data\":{}1{}}}",
            "[".repeat(limit - 1),
            "]".repeat(limit - 1)
        );
        assert!(matches!(
            decode(&deepest),
            Ok(ClientMessage::Broadcast { .. })
        ));
        let over = format!(
            "{{\"code\":10003,\"data\":{}1{}}}",
            "[".repeat(limit),
            "]".repeat(limit)
        );
        let refusal = decode(&over).expect_err("one level too deep");
        assert_eq!(refusal.error_code(), codes::ERROR_BAD_REQUEST);
        assert_eq!(
            refusal.message(),
            // 21 bytes of envelope, then the 64th bracket opens level 65.
            format!("refused: more than {limit} nested arrays or objects at byte 84")
        );
        // Too deep anywhere, even in a field nobody reads.
        let junk = format!("{{\"code\":10015,\"junk\":{}", "{\"a\":".repeat(100_000));
        assert_eq!(decode(&junk).map_err(|r| r.error_code()), Err(40000));
        // A data string is a text of its own: 64 levels in it are decoded,
        // 65 stay a string.
        let text_at = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let decoded = decode(&json!({"code": 10003, "data": text_at(limit)}).to_string());
        assert!(matches!(decoded, Ok(ClientMessage::Broadcast { data }) if data.is_array()));
        assert_eq!(
            decode(&json!({"code": 10003, "data": text_at(limit + 1)}).to_string()),
            Ok(ClientMessage::Broadcast {
                data: json!(text_at(limit + 1)).into()
            })
        );
    }

    #[test]
    fn the_deepest_message_is_decoded_and_written_on_a_small_stack() {
        // A debug build's serde_json needed about 60 KiB to drop these, and
        // 50 to 80 KiB to write them; 24 KiB asked gives a 28 KiB stack.
        let handler = std::thread::Builder::new().stack_size(24 * 1024);
        let handler = handler.spawn(|| {
            let x = format!(
                "{}1{}",
                "{'k':".repeat(laxjson::MAX_DEPTH - 2),
                "}".repeat(laxjson::MAX_DEPTH - 2)
            );
            let text = format!("{{'code':10002,'data':{{'to':'bob','x':{x}}}}}");
            let Ok(ClientMessage::Peer { to, data }) = decode(&text) else {
                return Err("the deepest PEER decodes".to_owned());
            };
            let template = MessageTemplate::new(codes::MESSAGE_PEER, None, Some(&to), &data, 1);
            Ok(template.render(1).len())
        });
        let rendered = handler.expect("spawn").join().expect("no panic");
        assert!(rendered.is_ok_and(|length| length > 5 * laxjson::MAX_DEPTH));
    }

    #[test]
    fn an_integral_code_may_be_written_as_a_float() {
        assert_eq!(decode(r#"{"code":1.0016e4}"#), Ok(ClientMessage::Pong));
        assert_eq!(decode(r#"{"code":10015.0}"#), Ok(ClientMessage::Ping));
    }

    #[test]
    fn auth_id_rules() {
        let accepted = [
            (r#""alice""#, "alice"),
            (r#""A-z_0.9@x""#, "A-z_0.9@x"),
            ("'bob'", "bob"),
            ("0", "0"),
            ("42", "42"),
            ("42.0", "42"),
            (r#""042""#, "042"),
            ("18446744073709551615", "18446744073709551615"),
        ];
        for (id_json, expected) in accepted {
            let text = format!("{{\"code\":10000,\"id\":{id_json}}}");
            assert_eq!(
                decode(&text),
                Ok(ClientMessage::Auth {
                    id: id(expected),
                    token: None
                }),
                "{text}"
            );
        }
        let max = "a".repeat(64);
        assert!(decode(&format!("{{\"code\":10000,\"id\":\"{max}\"}}")).is_ok());

        let too_long = format!("\"{}\"", "a".repeat(65));
        let refused = [
            "",
            r#","id":"""#,
            r#","id":"a b""#,
            r#","id":"a/b""#,
            r#","id":"ü""#,
            r#","id":"a\u0000""#,
            r#","id":-1"#,
            r#","id":1.5"#,
            r#","id":1e20"#,
            r#","id":true"#,
            r#","id":null"#,
            r#","id":["a"]"#,
            r#","id":{"a":1}"#,
        ];
        for rest in refused {
            let text = format!("{{\"code\":10000{rest}}}");
            assert_eq!(decode(&text), Err(RequestError::InvalidAuthId), "{text}");
        }
        let text = format!("{{\"code\":10000,\"id\":{too_long}}}");
        assert_eq!(decode(&text), Err(RequestError::InvalidAuthId));
    }

    #[test]
    fn auth_token_rules() {
        assert_eq!(
            decode(r#"{"code":10000,"id":"a","token":null}"#),
            Ok(ClientMessage::Auth {
                id: id("a"),
                token: None
            })
        );
        assert_eq!(
            decode("{'code':10000,'id':'a','token':'5.ff'}"),
            Ok(ClientMessage::Auth {
                id: id("a"),
                token: Some("5.ff".to_owned())
            })
        );
        for token in ["5", "true", "[\"x\"]", "{}"] {
            let text = format!("{{\"code\":10000,\"id\":\"a\",\"token\":{token}}}");
            assert_eq!(decode(&text), Err(RequestError::InvalidField("token")));
        }
    }

    #[test]
    fn peer_rules() {
        let cases = [
            (r#"{"code":10002}"#, RequestError::InvalidField("data")),
            (
                r#"{"code":10002,"data":null}"#,
                RequestError::InvalidField("data"),
            ),
            (
                r#"{"code":10002,"data":"hello"}"#,
                RequestError::InvalidField("data"),
            ),
            (
                r#"{"code":10002,"data":"[\"bob\"]"}"#,
                RequestError::InvalidField("data"),
            ),
            (
                r#"{"code":10002,"data":["bob"]}"#,
                RequestError::InvalidField("data"),
            ),
            (
                r#"{"code":10002,"data":7}"#,
                RequestError::InvalidField("data"),
            ),
            (
                r#"{"code":10002,"data":{"text":"x"}}"#,
                RequestError::InvalidField("data.to"),
            ),
            (
                r#"{"code":10002,"data":{"to":""}}"#,
                RequestError::InvalidField("data.to"),
            ),
            (
                r#"{"code":10002,"data":{"to":-3}}"#,
                RequestError::InvalidField("data.to"),
            ),
            (
                r#"{"code":10002,"data":{"to":null}}"#,
                RequestError::InvalidField("data.to"),
            ),
            (
                r#"{"code":10002,"to":"bob","data":{"text":"x"}}"#,
                RequestError::InvalidField("data.to"),
            ),
            (
                "{'code':10002,'data':'{\"to\":\"bob\"'}",
                RequestError::InvalidField("data"),
            ),
            (
                "{'code':10002,'data':\"{'to':'bob'}\"}",
                RequestError::InvalidField("data"),
            ),
        ];
        for (text, refusal) in cases {
            assert_eq!(decode(text), Err(refusal.clone()), "{text}");
            assert_eq!(refusal.error_code(), 40002);
        }
        assert_eq!(
            decode(r#"{"code":10002,"data":"{\"to\":\"bob\",\"n\":1}"}"#),
            Ok(peer("bob", json!({"to": "bob", "n": 1})))
        );
        assert_eq!(
            decode(r#"{"code":10002,"data":{"to":12,"extra":[1,{"x":null}]},"ignored":1}"#),
            Ok(peer("12", json!({"to": 12, "extra": [1, {"x": null}]})))
        );
    }

    #[test]
    fn broadcast_data_rules() {
        let cases = [
            (r#"{"code":10003}"#, Value::Null),
            (r#"{"code":10003,"data":null}"#, Value::Null),
            (r#"{"code":10003,"data":"hi"}"#, json!("hi")),
            (r#"{"code":10003,"data":"42"}"#, json!("42")),
            (r#"{"code":10003,"data":"{bad"}"#, json!("{bad")),
            ("{'code':10003,'data':\"['a']\"}", json!("['a']")),
            (r#"{"code":10003,"data":"[1,\"a\"]"}"#, json!([1, "a"])),
            ("{'code':10003,'data':'{\"k\":\"v\"}'}", json!({"k": "v"})),
            (
                r#"{"code":10003,"data":"\"{\\\"k\\\":1}\""}"#,
                json!("\"{\\\"k\\\":1}\""),
            ),
            (r#"{"code":10003,"data":3.5}"#, json!(3.5)),
            (r#"{"code":10003,"data":[true]}"#, json!([true])),
        ];
        for (text, data) in cases {
            assert_eq!(
                decode(text),
                Ok(ClientMessage::Broadcast { data: data.into() }),
                "{text}"
            );
        }
    }

    #[test]
    fn refusals_read_well() {
        assert_eq!(
            RequestError::UnknownCode(12345).message(),
            "unknown code 12345"
        );
        assert_eq!(
            decode("{'code':10016").map_err(|refusal| refusal.message()),
            Err("not JSON: input ends at byte 13, expected ',' or '}'".to_owned())
        );
        assert!(RequestError::InvalidAuthId
            .message()
            .contains("1 to 64 characters"));
        assert_eq!(
            RequestError::InvalidField("token").message(),
            "missing or invalid \"token\""
        );
        assert_eq!(
            decode(r#"{"code":10000.5}"#).map_err(|refusal| refusal.to_string()),
            Err("unknown code 10000.5: codes are integers".to_owned())
        );
    }

    #[test]
    fn server_messages_are_exact() {
        assert_eq!(ping(), r#"{"code":476}"#);
        assert_eq!(pong(), r#"{"code":732}"#);
        assert_eq!(
            system(codes::SYSTEM_ONLINE_COUNT, json!(3)),
            r#"{"code":988,"extend":{"code":20001,"mess":3}}"#
        );
        assert_eq!(
            system(codes::SYSTEM_AUTH_RESULT, json!(true)),
            r#"{"code":988,"extend":{"code":20002,"mess":true}}"#
        );
        assert_eq!(
            system(codes::SYSTEM_NOTICE, json!("going \"down\"")),
            r#"{"code":988,"extend":{"code":20003,"mess":"going \"down\""}}"#
        );
        assert_eq!(
            error(codes::ERROR_NOT_ONLINE, "bob is not online"),
            r#"{"code":1244,"extend":{"code":40400,"mess":"bob is not online"}}"#
        );
        assert_eq!(
            error(codes::ERROR_TOO_LARGE, "line\nbreak\t\u{1}"),
            r#"{"code":1244,"extend":{"code":41300,"mess":"line\nbreak\t\u0001"}}"#
        );
        assert_eq!(
            request_error(&RequestError::UnknownCode(7)),
            r#"{"code":1244,"extend":{"code":40001,"mess":"unknown code 7"}}"#
        );
        assert_eq!(
            auth_required(),
            r#"{"code":1500,"extend":{"code":40100,"mess":"authenticate first: send {\"code\":10000,\"id\":...}"}}"#
        );
    }

    #[test]
    fn server_messages_parse_back_as_strict_json() {
        let parsed: Value = serde_json::from_str(&auth_required()).expect("strict JSON");
        assert_eq!(parsed["code"], 1500);
        assert_eq!(parsed["extend"]["code"], 40100);
        let parsed: Value =
            serde_json::from_str(&request_error(&RequestError::InvalidField("data.to")))
                .expect("JSON");
        assert_eq!(parsed["extend"]["code"], 40002);
    }

    #[test]
    fn message_template_renders_each_seq() {
        let data = json!({"to": "bob", "text": "hi \"x\" 你好"});
        let template = MessageTemplate::new(
            codes::MESSAGE_PEER,
            Some(&id("alice")),
            Some(&id("bob")),
            &data,
            1_700_000_000_123,
        );
        assert_eq!(
            template.render(1),
            r#"{"code":1756,"body":{"type":30001,"from":"alice","to":"bob","data":{"text":"hi \"x\" 你好","to":"bob"},"time":1700000000123,"seq":1}}"#
        );
        for seq in [1, 2, 999, u64::MAX] {
            let parsed: Value = serde_json::from_str(&template.render(seq)).expect("strict JSON");
            assert_eq!(
                parsed,
                json!({
                    "code": 1756,
                    "body": {
                        "type": 30001, "from": "alice", "to": "bob",
                        "data": data, "time": 1_700_000_000_123u64, "seq": seq
                    }
                })
            );
        }
    }

    #[test]
    fn message_template_writes_null_for_absent_ids() {
        let push = MessageTemplate::new(codes::MESSAGE_PUSH, None, None, &json!(null), 5);
        assert_eq!(
            push.render(3),
            r#"{"code":1756,"body":{"type":30003,"from":null,"to":null,"data":null,"time":5,"seq":3}}"#
        );
        let push = MessageTemplate::new(codes::MESSAGE_PUSH, None, Some(&id("42")), &json!("x"), 5);
        let parsed: Value = serde_json::from_str(&push.render(1)).expect("strict JSON");
        assert_eq!(parsed["body"]["to"], "42");
        assert_eq!(parsed["body"]["from"], Value::Null);
    }

    #[test]
    fn user_id_parse_and_display() {
        assert_eq!(
            UserId::parse(&json!("a.b@c")).map(|id| id.to_string()),
            Some("a.b@c".to_owned())
        );
        assert_eq!(
            UserId::parse(&json!(7)).map(|id| id.as_str().to_owned()),
            Some("7".to_owned())
        );
        assert_eq!(UserId::parse(&json!(-7)), None);
        assert_eq!(UserId::parse(&json!(true)), None);
        assert_eq!(UserId::new(""), None);
        assert_eq!(UserId::new("x".repeat(65).as_str()), None);
        assert_eq!(UserId::new("日本"), None);
    }

    /// xorshift64*: a fixed-seed generator, so the junk below is the same on every run.
    struct Junk(u64);

    impl Junk {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, bound: usize) -> usize {
            usize::try_from(self.next() % bound as u64).unwrap_or(0)
        }
    }

    #[test]
    fn decode_never_panics_on_junk() {
        const PIECES: [&str; 34] = [
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "'",
            "\"",
            "\\",
            "\\'",
            "\\u",
            "\\ud83d",
            "d800",
            "code",
            "'code'",
            "\"code\"",
            "10000",
            "10002",
            "10003",
            "10015",
            "-",
            "0",
            "1e",
            "999999999999999999999",
            ".5",
            "data",
            "'data'",
            "\"to\"",
            "id",
            "true",
            "null",
            " ",
            "é",
            "😀",
        ];
        let seeds = [
            "{'code':10016}",
            r#"{"code":10000,"id":"alice","token":"1.ab"}"#,
            r#"{'code':10002,'data':'{"to":"bob","text":"hi \"x\""}'}"#,
            r#"{"code":10003,"data":"[1,{\"a\":\"\\u00e9\"}]"}"#,
        ];
        let mut junk = Junk(0x9E37_79B9_7F4A_7C15);
        let mut decoded = 0;
        for round in 0..20_000 {
            let text = if round % 2 == 0 {
                // Token soup.
                let count = junk.below(40);
                (0..count)
                    .map(|_| PIECES[junk.below(PIECES.len())])
                    .collect::<String>()
            } else {
                // A seed message with a few characters deleted, replaced or inserted.
                let mut chars: Vec<char> = seeds[junk.below(seeds.len())].chars().collect();
                for _ in 0..=junk.below(4) {
                    let at = junk.below(chars.len() + 1);
                    let piece =
                        char::from_u32(u32::try_from(junk.below(0x80)).unwrap_or(0)).unwrap_or('?');
                    match junk.below(3) {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 if at < chars.len() => chars[at] = piece,
                        _ => chars.insert(at, piece),
                    }
                }
                chars.into_iter().collect()
            };
            match decode(&text) {
                Ok(ClientMessage::Peer { to, data }) => {
                    decoded += 1;
                    assert_eq!(UserId::parse(&data["to"]), Some(to), "{text}");
                }
                Ok(_) => decoded += 1,
                Err(refusal) => {
                    assert!([40000, 40001, 40002, 40101].contains(&refusal.error_code()));
                    assert!(!refusal.message().is_empty());
                }
            }
        }
        // The mutations leave some messages valid, so both paths ran.
        assert!(decoded > 0);
    }
}
