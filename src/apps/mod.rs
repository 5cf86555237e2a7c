//! The applications the server shell mounts, and the `socketbox` binary's
//! route table ([`standard_server`]). Each application sees the shell only
//! through [`crate::io::app`].
//!
//! | module | routes |
//! | --- | --- |
//! | [`chat`] | `/ws`, `/websocket` (subprotocol `socketbox.v1`), `/api/*` |
//! | [`echo`] | `/echo` |
//! | [`assets`] | `/`, `/socketbox.js` |
//! | [`status`] | `/healthz`, `/metrics` |

pub mod assets;
pub mod chat;
pub mod echo;
pub mod status;

use std::io;
use std::sync::Arc;

use crate::io::app::Context;
use crate::io::config::ServerConfig;
use crate::server::{Routes, Server};

use chat::api::{AdminApi, Endpoint};
use chat::config::ChatConfig;
use chat::Chat;
use echo::{Echo, EchoConfig};

/// Everything the `socketbox` binary can be told on its command line: the
/// shell's settings and each application's own.
#[derive(Debug, Clone, Default)]
pub struct StandardConfig {
    /// The shell's: listening, limits, TLS, compression.
    pub server: ServerConfig,
    /// `/ws` and `/api/*`.
    pub chat: ChatConfig,
    /// `/echo`.
    pub echo: EchoConfig,
}

/// The routes of the `socketbox` binary, one line per endpoint. `/echo`
/// exists only with `echo.enabled` (`--no-echo`: 404); `/api/*` answer 404
/// themselves without `--admin-token`.
pub fn standard_routes(
    context: &Arc<Context>,
    chat: ChatConfig,
    echo: EchoConfig,
) -> io::Result<Routes> {
    let chat = Arc::new(Chat::mount(context, chat)?);
    let hub = Arc::clone(chat.hub());
    let api = |endpoint| Arc::new(AdminApi::new(Arc::clone(&hub), endpoint));
    let mut routes = Routes::new()
        .websocket("/ws", chat.clone())
        .websocket("/websocket", chat);
    if echo.enabled {
        routes = routes.websocket("/echo", Arc::new(Echo::new(echo)));
    }
    let health = {
        let hub = Arc::clone(&hub);
        status::Health {
            check: Some(Arc::new(move || hub.health())),
        }
    };
    let metrics = {
        let hub = Arc::clone(&hub);
        status::MetricsPage {
            more: Some(Arc::new(move |out: &mut String| hub.render_metrics(out))),
        }
    };
    Ok(routes
        .get("/healthz", Arc::new(health))
        .get("/", Arc::new(assets::INDEX))
        .get("/socketbox.js", Arc::new(assets::SCRIPT))
        .get("/metrics", Arc::new(metrics))
        .get("/api/online", api(Endpoint::Online))
        .post("/api/push", api(Endpoint::Push))
        .post("/api/broadcast", api(Endpoint::Broadcast)))
}

/// The `socketbox` binary's server: [`standard_routes`] bound to
/// `config.server.listen`.
pub fn standard_server(config: StandardConfig) -> io::Result<Server> {
    let context = Arc::new(Context::new(config.server));
    let routes = standard_routes(&context, config.chat, config.echo)?;
    Server::bind(context, routes)
}
