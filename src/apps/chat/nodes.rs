//! Several nodes over Redis (`../shared/PROTOCOL.md`, "Several nodes over
//! Redis", *added*): with `--redis URL` this node publishes what the others
//! must know on Redis pub/sub and delivers what they publish. No RFC;
//! Redis's own protocol is the `redis` crate's (synchronous API, no async
//! runtime). The design, the message flow and the failure modes are in
//! `docs/scaling.md`.
//!
//! Threads, so that no sender ever waits on Redis or on another node:
//! - senders (connection threads, the admin API, the registry's
//!   [`LocalWatch`] under its lock) only `try_send` to a bounded queue;
//!   a full queue drops the message and counts it;
//! - one publisher thread owns one connection and publishes the queue in
//!   order, pipelined; while Redis is unreachable it discards what is
//!   queued (at most once) and reconnects with backoff;
//! - one subscriber thread owns this node's one subscriber connection:
//!   it delivers messages to local sessions through the hub, keeps the
//!   other nodes' presence in the registry, sends heartbeats and forgets a
//!   node not heard from for [`NODE_EXPIRY`].
//!
//! Channels: `socketbox:all` (broadcasts, presence, heartbeats, sync
//! requests) and `socketbox:node:ID` (PEER and push messages for users on
//! node ID). Messages are text: one header line, then a body ([`Wire`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::io::app::Context;
use crate::io::metrics::Metrics;

use super::message::{MessageTemplate, UserId};
use super::registry::{LocalWatch, NodeName};
use super::{Hub, Nodes};

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A node not heard from for this long is no longer online anywhere
/// (PROTOCOL.md: "within 10 s"; this leaves room for a slow machine).
pub const NODE_EXPIRY: Duration = Duration::from_secs(5);

/// Longest wait between two connection attempts (PROTOCOL.md: at most 5 s).
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// First wait after a failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Messages waiting for the publisher; past it, senders drop.
const QUEUE: usize = 16 * 1024;

/// Messages published in one pipeline at most.
const BATCH: usize = 512;

/// Connecting, and each reply, may take this long before Redis counts as
/// unreachable.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A node asks another for its presence at most this often.
const SYNC_EVERY: Duration = Duration::from_secs(2);

/// The channel every node hears.
const ALL: &str = "socketbox:all";

/// The first word of every message: the version of this format.
const MAGIC: &str = "SB1";

/// The channel of node `node`.
fn node_channel(node: &str) -> String {
    format!("socketbox:node:{node}")
}

/// Whether `url` is a `--redis` value: `redis://HOST[:PORT][/DB]`.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let rule = "expected redis://HOST:PORT/DB";
    let rest = url.strip_prefix("redis://").ok_or(rule)?;
    let host_part = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host_part.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(rule);
    }
    match redis::Client::open(url) {
        Ok(_) => Ok(()),
        Err(_) => Err(rule),
    }
}

/// One message between nodes, after the sender's name and instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire<'a> {
    /// A MESSAGE for every session of `user` on the receiving node.
    ToUser {
        /// The recipient.
        user: &'a str,
        /// The MESSAGE without its `seq` ([`MessageTemplate::prefix`]).
        prefix: &'a str,
    },
    /// A MESSAGE for every authenticated session on the receiving node.
    ToAll {
        /// The MESSAGE without its `seq`.
        prefix: &'a str,
    },
    /// The sender is alive; its presence is at `seq`.
    Heartbeat {
        /// The number of its last presence change.
        seq: u64,
    },
    /// The sender's sessions of `user` are now `sessions` (0: none).
    Presence {
        /// One more than the sender's previous presence change.
        seq: u64,
        /// The user.
        user: &'a str,
        /// Its sessions on the sender.
        sessions: u32,
    },
    /// Every user the sender has, as of its presence change `seq`.
    Snapshot {
        /// The number of its last presence change.
        seq: u64,
        /// `(user, sessions)`.
        users: Vec<(&'a str, u32)>,
    },
    /// The sender asks `target` (every node: `None`) for a snapshot.
    Sync {
        /// Who should answer.
        target: Option<&'a str>,
    },
}

/// A message with its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The sender's `--node-id`.
    pub node: &'a str,
    /// The sender's process, so that a node restarted under the same name
    /// is known as new.
    pub instance: u64,
    /// What it says.
    pub wire: Wire<'a>,
}

impl Envelope<'_> {
    /// The bytes to publish.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{MAGIC} {} {:x} ", self.node, self.instance);
        match &self.wire {
            Wire::ToUser { user, prefix } => {
                let _ = write!(out, "to {user}\n{prefix}");
            }
            Wire::ToAll { prefix } => {
                let _ = write!(out, "all\n{prefix}");
            }
            Wire::Heartbeat { seq } => {
                let _ = writeln!(out, "hb {seq}");
            }
            Wire::Presence {
                seq,
                user,
                sessions,
            } => {
                let _ = writeln!(out, "p {seq} {user} {sessions}");
            }
            Wire::Snapshot { seq, users } => {
                let _ = writeln!(out, "snap {seq}");
                for (user, sessions) in users {
                    let _ = writeln!(out, "{user} {sessions}");
                }
            }
            Wire::Sync { target } => {
                let _ = writeln!(out, "sync {}", target.unwrap_or("*"));
            }
        }
        out.into_bytes()
    }

    /// A message another node published; `None` when it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Envelope<'_>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (header, body) = text.split_once('\n')?;
        let words: Vec<&str> = header.split(' ').collect();
        let [MAGIC, node, instance, kind, args @ ..] = &words[..] else {
            return None;
        };
        let instance = u64::from_str_radix(instance, 16).ok()?;
        let number = |at: usize| args.get(at)?.parse::<u64>().ok();
        let wire = match *kind {
            "to" => Wire::ToUser {
                user: args.first()?,
                prefix: body,
            },
            "all" => Wire::ToAll { prefix: body },
            "hb" => Wire::Heartbeat { seq: number(0)? },
            "p" => Wire::Presence {
                seq: number(0)?,
                user: args.get(1)?,
                sessions: u32::try_from(number(2)?).ok()?,
            },
            "snap" => {
                let mut users = Vec::new();
                for line in body.lines() {
                    let (user, sessions) = line.split_once(' ')?;
                    users.push((user, sessions.parse().ok()?));
                }
                Wire::Snapshot {
                    seq: number(0)?,
                    users,
                }
            }
            "sync" => Wire::Sync {
                target: Some(*args.first()?).filter(|t| *t != "*"),
            },
            _ => return None,
        };
        Some(Envelope {
            node,
            instance,
            wire,
        })
    }
}

/// Something to publish.
struct Outgoing {
    channel: Arc<str>,
    payload: Vec<u8>,
}

/// This node's end of the link: what senders and the two threads share.
#[derive(Debug)]
pub struct Link {
    me: NodeName,
    instance: u64,
    queue: SyncSender<Outgoing>,
    all: Arc<str>,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    /// Why Redis is out of reach, for `/healthz`.
    last_error: Mutex<String>,
    /// The number of this node's last presence change; held while a change
    /// or a snapshot is queued, so that they are queued in their order.
    presence_seq: Mutex<u64>,
    published: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    dropped: AtomicU64,
    other_nodes: AtomicU64,
}

impl Link {
    fn queue(&self, channel: Arc<str>, payload: Vec<u8>) -> bool {
        match self.queue.try_send(Outgoing { channel, payload }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    fn send(&self, channel: Arc<str>, wire: Wire<'_>) -> bool {
        let envelope = Envelope {
            node: &self.me,
            instance: self.instance,
            wire,
        };
        self.queue(channel, envelope.encode())
    }

    fn up(&self) -> bool {
        self.publisher_up.load(Relaxed) && self.subscriber_up.load(Relaxed)
    }

    fn failed(&self, which: &str, error: &redis::RedisError) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        let reason = format!("redis unreachable ({which}): {error}");
        if *last != reason {
            eprintln!("socketbox[{}]: {reason}", self.me);
            *last = reason;
        }
    }

    fn connected(&self, which: &str, before: bool) {
        if before {
            self.reconnects.fetch_add(1, Relaxed);
        }
        eprintln!("socketbox[{}]: redis connected ({which})", self.me);
    }

    /// Queue a snapshot of this node's presence, in order with its changes.
    fn queue_snapshot(&self, hub: &Hub) {
        hub.registry.local_snapshot(|users| {
            let seq = self.presence_seq.lock().unwrap_or_else(|p| p.into_inner());
            let users: Vec<(&str, u32)> = users.iter().map(|(u, n)| (u.as_str(), *n)).collect();
            self.send(Arc::clone(&self.all), Wire::Snapshot { seq: *seq, users });
        });
    }

    fn queue_heartbeat(&self) {
        let seq = self.presence_seq.lock().unwrap_or_else(|p| p.into_inner());
        self.send(Arc::clone(&self.all), Wire::Heartbeat { seq: *seq });
    }
}

impl LocalWatch for Arc<Link> {
    fn sessions_changed(&self, user: &UserId, sessions: u32) {
        let mut seq = self.presence_seq.lock().unwrap_or_else(|p| p.into_inner());
        // A change that cannot be queued still takes its number: the gap
        // tells the other nodes to ask for a snapshot.
        *seq += 1;
        let wire = Wire::Presence {
            seq: *seq,
            user: user.as_str(),
            sessions,
        };
        self.send(Arc::clone(&self.all), wire);
    }
}

impl Nodes for Link {
    fn reachable(&self) -> bool {
        self.up()
    }

    fn send_to_user(&self, nodes: &[NodeName], user: &UserId, template: &MessageTemplate) -> bool {
        let Ok(prefix) = std::str::from_utf8(template.prefix()) else {
            return false;
        };
        let mut all_queued = true;
        for node in nodes {
            let wire = Wire::ToUser {
                user: user.as_str(),
                prefix,
            };
            all_queued &= self.send(node_channel(node).into(), wire);
        }
        all_queued
    }

    fn send_to_all(&self, template: &MessageTemplate) -> bool {
        let Ok(prefix) = std::str::from_utf8(template.prefix()) else {
            return false;
        };
        self.send(Arc::clone(&self.all), Wire::ToAll { prefix })
    }

    fn health(&self) -> Result<(), String> {
        if self.up() {
            return Ok(());
        }
        let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        Err(if last.is_empty() {
            "redis unreachable: connecting".to_owned()
        } else {
            last.clone()
        })
    }

    fn render_metrics(&self, out: &mut String) {
        let node = &self.me;
        let _ = writeln!(
            out,
            "# HELP socketbox_node_info This node's --node-id.\n# TYPE socketbox_node_info gauge\nsocketbox_node_info{{node=\"{node}\"}} 1"
        );
        let gauges = [
            (
                "socketbox_redis_up",
                "1 while this node reaches Redis (publishing and subscribed), else 0.",
                u64::from(self.up()),
            ),
            (
                "socketbox_redis_nodes",
                "Other nodes heard from within the expiry.",
                self.other_nodes.load(Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters = [
            (
                "socketbox_redis_published_total",
                "Messages published to Redis.",
                &self.published,
            ),
            (
                "socketbox_redis_received_total",
                "Messages received from other nodes over Redis.",
                &self.received,
            ),
            (
                "socketbox_redis_reconnects_total",
                "Connections to Redis made again after one was lost.",
                &self.reconnects,
            ),
            (
                "socketbox_redis_dropped_total",
                "Messages for other nodes dropped: queue full, or Redis unreachable.",
                &self.dropped,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
    }
}

/// A number no other process is likely to have picked.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Join the nodes that share the Redis at `url`: start the publisher and
/// the subscriber, and let the hub and the registry reach them. Redis
/// need not be up: the threads connect when they can.
pub fn join(hub: &Arc<Hub>, context: &Arc<Context>, url: &str) -> std::io::Result<()> {
    let client =
        redis::Client::open(url).map_err(|e| std::io::Error::other(format!("--redis: {e}")))?;
    let instance = random_u64();
    let me: NodeName = match &hub.config.node_id {
        Some(id) => id.as_str().into(),
        None => format!("node-{:08x}", instance as u32).into(),
    };
    let (queue, outgoing) = sync_channel(QUEUE);
    let link = Arc::new(Link {
        me: Arc::clone(&me),
        instance,
        queue,
        all: ALL.into(),
        publisher_up: AtomicBool::new(false),
        subscriber_up: AtomicBool::new(false),
        last_error: Mutex::new(String::new()),
        presence_seq: Mutex::new(0),
        published: AtomicU64::new(0),
        received: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        other_nodes: AtomicU64::new(0),
    });
    eprintln!("socketbox: node {me} joins the nodes on {url}");
    hub.set_nodes(Arc::clone(&link) as Arc<dyn Nodes>);
    hub.registry.watch(Box::new(Arc::clone(&link)));
    {
        let (client, link) = (client.clone(), Arc::clone(&link));
        thread::Builder::new()
            .name("redis-publish".into())
            .spawn(move || publish(&client, &link, &outgoing))?;
    }
    let (hub, link, context) = (Arc::clone(hub), link, Arc::clone(context));
    thread::Builder::new()
        .name("redis-subscribe".into())
        .spawn(move || Subscriber::new(hub, link, context).run(&client))?;
    Ok(())
}

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let connection = client.get_connection_with_timeout(IO_TIMEOUT)?;
    connection.set_read_timeout(Some(IO_TIMEOUT))?;
    connection.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(connection)
}

/// The publisher thread: the queue, in order, pipelined.
fn publish(client: &redis::Client, link: &Link, outgoing: &Receiver<Outgoing>) {
    let mut backoff = FIRST_BACKOFF;
    let mut ever = false;
    loop {
        let mut connection = match connect(client) {
            Ok(connection) => connection,
            Err(error) => {
                link.failed("publisher", &error);
                // At most once: what was queued while out of reach is
                // dropped rather than delivered late.
                discard(link, outgoing, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        link.connected("publisher", ever);
        ever = true;
        backoff = FIRST_BACKOFF;
        link.publisher_up.store(true, Relaxed);
        loop {
            let Ok(first) = outgoing.recv() else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match outgoing.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let mut pipe = redis::pipe();
            for message in &batch {
                pipe.cmd("PUBLISH")
                    .arg(&*message.channel)
                    .arg(&message.payload[..])
                    .ignore();
            }
            match pipe.exec(&mut connection) {
                Ok(()) => {
                    link.published.fetch_add(batch.len() as u64, Relaxed);
                }
                Err(error) => {
                    link.publisher_up.store(false, Relaxed);
                    link.dropped.fetch_add(batch.len() as u64, Relaxed);
                    link.failed("publisher", &error);
                    break;
                }
            }
        }
    }
}

/// Drop what is queued for `wait`.
fn discard(link: &Link, outgoing: &Receiver<Outgoing>, wait: Duration) {
    let until = Instant::now() + wait;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match outgoing.recv_timeout(left) {
            Ok(_) => {
                link.dropped.fetch_add(1, Relaxed);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                thread::sleep(left);
                return;
            }
        }
    }
}

/// What this node knows of another.
#[derive(Debug)]
struct Remote {
    instance: u64,
    /// The number of its last presence change applied; `None` while a
    /// snapshot is awaited.
    seq: Option<u64>,
    heard: Instant,
    asked: Option<Instant>,
}

/// The subscriber thread's state.
struct Subscriber {
    hub: Arc<Hub>,
    link: Arc<Link>,
    context: Arc<Context>,
    remotes: HashMap<NodeName, Remote>,
    next_heartbeat: Instant,
    twin_reported: bool,
}

impl Subscriber {
    fn new(hub: Arc<Hub>, link: Arc<Link>, context: Arc<Context>) -> Self {
        Subscriber {
            hub,
            link,
            context,
            remotes: HashMap::new(),
            next_heartbeat: Instant::now(),
            twin_reported: false,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.context.metrics
    }

    fn run(mut self, client: &redis::Client) {
        let mut backoff = FIRST_BACKOFF;
        let mut ever = false;
        let mine = node_channel(&self.link.me);
        loop {
            match self.subscribed(client, &mine, ever) {
                Ok(()) => {}
                Err(error) => self.link.failed("subscriber", &error),
            }
            if self.link.subscriber_up.swap(false, Relaxed) {
                ever = true;
                backoff = FIRST_BACKOFF;
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                self.tick();
                thread::sleep(Duration::from_millis(100));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Subscribe and serve until the connection fails.
    fn subscribed(
        &mut self,
        client: &redis::Client,
        mine: &str,
        ever: bool,
    ) -> redis::RedisResult<()> {
        let mut connection = connect(client)?;
        let mut pubsub = connection.as_pubsub();
        pubsub.subscribe(&[ALL, mine])?;
        pubsub.set_read_timeout(Some(Duration::from_millis(250)))?;
        self.link.subscriber_up.store(true, Relaxed);
        self.link.connected("subscriber", ever);
        // What was missed while away: everyone's presence, and ours to them.
        self.link.queue_snapshot(&self.hub);
        self.link
            .send(Arc::clone(&self.link.all), Wire::Sync { target: None });
        loop {
            match pubsub.get_message() {
                Ok(message) => self.received(message.get_payload_bytes()),
                Err(error) if error.is_timeout() => {}
                Err(error) => return Err(error),
            }
            self.tick();
        }
    }

    /// Heartbeats out, silent nodes forgotten.
    fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT;
            self.link.queue_heartbeat();
        }
        let silent: Vec<NodeName> = self
            .remotes
            .iter()
            .filter(|(_, remote)| now.duration_since(remote.heard) > NODE_EXPIRY)
            .map(|(node, _)| Arc::clone(node))
            .collect();
        for node in silent {
            eprintln!(
                "socketbox[{}]: node {node} not heard from: forgotten",
                self.link.me
            );
            self.remotes.remove(&node);
            self.forget(&node);
        }
        self.link
            .other_nodes
            .store(self.remotes.len() as u64, Relaxed);
    }

    fn forget(&self, node: &NodeName) {
        if self.hub.registry.replace_remote(node, &[]) {
            self.hub.presence_changed(self.metrics());
        }
    }

    fn ask_snapshot(link: &Link, node: &NodeName, remote: &mut Remote, now: Instant) {
        remote.seq = None;
        if remote
            .asked
            .is_none_or(|at| now.duration_since(at) >= SYNC_EVERY)
        {
            remote.asked = Some(now);
            link.send(Arc::clone(&link.all), Wire::Sync { target: Some(node) });
        }
    }

    fn received(&mut self, payload: &[u8]) {
        let Some(envelope) = Envelope::decode(payload) else {
            return;
        };
        if envelope.node == &*self.link.me {
            if envelope.instance != self.link.instance && !self.twin_reported {
                // Its messages and ours cannot be told apart: say so once.
                self.twin_reported = true;
                eprintln!(
                    "socketbox[{}]: another node runs with this --node-id: give each node its own",
                    self.link.me
                );
            }
            return;
        }
        self.link.received.fetch_add(1, Relaxed);
        let now = Instant::now();
        let node: NodeName = envelope.node.into();
        let fresh = Remote {
            instance: envelope.instance,
            seq: None,
            heard: now,
            asked: None,
        };
        let restarted = self
            .remotes
            .get(&node)
            .is_some_and(|remote| remote.instance != envelope.instance);
        if restarted {
            self.remotes.remove(&node);
            self.forget(&node);
        }
        let remote = self.remotes.entry(Arc::clone(&node)).or_insert(fresh);
        remote.heard = now;
        let metrics = &self.context.metrics;
        match envelope.wire {
            Wire::ToUser { user, prefix } => {
                let Some(user) = UserId::new(user) else {
                    return;
                };
                let template = Arc::new(MessageTemplate::from_prefix(prefix.to_owned()));
                let sessions = self.hub.registry.sessions_of(&user);
                self.hub.deliver(&template, &sessions, metrics);
            }
            Wire::ToAll { prefix } => {
                let template = Arc::new(MessageTemplate::from_prefix(prefix.to_owned()));
                let sessions = self.hub.registry.all_sessions();
                self.hub.deliver(&template, &sessions, metrics);
            }
            Wire::Heartbeat { seq } => {
                if remote.seq != Some(seq) {
                    Self::ask_snapshot(&self.link, &node, remote, now);
                }
            }
            Wire::Presence {
                seq,
                user,
                sessions,
            } => match remote.seq {
                Some(last) if seq == last + 1 => {
                    remote.seq = Some(seq);
                    if let Some(user) = UserId::new(user) {
                        if self.hub.registry.set_remote(&node, &user, sessions) {
                            self.hub.presence_changed(metrics);
                        }
                    }
                }
                Some(last) if seq <= last => {}
                _ => Self::ask_snapshot(&self.link, &node, remote, now),
            },
            Wire::Snapshot { seq, users } => {
                if remote.seq.is_none_or(|last| seq > last) {
                    remote.seq = Some(seq);
                    let users: Vec<(UserId, u32)> = users
                        .into_iter()
                        .filter_map(|(user, n)| Some((UserId::new(user)?, n)))
                        .collect();
                    if self.hub.registry.replace_remote(&node, &users) {
                        self.hub.presence_changed(metrics);
                    }
                }
            }
            Wire::Sync { target } => {
                if target.is_none_or(|target| target == &*self.link.me) {
                    self.link.queue_snapshot(&self.hub);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(wire: Wire<'_>) {
        let envelope = Envelope {
            node: "n-1",
            instance: 0xabc,
            wire,
        };
        let bytes = envelope.encode();
        assert_eq!(Envelope::decode(&bytes), Some(envelope));
    }

    #[test]
    fn every_message_decodes_to_what_was_encoded() {
        round_trip(Wire::ToUser {
            user: "bob",
            prefix: "{\"code\":1756,\"body\":{\"data\":\"two\\nlines\",\"seq\":",
        });
        round_trip(Wire::ToAll { prefix: "{}\n{}" });
        round_trip(Wire::Heartbeat { seq: 7 });
        round_trip(Wire::Presence {
            seq: 8,
            user: "alice",
            sessions: 0,
        });
        round_trip(Wire::Snapshot {
            seq: 9,
            users: vec![("alice", 2), ("bob", 1)],
        });
        round_trip(Wire::Snapshot {
            seq: 0,
            users: vec![],
        });
        round_trip(Wire::Sync { target: None });
        round_trip(Wire::Sync {
            target: Some("n-2"),
        });
    }

    #[test]
    fn foreign_or_broken_messages_are_ignored() {
        for bytes in [
            &b"hello"[..],
            b"SB2 n 1 hb 1\n",
            b"SB1 n zz hb 1\n",
            b"SB1 n 1 hb\n",
            b"SB1 n 1 what\n",
            b"SB1 n 1 snap 1\nalice two\n",
            b"\xff\n",
        ] {
            assert_eq!(Envelope::decode(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("redis://localhost").is_ok());
        for bad in [
            "localhost:6379",
            "http://x",
            "redis://",
            "redis://:1/0",
            "redis://h:x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
