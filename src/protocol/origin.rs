//! The `--allowed-origin` policy (RFC 6455 10.2, origins per RFC 6454):
//! which `Origin` may open a WebSocket. The configured origins are parsed
//! once, at start-up, into an [`OriginPolicy`]; an origin that does not
//! parse is a start-up error, not a silent never-match.
//!
//! RFC 6455 10.2: "servers that are not intended to process input from any
//! web page but only for certain sites SHOULD verify the |Origin| field is
//! an origin they expect". Origins compare scheme and host
//! case-insensitively, and an absent port equals the scheme's default port.

use std::fmt;

/// An origin reduced to what is compared: RFC 6454 4, the (scheme, host,
/// port) triple.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// One configured origin: a (scheme, host, port) triple, or the opaque
/// origin `null` (RFC 6454 6.2), which matches only `null` spelled exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedOrigin {
    Tuple(OriginParts),
    Null,
}

/// An `--allowed-origin` value that is neither `scheme://host[:port]` nor
/// `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginError {
    /// The value as configured.
    pub origin: String,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an origin: expected scheme://host[:port] or null",
            self.origin
        )
    }
}

impl std::error::Error for OriginError {}

/// Which origins may upgrade, parsed once from the `--allowed-origin` list.
/// The default (an empty list) allows every origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: Vec<AllowedOrigin>,
}

impl OriginPolicy {
    /// The policy of no `--allowed-origin` flag: every origin is allowed.
    pub fn any() -> Self {
        OriginPolicy::default()
    }

    /// Parse each configured origin; the first one that is neither
    /// `scheme://host[:port]` (one trailing `/` tolerated) nor `null` is an
    /// error. An empty list allows every origin.
    pub fn new<S: AsRef<str>>(origins: impl IntoIterator<Item = S>) -> Result<Self, OriginError> {
        let allowed = origins
            .into_iter()
            .map(|origin| {
                let origin = origin.as_ref();
                match parse_origin(origin) {
                    Some(parts) => Ok(AllowedOrigin::Tuple(parts)),
                    None if origin == "null" => Ok(AllowedOrigin::Null),
                    None => Err(OriginError {
                        origin: origin.to_owned(),
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OriginPolicy { allowed })
    }

    /// True when every origin is allowed (no `--allowed-origin` given).
    pub fn allows_any(&self) -> bool {
        self.allowed.is_empty()
    }

    /// May a request with this `Origin` connect?
    ///
    /// - No origin configured: any origin.
    /// - `origin` `None`: allowed. Browsers always send `Origin` on a
    ///   WebSocket handshake (RFC 6455 4.1, 10.2), so its absence means a
    ///   non-browser client, which the check cannot protect against anyway.
    /// - Otherwise allowed when some entry has the same scheme, host and
    ///   port: scheme and host compare case-insensitively, and `http://a`
    ///   equals `http://a:80` (`https`/`wss` 443, `ws` 80). The opaque
    ///   origin `null` matches only a configured `null`.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.allowed.is_empty() {
            return true;
        }
        let wanted = match parse_origin(origin) {
            Some(parts) => AllowedOrigin::Tuple(parts),
            None if origin == "null" => AllowedOrigin::Null,
            None => return false,
        };
        self.allowed.contains(&wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str]) -> OriginPolicy {
        OriginPolicy::new(list).unwrap()
    }

    #[test]
    fn origins() {
        let list = policy(&["https://Chat.Example.com", "http://localhost:8080"]);

        assert!(list.allows(None));
        assert!(OriginPolicy::any().allows(Some("http://evil.test")));
        assert!(OriginPolicy::any().allows_any());
        assert!(!list.allows_any());

        assert!(list.allows(Some("https://chat.example.com")));
        assert!(list.allows(Some("HTTPS://CHAT.EXAMPLE.COM")));
        assert!(list.allows(Some("https://chat.example.com:443")));
        assert!(list.allows(Some("http://localhost:8080")));

        assert!(!list.allows(Some("http://chat.example.com"))); // scheme
        assert!(!list.allows(Some("https://chat.example.com:8443"))); // port
        assert!(!list.allows(Some("https://chat.example.com.evil.test")));
        assert!(!list.allows(Some("https://evil.test/https://chat.example.com")));
        assert!(!list.allows(Some("http://localhost"))); // 80 is not 8080
        assert!(!list.allows(Some("http://localhost:8081")));
        assert!(!list.allows(Some("http://user@localhost:8080")));
        assert!(!list.allows(Some("http://localhost:")));
        assert!(!list.allows(Some("null")));
        assert!(!list.allows(Some("")));

        // Default ports both ways, a trailing slash in the configuration.
        let list = policy(&["http://example.com:80/", "https://[::1]:8443", "null"]);
        assert!(list.allows(Some("http://example.com")));
        assert!(list.allows(Some("http://EXAMPLE.com:80")));
        assert!(list.allows(Some("https://[::1]:8443")));
        assert!(!list.allows(Some("https://[::1]")));
        assert!(!list.allows(Some("https://[::2]:8443")));
        assert!(list.allows(Some("null")));
        assert!(!list.allows(Some("NULL")));
    }

    #[test]
    fn unparseable_configured_origins_are_refused_at_start() {
        for bad in [
            "localhost:8080",
            "chat.example.com",
            "https://chat.example.com/path",
            "http://user@host",
            "http://host:99999",
            "http://",
            "NULL",
            "",
        ] {
            assert_eq!(
                OriginPolicy::new(["http://ok", bad]),
                Err(OriginError {
                    origin: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
        assert_eq!(
            OriginPolicy::new(Vec::<String>::new()),
            Ok(OriginPolicy::any())
        );
    }
}
