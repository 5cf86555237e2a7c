//! The command line: `socketbox [FLAGS]` runs the server, `socketbox token
//! ...` mints an AUTH token. Parsed by hand (std has no argument parser and
//! the flag set is small); every flag is in `PROTOCOL.md` ("Command line")
//! or the README. No RFC is involved.

use std::fmt;
use std::time::Duration;

use crate::apps::chat::message::UserId;
use crate::apps::StandardConfig;
use crate::io::config::ServerConfig;
use crate::protocol::origin::OriginPolicy;

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Run the server.
    Serve(Box<StandardConfig>),
    /// Print a token for `id`, valid for `ttl_secs`.
    Token {
        /// The HMAC secret (`--auth-secret` of the server).
        secret: String,
        /// The user id.
        id: String,
        /// Seconds until the token expires.
        ttl_secs: u64,
    },
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// A command line that cannot be obeyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// A flag nobody defined.
    UnknownFlag(String),
    /// A flag given without its value.
    MissingValue(&'static str),
    /// A value that does not parse.
    BadValue {
        /// The flag.
        flag: &'static str,
        /// What it was given.
        value: String,
    },
    /// A required flag is absent.
    Required(&'static str),
    /// A value that parses but that the server would refuse.
    Refused {
        /// The flag.
        flag: &'static str,
        /// What it was given.
        value: String,
        /// What the server accepts.
        rule: &'static str,
    },
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            CliError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            CliError::BadValue { flag, value } => write!(f, "{flag}: cannot use {value:?}"),
            CliError::Required(flag) => write!(f, "{flag} is required"),
            CliError::Refused { flag, value, rule } => {
                write!(f, "{flag}: the server would refuse {value:?}: {rule}")
            }
        }
    }
}

impl std::error::Error for CliError {}

/// The `--help` text.
pub const HELP: &str = "\
socketbox: a WebSocket server (RFC 6455 by hand, one thread per connection)

USAGE:
    socketbox [FLAGS]
    socketbox token --secret SECRET --id ID --ttl SECS

FLAGS:
    --listen ADDR               address to bind [127.0.0.1:8080]; port 0 picks one
    --heartbeat SECS            PING interval on /ws [30]
    --auth-timeout SECS         time to authenticate on /ws [10]
    --presence-interval MS      coalescing window for online counts and lists [1000]
    --presence-list-max N       largest online list 10004 serves [1000]
    --auth-secret SECRET        require HMAC-SHA1 tokens on AUTH [off]
    --admin-token TOKEN         enable /api/* with this bearer token [off]
    --allowed-origin ORIGIN     allow this Origin (repeatable) [any]
    --max-message BYTES         largest message on /ws [65536]
    --echo-max-message BYTES    largest message on /echo [16777216]
    --no-echo                   remove /echo
    --max-queue BYTES           outbound bytes queued per session before drop [1048576]
    --max-connections N         open TCP connections in all [10000]
    --max-connections-per-ip N  open TCP connections per client IP [0 = no limit]
    --handshake-timeout SECS    time to send the request head [10]
    --rate-limit N              messages per second per /ws session [0 = off]
    --idle-timeout SECS         silence allowed on /echo before close [300]
    --thread-stack BYTES        stack size of each connection thread [65536]
    --trace                     print every frame on stderr
    --redis URL                 join the nodes sharing this Redis (redis://HOST:PORT/DB) [off]
    --node-id ID                this node's name in logs and metrics [random]

  TLS (cargo feature `tls`; both flags or neither; SIGHUP re-reads them):
    --tls-cert FILE             serve every route over TLS with this PEM chain
    --tls-key FILE              the PEM private key of --tls-cert

  permessage-deflate (cargo feature `deflate`):
    --deflate                   accept permessage-deflate on /ws and /echo [off]
    --deflate-context-takeover  keep compression windows per connection [off]
    --deflate-min-size BYTES    smaller messages go out uncompressed [256]

    -h, --help                  this text
    -V, --version               the version
";

fn value<'a>(
    args: &mut impl Iterator<Item = &'a str>,
    flag: &'static str,
) -> Result<&'a str, CliError> {
    args.next().ok_or(CliError::MissingValue(flag))
}

fn number<'a, T: std::str::FromStr>(
    args: &mut impl Iterator<Item = &'a str>,
    flag: &'static str,
) -> Result<T, CliError> {
    let text = value(args, flag)?;
    text.parse().map_err(|_| CliError::BadValue {
        flag,
        value: text.to_owned(),
    })
}

fn seconds<'a>(
    args: &mut impl Iterator<Item = &'a str>,
    flag: &'static str,
) -> Result<Duration, CliError> {
    Ok(Duration::from_secs(number(args, flag)?))
}

/// Parse the arguments after the program name.
pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Command, CliError> {
    let mut args = args.into_iter().peekable();
    if args.peek() == Some(&"token") {
        args.next();
        return parse_token(args);
    }
    let mut config = StandardConfig::default();
    let mut allowed_origins = Vec::new();
    while let Some(flag) = args.next() {
        let a = &mut args;
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen" => config.server.listen = value(a, "--listen")?.to_owned(),
            "--heartbeat" => config.chat.heartbeat = seconds(a, "--heartbeat")?,
            "--auth-timeout" => config.chat.auth_timeout = seconds(a, "--auth-timeout")?,
            "--presence-interval" => {
                config.chat.presence_interval =
                    Duration::from_millis(number(a, "--presence-interval")?)
            }
            "--presence-list-max" => {
                config.chat.presence_list_max = number(a, "--presence-list-max")?
            }
            "--auth-secret" => {
                config.chat.auth_secret = Some(value(a, "--auth-secret")?.to_owned())
            }
            "--admin-token" => {
                config.chat.admin_token = Some(value(a, "--admin-token")?.to_owned())
            }
            "--allowed-origin" => allowed_origins.push(value(a, "--allowed-origin")?),
            "--max-message" => config.chat.max_message = number(a, "--max-message")?,
            "--echo-max-message" => config.echo.max_message = number(a, "--echo-max-message")?,
            "--no-echo" => config.echo.enabled = false,
            "--max-queue" => config.chat.max_queue = number(a, "--max-queue")?,
            "--max-connections" => config.server.max_connections = number(a, "--max-connections")?,
            "--max-connections-per-ip" => {
                config.server.max_connections_per_ip = number(a, "--max-connections-per-ip")?
            }
            "--handshake-timeout" => {
                config.server.handshake_timeout = seconds(a, "--handshake-timeout")?
            }
            "--rate-limit" => config.chat.rate_limit = number(a, "--rate-limit")?,
            "--idle-timeout" => config.echo.idle_timeout = seconds(a, "--idle-timeout")?,
            "--thread-stack" => config.server.thread_stack = number(a, "--thread-stack")?,
            "--trace" => config.server.trace = true,
            // Several nodes over Redis.
            "--redis" => config.chat.redis = Some(redis_url(value(a, "--redis")?)?),
            "--node-id" => config.chat.node_id = Some(node_id(value(a, "--node-id")?)?),
            // TLS: a block of its own.
            "--tls-cert" => config.server.tls_cert = Some(value(a, "--tls-cert")?.into()),
            "--tls-key" => config.server.tls_key = Some(value(a, "--tls-key")?.into()),
            // permessage-deflate: a block of its own.
            "--deflate" => config.server.deflate = true,
            "--deflate-context-takeover" => config.server.deflate_context_takeover = true,
            "--deflate-min-size" => {
                config.server.deflate_min_size = number(a, "--deflate-min-size")?
            }
            other => return Err(CliError::UnknownFlag(other.to_owned())),
        }
    }
    check_tls(&config.server)?;
    if config.server.deflate && !cfg!(feature = "deflate") {
        return Err(CliError::Refused {
            flag: "--deflate",
            value: String::new(),
            rule: "this build has no compression: build with --features deflate",
        });
    }
    if config.chat.heartbeat.is_zero() {
        return Err(CliError::BadValue {
            flag: "--heartbeat",
            value: "0".into(),
        });
    }
    // Parsed once here, so a typo stops the server at start instead of
    // silently matching no request.
    config.server.allowed_origins =
        OriginPolicy::new(&allowed_origins).map_err(|error| CliError::BadValue {
            flag: "--allowed-origin",
            value: error.origin,
        })?;
    Ok(Command::Serve(Box::new(config)))
}

/// `--redis URL`, checked at start-up so that a typo stops the server
/// instead of leaving it alone, retrying forever.
fn redis_url(url: &str) -> Result<String, CliError> {
    crate::apps::chat::check_redis_url(url)
        .map(|()| url.to_owned())
        .map_err(|rule| CliError::Refused {
            flag: "--redis",
            value: url.to_owned(),
            rule,
        })
}

/// `--node-id ID`: the characters of a user id, so that it needs no
/// quoting in logs, metric labels or the messages between nodes.
fn node_id(id: &str) -> Result<String, CliError> {
    match UserId::new(id) {
        Some(_) => Ok(id.to_owned()),
        None => Err(CliError::Refused {
            flag: "--node-id",
            value: id.to_owned(),
            rule: "1 to 64 of A-Z a-z 0-9 _ . @ -",
        }),
    }
}

/// `--tls-cert` and `--tls-key` go together (PROTOCOL.md: "one without
/// the other is a start-up error"), and need the feature that builds TLS.
fn check_tls(config: &ServerConfig) -> Result<(), CliError> {
    match (&config.tls_cert, &config.tls_key) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(CliError::Required("--tls-key (with --tls-cert)")),
        (None, Some(_)) => Err(CliError::Required("--tls-cert (with --tls-key)")),
        (Some(cert), Some(_)) if !cfg!(feature = "tls") => Err(CliError::Refused {
            flag: "--tls-cert",
            value: cert.display().to_string(),
            rule: "this socketbox was built without the cargo feature `tls`",
        }),
        _ => Ok(()),
    }
}

fn parse_token<'a>(mut args: impl Iterator<Item = &'a str>) -> Result<Command, CliError> {
    let (mut secret, mut id, mut ttl_secs) = (None, None, 3600);
    while let Some(flag) = args.next() {
        let a = &mut args;
        match flag {
            "--secret" => secret = Some(value(a, "--secret")?.to_owned()),
            "--id" => id = Some(value(a, "--id")?.to_owned()),
            "--ttl" => ttl_secs = number(a, "--ttl")?,
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(CliError::UnknownFlag(other.to_owned())),
        }
    }
    let secret = secret.ok_or(CliError::Required("--secret"))?;
    let id = id.ok_or(CliError::Required("--id"))?;
    // A token for an id AUTH refuses, or one already expired, would only
    // fail later, on the server; say so now.
    if UserId::new(&id).is_none() {
        return Err(CliError::Refused {
            flag: "--id",
            value: id,
            rule: "an id is 1 to 64 characters of A-Z a-z 0-9 _ . @ -",
        });
    }
    // The server takes a token while `EXP > now`: a TTL of 0 is expired
    // when minted.
    if ttl_secs == 0 {
        return Err(CliError::Refused {
            flag: "--ttl",
            value: ttl_secs.to_string(),
            rule: "a token must live at least 1 second",
        });
    }
    Ok(Command::Token {
        secret,
        id,
        ttl_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> StandardConfig {
        match parse(args.iter().copied()) {
            Ok(Command::Serve(config)) => *config,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_protocol_table() {
        let c = serve(&[]);
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.chat.heartbeat, Duration::from_secs(30));
        assert_eq!(c.chat.max_message, 65536);
        assert_eq!(c.echo.max_message, 16 * 1024 * 1024);
        assert_eq!(c.chat.max_queue, 1024 * 1024);
        assert_eq!(c.server.max_connections, 10_000);
        assert!(c.echo.enabled);
    }

    #[test]
    fn flags() {
        let c = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--no-echo",
            "--allowed-origin",
            "http://a",
            "--allowed-origin",
            "http://b",
            "--presence-interval",
            "250",
            "--presence-list-max",
            "7",
            "--trace",
        ]);
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert!(!c.echo.enabled);
        assert_eq!(
            c.server.allowed_origins,
            OriginPolicy::new(["http://a", "http://b"]).unwrap()
        );
        assert!(c.server.allowed_origins.allows(Some("http://b")));
        assert!(!c.server.allowed_origins.allows(Some("http://c")));
        assert_eq!(c.chat.presence_interval, Duration::from_millis(250));
        assert_eq!(c.chat.presence_list_max, 7);
        assert!(c.server.trace);
    }

    #[test]
    fn an_allowed_origin_that_does_not_parse_stops_the_start() {
        assert_eq!(
            parse([
                "--allowed-origin",
                "http://a",
                "--allowed-origin",
                "localhost:8080"
            ])
            .unwrap_err(),
            CliError::BadValue {
                flag: "--allowed-origin",
                value: "localhost:8080".into()
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(["--bogus"]).unwrap_err(),
            CliError::UnknownFlag("--bogus".into())
        );
        assert_eq!(
            parse(["--listen"]).unwrap_err(),
            CliError::MissingValue("--listen")
        );
        assert!(matches!(
            parse(["--max-queue", "lots"]),
            Err(CliError::BadValue { .. })
        ));
        assert_eq!(
            parse(["token", "--id", "a"]).unwrap_err(),
            CliError::Required("--secret")
        );
    }

    #[test]
    fn deflate_flags() {
        assert!(!serve(&[]).server.deflate);
        assert_eq!(serve(&[]).server.deflate_min_size, 256);
        let c = serve(&["--deflate-context-takeover", "--deflate-min-size", "0"]);
        assert!(c.server.deflate_context_takeover);
        assert_eq!(c.server.deflate_min_size, 0);
        if cfg!(feature = "deflate") {
            assert!(serve(&["--deflate"]).server.deflate);
        } else {
            assert!(matches!(
                parse(["--deflate"]),
                Err(CliError::Refused {
                    flag: "--deflate",
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_malformed_redis_url_or_node_id_stops_the_start_naming_the_flag() {
        for url in [
            "localhost:6379",
            "http://x",
            "redis://",
            "redis://h:notaport",
        ] {
            let error = parse(["--redis", url]).unwrap_err();
            assert!(error.to_string().starts_with("--redis: "), "{url}: {error}");
        }
        assert!(matches!(
            parse(["--node-id", "a b"]),
            Err(CliError::Refused {
                flag: "--node-id",
                ..
            })
        ));
        let c = serve(&["--node-id", "node-1"]);
        assert_eq!(c.chat.node_id.as_deref(), Some("node-1"));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_url_is_kept() {
        let c = serve(&["--redis", "redis://127.0.0.1:6379/0"]);
        assert_eq!(c.chat.redis.as_deref(), Some("redis://127.0.0.1:6379/0"));
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn without_the_feature_redis_is_refused_saying_why() {
        let error = parse(["--redis", "redis://127.0.0.1:6379/0"]).unwrap_err();
        assert!(
            error.to_string().contains("`redis` cargo feature"),
            "{error}"
        );
    }

    #[test]
    fn token_subcommand() {
        match parse(["token", "--secret", "s", "--id", "alice", "--ttl", "60"]) {
            Ok(Command::Token {
                secret,
                id,
                ttl_secs,
            }) => assert_eq!((secret.as_str(), id.as_str(), ttl_secs), ("s", "alice", 60)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_subcommand_refuses_ids_and_ttls_the_server_refuses() {
        let token =
            |id: &str, ttl: &str| parse(["token", "--secret", "s", "--id", id, "--ttl", ttl]);
        for id in ["bad id", "", &"x".repeat(UserId::MAX_LEN + 1), "é"] {
            assert!(
                matches!(token(id, "60"), Err(CliError::Refused { flag: "--id", .. })),
                "{id:?}"
            );
        }
        assert!(matches!(
            token("alice", "0"),
            Err(CliError::Refused { flag: "--ttl", .. })
        ));
        assert!(token(&"x".repeat(UserId::MAX_LEN), "1").is_ok());
    }
}
