//! The seam between the server shell and the applications it mounts. The
//! shell owns the socket until a route is found: it reads the request head,
//! answers HEAD, 404 and 405, and runs the opening handshake (RFC 6455 4.2);
//! an application only sees a finished upgrade ([`WebSocketHandler`]) or one
//! request to answer ([`HttpHandler`]), and what it may use of the shell
//! ([`Context`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::protocol::deflate::Agreement;
use crate::protocol::http::Request;

use super::config::ServerConfig;
use super::http::{self, HeadError, Reply};
use super::live::LiveSet;
use super::metrics::Metrics;
use super::socket::Socket;
use super::threads::thread_budget;

/// What the shell shares with every connection and every application.
#[derive(Debug)]
pub struct Context {
    /// The settings.
    pub config: ServerConfig,
    /// The counters.
    pub metrics: Metrics,
    /// Open WebSocket connections, for the shutdown.
    pub(crate) live: LiveSet,
    /// Most connection threads that may run at once; see [`thread_budget`].
    pub(crate) max_threads: u64,
}

impl Context {
    /// A context with fresh counters and this host's thread budget.
    pub fn new(config: ServerConfig) -> Context {
        Context {
            config,
            metrics: Metrics::default(),
            live: LiveSet::default(),
            max_threads: thread_budget(),
        }
    }

    /// Whether one more connection thread may be started. A thread past the
    /// budget would not fail cleanly: std maps each new thread's signal
    /// stack after the thread starts, and when the kernel refuses the
    /// mapping the whole process aborts. So the server refuses first.
    pub fn thread_available(&self) -> bool {
        self.metrics.threads.load(Relaxed) < self.max_threads
    }
}

/// A connection whose opening handshake succeeded: the 101 has been sent.
#[derive(Debug)]
pub struct Upgraded<'a> {
    /// The connection, plain TCP or TLS.
    pub stream: Socket,
    /// Bytes that arrived right behind the request head: the first frames.
    pub leftover: Vec<u8>,
    /// The subprotocol selected from [`WebSocketHandler::subprotocols`].
    pub protocol: Option<String>,
    /// permessage-deflate, when `--deflate` is on and the client offered
    /// it: the 101 accepted it, so the connection must speak it.
    pub deflate: Option<Agreement>,
    /// What the shell shares.
    pub context: &'a Arc<Context>,
}

/// An application on a WebSocket route.
pub trait WebSocketHandler: Send + Sync {
    /// The subprotocols it speaks, in order of preference (RFC 6455 4.2.2
    /// /subprotocol/).
    fn subprotocols(&self) -> &[&'static str] {
        &[]
    }

    /// Run an upgraded connection until it ends, on the connection's thread.
    fn serve(&self, upgraded: Upgraded<'_>);
}

/// An application that answers plain HTTP requests.
pub trait HttpHandler: Send + Sync {
    /// Answer one request through `exchange` (a HEAD is answered without
    /// the body by the exchange itself).
    fn respond(&self, exchange: &mut Exchange<'_>);
}

/// One HTTP request and the means to answer it.
#[derive(Debug)]
pub struct Exchange<'a> {
    request: &'a Request<'a>,
    reply: Reply<'a>,
    leftover: &'a [u8],
    context: &'a Context,
}

impl<'a> Exchange<'a> {
    /// The exchange of `request`, whose head was followed by `leftover`.
    pub fn new(
        stream: &'a mut Socket,
        request: &'a Request<'a>,
        leftover: &'a [u8],
        context: &'a Context,
    ) -> Self {
        Exchange {
            request,
            reply: Reply::new(stream, &context.metrics, request.method),
            leftover,
            context,
        }
    }

    /// The request.
    pub fn request(&self) -> &Request<'a> {
        self.request
    }

    /// What the shell shares.
    pub fn context(&self) -> &'a Context {
        self.context
    }

    /// Whether the request was a HEAD: the answer carries no body.
    pub fn head_only(&self) -> bool {
        self.reply.head_only()
    }

    /// Send the response (its body only if the request was not a HEAD).
    pub fn send(
        &mut self,
        status: u16,
        content_type: &str,
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) {
        self.reply.send(status, content_type, extra_headers, body);
    }

    /// Answer with an error's status, headers and reason.
    pub fn error(&mut self, error: &dyn crate::protocol::http::ErrorResponse) {
        self.reply.error(error);
    }

    /// Read the request's body (`Content-Length` bytes, at most `limit`)
    /// within `--handshake-timeout`. `None`: it could not be read, and the
    /// error, if the client can still hear one, has been answered.
    pub fn read_body(&mut self, limit: usize) -> Option<Vec<u8>> {
        let context = self.context;
        let body = self
            .request
            .content_length()
            .map_err(HeadError::Respond)
            .and_then(|length| {
                http::read_body(
                    self.reply.stream,
                    self.leftover.to_vec(),
                    length,
                    limit,
                    context.config.handshake_timeout,
                )
            });
        match body {
            Ok(body) => Some(body),
            Err(HeadError::Respond(error)) => {
                http::respond_error(self.reply.stream, &context.metrics, &error);
                None
            }
            Err(HeadError::TimedOut) => {
                http::respond(
                    self.reply.stream,
                    &context.metrics,
                    408,
                    "text/plain; charset=utf-8",
                    &[],
                    b"body took too long",
                );
                None
            }
            Err(HeadError::Closed) => None,
        }
    }
}
