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

/// The online users and their sessions.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Its keys are the online ids.
    users: HashMap<UserId, Vec<Arc<Session>>>,
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
        let before = inner.users.len();
        let sessions = inner.users.entry(user.clone()).or_default();
        if !sessions.iter().any(|s| s.id == session.id) {
            sessions.push(Arc::clone(session));
        }
        let after = inner.users.len();
        if after != before {
            inner.record(user, Change::Joined);
        }
        (after, after != before)
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
        sessions.retain(|s| s.id != session.id);
        if sessions.is_empty() {
            inner.users.remove(user);
            // PROTOCOL.md: an id leaves only with its last session.
            inner.record(user, Change::Left);
            return true;
        }
        false
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
        if inner.users.len() > list_max {
            return Err(SubscribeRefusal::TooMany);
        }
        let mut ids: Vec<UserId> = inner.users.keys().cloned().collect();
        ids.sort_unstable();
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
        let online = inner.users.len();
        let mut due = Vec::new();
        for (session, subscription) in inner.subscribers.values_mut() {
            match subscription.window_end(online, list_max) {
                Due::Nothing => {}
                other => due.push((Arc::clone(session), other)),
            }
        }
        let list = due.iter().any(|(_, due)| *due == Due::FreshList).then(|| {
            let mut ids: Vec<UserId> = inner.users.keys().cloned().collect();
            ids.sort_unstable();
            ids
        });
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

    /// Every authenticated session.
    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        self.lock().users.values().flatten().cloned().collect()
    }

    /// How many distinct users are online and every authenticated session,
    /// read under one lock so that the count is the count of those sessions.
    pub fn count_and_sessions(&self) -> (usize, Vec<Arc<Session>>) {
        let inner = self.lock();
        (
            inner.users.len(),
            inner.users.values().flatten().cloned().collect(),
        )
    }

    /// How many distinct users are online.
    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }

    /// The online user ids, sorted.
    pub fn user_ids(&self) -> Vec<UserId> {
        let mut ids: Vec<UserId> = self.lock().users.keys().cloned().collect();
        ids.sort();
        ids
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
