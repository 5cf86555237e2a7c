//! The server shell: a `std::net::TcpListener`, one thread per connection,
//! and the route table. Everything protocol-shaped lives in
//! [`crate::protocol`]; this module only moves bytes between sockets and it.
//!
//! The life of a connection:
//!
//! 1. [`Server::run`] accepts it, checks the connection limits and the
//!    thread budget *before* starting anything (a refused connection costs
//!    no thread), and hands it to a thread with a small, explicit stack
//!    ([`ServerConfig::thread_stack`]): one whose previous connection has
//!    ended, or a new one (`io::threads`).
//! 2. The thread reads the HTTP request head (`io::http::read_head`), bounded
//!    in bytes (8 KiB, RFC 6455 4.2.1 leaves the limit to us) and in time
//!    (`--handshake-timeout`, so a slowloris client cannot hold a thread).
//! 3. The [`Routes`] its builder mounted map the path to an application
//!    ([`crate::io::app`]); WebSocket routes go through the opening
//!    handshake (RFC 6455 4.2) and hand the socket to their handler, the
//!    rest answer one HTTP response and close. The shell names no
//!    application: whoever builds the server chooses them.
//!
//! With `--tls-cert` and `--tls-key` (feature `tls`), step 2 begins with
//! the TLS handshake, on the connection's thread and within the same
//! `--handshake-timeout` as the request head (`io::tls`); everything after
//! it goes through the TLS socket ([`Socket`]).

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use crate::io::config::ServerConfig;

use crate::io::app::{Context, Exchange, HttpHandler, Upgraded, WebSocketHandler};
use crate::io::socket::Socket;
use crate::io::threads::{self, ThreadCount};
use crate::io::{http, transport};
use crate::protocol::deflate::{self, Agreement};
use crate::protocol::handshake;
use crate::protocol::http::{parse_request, write_response, Parse, Request};

/// What a route leads to.
#[derive(Clone)]
pub enum Handler {
    /// A WebSocket application: the shell runs the opening handshake.
    WebSocket(Arc<dyn WebSocketHandler>),
    /// A plain HTTP application.
    Http(Arc<dyn HttpHandler>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handler::WebSocket(_) => "WebSocket",
            Handler::Http(_) => "Http",
        })
    }
}

/// The route table: method, path, handler. A route that is not mounted
/// does not exist: 404, never 405.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    table: Vec<(&'static str, &'static str, Handler)>,
}

impl Routes {
    /// No routes.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Mount a WebSocket application on `GET path`.
    pub fn websocket(mut self, path: &'static str, handler: Arc<dyn WebSocketHandler>) -> Self {
        self.table.push(("GET", path, Handler::WebSocket(handler)));
        self
    }

    /// Mount an HTTP application on `GET path` (and so `HEAD path`).
    pub fn get(mut self, path: &'static str, handler: Arc<dyn HttpHandler>) -> Self {
        self.table.push(("GET", path, Handler::Http(handler)));
        self
    }

    /// Mount an HTTP application on `POST path`.
    pub fn post(mut self, path: &'static str, handler: Arc<dyn HttpHandler>) -> Self {
        self.table.push(("POST", path, Handler::Http(handler)));
        self
    }

    /// The mounted routes: method, path, handler.
    pub fn iter(&self) -> impl Iterator<Item = &(&'static str, &'static str, Handler)> {
        self.table.iter()
    }
}

/// How long a shutdown waits for the closing handshakes, from the signal:
/// PROTOCOL.md "waits up to 5 s for the closing handshakes".
pub const SHUTDOWN_GRACE: Duration = transport::CLOSE_TIMEOUT;

/// How long, once the grace is over and every socket is shut down, the
/// shutdown waits for the connection threads to notice (they wake at once;
/// this only bounds a very busy machine).
const AFTER_CLOSE_ALL: Duration = Duration::from_secs(1);

/// State every connection thread shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// What the applications see of the shell.
    pub context: Arc<Context>,
    /// The mounted applications.
    routes: Routes,
    /// Open connections per client address, for `--max-connections-per-ip`.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// The threads that run connections.
    pub threads: Arc<threads::ThreadCache<Accepted>>,
    /// The TLS side, when every route is served over TLS.
    #[cfg(feature = "tls")]
    tls: Option<crate::io::tls::Tls>,
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Bind the listening socket; `routes` are the applications it serves,
    /// all sharing `context`. With a TLS certificate and key configured,
    /// they are loaded first: an unreadable file, or a key that is not the
    /// certificate's, is an error naming the file.
    pub fn bind(context: Arc<Context>, routes: Routes) -> io::Result<Server> {
        #[cfg(feature = "tls")]
        let tls = match (&context.config.tls_cert, &context.config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::io::tls::Tls::new(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(io::Error::other(
                    "--tls-cert and --tls-key go together: give both or neither",
                ))
            }
        };
        #[cfg(not(feature = "tls"))]
        if context.config.tls_cert.is_some() || context.config.tls_key.is_some() {
            return Err(io::Error::other(
                "TLS needs a socketbox built with the cargo feature `tls`",
            ));
        }
        let listener = TcpListener::bind(context.config.listen.as_str())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen: {e}")))?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                threads: threads::ThreadCache::new(context.config.connection_stack(), run_accepted),
                context,
                routes,
                per_ip: Mutex::new(HashMap::new()),
                #[cfg(feature = "tls")]
                tls,
            }),
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the shell shares with its applications, for embedding and
    /// tests.
    pub fn shared(&self) -> Arc<Context> {
        Arc::clone(&self.shared.context)
    }

    /// A handle that stops the server from another thread (a signal
    /// handler, a test).
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        let mut wake = self.listener.local_addr()?;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                SocketAddr::V6(_) => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            });
        }
        Ok(ShutdownHandle {
            shared: Arc::clone(&self.shared),
            wake,
        })
    }

    /// Accept connections until a shutdown, then wait for the closing
    /// handshakes until the shutdown's deadline ([`SHUTDOWN_GRACE`] after it
    /// began), then shut down every socket still open and return.
    pub fn run(self) -> io::Result<()> {
        let mut backoff = Duration::from_millis(5);
        loop {
            match self.listener.accept() {
                Ok(_) if self.shared.context.live.is_shutting_down() => break,
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    self.start_connection(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of descriptors, the shutdown's wake-up connection may
                // never be accepted: look for the shutdown here too.
                Err(_) if self.shared.context.live.is_shutting_down() => break,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the listener would fail
                    // again at once. Sleep so that connections that are
                    // closing can free their descriptors, instead of spinning.
                    eprintln!("socketbox: accept failed: {e}; retrying in {backoff:?}");
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        drop(self.listener);
        let live = &self.shared.context.live;
        if !live.wait_for_closing_handshakes() {
            // Clients that did not answer, or do not read: whatever their
            // threads block on, shutting their sockets down wakes them.
            let left = live.close_all();
            eprintln!(
                "socketbox: {left} connection(s) did not finish their closing handshake \
                 in {SHUTDOWN_GRACE:?}: closed"
            );
            if !live.wait_until_empty(AFTER_CLOSE_ALL) {
                eprintln!("socketbox: exiting with connection threads still running");
            }
        }
        Ok(())
    }

    fn start_connection(&self, stream: TcpStream, peer: SocketAddr) {
        let shared = &self.shared;
        let Some(slot) = ConnectionSlot::claim(shared, peer.ip()) else {
            refuse(stream, shared, 503, "server full");
            return;
        };
        let _ = stream.set_nodelay(true);
        let accepted = Accepted {
            stream,
            slot,
            shared: Arc::clone(shared),
        };
        if let Err((accepted, e)) = shared.threads.run(accepted) {
            eprintln!("socketbox: cannot spawn a connection thread: {e}");
            refuse(accepted.stream, shared, 503, "server cannot start a thread");
        }
    }
}

/// An accepted connection on its way to a thread.
pub(crate) struct Accepted {
    stream: TcpStream,
    slot: ConnectionSlot,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("stream", &self.stream)
            .finish()
    }
}

/// What a connection thread does with an accepted connection.
fn run_accepted(accepted: Accepted) {
    let Accepted {
        stream,
        slot,
        shared,
    } = accepted;
    let _slot = slot;
    let _thread = ThreadCount::enter(&shared.context.metrics);
    serve(stream, &shared);
}

/// Stops a running [`Server`]: PROTOCOL.md "On SIGINT or SIGTERM the
/// server stops accepting, sends Close 1001 on every open WebSocket
/// connection, waits up to 5 s for the closing handshakes, and exits 0".
/// Nothing in it blocks on a client (`io::live`).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    wake: SocketAddr,
}

impl ShutdownHandle {
    /// Send Close 1001 everywhere and make [`Server::run`] return once the
    /// connections have finished (or [`SHUTDOWN_GRACE`] has passed).
    pub fn shutdown(&self) {
        let context = &self.shared.context;
        context.live.shutdown(SHUTDOWN_GRACE, &context.metrics);
        // accept() has no timeout in std: a connection of our own wakes it
        // so that it sees the shutdown.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }

    /// Read the TLS certificate and key again (SIGHUP): new handshakes
    /// present the new pair, open connections go on with theirs. When the
    /// new files are not usable the old pair stays and the error says why.
    /// `Ok(false)`: the server does not serve TLS.
    pub fn reload_tls(&self) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.shared.tls {
            tls.reload()?;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Refuse a connection from the accept loop with a short HTTP error. The
/// write is bounded so a client that never reads cannot stall accepting.
fn refuse(mut stream: TcpStream, shared: &Shared, status: u16, reason: &str) {
    shared.context.metrics.rejected(status);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let mut out = Vec::new();
    write_response(
        &mut out,
        status,
        "text/plain; charset=utf-8",
        &[],
        reason.as_bytes(),
    );
    let _ = stream.write_all(&out);
}

/// One open connection counted against the limits; released on drop.
#[derive(Debug)]
struct ConnectionSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl ConnectionSlot {
    fn claim(shared: &Arc<Shared>, ip: IpAddr) -> Option<ConnectionSlot> {
        let context = &shared.context;
        let config = &context.config;
        if !context.thread_available() {
            return None;
        }
        let open = context.metrics.connections.fetch_add(1, Relaxed);
        if open as usize >= config.max_connections {
            context.metrics.connections.fetch_sub(1, Relaxed);
            return None;
        }
        if config.max_connections_per_ip > 0 {
            let mut per_ip = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= config.max_connections_per_ip {
                drop(per_ip);
                context.metrics.connections.fetch_sub(1, Relaxed);
                return None;
            }
            *count += 1;
        }
        Some(ConnectionSlot {
            shared: Arc::clone(shared),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let context = &self.shared.context;
        context.metrics.connections.fetch_sub(1, Relaxed);
        if context.config.max_connections_per_ip > 0 {
            let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = per_ip.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// Serve one connection, from its TLS handshake or request head to its end.
fn serve(tcp: TcpStream, shared: &Arc<Shared>) {
    let started = Instant::now();
    let Some(mut stream) = secure(tcp, shared) else {
        return;
    };
    let _ = stream.set_write_timeout(Some(transport::CLOSE_TIMEOUT * 2));
    // The TLS handshake and the request head share one deadline.
    let head_time = shared
        .context
        .config
        .handshake_timeout
        .saturating_sub(started.elapsed());
    // The request head and its parsed headers are dropped before a
    // WebSocket handler runs: an idle connection keeps none of them.
    if let Some((handler, leftover, (protocol, deflate))) =
        answer_request(&mut stream, shared, head_time)
    {
        handler.serve(Upgraded {
            stream,
            leftover,
            protocol,
            deflate,
            context: &shared.context,
        });
    }
}

/// The connection's socket: plain, or TLS once the handshake succeeded
/// within `--handshake-timeout`. A client that says nothing in time, or
/// speaks anything but TLS (plain HTTP, garbage), is closed at once.
fn secure(tcp: TcpStream, shared: &Shared) -> Option<Socket> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        return tls
            .accept(tcp, shared.context.config.handshake_timeout)
            .ok();
    }
    let _ = shared;
    Some(Socket::plain(tcp))
}

/// A WebSocket application, the bytes that came in behind the head and the
/// selected subprotocol.
type Upgrade = (
    Arc<dyn WebSocketHandler>,
    Vec<u8>,
    (Option<String>, Option<Agreement>),
);

/// Read and answer one request. For an accepted WebSocket upgrade, return
/// its application, the bytes behind the head and the subprotocol.
///
/// Never inlined: reading and parsing the head takes over 1 KiB of stack
/// frame, which inlined into [`serve`] would stay below the handler for the
/// connection's whole life and push its idle read onto a third stack page
/// (it did in the `deflate` build: 12 KiB resident per idle connection
/// instead of 8; docs/architecture.md, "An idle session's stack").
#[inline(never)]
fn answer_request(
    stream: &mut Socket,
    shared: &Arc<Shared>,
    head_time: Duration,
) -> Option<Upgrade> {
    let stream = &mut *stream;
    let context = &*shared.context;
    let metrics = &context.metrics;
    let head = match http::read_head(stream, head_time, metrics) {
        Ok(head) => head,
        Err(http::HeadError::Respond(error)) => {
            http::respond_error(stream, metrics, &error);
            return None;
        }
        Err(http::HeadError::TimedOut) => {
            http::respond(
                stream,
                metrics,
                408,
                "text/plain; charset=utf-8",
                &[],
                b"request head took too long",
            );
            return None;
        }
        Err(http::HeadError::Closed) => return None,
    };
    let request = match parse_request(&head.bytes) {
        Ok(Parse::Complete(request)) => request,
        // read_head only returns once parse_request said Complete.
        Ok(Parse::Partial) => return None,
        Err(error) => {
            http::respond_error(stream, metrics, &error);
            return None;
        }
    };
    let leftover = &head.bytes[request.head_len..];
    let path = request.path();
    let head_only = request.method == "HEAD";
    // RFC 9110 9.3.2: HEAD is GET without the content, so every GET route
    // answers it.
    let served = |method: &str| method == request.method || (method == "GET" && head_only);
    let exists = |(_, p, _): &&(&str, &str, Handler)| *p == path;
    let route = shared
        .routes
        .iter()
        .filter(exists)
        .find(|(method, _, _)| served(method))
        .or_else(|| shared.routes.iter().find(exists));
    let Some((method, _, handler)) = route else {
        let mut reply = http::Reply::new(stream, metrics, request.method);
        reply.send(404, TEXT, &[], b"not found");
        return None;
    };
    if !served(method) {
        let mut reply = http::Reply::new(stream, metrics, request.method);
        // RFC 9110 15.5.6: a 405 "MUST generate an Allow header field".
        let allow = if *method == "GET" {
            "GET, HEAD"
        } else {
            method
        };
        reply.send(405, TEXT, &[("Allow", allow)], b"method not allowed");
        return None;
    }
    match handler {
        Handler::WebSocket(handler) => {
            let mut reply = http::Reply::new(stream, metrics, request.method);
            let (protocol, deflate) =
                upgrade(&mut reply, context, &request, handler.subprotocols())?;
            Some((
                Arc::clone(handler),
                leftover.to_vec(),
                (protocol.map(str::to_owned), deflate),
            ))
        }
        Handler::Http(handler) => {
            handler.respond(&mut Exchange::new(stream, &request, leftover, context));
            None
        }
    }
}

/// Plain-text content type of short answers.
const TEXT: &str = "text/plain; charset=utf-8";

/// The opening handshake, server side (RFC 6455 4.2.2). On success the 101
/// response has been sent and the selected subprotocol (`None`: none
/// selected) and permessage-deflate agreement are returned; on failure an
/// HTTP error has been sent.
fn upgrade<'a>(
    reply: &mut http::Reply,
    context: &Context,
    request: &Request<'a>,
    supported_protocols: &[&str],
) -> Option<(Option<&'a str>, Option<Agreement>)> {
    // A HEAD cannot switch protocols (RFC 6455 4.2.1 asks for "An HTTP/1.1
    // or higher GET request"), so it gets what a GET without an upgrade
    // gets; RFC 9110 7.8: a server "MAY ignore a received Upgrade header".
    if reply.head_only() || !handshake::wants_websocket(request) {
        reply.send(
            426,
            "text/plain; charset=utf-8",
            &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
            b"this endpoint speaks WebSocket: send Upgrade: websocket",
        );
        return None;
    }
    let upgrade = match handshake::validate_upgrade(request) {
        Ok(upgrade) => upgrade,
        Err(error) => {
            reply.error(&error);
            return None;
        }
    };
    if !context.config.allowed_origins.allows(upgrade.origin) {
        reply.send(403, "text/plain; charset=utf-8", &[], b"origin not allowed");
        return None;
    }
    let protocol = handshake::select_protocol(&upgrade.offered_protocols, supported_protocols);
    // RFC 7692: without --deflate every offer is declined by answering
    // without Sec-WebSocket-Extensions.
    let config = &context.config;
    let deflate = config
        .deflate
        .then(|| deflate::negotiate(&upgrade.offered_extensions, config.deflate_context_takeover))
        .flatten();
    let extensions = deflate.map(|agreement| agreement.response());
    let mut out = Vec::with_capacity(256);
    handshake::write_switching_protocols_with(
        &mut out,
        &handshake::accept_key(upgrade.key),
        protocol,
        extensions.as_deref(),
    );
    transport::write_counted(reply.stream, &out, &context.metrics).ok()?;
    Some((protocol, deflate))
}
