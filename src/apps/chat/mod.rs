//! The SocketBox chat protocol on `/ws` (`../shared/PROTOCOL.md`): who is
//! online, routing messages between them, presence, heartbeats and the
//! admin API. Built on the RFC 6455 core in [`crate::protocol`].
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the chat's settings (`--heartbeat`, `--max-queue`, ...) |
//! | [`laxjson`] | the seed client's lax JSON (single-quoted strings) |
//! | [`message`] | decoding client requests, encoding server messages |
//! | [`token`] | HMAC-SHA1 (RFC 2104) and the `EXP.HEX` AUTH tokens |
//! | `registry` | the mutex-guarded map from user id to sessions |
//! | `online` | the online list's net changes per presence window (10004, 20004, 20005) |
//! | `outbox` | each session's connection and bounded outbound queue, written through or drained by a borrowed thread |
//! | `timer` | the one thread that runs every session's heartbeats, online counts and deadlines |
//! | `step` | what one request does, as data: replies, deliveries, bind, close |
//! | `session` | one `/ws` connection's reader: frames in, the step's actions carried out |
//! | `api` | `/api/online`, `/api/push`, `/api/broadcast` |
//! | `nodes` | several nodes over Redis (`--redis`, the `redis` feature) |
//!
//! [`Hub`] ties them together: it is the chat state the server shares
//! between all connection threads. [`Chat`] is the WebSocket application
//! the server mounts on `/ws`; [`Chat::mount`] creates the hub and starts
//! its presence and timer threads.

pub(crate) mod api;
pub mod config;
pub mod laxjson;
pub mod message;
#[cfg(feature = "redis")]
pub(crate) mod nodes;
pub(crate) mod online;
pub(crate) mod outbox;
pub(crate) mod registry;
pub(crate) mod session;
pub(crate) mod step;
pub(crate) mod timer;
pub mod token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::io::app::Context;
use crate::io::app::{Upgraded, WebSocketHandler};
use crate::io::metrics::Metrics;

use config::ChatConfig;
use message::{MessageTemplate, UserId};
use online::Due;
use outbox::Enqueued;
use registry::{NodeName, Registry, Session, SubscribeRefusal};

/// The subprotocol `/ws` selects when the client offers it.
pub const CHAT_SUBPROTOCOL: &str = "socketbox.v1";

/// The chat as a WebSocket application.
#[derive(Debug)]
pub struct Chat {
    hub: Arc<Hub>,
}

impl Chat {
    /// A new chat with these settings: its hub, the presence thread that
    /// serves it every `--presence-interval`, and the timer thread of every
    /// session.
    pub fn mount(context: &Arc<Context>, config: ChatConfig) -> std::io::Result<Chat> {
        let hub = Arc::new(Hub::new(config));
        let timer = Arc::clone(&hub);
        let timer_context = Arc::clone(context);
        std::thread::Builder::new()
            .name("chat-timer".into())
            .spawn(move || {
                timer
                    .timers
                    .run(timer.config.heartbeat, &timer_context.metrics)
            })?;
        #[cfg(feature = "redis")]
        if let Some(url) = &hub.config.redis {
            nodes::join(&hub, context, url)?;
        }
        let presence = Arc::clone(&hub);
        let context = Arc::clone(context);
        std::thread::Builder::new()
            .name("presence".into())
            .spawn(move || {
                let config = &presence.config;
                presence.run_presence(
                    config.presence_interval,
                    config.presence_list_max,
                    &context.metrics,
                )
            })?;
        Ok(Chat { hub })
    }

    /// The chat state, for the admin API.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

/// Whether `url` is a `--redis` value the server can use: `Err` says why
/// not (also when this build has no `redis` feature).
pub fn check_redis_url(url: &str) -> Result<(), &'static str> {
    #[cfg(feature = "redis")]
    return nodes::check_url(url);
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Err("this socketbox was built without the `redis` cargo feature")
    }
}

/// The other nodes, as the hub reaches them (`nodes`, with `--redis`).
/// Every method only queues or reads flags: none waits on Redis, so no
/// sender ever waits on another node's health.
pub trait Nodes: Send + Sync + std::fmt::Debug {
    /// Whether messages can reach the other nodes now.
    fn reachable(&self) -> bool;
    /// Queue `template` for `user`'s sessions on each of `nodes`; false
    /// when it could not be queued.
    fn send_to_user(&self, nodes: &[NodeName], user: &UserId, template: &MessageTemplate) -> bool;
    /// Queue `template` for every session on every other node.
    fn send_to_all(&self, template: &MessageTemplate) -> bool;
    /// `Err(reason)` while the other nodes cannot be reached.
    fn health(&self) -> Result<(), String>;
    /// Append this link's metrics in the Prometheus text format.
    fn render_metrics(&self, out: &mut String);
}

/// What became of a message to one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Queued to this many sessions, on this node and others.
    Delivered(usize),
    /// Online on no node: ERROR 40400.
    NotOnline,
    /// Not delivered: it needed another node, which cannot be reached
    /// now: ERROR 50300.
    Unreachable,
}

impl WebSocketHandler for Chat {
    fn subprotocols(&self) -> &[&'static str] {
        &[CHAT_SUBPROTOCOL]
    }

    fn serve(&self, upgraded: Upgraded<'_>) {
        session::run(
            upgraded.stream,
            &upgraded.leftover,
            upgraded.deflate,
            upgraded.context,
            &self.hub,
        );
    }
}

/// Recipients from which a fan-out is shared between the cores.
const SPLIT_FAN_OUT_AT: usize = 1024;

/// Stack of a fan-out helper thread: it only queues and writes.
const FAN_OUT_STACK: usize = 64 * 1024;

/// One of the fan-out helper threads allowed at once, given back when
/// dropped (also if the helper panics, or never starts).
struct HelperSlot<'a>(&'a AtomicUsize);

impl<'a> HelperSlot<'a> {
    fn take(running: &'a AtomicUsize, limit: usize) -> Option<Self> {
        let slot = HelperSlot(running);
        (running.fetch_add(1, Relaxed) < limit).then_some(slot)
    }
}

impl Drop for HelperSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The chat state shared by every connection thread.
#[derive(Debug, Default)]
pub struct Hub {
    /// The chat's settings.
    pub config: ChatConfig,
    /// Who is online.
    pub registry: Registry,
    next_session_id: AtomicU64,
    /// Set when the online count may have changed; the presence thread
    /// clears it.
    presence_dirty: Mutex<bool>,
    presence_wake: Condvar,
    /// Held while a 20004 or a window's 20005s are queued, so that no
    /// session gets a 20005 older than its 20004 after it.
    online_list_turn: Mutex<()>,
    /// Fan-out helper threads running now.
    fan_out_helpers: AtomicUsize,
    /// Every session's heartbeats, online counts and deadlines.
    pub(crate) timers: timer::Timers,
    /// Threads lent to sessions whose socket did not take all their bytes.
    drainers: OnceLock<Arc<outbox::Drainers>>,
    /// The other nodes, with `--redis`.
    nodes: OnceLock<Arc<dyn Nodes>>,
}

/// Milliseconds since the Unix epoch, for MESSAGE `time`.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Hub {
    /// An empty chat with these settings.
    pub fn new(config: ChatConfig) -> Hub {
        Hub {
            config,
            ..Hub::default()
        }
    }

    /// A fresh, unique session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Relaxed) + 1
    }

    /// The drain threads, with `stack` bytes of stack each.
    pub(crate) fn drainers(&self, stack: usize) -> Arc<outbox::Drainers> {
        Arc::clone(self.drainers.get_or_init(|| outbox::drainers(stack)))
    }

    /// Queue `template` to each of `sessions`; returns how many took it.
    /// A session whose queue overflows is dropped from the registry at once.
    ///
    /// Most recipients have nothing queued, so the sending thread writes
    /// the message through to their sockets itself (`outbox`); a large
    /// fan-out is shared with one helper thread per further core, so that
    /// all cores write.
    pub fn deliver(
        &self,
        template: &Arc<MessageTemplate>,
        sessions: &[Arc<Session>],
        metrics: &Metrics,
    ) -> usize {
        if sessions.len() < SPLIT_FAN_OUT_AT {
            return self.deliver_here(template, sessions, metrics);
        }
        // Asked once: std reads the cgroup's CPU quota files for it.
        static CORES: OnceLock<usize> = OnceLock::new();
        let cores =
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if cores == 1 {
            return self.deliver_here(template, sessions, metrics);
        }
        let mut parts = sessions.chunks(sessions.len().div_ceil(cores));
        let mine = parts.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let mut delivered = 0;
            let mut helpers = Vec::new();
            for part in parts {
                match self.spawn_fan_out_helper(scope, cores - 1, || {
                    self.deliver_here(template, part, metrics)
                }) {
                    Some(helper) => helpers.push(helper),
                    None => delivered += self.deliver_here(template, part, metrics),
                }
            }
            delivered += self.deliver_here(template, mine, metrics);
            for helper in helpers {
                delivered += helper.join().unwrap_or(0);
            }
            delivered
        })
    }

    /// A helper thread for a large fan-out, unless `limit` helpers run
    /// already (many large broadcasts at once must not become many threads)
    /// or no thread can be had.
    fn spawn_fan_out_helper<'scope, 'env>(
        &'env self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        limit: usize,
        work: impl FnOnce() -> usize + Send + 'scope,
    ) -> Option<std::thread::ScopedJoinHandle<'scope, usize>> {
        let slot = HelperSlot::take(&self.fan_out_helpers, limit)?;
        std::thread::Builder::new()
            .name("fan-out".into())
            .stack_size(FAN_OUT_STACK)
            .spawn_scoped(scope, move || {
                let _slot = slot;
                work()
            })
            .ok()
    }

    fn deliver_here(
        &self,
        template: &Arc<MessageTemplate>,
        sessions: &[Arc<Session>],
        metrics: &Metrics,
    ) -> usize {
        let mut delivered = 0;
        for session in sessions {
            match session.outbox.send_message(template, metrics) {
                Enqueued::Yes => delivered += 1,
                Enqueued::Closed => {}
                Enqueued::Overflowed => self.leave(session, metrics),
            }
        }
        delivered
    }

    /// The other nodes from now on (set once, at start-up).
    pub fn set_nodes(&self, nodes: Arc<dyn Nodes>) {
        let _ = self.nodes.set(nodes);
    }

    /// `Err(reason)` while this node cannot reach the others: `/healthz`.
    pub fn health(&self) -> Result<(), String> {
        self.nodes.get().map_or(Ok(()), |nodes| nodes.health())
    }

    /// The chat's own metrics lines (the link to the other nodes).
    pub fn render_metrics(&self, out: &mut String) {
        if let Some(nodes) = self.nodes.get() {
            nodes.render_metrics(out);
        }
    }

    /// Queue `template` to every session of `to`, on this node and on the
    /// others. A user whose sessions are all here costs no Redis message.
    /// While the other nodes cannot be reached, what this node can deliver
    /// is delivered; a message that reached no session is
    /// [`Reach::Unreachable`] rather than `NotOnline`, since it may have
    /// been online on another node.
    pub fn send_to_user(
        &self,
        to: &UserId,
        template: &Arc<MessageTemplate>,
        metrics: &Metrics,
    ) -> Reach {
        let (local, remote) = self.registry.route(to);
        let mut delivered = self.deliver(template, &local, metrics);
        let mut missed = false;
        if let Some(nodes) = self.nodes.get() {
            if !nodes.reachable() {
                missed = true;
            } else if !remote.is_empty() {
                let names: Vec<NodeName> = remote.iter().map(|(n, _)| Arc::clone(n)).collect();
                if nodes.send_to_user(&names, to, template) {
                    delivered += remote.iter().map(|(_, n)| *n as usize).sum::<usize>();
                } else {
                    missed = true;
                }
            }
        }
        match (delivered, missed) {
            (0, true) => Reach::Unreachable,
            (0, false) => Reach::NotOnline,
            (n, _) => Reach::Delivered(n),
        }
    }

    /// Queue `template` to every authenticated session on every node but
    /// `except` (the sender's session); returns how many took it. The
    /// other nodes are sent it only when they have sessions; while they
    /// cannot be reached, only this node's sessions get it.
    pub fn send_to_everyone(
        &self,
        except: Option<u64>,
        template: &Arc<MessageTemplate>,
        metrics: &Metrics,
    ) -> usize {
        let (mut local, remote) = self.registry.everyone();
        if let Some(except) = except {
            local.retain(|s| s.id != except);
        }
        let mut delivered = self.deliver(template, &local, metrics);
        if let Some(nodes) = self.nodes.get() {
            if remote > 0 && nodes.reachable() && nodes.send_to_all(template) {
                delivered += usize::try_from(remote).unwrap_or(usize::MAX);
            }
        }
        delivered
    }

    /// Take `session` out of the registry (idempotent).
    pub fn leave(&self, session: &Session, metrics: &Metrics) {
        if self.registry.remove(session) {
            self.presence_changed(metrics);
        }
    }

    /// The online count may have changed: update `socketbox_users_online`
    /// and wake the presence thread. The count is read and stored under the
    /// presence lock, so of two threads whose changes race the later one
    /// stores a count that includes both (a stale count cannot win).
    pub fn presence_changed(&self, metrics: &Metrics) {
        let mut dirty = self
            .presence_dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        metrics
            .users_online
            .store(self.registry.user_count() as u64, Relaxed);
        *dirty = true;
        self.presence_wake.notify_one();
    }

    /// The presence thread's body. It offers the current count to every
    /// session at most once per `interval`; each session's outbox then sends
    /// it no more than once per `interval` of its own (at once, or from the
    /// timer when its window ends), the latest value winning (PROTOCOL.md: "coalesced per session"). So N logins cost
    /// O(N) sweeps' worth of work per interval, not a message per login per
    /// session.
    ///
    /// The same sweep ends the online list's window: subscribers get their
    /// 20005 (or their truncation, or a fresh 20004); see the `online` module.
    pub fn run_presence(&self, interval: Duration, list_max: usize, metrics: &Metrics) {
        loop {
            {
                let mut dirty = self
                    .presence_dirty
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                while !*dirty {
                    dirty = self
                        .presence_wake
                        .wait(dirty)
                        .unwrap_or_else(|p| p.into_inner());
                }
                *dirty = false;
            }
            // One snapshot: a session logging in now is either in it with
            // itself counted, or not in it (its AUTH tells it the count).
            let (count, sessions) = self.registry.count_and_sessions();
            let mut due: Option<std::time::Instant> = None;
            for session in sessions {
                if let Some(at) = session.outbox.offer_presence(count as u64, metrics) {
                    due = Some(due.map_or(at, |due| due.min(at)));
                }
            }
            if let Some(at) = due {
                self.timers.wake_by(at);
            }
            self.send_online_changes(list_max, metrics);
            std::thread::sleep(interval);
        }
    }
}

impl Hub {
    /// 10004 from a bound session: SYSTEM 20004 with the sorted online ids,
    /// and from now on the window's 20005s. Over `list_max` online ids it
    /// is refused with `SubscribeRefusal::TooMany` (ERROR 40003).
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        list_max: usize,
        metrics: &Metrics,
    ) -> Result<(), SubscribeRefusal> {
        let _turn = self
            .online_list_turn
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let ids = self.registry.subscribe(session, list_max)?;
        if session.outbox.send_text(&online::list(&ids), metrics) == Enqueued::Overflowed {
            self.leave(session, metrics);
        }
        Ok(())
    }

    /// End the online list's window: one rendering per distinct message
    /// (every subscriber that was subscribed all window long shares one).
    fn send_online_changes(&self, list_max: usize, metrics: &Metrics) {
        let _turn = self
            .online_list_turn
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let window = self.registry.end_window(list_max);
        let mut rendered: HashMap<Due, Option<String>> = HashMap::new();
        for (session, due) in &window.due {
            let text = rendered.entry(*due).or_insert_with(|| match *due {
                Due::Nothing => None,
                Due::Changes { from } => {
                    let net = window.journal.net_since(from);
                    // PROTOCOL.md: "only when something changed".
                    (!net.is_empty()).then(|| online::changes(window.online, &net, false))
                }
                Due::LastChanges { from } => Some(online::changes(
                    window.online,
                    &window.journal.net_since(from),
                    true,
                )),
                Due::FreshList => window.list.as_deref().map(online::list),
            });
            if let Some(text) = text {
                if session.outbox.send_text(text, metrics) == Enqueued::Overflowed {
                    self.leave(session, metrics);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    #[test]
    fn users_online_follows_the_registry_through_presence_changed_and_leave() {
        let hub = Hub::default();
        let metrics = Metrics::default();
        let session = Arc::new(Session {
            id: hub.next_session_id(),
            user: OnceLock::new(),
            outbox: outbox::Outbox::new(1 << 20, Duration::from_secs(1), Duration::from_secs(30)),
        });
        let alice = message::UserId::new("alice").unwrap();
        session.user.set(alice.clone()).unwrap();
        hub.registry.bind(&alice, &session);
        hub.presence_changed(&metrics);
        assert_eq!(metrics.users_online.load(Relaxed), 1);
        hub.leave(&session, &metrics);
        assert_eq!(metrics.users_online.load(Relaxed), 0);
        assert!(
            *hub.presence_dirty.lock().unwrap(),
            "the presence thread is woken"
        );
    }
}
