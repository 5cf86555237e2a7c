//! The registry: who is online, as a mutex-guarded map from user id to that
//! user's sessions (one per browser tab). It implements PROTOCOL.md
//! "Authentication" (one id, several sessions; the online count counts ids)
//! and no RFC: WebSocket itself has no notion of users.
//!
//! The lock is held only to read or change the map, never across socket
//! I/O or while queueing a message: routing takes a snapshot of the
//! recipients' `Arc<Session>`s under the lock, lets it go, and then queues to
//! each outbox ([`super::Hub::deliver`]).
//!
//! It also keeps, under the same lock, what the online list needs
//! ([`super::online`]): the sessions that sent 10004 (a map by session id,
//! so that a session that never subscribed costs nothing when it leaves)
//! and, while there are any, the journal of ids coming and going.
//!
//! With several nodes (`--redis`) it also holds what the other nodes said
//! is online on them, per node and per id with its session count, so that
//! the count, the online list and its journal are of the ids online on any
//! node, and a PEER knows which nodes to send to ([`Registry::route`]).
//! The registry never talks to Redis: a [`LocalWatch`] is told, under the
//! lock so that the order of changes is kept, each time the number of this
//! node's sessions of an id changes; it only queues.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::io::live::GoingAway;
use crate::io::metrics::Metrics;

use super::message::UserId;
use super::online::{Change, Due, Journal, Subscription};
use super::outbox::Outbox;

/// One `/ws` connection as the rest of the server sees it.
#[derive(Debug)]
pub struct Session {
    /// Unique for the server's lifetime.
    pub id: u64,
    /// The user it authenticated as; set once.
    pub user: OnceLock<UserId>,
    /// Its outbound queue.
    pub outbox: Outbox,
}

impl GoingAway for Session {
    fn going_away(&self, metrics: &Metrics) {
        self.outbox.going_away(metrics);
    }
}

/// Told of every change in this node's sessions of an id, under the
/// registry's lock (so it must not block: it queues).
pub trait LocalWatch: Send + Sync {
    /// `user` now has `sessions` sessions on this node (0: none).
    fn sessions_changed(&self, user: &UserId, sessions: u32);
}

/// A node's name, as other nodes call it.
pub type NodeName = Arc<str>;

/// The online users and their sessions.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    watch: OnceLock<Box<dyn LocalWatch>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("inner", &self.inner)
            .field("watched", &self.watch.get().is_some())
            .finish()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// This node's online ids and their sessions.
    users: HashMap<UserId, Vec<Arc<Session>>>,
    /// The other nodes' online ids and how many sessions each has there.
    remote: HashMap<NodeName, HashMap<UserId, u32>>,
    /// On how many other nodes each id is online.
    remote_ids: HashMap<UserId, u32>,
    /// Sessions on the other nodes, in all.
    remote_sessions: u64,
    /// Ids online on any node.
    online: usize,
    /// Ids that came and went this presence window; empty without subscribers.
    journal: Journal,
    /// The sessions subscribed to the online list, by session id.
    subscribers: HashMap<u64, (Arc<Session>, Subscription)>,
}

impl Inner {
    fn record(&mut self, id: &UserId, change: Change) {
        if !self.subscribers.is_empty() {
            self.journal.record(id, change);
        }
    }

    fn is_online(&self, id: &UserId) -> bool {
        self.users.contains_key(id) || self.remote_ids.contains_key(id)
    }

    /// `id` was online (`was`) and is or is not now: count and journal
    /// it. Returns whether it changed.
    fn settle(&mut self, id: &UserId, was: bool) -> bool {
        let now = self.is_online(id);
        match (was, now) {
            (false, true) => {
                self.online += 1;
                self.record(id, Change::Joined);
            }
            (true, false) => {
                self.online -= 1;
                // PROTOCOL.md: an id leaves only with its last session.
                self.record(id, Change::Left);
            }
            _ => return false,
        }
        true
    }

    /// `node` says `id` has `sessions` sessions there. Returns whether
    /// the id came online or went offline.
    fn set_remote(&mut self, node: &NodeName, id: &UserId, sessions: u32) -> bool {
        let was = self.is_online(id);
        let on_node = self.remote.entry(Arc::clone(node)).or_default();
        let old = if sessions == 0 {
            on_node.remove(id)
        } else {
            on_node.insert(id.clone(), sessions)
        }
        .unwrap_or(0);
        self.remote_sessions = self.remote_sessions - u64::from(old) + u64::from(sessions);
        match (old, sessions) {
            (0, 0) => {}
            (0, _) => *self.remote_ids.entry(id.clone()).or_insert(0) += 1,
            (_, 0) => {
                if let Some(nodes) = self.remote_ids.get_mut(id) {
                    *nodes -= 1;
                    if *nodes == 0 {
                        self.remote_ids.remove(id);
                    }
                }
            }
            _ => {}
        }
        self.settle(id, was)
    }

    fn sessions_changed(&self, watch: Option<&dyn LocalWatch>, user: &UserId) {
        if let Some(watch) = watch {
            let sessions = self.users.get(user).map_or(0, Vec::len);
            watch.sessions_changed(user, u32::try_from(sessions).unwrap_or(u32::MAX));
        }
    }

    fn online_ids(&self) -> Vec<UserId> {
        let mut ids: Vec<UserId> = self.users.keys().cloned().collect();
        ids.extend(
            self.remote_ids
                .keys()
                .filter(|id| !self.users.contains_key(*id))
                .cloned(),
        );
        ids.sort_unstable();
        ids
    }
}

/// Why a session was not subscribed to the online list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeRefusal {
    /// More ids are online than `--presence-list-max`: ERROR 40003.
    TooMany,
    /// The session is not (or no longer) in the registry.
    NotOnline,
}

/// The end of a presence window, for the presence thread to send.
#[derive(Debug, Default)]
pub struct Window {
    /// Ids online at its end.
    pub online: usize,
    /// What changed during it.
    pub journal: Journal,
    /// What each subscriber is due (never [`Due::Nothing`]).
    pub due: Vec<(Arc<Session>, Due)>,
    /// The sorted online ids, when some subscriber is due a fresh 20004.
    pub list: Option<Vec<UserId>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Add `session` under `user`. Returns the number of distinct users
    /// online afterwards, and whether it changed.
    pub fn bind(&self, user: &UserId, session: &Arc<Session>) -> (usize, bool) {
        let mut inner = self.lock();
        let was = inner.is_online(user);
        let sessions = inner.users.entry(user.clone()).or_default();
        if !sessions.iter().any(|s| s.id == session.id) {
            sessions.push(Arc::clone(session));
            inner.sessions_changed(self.watch.get().map(Box::as_ref), user);
        }
        let changed = inner.settle(user, was);
        (inner.online, changed)
    }

    /// Remove `session`, wherever it is. Returns whether a user went offline.
    pub fn remove(&self, session: &Session) -> bool {
        let Some(user) = session.user.get() else {
            return false;
        };
        let mut inner = self.lock();
        inner.subscribers.remove(&session.id);
        let Some(sessions) = inner.users.get_mut(user) else {
            return false;
        };
        let before = sessions.len();
        sessions.retain(|s| s.id != session.id);
        if sessions.len() == before {
            return false;
        }
        if sessions.is_empty() {
            inner.users.remove(user);
        }
        inner.sessions_changed(self.watch.get().map(Box::as_ref), user);
        inner.settle(user, true)
    }

    /// Subscribe `session` to the online list (again, if it was): the
    /// sorted online ids for its 20004, its position in the journal taken
    /// at the same instant. Over `list_max` ids it is refused, and a
    /// subscription it had stays as it was.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        list_max: usize,
    ) -> Result<Vec<UserId>, SubscribeRefusal> {
        let mut inner = self.lock();
        let online = session.user.get().and_then(|user| inner.users.get(user));
        if !online.is_some_and(|sessions| sessions.iter().any(|s| s.id == session.id)) {
            return Err(SubscribeRefusal::NotOnline);
        }
        if inner.online > list_max {
            return Err(SubscribeRefusal::TooMany);
        }
        let ids = inner.online_ids();
        let from = inner.journal.position();
        inner.subscribers.insert(
            session.id,
            (Arc::clone(session), Subscription::Live { from }),
        );
        Ok(ids)
    }

    /// End the presence window: its journal, and what each subscriber is
    /// due, read under one lock with the count they refer to.
    pub fn end_window(&self, list_max: usize) -> Window {
        let mut inner = self.lock();
        let journal = inner.journal.take();
        let online = inner.online;
        let mut due = Vec::new();
        for (session, subscription) in inner.subscribers.values_mut() {
            match subscription.window_end(online, list_max) {
                Due::Nothing => {}
                other => due.push((Arc::clone(session), other)),
            }
        }
        let list = due
            .iter()
            .any(|(_, due)| *due == Due::FreshList)
            .then(|| inner.online_ids());
        Window {
            online,
            journal,
            due,
            list,
        }
    }

    /// The sessions of `user` (empty when offline).
    pub fn sessions_of(&self, user: &UserId) -> Vec<Arc<Session>> {
        self.lock().users.get(user).cloned().unwrap_or_default()
    }

    /// Every authenticated session on this node.
    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        self.lock().users.values().flatten().cloned().collect()
    }

    /// How many distinct users are online (on any node) and every
    /// authenticated session of this node, read under one lock so that
    /// the count includes those sessions.
    pub fn count_and_sessions(&self) -> (usize, Vec<Arc<Session>>) {
        let inner = self.lock();
        (
            inner.online,
            inner.users.values().flatten().cloned().collect(),
        )
    }

    /// How many distinct users are online, on any node.
    pub fn user_count(&self) -> usize {
        self.lock().online
    }

    /// The ids online on any node, sorted.
    pub fn user_ids(&self) -> Vec<UserId> {
        self.lock().online_ids()
    }

    /// Where `user` is: its sessions on this node, and the other nodes it
    /// is online on with its session count there.
    pub fn route(&self, user: &UserId) -> (Vec<Arc<Session>>, Vec<(NodeName, u32)>) {
        let inner = self.lock();
        let local = inner.users.get(user).cloned().unwrap_or_default();
        let remote = if inner.remote_ids.contains_key(user) {
            inner
                .remote
                .iter()
                .filter_map(|(node, users)| users.get(user).map(|n| (Arc::clone(node), *n)))
                .collect()
        } else {
            Vec::new()
        };
        (local, remote)
    }

    /// Every authenticated session on this node, and how many there are
    /// on the other nodes.
    pub fn everyone(&self) -> (Vec<Arc<Session>>, u64) {
        let inner = self.lock();
        (
            inner.users.values().flatten().cloned().collect(),
            inner.remote_sessions,
        )
    }

    /// Tell `watch` of every change in this node's sessions from now on.
    /// Set once; later calls are ignored.
    pub fn watch(&self, watch: Box<dyn LocalWatch>) {
        let _ = self.watch.set(watch);
    }

    /// This node's ids and session counts, handed to `with` under the
    /// lock, so that what it does is ordered with [`LocalWatch`] calls.
    pub fn local_snapshot<R>(&self, with: impl FnOnce(Vec<(UserId, u32)>) -> R) -> R {
        let inner = self.lock();
        let users = inner
            .users
            .iter()
            .map(|(id, sessions)| {
                let n = u32::try_from(sessions.len()).unwrap_or(u32::MAX);
                (id.clone(), n)
            })
            .collect();
        with(users)
    }

    /// `node` now has `sessions` sessions of `user`. Returns whether the
    /// online count changed.
    pub fn set_remote(&self, node: &NodeName, user: &UserId, sessions: u32) -> bool {
        self.lock().set_remote(node, user, sessions)
    }

    /// `node` has exactly `users` online (an empty list forgets the node).
    /// Returns whether the online count changed.
    pub fn replace_remote(&self, node: &NodeName, users: &[(UserId, u32)]) -> bool {
        let mut inner = self.lock();
        let gone: Vec<UserId> = match inner.remote.get(node) {
            Some(old) => {
                let kept: std::collections::HashSet<&UserId> =
                    users.iter().map(|(id, _)| id).collect();
                old.keys()
                    .filter(|id| !kept.contains(id))
                    .cloned()
                    .collect()
            }
            None => Vec::new(),
        };
        let mut changed = false;
        for id in &gone {
            changed |= inner.set_remote(node, id, 0);
        }
        for (id, sessions) in users {
            changed |= inner.set_remote(node, id, *sessions);
        }
        if users.is_empty() {
            inner.remote.remove(node);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session(id: u64, user: &str) -> Arc<Session> {
        let s = Session {
            id,
            user: OnceLock::new(),
            outbox: Outbox::new(1 << 20, Duration::from_secs(1), Duration::from_secs(30)),
        };
        s.user.set(UserId::new(user).unwrap()).unwrap();
        Arc::new(s)
    }

    #[test]
    fn counts_users_not_sessions() {
        let r = Registry::default();
        let (a1, a2, b) = (session(1, "alice"), session(2, "alice"), session(3, "bob"));
        let alice = a1.user.get().unwrap().clone();
        assert_eq!(r.bind(&alice, &a1), (1, true));
        assert_eq!(r.bind(&alice, &a2), (1, false));
        assert_eq!(r.bind(b.user.get().unwrap(), &b), (2, true));
        assert_eq!(r.sessions_of(&alice).len(), 2);
        assert_eq!(r.all_sessions().len(), 3);
        let (count, sessions) = r.count_and_sessions();
        assert_eq!((count, sessions.len()), (2, 3));
        assert!(!r.remove(&a1));
        assert!(r.remove(&a2));
        assert!(!r.remove(&a2), "removing twice is harmless");
        assert_eq!(r.user_count(), 1);
        assert_eq!(r.user_ids(), vec![UserId::new("bob").unwrap()]);
    }

    #[test]
    fn remote_ids_count_once_with_local_ones_and_route_to_their_nodes() {
        let r = Registry::default();
        let (n1, n2): (NodeName, NodeName) = ("n1".into(), "n2".into());
        let a = session(1, "alice");
        let alice = a.user.get().unwrap().clone();
        let bob = UserId::new("bob").unwrap();
        assert_eq!(r.bind(&alice, &a), (1, true));
        assert!(!r.set_remote(&n1, &alice, 2), "alice was online already");
        assert!(r.set_remote(&n1, &bob, 1));
        assert!(!r.set_remote(&n2, &bob, 3));
        assert_eq!(r.user_count(), 2);
        assert_eq!(r.user_ids(), vec![alice.clone(), bob.clone()]);
        let (local, mut remote) = r.route(&bob);
        remote.sort();
        assert!(local.is_empty());
        assert_eq!(remote, vec![(n1.clone(), 1), (n2.clone(), 3)]);
        assert_eq!(r.everyone().1, 6);
        assert!(!r.remove(&a), "alice is still online on n1");
        assert!(r.replace_remote(&n1, &[(bob.clone(), 1)]));
        assert_eq!(r.user_ids(), vec![bob.clone()], "alice left with n1's list");
        assert!(!r.replace_remote(&n1, &[]));
        assert!(r.replace_remote(&n2, &[]), "bob's last node is gone");
        assert_eq!((r.user_count(), r.everyone().1), (0, 0));
    }

    #[test]
    fn the_watch_hears_each_change_of_local_session_counts() {
        #[derive(Default)]
        struct Heard(Mutex<Vec<(String, u32)>>);
        impl LocalWatch for Arc<Heard> {
            fn sessions_changed(&self, user: &UserId, sessions: u32) {
                self.0.lock().unwrap().push((user.to_string(), sessions));
            }
        }
        let heard = Arc::new(Heard::default());
        let r = Registry::default();
        r.watch(Box::new(Arc::clone(&heard)));
        let (a1, a2) = (session(1, "alice"), session(2, "alice"));
        let alice = a1.user.get().unwrap().clone();
        r.bind(&alice, &a1);
        r.bind(&alice, &a2);
        r.bind(&alice, &a2);
        r.remove(&a1);
        r.remove(&a1);
        r.remove(&a2);
        let heard = heard.0.lock().unwrap().clone();
        let expected = [("alice", 1), ("alice", 2), ("alice", 1), ("alice", 0)];
        let expected: Vec<(String, u32)> =
            expected.iter().map(|(u, n)| (u.to_string(), *n)).collect();
        assert_eq!(heard, expected);
        assert_eq!(r.local_snapshot(|users| users.len()), 0);
    }

    /// The window's net change, as `(joined, left)` names.
    fn net(window: &Window) -> (Vec<String>, Vec<String>) {
        let net = window.journal.net_since(0);
        let names = |ids: &[UserId]| ids.iter().map(|id| id.as_str().to_owned()).collect();
        (names(&net.joined), names(&net.left))
    }

    #[test]
    fn nothing_is_journaled_without_a_subscriber() {
        let r = Registry::default();
        let a = session(1, "alice");
        r.bind(a.user.get().unwrap(), &a);
        r.remove(&a);
        assert_eq!(r.lock().journal.position(), 0);
        assert!(r.end_window(10).due.is_empty());
    }

    #[test]
    fn several_tabs_of_one_id_join_once_and_leave_with_the_last_tab() {
        let r = Registry::default();
        let watcher = session(1, "watcher");
        r.bind(watcher.user.get().unwrap(), &watcher);
        assert_eq!(r.subscribe(&watcher, 10).unwrap().len(), 1);
        let (tab1, tab2) = (session(2, "bob"), session(3, "bob"));
        let bob = tab1.user.get().unwrap().clone();
        r.bind(&bob, &tab1);
        r.bind(&bob, &tab2);
        let window = r.end_window(10);
        assert_eq!(net(&window), (vec!["bob".to_owned()], vec![]));
        assert_eq!(window.due.len(), 1);
        assert_eq!(window.due[0].1, Due::Changes { from: 0 });
        r.remove(&tab1);
        assert_eq!(
            net(&r.end_window(10)),
            (vec![], vec![]),
            "bob has a tab left"
        );
        r.remove(&tab2);
        assert_eq!(net(&r.end_window(10)), (vec![], vec!["bob".to_owned()]));
    }

    #[test]
    fn a_subscriber_that_leaves_is_forgotten_and_one_not_online_is_refused() {
        let r = Registry::default();
        let a = session(1, "alice");
        assert_eq!(r.subscribe(&a, 10), Err(SubscribeRefusal::NotOnline));
        r.bind(a.user.get().unwrap(), &a);
        r.subscribe(&a, 10).unwrap();
        r.remove(&a);
        assert!(r.lock().subscribers.is_empty());
        assert_eq!(r.subscribe(&a, 10), Err(SubscribeRefusal::NotOnline));
    }

    #[test]
    fn over_the_limit_subscribing_is_refused_and_subscribers_are_truncated_until_it_shrinks() {
        let r = Registry::default();
        let a = session(1, "alice");
        r.bind(a.user.get().unwrap(), &a);
        r.subscribe(&a, 2).unwrap();
        let (b, c) = (session(2, "bob"), session(3, "carol"));
        r.bind(b.user.get().unwrap(), &b);
        r.bind(c.user.get().unwrap(), &c);
        assert_eq!(r.subscribe(&b, 2), Err(SubscribeRefusal::TooMany));
        let window = r.end_window(2);
        assert_eq!(window.due.len(), 1);
        assert_eq!(window.due[0].1, Due::LastChanges { from: 0 });
        assert!(r.end_window(2).due.is_empty(), "nothing more while over");
        r.remove(&c);
        let window = r.end_window(2);
        assert_eq!(window.due[0].1, Due::FreshList);
        let list: Vec<&str> = window
            .list
            .as_ref()
            .unwrap()
            .iter()
            .map(UserId::as_str)
            .collect();
        assert_eq!(list, ["alice", "bob"]);
    }
}
