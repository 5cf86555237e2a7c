//! Lax JSON: strict JSON (RFC 8259) plus the single-quoted strings of the
//! seed client, as PROTOCOL.md "Messages" describes; and, since every value
//! it makes comes from the network, writing and dropping those values
//! without recursion.
//!
//! The seed's `SocketBox` builds messages by string concatenation, such as
//! `{'code':10016}` and `{'code':10002,'data':'{"to":"bob","text":"hi \"x\""}'}`,
//! which no strict parser accepts. This module owns the one parser the server
//! uses for client messages: [`parse`] accepts those strings, and
//! [`parse_strict`] accepts RFC 8259 JSON only (used for the JSON held inside
//! a `data` string). Both produce a [`serde_json::Value`], so the rest of the
//! server works with one value type, and the server always answers in strict
//! JSON written by `serde_json`.
//!
//! # Accepted grammar
//!
//! ABNF in the style of RFC 8259 section 2; everything not marked "lax" is
//! RFC 8259 verbatim, and [`parse_strict`] accepts exactly the rules not
//! marked "lax".
//!
//! ```text
//! text        = ws value ws                ; nothing may follow but ws
//! ws          = *( %x20 / %x09 / %x0A / %x0D )
//! value       = object / array / string / number / "true" / "false" / "null"
//! object      = "{" ws [ member *( ws "," ws member ) ] ws "}"
//! member      = string ws ":" ws value     ; keys may be single-quoted (lax)
//! array       = "[" ws [ value *( ws "," ws value ) ] ws "]"
//! string      = dq-string / sq-string
//! dq-string   = %x22 *( dq-char / escape ) %x22
//! dq-char     = any char except %x22, "\" and %x00-1F
//! escape      = "\" ( %x22 / "\" / "/" / "b" / "f" / "n" / "r" / "t" / "u" 4HEXDIG )
//!               ; a "\u" high surrogate must be followed by a "\u" low one
//! sq-string   = "'" *( "\'" / "\" sq-char / sq-char ) "'"   ; lax
//! sq-char     = any char except "'"        ; control characters included
//! number      = [ "-" ] int [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
//! int         = "0" / ( %x31-39 *DIGIT )
//! ```
//!
//! # Choices (PROTOCOL.md leaves them to the server)
//!
//! - A single-quoted string's text is taken literally up to the closing quote.
//!   A backslash and the character after it are read as a pair: `\'` yields
//!   `'`, and every other pair, `\\` included, is kept as both characters. So
//!   `JSON.stringify` output wrapped in single quotes keeps its escapes, and
//!   `'C:\\'` is the four characters `C:\\` rather than an unterminated string.
//! - Object keys may be single-quoted too: the seed sends `{'code':10016}`.
//! - A duplicate key keeps the last value, as `serde_json` does.
//! - Numbers become `serde_json` numbers the way `serde_json` makes them: an
//!   integer is a `u64`, else an `i64`, else (too big, or `-0`) an `f64`; a
//!   number with a fraction or exponent is an `f64`; one that overflows `f64`
//!   (`1e400`) is an error, since JSON has no infinity.
//! - At most [`MAX_DEPTH`] arrays and objects may nest (RFC 8259 9: "An
//!   implementation may set limits on the maximum depth of nesting").
//!
//! # Depth costs heap, never stack
//!
//! A connection thread has a small stack (`--thread-stack`, 64 KiB by
//! default), and serde_json recurses once per level wherever it walks a
//! value: parsing, writing (`Display`), dropping. In a debug build that is
//! 0.6 to 1.6 KiB per level, so 64 levels of objects overflowed the stack
//! and aborted the whole server. So nothing here recurses: the parser keeps
//! the arrays and objects it is inside of in a `Vec`, and refuses the
//! bracket that would open level [`MAX_DEPTH`] + 1 before allocating for
//! it; [`write()`] walks a value with a `Vec` of iterators; [`drop_flat`]
//! takes a value apart on the heap, and a [`StackSafeValue`] holds a value
//! that is dropped that way. The limit is thereby a policy, not a stack
//! size: what a chat message may reasonably nest.
//!
//! The parser reads the input once, front to back, and never backtracks, so
//! its time is linear in the input and it allocates at most what the value
//! it returns holds (plus one entry per open level). It never panics,
//! whatever the input.

use serde_json::{Map, Number, Value};
use std::fmt::{self, Write as _};

/// How many arrays and objects may nest inside one another in one text, the
/// outermost included; one more is [`LaxJsonError::TooDeep`]. Far more than
/// chat data needs, and what the `/ws` parser has always allowed; see the
/// module documentation for why it does not depend on the stack.
pub const MAX_DEPTH: usize = 64;

/// Why a text is not (lax) JSON. Every variant carries `at`, the byte offset
/// in the input where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaxJsonError {
    /// The input ended where `expected` was needed.
    UnexpectedEnd {
        /// Byte offset: the length of the input.
        at: usize,
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// A character that cannot stand here.
    UnexpectedChar {
        /// Byte offset of the character.
        at: usize,
        /// The character found.
        found: char,
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// A word starting with `t`, `f` or `n` that is not `true`, `false` or `null`.
    InvalidLiteral {
        /// Byte offset of the word.
        at: usize,
    },
    /// A string whose closing quote never came.
    UnterminatedString {
        /// Byte offset of the opening quote.
        at: usize,
    },
    /// A backslash in a double-quoted string followed by a character RFC 8259 7 does not allow.
    InvalidEscape {
        /// Byte offset of the backslash.
        at: usize,
    },
    /// A `\u` escape without four hex digits, or a surrogate without its partner.
    InvalidUnicodeEscape {
        /// Byte offset of the backslash.
        at: usize,
    },
    /// A raw control character (U+0000 to U+001F) in a double-quoted string.
    ControlCharacter {
        /// Byte offset of the character.
        at: usize,
    },
    /// A number that breaks the grammar (`01`, `1.`, `-`, `1e`).
    InvalidNumber {
        /// Byte offset of the number's first character.
        at: usize,
    },
    /// A number too large for an `f64` (`1e400`).
    NumberOutOfRange {
        /// Byte offset of the number's first character.
        at: usize,
    },
    /// More than `limit` arrays and objects nested.
    TooDeep {
        /// Byte offset of the bracket that went one level too deep.
        at: usize,
        /// The limit, [`MAX_DEPTH`].
        limit: usize,
    },
    /// Something other than whitespace after the value.
    TrailingCharacters {
        /// Byte offset of the first such character.
        at: usize,
    },
}

impl LaxJsonError {
    /// The byte offset in the input where the problem was found.
    pub fn offset(&self) -> usize {
        match *self {
            LaxJsonError::UnexpectedEnd { at, .. }
            | LaxJsonError::UnexpectedChar { at, .. }
            | LaxJsonError::InvalidLiteral { at }
            | LaxJsonError::UnterminatedString { at }
            | LaxJsonError::InvalidEscape { at }
            | LaxJsonError::InvalidUnicodeEscape { at }
            | LaxJsonError::ControlCharacter { at }
            | LaxJsonError::InvalidNumber { at }
            | LaxJsonError::NumberOutOfRange { at }
            | LaxJsonError::TooDeep { at, .. }
            | LaxJsonError::TrailingCharacters { at } => at,
        }
    }
}

impl fmt::Display for LaxJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaxJsonError::UnexpectedEnd { at, expected } => {
                write!(f, "input ends at byte {at}, expected {expected}")
            }
            LaxJsonError::UnexpectedChar {
                at,
                found,
                expected,
            } => write!(f, "unexpected {found:?} at byte {at}, expected {expected}"),
            LaxJsonError::InvalidLiteral { at } => {
                write!(f, "expected true, false or null at byte {at}")
            }
            LaxJsonError::UnterminatedString { at } => {
                write!(f, "the string opened at byte {at} is never closed")
            }
            LaxJsonError::InvalidEscape { at } => write!(f, "invalid escape at byte {at}"),
            LaxJsonError::InvalidUnicodeEscape { at } => {
                write!(f, "invalid \\u escape at byte {at}")
            }
            LaxJsonError::ControlCharacter { at } => {
                write!(f, "unescaped control character in a string at byte {at}")
            }
            LaxJsonError::InvalidNumber { at } => write!(f, "invalid number at byte {at}"),
            LaxJsonError::NumberOutOfRange { at } => {
                write!(f, "number out of range at byte {at}")
            }
            LaxJsonError::TooDeep { at, limit } => {
                write!(f, "more than {limit} nested arrays or objects at byte {at}")
            }
            LaxJsonError::TrailingCharacters { at } => {
                write!(f, "unexpected characters after the value at byte {at}")
            }
        }
    }
}

impl std::error::Error for LaxJsonError {}

/// Parses `text` as lax JSON: RFC 8259 JSON plus single-quoted strings and
/// keys (see the module documentation for the grammar).
pub fn parse(text: &str) -> Result<Value, LaxJsonError> {
    Parser::new(text, Dialect::Lax).parse_text()
}

/// Parses `text` as strict RFC 8259 JSON, with the same limits and number
/// handling as [`parse`]. A single quote is an unexpected character here.
pub fn parse_strict(text: &str) -> Result<Value, LaxJsonError> {
    Parser::new(text, Dialect::Strict).parse_text()
}

/// Drops `value` without recursion. serde_json's own `Drop` for a `Value`
/// recurses once per level, in frames large enough (in a debug build, about
/// 840 bytes per level of objects) that a value within [`MAX_DEPTH`] would
/// take most of a connection thread's stack; this takes the value apart on
/// the heap instead, holding the arrays and objects still to take apart.
pub fn drop_flat(value: Value) {
    let is_container = |value: &Value| matches!(value, Value::Array(_) | Value::Object(_));
    let mut pending = Vec::new();
    let mut current = value;
    loop {
        // Children are moved out before their parent's memory goes, and
        // scalars among them are dropped here, where that cannot recurse.
        match current {
            Value::Array(items) => pending.extend(items.into_iter().filter(is_container)),
            Value::Object(members) => pending.extend(
                members
                    .into_iter()
                    .map(|(_, member)| member)
                    .filter(is_container),
            ),
            _ => {}
        }
        match pending.pop() {
            Some(next) => current = next,
            None => return,
        }
    }
}

/// A JSON value that is dropped with [`drop_flat`], so that holding one
/// costs no stack however deep it is. It dereferences to the value.
///
/// `Clone`, `Debug` and `PartialEq` are serde_json's and do recurse, once
/// per level; the server does not use them on values from the network
/// (tests do, on threads with ample stack).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackSafeValue(Value);

impl StackSafeValue {
    /// The value, to be dropped flat from now on.
    pub fn new(value: Value) -> Self {
        StackSafeValue(value)
    }

    /// The value itself; dropping it is the caller's concern again.
    pub fn into_inner(mut self) -> Value {
        std::mem::take(&mut self.0)
    }
}

impl From<Value> for StackSafeValue {
    fn from(value: Value) -> Self {
        StackSafeValue(value)
    }
}

impl std::ops::Deref for StackSafeValue {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

impl std::ops::DerefMut for StackSafeValue {
    fn deref_mut(&mut self) -> &mut Value {
        &mut self.0
    }
}

impl Drop for StackSafeValue {
    fn drop(&mut self) {
        drop_flat(std::mem::take(&mut self.0));
    }
}

/// Appends `value` to `out` as compact JSON, byte for byte what
/// `value.to_string()` gives, but in a loop rather than by recursion:
/// serde_json's writer recurses once per level (about 1.1 KiB per level of
/// arrays in a debug build), this one keeps the arrays and objects it is
/// inside of on the heap.
pub fn write(value: &Value, out: &mut String) {
    /// An array or object being written: the elements still to come, and
    /// whether none has been written yet (no comma before the next).
    enum Writing<'v> {
        Array(std::slice::Iter<'v, Value>, bool),
        Object(serde_json::map::Iter<'v>, bool),
    }
    let mut open: Vec<Writing<'_>> = Vec::new();
    let mut next = Some(value);
    loop {
        match next.take() {
            None => {}
            Some(Value::Null) => out.push_str("null"),
            Some(Value::Bool(true)) => out.push_str("true"),
            Some(Value::Bool(false)) => out.push_str("false"),
            // serde_json writes a number as its `Display` does; writing to a
            // `String` cannot fail.
            Some(Value::Number(number)) => {
                let _ = write!(out, "{number}");
            }
            Some(Value::String(text)) => write_string(text, out),
            Some(Value::Array(items)) => {
                out.push('[');
                open.push(Writing::Array(items.iter(), true));
            }
            Some(Value::Object(members)) => {
                out.push('{');
                open.push(Writing::Object(members.iter(), true));
            }
        }
        let Some(innermost) = open.last_mut() else {
            return;
        };
        match innermost {
            Writing::Array(items, first) => match items.next() {
                Some(item) => {
                    if !std::mem::take(first) {
                        out.push(',');
                    }
                    next = Some(item);
                }
                None => {
                    out.push(']');
                    open.pop();
                }
            },
            Writing::Object(members, first) => match members.next() {
                Some((key, member)) => {
                    if !std::mem::take(first) {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    next = Some(member);
                }
                None => {
                    out.push('}');
                    open.pop();
                }
            },
        }
    }
}

/// `value` written as by [`write()`], in a new `String`.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// A JSON string literal for `text`, escaped as serde_json escapes it: `"`,
/// `\` and the control characters U+0000 to U+001F (RFC 8259 7: "the
/// characters that MUST be escaped"), with the short forms where JSON has
/// one and `\u00xx` in lower-case hex otherwise; everything else verbatim.
fn write_string(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut run_start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0C => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1F => "",
            _ => continue,
        };
        // `at` is on an ASCII byte, so on a char boundary.
        out.push_str(text.get(run_start..at).unwrap_or_default());
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        } else {
            out.push_str(short);
        }
        run_start = at + 1;
    }
    out.push_str(text.get(run_start..).unwrap_or_default());
    out.push('"');
}

/// Whether single-quoted strings are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Lax,
    Strict,
}

/// An array or object whose closing bracket is still to come.
enum OpenContainer {
    Array(Vec<Value>),
    /// The members so far, and the key of the member being parsed.
    Object(Map<String, Value>, String),
}

impl OpenContainer {
    fn into_value(self) -> Value {
        match self {
            OpenContainer::Array(items) => Value::Array(items),
            OpenContainer::Object(members, _) => Value::Object(members),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    dialect: Dialect,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, dialect: Dialect) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            dialect,
        }
    }

    fn parse_text(mut self) -> Result<Value, LaxJsonError> {
        let mut open = Vec::new();
        let parsed = self.parse_value(&mut open).and_then(|value| {
            self.skip_whitespace();
            if self.pos < self.bytes.len() {
                drop_flat(value);
                return Err(LaxJsonError::TrailingCharacters { at: self.pos });
            }
            Ok(value)
        });
        // After an error, what was parsed so far goes without recursion too.
        for container in open {
            drop_flat(container.into_value());
        }
        parsed
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        // RFC 8259 2: ws = *( %x20 / %x09 / %x0A / %x0D )
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The error for the byte at `pos`: the end of input, or the character there.
    fn unexpected(&self, expected: &'static str) -> LaxJsonError {
        match self
            .text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(found) => LaxJsonError::UnexpectedChar {
                at: self.pos,
                found,
                expected,
            },
            None => LaxJsonError::UnexpectedEnd {
                at: self.pos,
                expected,
            },
        }
    }

    /// Appends `text[start..end]` to `out`. Both ends always sit on an ASCII
    /// byte (a quote or a backslash) or at the end of the input, and so on
    /// char boundaries of the `&str`; `get` cannot fail, it only keeps this
    /// free of any slicing that could panic.
    fn push_run(&self, out: &mut String, start: usize, end: usize) {
        out.push_str(self.text.get(start..end).unwrap_or_default());
    }

    /// One whole value, arrays and objects included, in a loop rather than
    /// by recursion: `open` holds the arrays and objects begun and not yet
    /// closed, innermost last, so the depth of the input costs heap (at most
    /// [`MAX_DEPTH`] entries), never stack.
    fn parse_value(&mut self, open: &mut Vec<OpenContainer>) -> Result<Value, LaxJsonError> {
        loop {
            let mut value = match self.parse_scalar_or_open(open)? {
                Some(value) => value,
                // A container was opened and its first element comes next.
                None => continue,
            };
            // `value` is complete: hand it to the container it sits in,
            // closing each container that ends right after it.
            loop {
                match open.last_mut() {
                    None => return Ok(value),
                    Some(OpenContainer::Array(items)) => {
                        items.push(value);
                        self.skip_whitespace();
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                break;
                            }
                            Some(b']') => self.pos += 1,
                            _ => return Err(self.unexpected("',' or ']'")),
                        }
                    }
                    Some(OpenContainer::Object(members, key)) => {
                        // Last one wins on a duplicate key, as in serde_json.
                        if let Some(replaced) = members.insert(std::mem::take(key), value) {
                            drop_flat(replaced);
                        }
                        self.skip_whitespace();
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                *key = self.parse_key()?;
                                break;
                            }
                            Some(b'}') => self.pos += 1,
                            _ => return Err(self.unexpected("',' or '}'")),
                        }
                    }
                }
                // The innermost container just closed: it is the value now.
                match open.pop() {
                    Some(closed) => value = closed.into_value(),
                    None => return Err(self.unexpected("a value")),
                }
            }
        }
    }

    /// A scalar, or an empty array or object: `Some`. Otherwise opens the
    /// array or object at `pos` (pushed on `open`, an object with its first
    /// key read) and returns `None`: its first element is next.
    fn parse_scalar_or_open(
        &mut self,
        open: &mut Vec<OpenContainer>,
    ) -> Result<Option<Value>, LaxJsonError> {
        self.skip_whitespace();
        let scalar = match self.peek() {
            Some(b'{') => {
                self.open_container(open.len())?;
                self.skip_whitespace();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Some(Value::Object(Map::new())));
                }
                let key = self.parse_key()?;
                open.push(OpenContainer::Object(Map::new(), key));
                return Ok(None);
            }
            Some(b'[') => {
                self.open_container(open.len())?;
                self.skip_whitespace();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Some(Value::Array(Vec::new())));
                }
                open.push(OpenContainer::Array(Vec::new()));
                return Ok(None);
            }
            Some(b'"') => self.parse_double_quoted().map(Value::String),
            Some(b'\'') if self.dialect == Dialect::Lax => {
                self.parse_single_quoted().map(Value::String)
            }
            Some(b't') => self.parse_literal("true", Value::Bool(true)),
            Some(b'f') => self.parse_literal("false", Value::Bool(false)),
            Some(b'n') => self.parse_literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.parse_number(),
            _ => Err(self.unexpected("a value")),
        };
        scalar.map(Some)
    }

    /// Steps over the opening bracket of an array or object inside `depth`
    /// others, refusing to go past [`MAX_DEPTH`] levels before anything of
    /// the new level is allocated.
    fn open_container(&mut self, depth: usize) -> Result<(), LaxJsonError> {
        if depth >= MAX_DEPTH {
            return Err(LaxJsonError::TooDeep {
                at: self.pos,
                limit: MAX_DEPTH,
            });
        }
        self.pos += 1;
        Ok(())
    }

    /// An object key and the `:` after it; `pos` may be on whitespace before it.
    fn parse_key(&mut self) -> Result<String, LaxJsonError> {
        self.skip_whitespace();
        let key = match self.peek() {
            Some(b'"') => self.parse_double_quoted()?,
            Some(b'\'') if self.dialect == Dialect::Lax => self.parse_single_quoted()?,
            _ => return Err(self.unexpected("a quoted object key")),
        };
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.unexpected("':' after an object key"));
        }
        self.pos += 1;
        Ok(key)
    }

    fn parse_literal(&mut self, word: &'static str, value: Value) -> Result<Value, LaxJsonError> {
        let matches = self
            .bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word.as_bytes()));
        if !matches {
            return Err(LaxJsonError::InvalidLiteral { at: self.pos });
        }
        self.pos += word.len();
        Ok(value)
    }

    /// A double-quoted string, RFC 8259 section 7.
    fn parse_double_quoted(&mut self) -> Result<String, LaxJsonError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut run_start = self.pos;
        loop {
            match self.peek() {
                None => return Err(LaxJsonError::UnterminatedString { at: open }),
                Some(b'"') => {
                    self.push_run(&mut out, run_start, self.pos);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.push_run(&mut out, run_start, self.pos);
                    self.parse_escape(open, &mut out)?;
                    run_start = self.pos;
                }
                // RFC 8259 7: "All Unicode characters may be placed within the
                // quotation marks, except for the characters that MUST be
                // escaped: quotation mark, reverse solidus, and the control
                // characters (U+0000 through U+001F)."
                Some(0x00..=0x1F) => return Err(LaxJsonError::ControlCharacter { at: self.pos }),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// One escape of a double-quoted string; `pos` is on the backslash.
    fn parse_escape(&mut self, open: usize, out: &mut String) -> Result<(), LaxJsonError> {
        let backslash = self.pos;
        let Some(letter) = self.bytes.get(backslash + 1).copied() else {
            return Err(LaxJsonError::UnterminatedString { at: open });
        };
        self.pos += 2;
        let unescaped = match letter {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{08}',
            b'f' => '\u{0C}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.parse_unicode_escape(backslash)?,
            _ => return Err(LaxJsonError::InvalidEscape { at: backslash }),
        };
        out.push(unescaped);
        Ok(())
    }

    /// The rest of a `\u` escape, four hex digits (`pos` is after the `u`), with the
    /// second half of a UTF-16 surrogate pair when the first is a high one.
    fn parse_unicode_escape(&mut self, backslash: usize) -> Result<char, LaxJsonError> {
        let invalid = LaxJsonError::InvalidUnicodeEscape { at: backslash };
        let first = self.parse_hex4().ok_or(invalid.clone())?;
        let code_point = match first {
            // RFC 8259 7: a character outside the Basic Multilingual Plane "is
            // represented as a 12-character sequence, encoding the UTF-16
            // surrogate pair".
            0xD800..=0xDBFF => {
                let pair_follows = self
                    .bytes
                    .get(self.pos..)
                    .is_some_and(|rest| rest.starts_with(b"\\u"));
                if !pair_follows {
                    return Err(invalid);
                }
                self.pos += 2;
                let second = self.parse_hex4().ok_or(invalid.clone())?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(invalid);
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(invalid),
            _ => first,
        };
        char::from_u32(code_point).ok_or(invalid)
    }

    /// Four hex digits at `pos`, consumed; `None` if they are not there.
    fn parse_hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos.checked_add(4)?)?;
        let mut value = 0;
        for &digit in digits {
            value = value * 16 + char::from(digit).to_digit(16)?;
        }
        self.pos += 4;
        Some(value)
    }

    /// A single-quoted string (lax): literal text up to the closing quote,
    /// where only `\'` stands for something else (a quote).
    fn parse_single_quoted(&mut self) -> Result<String, LaxJsonError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut run_start = self.pos;
        loop {
            match self.peek() {
                None => return Err(LaxJsonError::UnterminatedString { at: open }),
                Some(b'\'') => {
                    self.push_run(&mut out, run_start, self.pos);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => match self.bytes.get(self.pos + 1) {
                    Some(b'\'') => {
                        self.push_run(&mut out, run_start, self.pos);
                        out.push('\'');
                        self.pos += 2;
                        run_start = self.pos;
                    }
                    // Kept as both characters; the second backslash must not
                    // escape a quote after it, or `'C:\\'` would never end.
                    Some(b'\\') => self.pos += 2,
                    // Any other backslash is literal text.
                    _ => self.pos += 1,
                },
                Some(_) => self.pos += 1,
            }
        }
    }

    /// A number, RFC 8259 section 6, made into a `serde_json::Number` the way
    /// `serde_json` itself would make it.
    fn parse_number(&mut self) -> Result<Value, LaxJsonError> {
        let start = self.pos;
        let invalid = LaxJsonError::InvalidNumber { at: start };
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        match self.peek() {
            // RFC 8259 6: "Leading zeros are not allowed."
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(invalid);
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(invalid),
        }
        let digits_end = self.pos;
        let mut is_integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.skip_at_least_one_digit() {
                return Err(invalid);
            }
            is_integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.skip_at_least_one_digit() {
                return Err(invalid);
            }
            is_integer = false;
        }
        if is_integer {
            let digits = self.text.get(digits_start..digits_end).unwrap_or_default();
            if let Ok(magnitude) = digits.parse::<u64>() {
                if !negative {
                    return Ok(Value::Number(magnitude.into()));
                }
                // serde_json makes -0 an f64 (keeping its sign) and a
                // magnitude past i64::MIN an f64; the float path below does both.
                if magnitude != 0 {
                    if let Some(value) = 0i64.checked_sub_unsigned(magnitude) {
                        return Ok(Value::Number(value.into()));
                    }
                }
            }
        }
        let literal = self.text.get(start..self.pos).unwrap_or_default();
        let float: f64 = literal.parse().map_err(|_| invalid)?;
        Number::from_f64(float)
            .map(Value::Number)
            .ok_or(LaxJsonError::NumberOutOfRange { at: start })
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn skip_at_least_one_digit(&mut self) -> bool {
        let before = self.pos;
        self.skip_digits();
        self.pos > before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lax(text: &str) -> Value {
        match parse(text) {
            Ok(value) => value,
            Err(error) => panic!("{text:?} should parse: {error}"),
        }
    }

    #[test]
    fn seed_pong_with_single_quoted_key() {
        assert_eq!(lax("{'code':10016}"), json!({"code": 10016}));
    }

    #[test]
    fn seed_auth_is_strict_json() {
        // openInvake: JSON.stringify({code: 10000, id: fromId})
        assert_eq!(
            lax(r#"{"code":10000,"id":"alice"}"#),
            json!({"code": 10000, "id": "alice"})
        );
        assert_eq!(
            lax(r#"{"code":10000,"id":42}"#),
            json!({"code": 10000, "id": 42})
        );
    }

    #[test]
    fn seed_peer_message_keeps_stringify_escapes_literally() {
        // sendPeerTextMessage({to: "bob", text: 'hi "x"'}) sends exactly this.
        let sent = r#"{'code':10002,'data':'{"to":"bob","text":"hi \"x\""}'}"#;
        let value = lax(sent);
        let data = value["data"].as_str().expect("data is a string");
        assert_eq!(data, r#"{"to":"bob","text":"hi \"x\""}"#);
        assert_eq!(
            parse_strict(data),
            Ok(json!({"to": "bob", "text": "hi \"x\""}))
        );
    }

    #[test]
    fn seed_peer_message_with_backslash_newline_and_unicode() {
        // JSON.stringify({to:"bob", text:"C:\\dir\n你好"}) wrapped in single quotes.
        let sent = r#"{'code':10002,'data':'{"to":"bob","text":"C:\\dir\n你好 \u00e9"}'}"#;
        let data = lax(sent)["data"].as_str().map(str::to_owned);
        let data = data.expect("data is a string");
        assert_eq!(data, r#"{"to":"bob","text":"C:\\dir\n你好 \u00e9"}"#);
        assert_eq!(
            parse_strict(&data),
            Ok(json!({"to": "bob", "text": "C:\\dir\n你好 é"}))
        );
    }

    #[test]
    fn seed_peer_message_with_apostrophe_is_broken_as_documented() {
        // PROTOCOL.md: the seed wraps its text unescaped, so an apostrophe ends the string early.
        let sent = r#"{'code':10002,'data':'{"to":"bob","text":"it's"}'}"#;
        assert_eq!(
            parse(sent),
            Err(LaxJsonError::UnexpectedChar {
                at: 45,
                found: 's',
                expected: "',' or '}'"
            })
        );
    }

    #[test]
    fn single_quote_escape_and_literal_backslashes() {
        assert_eq!(lax(r"'it\'s'"), json!("it's"));
        assert_eq!(lax(r"'a\nb'"), json!("a\\nb"));
        assert_eq!(lax(r"'a\u0041'"), json!("a\\u0041"));
        assert_eq!(lax(r"'C:\\'"), json!("C:\\\\"));
        assert_eq!(lax(r"'\\\''"), json!("\\\\'"));
        assert_eq!(lax(r"'\x'"), json!("\\x"));
        assert_eq!(lax(r#"'say "hi"'"#), json!("say \"hi\""));
        assert_eq!(lax("'tab\there'"), json!("tab\there"));
        assert_eq!(lax("''"), json!(""));
        assert_eq!(lax("'é\\'ü'"), json!("é'ü"));
        assert_eq!(
            parse(r"'abc\'"),
            Err(LaxJsonError::UnterminatedString { at: 0 })
        );
        assert_eq!(
            parse(r"'abc\"),
            Err(LaxJsonError::UnterminatedString { at: 0 })
        );
    }

    #[test]
    fn mixed_quotes_in_keys_and_values() {
        assert_eq!(
            lax(r#" { 'a' : "x" , "b" : [ 'y' , 1 ] } "#),
            json!({"a": "x", "b": ["y", 1]})
        );
    }

    #[test]
    fn strict_dialect_refuses_single_quotes() {
        assert_eq!(
            parse_strict("{'code':1}"),
            Err(LaxJsonError::UnexpectedChar {
                at: 1,
                found: '\'',
                expected: "a quoted object key"
            })
        );
        assert_eq!(
            parse_strict("['x']"),
            Err(LaxJsonError::UnexpectedChar {
                at: 1,
                found: '\'',
                expected: "a value"
            })
        );
    }

    #[test]
    fn strict_json_parses_exactly_as_serde_json_does() {
        let samples = [
            "null",
            "true",
            "false",
            "0",
            "-0",
            "7",
            "-7",
            "1.5",
            "-1.25e3",
            "1E2",
            "1e-2",
            "2.5E+3",
            "1e-400",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            r#""""#,
            r#""plain""#,
            r#""esc \" \\ \/ \b \f \n \r \t""#,
            r#""\u0041\u00e9\u4f60\ud83d\ude00""#,
            r#""raw é 你 😀""#,
            "[]",
            "{}",
            " [ 1 , [ 2 , [ ] ] , { } ] ",
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#"{"a":1,"a":2}"#,
            "\t\r\n{\"k\" :\n\"v\"}\n",
        ];
        for sample in samples {
            let expected: Value = serde_json::from_str(sample).expect("sample is JSON");
            assert_eq!(parse(sample), Ok(expected.clone()), "lax {sample}");
            assert_eq!(parse_strict(sample), Ok(expected), "strict {sample}");
        }
    }

    #[test]
    fn numbers_keep_serde_json_representation() {
        assert!(lax("18446744073709551615").is_u64());
        assert!(lax("-9223372036854775808").is_i64());
        assert!(lax("-9223372036854775809").is_f64());
        assert!(lax("18446744073709551616").is_f64());
        assert!(lax("1.0").is_f64());
        let negative_zero = lax("-0").as_f64().expect("an f64");
        assert!(negative_zero == 0.0 && negative_zero.is_sign_negative());
    }

    #[test]
    fn invalid_json_is_refused_like_serde_json_refuses_it() {
        let samples = [
            (
                "",
                LaxJsonError::UnexpectedEnd {
                    at: 0,
                    expected: "a value",
                },
            ),
            (
                "   ",
                LaxJsonError::UnexpectedEnd {
                    at: 3,
                    expected: "a value",
                },
            ),
            ("01", LaxJsonError::InvalidNumber { at: 0 }),
            ("-", LaxJsonError::InvalidNumber { at: 0 }),
            ("-a", LaxJsonError::InvalidNumber { at: 0 }),
            ("1.", LaxJsonError::InvalidNumber { at: 0 }),
            ("[1.e5]", LaxJsonError::InvalidNumber { at: 1 }),
            ("1e", LaxJsonError::InvalidNumber { at: 0 }),
            ("1e+", LaxJsonError::InvalidNumber { at: 0 }),
            ("1e400", LaxJsonError::NumberOutOfRange { at: 0 }),
            ("-1e400", LaxJsonError::NumberOutOfRange { at: 0 }),
            (
                ".5",
                LaxJsonError::UnexpectedChar {
                    at: 0,
                    found: '.',
                    expected: "a value",
                },
            ),
            (
                "+1",
                LaxJsonError::UnexpectedChar {
                    at: 0,
                    found: '+',
                    expected: "a value",
                },
            ),
            (
                "NaN",
                LaxJsonError::UnexpectedChar {
                    at: 0,
                    found: 'N',
                    expected: "a value",
                },
            ),
            (
                "Infinity",
                LaxJsonError::UnexpectedChar {
                    at: 0,
                    found: 'I',
                    expected: "a value",
                },
            ),
            ("tru", LaxJsonError::InvalidLiteral { at: 0 }),
            ("nul", LaxJsonError::InvalidLiteral { at: 0 }),
            ("truex", LaxJsonError::TrailingCharacters { at: 4 }),
            ("{} {}", LaxJsonError::TrailingCharacters { at: 3 }),
            ("1 2", LaxJsonError::TrailingCharacters { at: 2 }),
            (
                "[1,]",
                LaxJsonError::UnexpectedChar {
                    at: 3,
                    found: ']',
                    expected: "a value",
                },
            ),
            (
                "[1 2]",
                LaxJsonError::UnexpectedChar {
                    at: 3,
                    found: '2',
                    expected: "',' or ']'",
                },
            ),
            (
                "{\"a\":1,}",
                LaxJsonError::UnexpectedChar {
                    at: 7,
                    found: '}',
                    expected: "a quoted object key",
                },
            ),
            (
                "{\"a\" 1}",
                LaxJsonError::UnexpectedChar {
                    at: 5,
                    found: '1',
                    expected: "':' after an object key",
                },
            ),
            (
                "{a:1}",
                LaxJsonError::UnexpectedChar {
                    at: 1,
                    found: 'a',
                    expected: "a quoted object key",
                },
            ),
            (
                "{\"a\":1",
                LaxJsonError::UnexpectedEnd {
                    at: 6,
                    expected: "',' or '}'",
                },
            ),
            (
                "[",
                LaxJsonError::UnexpectedEnd {
                    at: 1,
                    expected: "a value",
                },
            ),
            ("\"abc", LaxJsonError::UnterminatedString { at: 0 }),
            ("\"abc\\", LaxJsonError::UnterminatedString { at: 0 }),
            ("\"\\x\"", LaxJsonError::InvalidEscape { at: 1 }),
            ("\"\\'\"", LaxJsonError::InvalidEscape { at: 1 }),
            ("\"\\u12\"", LaxJsonError::InvalidUnicodeEscape { at: 1 }),
            ("\"\\u12g4\"", LaxJsonError::InvalidUnicodeEscape { at: 1 }),
            ("\"\\ud83d\"", LaxJsonError::InvalidUnicodeEscape { at: 1 }),
            (
                "\"\\ud83d\\u0041\"",
                LaxJsonError::InvalidUnicodeEscape { at: 1 },
            ),
            ("\"\\ude00\"", LaxJsonError::InvalidUnicodeEscape { at: 1 }),
            ("\"a\nb\"", LaxJsonError::ControlCharacter { at: 2 }),
            (
                "\u{feff}{}",
                LaxJsonError::UnexpectedChar {
                    at: 0,
                    found: '\u{feff}',
                    expected: "a value",
                },
            ),
            (
                "[\"é\" ü]",
                LaxJsonError::UnexpectedChar {
                    at: 6,
                    found: 'ü',
                    expected: "',' or ']'",
                },
            ),
        ];
        for (sample, error) in samples {
            assert_eq!(parse(sample), Err(error.clone()), "lax {sample:?}");
            assert_eq!(parse_strict(sample), Err(error), "strict {sample:?}");
            assert!(
                serde_json::from_str::<Value>(sample).is_err(),
                "serde_json also refuses {sample:?}"
            );
        }
    }

    /// `levels` arrays around `1`, built without recursion.
    fn nested_arrays(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| Value::Array(vec![inner]))
    }

    /// `levels` objects around `1`, each with a scalar member beside the
    /// nested one, built without recursion.
    fn nested_objects(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, level| {
            let mut members = Map::new();
            members.insert("k".to_owned(), inner);
            members.insert("level".to_owned(), json!(level));
            Value::Object(members)
        })
    }

    fn too_deep_at(at: usize) -> Result<Value, LaxJsonError> {
        Err(LaxJsonError::TooDeep {
            at,
            limit: MAX_DEPTH,
        })
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() {
        let arrays_at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let objects_at_limit = format!("{}1{}", "{'a':".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        let mixed_at_limit = format!(
            "{}{}{}",
            "[{\"a\":".repeat(MAX_DEPTH / 2),
            "null",
            "}]".repeat(MAX_DEPTH / 2)
        );
        for text in [&arrays_at_limit, &mixed_at_limit] {
            let expected: Value = serde_json::from_str(text).expect("JSON");
            assert_eq!(parse(text).as_ref(), Ok(&expected));
            assert_eq!(parse_strict(text), Ok(expected));
        }
        let objects = parse(&objects_at_limit).expect("objects at the limit");
        assert_eq!(objects.pointer(&"/a".repeat(MAX_DEPTH)), Some(&json!(1)));

        // One more level: refused at the bracket that opens it, arrays or
        // objects, empty or not, in either dialect.
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(&over), too_deep_at(MAX_DEPTH));
        assert_eq!(parse_strict(&over), too_deep_at(MAX_DEPTH));
        let empty_object_over = format!("{}{{}}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(parse(&empty_object_over), too_deep_at(MAX_DEPTH));
        let objects_over = format!(
            "{}1{}",
            "{'a':".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(parse(&objects_over), too_deep_at(5 * MAX_DEPTH));
        // The limit counts nesting, not containers: many shallow ones are fine.
        let wide = format!("[{}[]]", "[[1]],".repeat(10_000));
        assert_eq!(
            parse(&wide).map(|value| value.as_array().map(Vec::len)),
            Ok(Some(10_001))
        );
    }

    #[test]
    fn far_too_deep_input_is_refused_at_the_limit() {
        // Far deeper than any stack would take if the limit were missing;
        // the parser stops at the first bracket past the limit, before it
        // looks at the rest (which here never closes, or is not even JSON).
        let texts = [
            "[".repeat(100_000),
            "{\"a\":".repeat(100_000),
            "[{'a':".repeat(100_000),
            format!("{}1{}", "[".repeat(1_000), "]".repeat(1_000)),
            format!("{}x", "[".repeat(MAX_DEPTH + 1)),
        ];
        for text in &texts {
            let refused =
                parse(text).map_err(|error| matches!(error, LaxJsonError::TooDeep { .. }));
            assert_eq!(refused, Err(true), "{}", &text[..20]);
        }
        assert_eq!(parse_strict(&texts[0]), too_deep_at(MAX_DEPTH));
        assert_eq!(parse_strict(&texts[1]), too_deep_at(5 * MAX_DEPTH));
        // A sibling that went as deep as allowed, then one that goes deeper.
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        let text = format!("[{at_limit},{}", "[".repeat(MAX_DEPTH));
        assert_eq!(
            parse(&text),
            too_deep_at(at_limit.len() + 2 + MAX_DEPTH - 1)
        );
    }

    /// Runs `work` on a thread with `stack` bytes of stack; an overflow
    /// aborts the test process, which fails the test run.
    fn on_small_stack(stack: usize, work: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(work)
            .expect("spawn")
            .join()
            .expect("no panic");
    }

    /// Less than half the default `--thread-stack`, and less than a debug
    /// build's serde_json needs to parse, write or drop [`MAX_DEPTH`] levels
    /// of objects (about 100, 50 and 60 KiB).
    const SMALL_STACK: usize = 24 * 1024;

    #[test]
    fn parsing_writing_and_dropping_take_no_stack_per_level() {
        on_small_stack(SMALL_STACK, || {
            let objects = format!("{}1{}", "{'a':".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
            let arrays = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
            for text in [objects, arrays] {
                let value = parse(&text).map_err(|error| error.to_string());
                let Ok(value) = value else {
                    panic!("the deepest value parses: {value:?}");
                };
                let written = to_string(&value);
                assert_eq!(written.len(), text.len());
                drop_flat(value);
                // Refused at the limit: the half-built value is dropped too.
                let over = format!("[{text}]");
                assert!(matches!(parse(&over), Err(LaxJsonError::TooDeep { .. })));
            }
            // Writing and dropping do not depend on the limit at all.
            for deep in [nested_arrays(100_000), nested_objects(100_000)] {
                let written = to_string(&deep);
                assert!(written.starts_with("[[[") || written.starts_with("{\"k\":{\"k\":"));
                drop(StackSafeValue::new(deep));
            }
        });
    }

    #[test]
    fn a_replaced_duplicate_key_is_dropped_flat() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        let text = format!("{{\"a\":{deep},\"a\":2}}");
        on_small_stack(SMALL_STACK, move || {
            assert_eq!(
                parse(&text).map_err(|error| error.to_string()),
                Ok(json!({"a": 2}))
            );
        });
    }

    #[test]
    fn write_is_byte_for_byte_serde_json() {
        let mut samples = vec![
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-7),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(-0.0),
            json!(1e300),
            json!(1e-7),
            json!(0.1 + 0.2),
            json!(""),
            json!("plain é 你 😀 \u{7f} \u{2028}"),
            json!("quote \" backslash \\ slash / tab \t"),
            json!([]),
            json!({}),
            json!([[], {}, [[]], {"": {}}]),
            json!({"b": 1, "a": [1, "x", null], "\"k\\\n": {"z": false}}),
            nested_arrays(70),
            nested_objects(70),
        ];
        // Every ASCII character, alone and between others, as value and key.
        for code in 0u8..=0x7f {
            let text = format!("a{}b{}", char::from(code), char::from(code));
            let mut members = Map::new();
            members.insert(text.clone(), json!(text));
            samples.push(Value::Object(members));
        }
        for sample in &samples {
            assert_eq!(to_string(sample), sample.to_string());
        }
        let mut out = "prefix:".to_owned();
        write(&json!([1, 2]), &mut out);
        assert_eq!(out, "prefix:[1,2]");
    }

    #[test]
    fn stack_safe_value_derefs_and_gives_its_value_back() {
        let mut value = StackSafeValue::new(json!({"to": "bob"}));
        assert_eq!(value["to"], "bob");
        value
            .as_object_mut()
            .expect("an object")
            .insert("n".to_owned(), json!(1));
        assert_eq!(value.clone().into_inner(), json!({"to": "bob", "n": 1}));
        assert_eq!(
            StackSafeValue::from(json!(3)),
            StackSafeValue::new(json!(3))
        );
    }

    #[test]
    fn errors_report_their_offset_and_read_well() {
        let error = parse("{'a' 1}").expect_err("missing colon");
        assert_eq!(error.offset(), 5);
        assert_eq!(
            error.to_string(),
            "unexpected '1' at byte 5, expected ':' after an object key"
        );
        assert_eq!(
            LaxJsonError::UnterminatedString { at: 3 }.to_string(),
            "the string opened at byte 3 is never closed"
        );
    }
}
