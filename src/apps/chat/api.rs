//! The admin API (PROTOCOL.md "Endpoints"): what is online, and server
//! pushes. [`AdminApi`] is the HTTP application: it checks the bearer token
//! and reads the body; the functions below take the body and return the
//! JSON to answer with.
//!
//! Bodies are strict JSON (they come from scripts and `curl`, not from the
//! seed client), read with [`laxjson::parse_strict`] rather than
//! `serde_json::from_slice`: serde_json recurses once per level up to 128
//! levels, more than a connection thread's stack holds in a debug build,
//! while `parse_strict` stops at [`laxjson::MAX_DEPTH`] and does not
//! recurse. The values are held and written out without recursion too
//! ([`StackSafeValue`], [`MessageTemplate`]).
//!
//! A push reaches every session of one user as MESSAGE type 30003 with
//! `from` null; a broadcast reaches every authenticated session with `to`
//! null too. With several nodes both reach every node, and `delivered`
//! counts the other nodes' sessions as they last announced them.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::io::app::{Exchange, HttpHandler};
use crate::io::metrics::Metrics;

use super::laxjson::{self, LaxJsonError, StackSafeValue};
use super::message::{codes, MessageTemplate, UserId};
use super::{unix_millis, Hub, Reach};

/// Largest body `/api/*` accepts.
pub const MAX_API_BODY: usize = 1024 * 1024;

/// Plain-text content type of short answers.
const TEXT: &str = "text/plain; charset=utf-8";

/// Which admin endpoint an [`AdminApi`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/online`.
    Online,
    /// `POST /api/push`.
    Push,
    /// `POST /api/broadcast`.
    Broadcast,
}

/// One admin endpoint: off (404) without `--admin-token`, 401 without the
/// right bearer.
#[derive(Debug)]
pub struct AdminApi {
    hub: Arc<Hub>,
    endpoint: Endpoint,
}

impl AdminApi {
    /// `endpoint` of the chat whose state is `hub`.
    pub fn new(hub: Arc<Hub>, endpoint: Endpoint) -> AdminApi {
        AdminApi { hub, endpoint }
    }
}

impl HttpHandler for AdminApi {
    fn respond(&self, exchange: &mut Exchange<'_>) {
        let context = exchange.context();
        let Some(expected) = &self.hub.config.admin_token else {
            return exchange.send(404, TEXT, &[], b"not found");
        };
        let offered = exchange
            .request()
            .header("Authorization")
            .and_then(bearer_token);
        if !offered.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes())) {
            return exchange.send(
                401,
                TEXT,
                &[("WWW-Authenticate", "Bearer")],
                b"an admin bearer token is required",
            );
        }
        let json = "application/json";
        if self.endpoint == Endpoint::Online {
            return exchange.send(200, json, &[], online(&self.hub).as_bytes());
        }
        // The rest are POSTs: their answers always carry a body.
        let Some(body) = exchange.read_body(MAX_API_BODY) else {
            return;
        };
        let answer = match self.endpoint {
            Endpoint::Push => push(&self.hub, &body, &context.metrics),
            _ => broadcast(&self.hub, &body, &context.metrics),
        };
        match answer {
            Ok(answer) => exchange.send(200, json, &[], answer.as_bytes()),
            Err(error) => exchange.send(400, TEXT, &[], error.reason().as_bytes()),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (RFC 6750 2.1).
/// RFC 9110 11.1: the scheme is "a case-insensitive token", so `bearer`
/// and `BEARER` are the same scheme; the token is compared as sent.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then_some(token.trim())
}

/// Compare secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an API request body was refused (answered with `400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The body is not a JSON object.
    NotJsonObject,
    /// The body nests more than [`laxjson::MAX_DEPTH`] arrays and objects
    /// (the parser's [`LaxJsonError::TooDeep`]).
    TooDeep(LaxJsonError),
    /// `to` is missing or not a valid user id.
    BadRecipient,
}

impl ApiError {
    /// The text of the `400` answer.
    pub fn reason(&self) -> String {
        match self {
            ApiError::NotJsonObject => "the body must be a JSON object".to_owned(),
            ApiError::TooDeep(error) => format!("the body is refused: {error}"),
            ApiError::BadRecipient => {
                "\"to\" must be a user id: 1-64 of A-Z a-z 0-9 _ . @ -".to_owned()
            }
        }
    }
}

/// The body as a JSON object; it, and what is left of it, drops flat.
fn object(body: &[u8]) -> Result<StackSafeValue, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::NotJsonObject)?;
    match laxjson::parse_strict(text) {
        Ok(value) => {
            let value = StackSafeValue::new(value);
            if value.is_object() {
                Ok(value)
            } else {
                Err(ApiError::NotJsonObject)
            }
        }
        Err(error @ LaxJsonError::TooDeep { .. }) => Err(ApiError::TooDeep(error)),
        Err(_) => Err(ApiError::NotJsonObject),
    }
}

/// Takes `data` out of a request object: `null` when absent.
fn take_data(request: &mut StackSafeValue) -> StackSafeValue {
    let data = request
        .as_object_mut()
        .and_then(|members| members.remove("data"));
    StackSafeValue::new(data.unwrap_or(Value::Null))
}

/// `GET /api/online`: `{"online": N, "users": [...]}`.
pub fn online(hub: &Hub) -> String {
    let users: Vec<String> = hub
        .registry
        .user_ids()
        .iter()
        .map(|u| u.as_str().to_owned())
        .collect();
    json!({ "online": users.len(), "users": users }).to_string()
}

/// `POST /api/push` with `{"to": ID, "data": ANY}`: `{"delivered": N}`.
pub fn push(hub: &Hub, body: &[u8], metrics: &Metrics) -> Result<String, ApiError> {
    let mut request = object(body)?;
    let to = request
        .get("to")
        .and_then(UserId::parse)
        .ok_or(ApiError::BadRecipient)?;
    let data = take_data(&mut request);
    let template = Arc::new(MessageTemplate::new(
        codes::MESSAGE_PUSH,
        None,
        Some(&to),
        &data,
        unix_millis(),
    ));
    let delivered = match hub.send_to_user(&to, &template, metrics) {
        Reach::Delivered(n) => n,
        Reach::NotOnline | Reach::Unreachable => 0,
    };
    Ok(json!({ "delivered": delivered }).to_string())
}

/// `POST /api/broadcast` with `{"data": ANY}`: `{"delivered": N}`.
pub fn broadcast(hub: &Hub, body: &[u8], metrics: &Metrics) -> Result<String, ApiError> {
    let mut request = object(body)?;
    let data = take_data(&mut request);
    let template = Arc::new(MessageTemplate::new(
        codes::MESSAGE_PUSH,
        None,
        None,
        &data,
        unix_millis(),
    ));
    let delivered = hub.send_to_everyone(None, &template, metrics);
    Ok(json!({ "delivered": delivered }).to_string())
}
