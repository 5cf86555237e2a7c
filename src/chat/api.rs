//! The admin API (PROTOCOL.md "Endpoints"): what is online, and server
//! pushes. The server checks the bearer token and routes here; these
//! functions take the request body and return the JSON to answer with.
//!
//! Bodies are strict JSON (they come from scripts and `curl`, not from the
//! seed client). A push reaches every session of one user as MESSAGE type
//! 30003 with `from` null; a broadcast reaches every authenticated session
//! with `to` null too.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::server::metrics::Metrics;

use super::message::{codes, MessageTemplate, UserId};
use super::{unix_millis, Hub};

/// Why an API request body was refused (answered with `400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// The body is not a JSON object.
    NotJsonObject,
    /// `to` is missing or not a valid user id.
    BadRecipient,
}

impl ApiError {
    /// The text of the `400` answer.
    pub fn reason(self) -> &'static str {
        match self {
            ApiError::NotJsonObject => "the body must be a JSON object",
            ApiError::BadRecipient => "\"to\" must be a user id: 1-64 of A-Z a-z 0-9 _ . @ -",
        }
    }
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::NotJsonObject),
    }
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
    let request = object(body)?;
    let to = request
        .get("to")
        .and_then(UserId::parse)
        .ok_or(ApiError::BadRecipient)?;
    let data = request.get("data").cloned().unwrap_or(Value::Null);
    let template = Arc::new(MessageTemplate::new(
        codes::MESSAGE_PUSH,
        None,
        Some(&to),
        &data,
        unix_millis(),
    ));
    let delivered = hub.deliver(&template, &hub.registry.sessions_of(&to), metrics);
    Ok(json!({ "delivered": delivered }).to_string())
}

/// `POST /api/broadcast` with `{"data": ANY}`: `{"delivered": N}`.
pub fn broadcast(hub: &Hub, body: &[u8], metrics: &Metrics) -> Result<String, ApiError> {
    let request = object(body)?;
    let data = request.get("data").cloned().unwrap_or(Value::Null);
    let template = Arc::new(MessageTemplate::new(
        codes::MESSAGE_PUSH,
        None,
        None,
        &data,
        unix_millis(),
    ));
    let delivered = hub.deliver(&template, &hub.registry.all_sessions(), metrics);
    Ok(json!({ "delivered": delivered }).to_string())
}
