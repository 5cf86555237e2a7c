//! Decoding a client's text message on `/ws` (`chat::message::decode`) and
//! the replies built from what it decoded.
//!
//! On any UTF-8 input:
//! - `decode` never panics, and fails with `NotJson` carrying the lax
//!   parser's own error exactly when the lax parser fails;
//! - the decision depends on the JSON value only, not on its spelling:
//!   decoding serde_json's rewrite of the value gives the same result;
//! - every refusal turns into an ERROR message (1244) that is valid JSON
//!   and carries the refusal's code and text;
//! - every PEER or BROADCAST turns into a MESSAGE (1756) that is valid JSON
//!   carrying `data` unchanged, and a PEER's `to` names `data.to`;
//! - every AUTH id is 1 to 64 characters of the allowed alphabet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use socketbox::apps::chat::laxjson;
use socketbox::apps::chat::message::{
    self, codes, ClientMessage, MessageTemplate, RequestError, UserId,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = message::decode(text);
    match laxjson::parse(text) {
        Err(error) => assert_eq!(decoded, Err(RequestError::NotJson(error))),
        Ok(value) => assert_eq!(message::decode(&value.to_string()), decoded, "{value}"),
    }
    match &decoded {
        Err(refusal) => {
            let reply: Value = serde_json::from_str(&message::request_error(refusal))
                .expect("ERROR reply is JSON");
            assert_eq!(reply["code"], codes::SERVER_ERROR);
            assert_eq!(reply["extend"]["code"], refusal.error_code());
            assert_eq!(reply["extend"]["mess"], refusal.message());
        }
        Ok(ClientMessage::Auth { id, .. }) => {
            assert_eq!(UserId::new(id.as_str()).as_ref(), Some(id));
        }
        Ok(ClientMessage::Peer { to, data }) => {
            assert_eq!(data.get("to").and_then(UserId::parse).as_ref(), Some(to));
            delivered_intact(codes::MESSAGE_PEER, Some(to), &**data);
        }
        Ok(ClientMessage::Broadcast { data }) => {
            delivered_intact(codes::MESSAGE_BROADCAST, None, &**data);
        }
        Ok(ClientMessage::Ping | ClientMessage::Pong | ClientMessage::Presence) => {}
    }
});

fn delivered_intact(kind: i64, to: Option<&UserId>, data: &Value) {
    let from = UserId::new("fuzz").expect("a valid id");
    let template = MessageTemplate::new(kind, Some(&from), to, data, 1_700_000_000_000);
    let rendered = template.render(7);
    let message: Value = serde_json::from_str(&rendered).expect("MESSAGE is JSON");
    assert_eq!(message["code"], codes::SERVER_MESSAGE);
    assert_eq!(&message["body"]["data"], data);
    assert_eq!(message["body"]["seq"], 7);
}
