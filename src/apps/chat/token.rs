//! Auth tokens: HMAC-SHA1 (RFC 2104) over `sha1_smol`, and the `EXP.HEX`
//! tokens of PROTOCOL.md "Authentication".
//!
//! With `--auth-secret`, an AUTH must carry `token` = `EXP.HEX`, where `EXP`
//! is a unix time in seconds and `HEX` is the lower-case hex HMAC-SHA1 of
//! `ID.EXP` under the secret. This module mints such tokens (for
//! `socketbox token`) and verifies them.
//!
//! Choices where PROTOCOL.md is silent:
//! - "A unix time in seconds not yet passed": a token is valid while
//!   `EXP > now`; at `now == EXP` it has expired.
//! - The token is read strictly as [`mint`] writes it: `EXP` is 1 to 20
//!   decimal digits without sign or leading zero (`0` itself is allowed, and
//!   always expired), and `HEX` exactly 40 lower-case hex digits; upper-case
//!   hex is malformed, since the protocol says lower-case.
//! - The MAC is checked before the expiry, so [`TokenError::Expired`] is only
//!   ever said of a token the secret really signed.

use std::fmt;

/// SHA-1's block size in bytes (RFC 2104 2: "B").
const BLOCK_SIZE: usize = 64;
/// SHA-1's output size in bytes (RFC 2104 2: "L").
const DIGEST_SIZE: usize = 20;
/// The length of `HEX` in a token: two hex digits per MAC byte.
const MAC_HEX_LEN: usize = 2 * DIGEST_SIZE;
/// The most digits a `u64` has, so the most an `EXP` may have.
const MAX_EXPIRY_DIGITS: usize = 20;

/// HMAC-SHA1 of `msg` under `key`, RFC 2104:
/// `H(K XOR opad, H(K XOR ipad, text))`.
pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; DIGEST_SIZE] {
    // RFC 2104 2: "Applications that use keys longer than B bytes will first
    // hash the key using H and then use the resultant L byte string as the
    // actual key to HMAC." Shorter keys are padded with zeros to B bytes.
    let mut block_key = [0u8; BLOCK_SIZE];
    if key.len() > BLOCK_SIZE {
        let hashed = sha1_smol::Sha1::from(key).digest().bytes();
        block_key[..DIGEST_SIZE].copy_from_slice(&hashed);
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }

    // RFC 2104 2: "ipad = the byte 0x36 repeated B times,
    // opad = the byte 0x5C repeated B times".
    let inner_pad = block_key.map(|byte| byte ^ 0x36);
    let outer_pad = block_key.map(|byte| byte ^ 0x5C);

    let mut inner = sha1_smol::Sha1::new();
    inner.update(&inner_pad);
    inner.update(msg);
    let inner_digest = inner.digest().bytes();

    let mut outer = sha1_smol::Sha1::new();
    outer.update(&outer_pad);
    outer.update(&inner_digest);
    outer.digest().bytes()
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No `.` between `EXP` and `HEX`.
    NoSeparator,
    /// `EXP` is not 1 to 20 decimal digits without a leading zero, or overflows a `u64`.
    InvalidExpiry,
    /// `HEX` is not exactly 40 lower-case hex digits.
    InvalidMac,
    /// Well formed, but not signed by this secret for this id and expiry.
    BadSignature,
    /// Genuine, but `EXP` is not later than now.
    Expired {
        /// The token's `EXP`.
        expired_at: u64,
        /// The time it was checked at.
        now: u64,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::NoSeparator => write!(f, "a token is EXP.HEX; no '.' found"),
            TokenError::InvalidExpiry => write!(f, "the token's EXP is not a unix time"),
            TokenError::InvalidMac => {
                write!(f, "the token's HEX is not 40 lower-case hex digits")
            }
            TokenError::BadSignature => write!(f, "the token's signature does not match"),
            TokenError::Expired { expired_at, now } => {
                write!(f, "the token expired at {expired_at} (now {now})")
            }
        }
    }
}

impl std::error::Error for TokenError {}

/// The token for user `id` valid until the unix time `expires_unix`:
/// `EXP.HEX` with `HEX` the lower-case hex HMAC-SHA1 of `ID.EXP` under `secret`.
pub fn mint(secret: &str, id: &str, expires_unix: u64) -> String {
    let mac = signature(secret, id, &expires_unix.to_string());
    format!("{expires_unix}.{}", lower_hex(&mac))
}

/// Checks that `token` was minted by [`mint`] under `secret` for `id` and
/// has not expired at `now_unix` (valid while `EXP > now_unix`).
pub fn verify(secret: &str, id: &str, token: &str, now_unix: u64) -> Result<(), TokenError> {
    let (expiry_text, mac_hex) = token.split_once('.').ok_or(TokenError::NoSeparator)?;
    let expires_unix = parse_expiry(expiry_text).ok_or(TokenError::InvalidExpiry)?;
    let presented = parse_lower_hex_mac(mac_hex).ok_or(TokenError::InvalidMac)?;

    // The MAC is computed over the EXP text the token carries, which
    // parse_expiry has just checked to be canonical, so it is the same text
    // mint() signed.
    let expected = signature(secret, id, expiry_text);
    if !constant_time_eq(&expected, &presented) {
        return Err(TokenError::BadSignature);
    }
    if expires_unix <= now_unix {
        return Err(TokenError::Expired {
            expired_at: expires_unix,
            now: now_unix,
        });
    }
    Ok(())
}

/// HMAC-SHA1 of `ID.EXP` under the secret.
fn signature(secret: &str, id: &str, expiry_text: &str) -> [u8; DIGEST_SIZE] {
    let message = format!("{id}.{expiry_text}");
    hmac_sha1(secret.as_bytes(), message.as_bytes())
}

/// `EXP` in the one spelling [`mint`] writes: decimal, no sign, no leading zero.
fn parse_expiry(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= MAX_EXPIRY_DIGITS
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    text.parse().ok()
}

fn parse_lower_hex_mac(text: &str) -> Option<[u8; DIGEST_SIZE]> {
    if text.len() != MAC_HEX_LEN {
        return None;
    }
    let mut mac = [0u8; DIGEST_SIZE];
    for (byte, pair) in mac.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (lower_hex_digit(*high)? << 4) | lower_hex_digit(*low)?;
    }
    Some(mac)
}

fn lower_hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0F)]));
    }
    out
}

/// Compares two MACs in time that does not depend on where they differ, so
/// that a forger cannot learn a correct MAC byte by byte from response times.
fn constant_time_eq(a: &[u8; DIGEST_SIZE], b: &[u8; DIGEST_SIZE]) -> bool {
    let difference = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        lower_hex(bytes)
    }

    #[test]
    fn rfc_2202_hmac_sha1_test_vectors() {
        let case_4_key: Vec<u8> = (0x01..=0x19).collect();
        let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b617318655057264e28bc0b6fb378c8ef146be00",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
            ),
            (
                case_4_key,
                vec![0xcd; 50],
                "4c9007f4026250c6bc8414f9bf50c86c2d7235da",
            ),
            (
                vec![0x0c; 20],
                b"Test With Truncation".to_vec(),
                "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"
                    .to_vec(),
                "e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
            ),
        ];
        for (number, (key, data, digest)) in cases.iter().enumerate() {
            assert_eq!(
                hex(&hmac_sha1(key, data)),
                *digest,
                "test case {}",
                number + 1
            );
        }
    }

    #[test]
    fn hmac_with_a_key_of_exactly_one_block_is_not_hashed() {
        // A 64-byte key is used as it is; hashing it first would give another MAC.
        let key = [0x42u8; BLOCK_SIZE];
        let hashed_key = sha1_smol::Sha1::from(key).digest().bytes();
        assert_ne!(hmac_sha1(&key, b"m"), hmac_sha1(&hashed_key, b"m"));
        let long_key = [0x42u8; BLOCK_SIZE + 1];
        let hashed_long_key = sha1_smol::Sha1::from(long_key).digest().bytes();
        assert_eq!(
            hmac_sha1(&long_key, b"m"),
            hmac_sha1(&hashed_long_key, b"m")
        );
    }

    #[test]
    fn mint_signs_id_dot_expiry_in_lower_case_hex() {
        let token = mint("s3cret", "alice", 1_700_000_000);
        let expected_mac = hex(&hmac_sha1(b"s3cret", b"alice.1700000000"));
        assert_eq!(token, format!("1700000000.{expected_mac}"));
        assert_eq!(token.len(), "1700000000.".len() + 40);
        assert!(!token.bytes().any(|byte| byte.is_ascii_uppercase()));
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let token = mint("s3cret", "alice", 1000);
        assert_eq!(verify("s3cret", "alice", &token, 0), Ok(()));
        assert_eq!(verify("s3cret", "alice", &token, 999), Ok(()));
        assert_eq!(
            verify("s3cret", "alice", &token, 1000),
            Err(TokenError::Expired {
                expired_at: 1000,
                now: 1000
            })
        );
        assert_eq!(
            verify("s3cret", "alice", &token, 5000),
            Err(TokenError::Expired {
                expired_at: 1000,
                now: 5000
            })
        );
        let far = mint("s3cret", "alice", u64::MAX);
        assert_eq!(verify("s3cret", "alice", &far, u64::MAX - 1), Ok(()));
    }

    #[test]
    fn a_token_is_bound_to_its_secret_id_and_expiry() {
        let token = mint("s3cret", "alice", 1000);
        assert_eq!(
            verify("other", "alice", &token, 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify("s3cret", "bob", &token, 0),
            Err(TokenError::BadSignature)
        );
        let (_, mac) = token.split_once('.').expect("EXP.HEX");
        assert_eq!(
            verify("s3cret", "alice", &format!("2000.{mac}"), 0),
            Err(TokenError::BadSignature)
        );
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(
            verify("s3cret", "alice", &flipped, 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn an_expired_forgery_is_a_bad_signature_not_expired() {
        let forged = format!("5.{}", "0".repeat(40));
        assert_eq!(
            verify("s3cret", "alice", &forged, 10),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let token = mint("s3cret", "alice", 1000);
        let (expiry, mac) = token.split_once('.').expect("EXP.HEX");
        let upper = format!("{expiry}.{}", mac.to_ascii_uppercase());
        let cases = [
            ("", TokenError::NoSeparator),
            ("1000", TokenError::NoSeparator),
            (mac, TokenError::NoSeparator),
            (&upper, TokenError::InvalidMac),
            (&format!("{expiry}.{}", &mac[..39]), TokenError::InvalidMac),
            (&format!("{expiry}.{mac}0"), TokenError::InvalidMac),
            (&format!("{expiry}.{mac}.x"), TokenError::InvalidMac),
            (&format!("{expiry}."), TokenError::InvalidMac),
            (&format!("{expiry}.{}g", &mac[..39]), TokenError::InvalidMac),
            (&format!("{expiry}.{}é", &mac[..38]), TokenError::InvalidMac),
            (&format!(".{mac}"), TokenError::InvalidExpiry),
            (&format!("01000.{mac}"), TokenError::InvalidExpiry),
            (&format!("+1000.{mac}"), TokenError::InvalidExpiry),
            (&format!("-1.{mac}"), TokenError::InvalidExpiry),
            (&format!("1e3.{mac}"), TokenError::InvalidExpiry),
            (&format!(" 1000.{mac}"), TokenError::InvalidExpiry),
            (
                &format!("18446744073709551616.{mac}"),
                TokenError::InvalidExpiry,
            ),
            (
                &format!("{}.{mac}", "9".repeat(30)),
                TokenError::InvalidExpiry,
            ),
        ];
        for (candidate, error) in cases {
            assert_eq!(
                verify("s3cret", "alice", candidate, 0),
                Err(error),
                "{candidate:?}"
            );
        }
    }

    #[test]
    fn constant_time_eq_compares_every_byte() {
        let a = [7u8; DIGEST_SIZE];
        for index in 0..DIGEST_SIZE {
            let mut b = a;
            b[index] ^= 0x80;
            assert!(!constant_time_eq(&a, &b));
        }
        assert!(constant_time_eq(&a, &a));
    }
}
