//! `GET /` and `GET /socketbox.js`: the demo page and the client library,
//! compiled into the binary.

use crate::io::app::{Exchange, HttpHandler};

/// The demo page.
pub const INDEX_HTML: &str = include_str!("../../assets/index.html");

/// The client library.
pub const SOCKETBOX_JS: &str = include_str!("../../assets/socketbox.js");

/// A file served as it is.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its content.
    pub body: &'static str,
}

/// The demo page, `text/html`.
pub const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: INDEX_HTML,
};

/// The client library, `text/javascript`.
pub const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: SOCKETBOX_JS,
};

impl HttpHandler for Asset {
    fn respond(&self, exchange: &mut Exchange<'_>) {
        exchange.send(200, self.content_type, &[], self.body.as_bytes());
    }
}
