//! Lax JSON: strict JSON (RFC 8259) plus the single-quoted strings of the
//! seed client, as PROTOCOL.md "Messages" describes.
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
//! - At most [`MAX_DEPTH`] arrays and objects may nest: the parser recurses
//!   once per level, and this bound keeps any input from exhausting a
//!   connection thread's stack.
//!
//! The parser reads the input once, front to back, and never backtracks, so
//! its time is linear in the input and it allocates at most what the value
//! it returns holds. It never panics, whatever the input.

use serde_json::{Map, Number, Value};
use std::fmt;

/// How many arrays and objects may nest inside one another; one more is
/// [`LaxJsonError::TooDeep`].
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

/// Whether single-quoted strings are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Lax,
    Strict,
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
        let value = self.parse_value(0)?;
        self.skip_whitespace();
        if self.pos < self.bytes.len() {
            return Err(LaxJsonError::TrailingCharacters { at: self.pos });
        }
        Ok(value)
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

    fn parse_value(&mut self, depth: usize) -> Result<Value, LaxJsonError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.parse_object(depth),
            Some(b'[') => self.parse_array(depth),
            Some(b'"') => self.parse_double_quoted().map(Value::String),
            Some(b'\'') if self.dialect == Dialect::Lax => {
                self.parse_single_quoted().map(Value::String)
            }
            Some(b't') => self.parse_literal("true", Value::Bool(true)),
            Some(b'f') => self.parse_literal("false", Value::Bool(false)),
            Some(b'n') => self.parse_literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.parse_number(),
            _ => Err(self.unexpected("a value")),
        }
    }

    /// Steps over the opening bracket of an array or object at `depth`
    /// (0 for the outermost), refusing to go past [`MAX_DEPTH`] levels.
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

    fn parse_object(&mut self, depth: usize) -> Result<Value, LaxJsonError> {
        self.open_container(depth)?;
        let mut object = Map::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(object));
        }
        loop {
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
            let value = self.parse_value(depth + 1)?;
            // Last one wins on a duplicate key, as in serde_json.
            object.insert(key, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(object));
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
    }

    fn parse_array(&mut self, depth: usize) -> Result<Value, LaxJsonError> {
        self.open_container(depth)?;
        let mut array = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(array));
        }
        loop {
            array.push(self.parse_value(depth + 1)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(array));
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
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

    #[test]
    fn nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&at_limit).is_ok());
        let objects = format!("{}1{}", "{'a':".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse(&objects).is_ok());

        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            parse(&over),
            Err(LaxJsonError::TooDeep {
                at: MAX_DEPTH,
                limit: MAX_DEPTH
            })
        );
        // Far deeper than any stack would take if the limit were missing.
        let hostile = "[{\"a\":".repeat(200_000);
        assert_eq!(
            parse(&hostile).map_err(|error| matches!(error, LaxJsonError::TooDeep { .. })),
            Err(true)
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
