//! The registry: who is online, as a mutex-guarded map from user id to that
//! user's sessions (one per browser tab). It implements PROTOCOL.md
//! "Authentication" (one id, several sessions; the online count counts ids)
//! and no RFC: WebSocket itself has no notion of users.
//!
//! The lock is held only to read or change the map, never across socket
//! I/O or while queueing a message: routing takes a snapshot of the
//! recipients' `Arc<Session>`s under the lock, lets it go, and then queues to
//! each outbox ([`super::Hub::deliver`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::io::live::GoingAway;
use crate::io::metrics::Metrics;

use super::message::UserId;
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
    users: Mutex<HashMap<UserId, Vec<Arc<Session>>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<UserId, Vec<Arc<Session>>>> {
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Add `session` under `user`. Returns the number of distinct users
    /// online afterwards, and whether it changed.
    pub fn bind(&self, user: &UserId, session: &Arc<Session>) -> (usize, bool) {
        let mut users = self.lock();
        let before = users.len();
        let sessions = users.entry(user.clone()).or_default();
        if !sessions.iter().any(|s| s.id == session.id) {
            sessions.push(Arc::clone(session));
        }
        (users.len(), users.len() != before)
    }

    /// Remove `session`, wherever it is. Returns whether a user went offline.
    pub fn remove(&self, session: &Session) -> bool {
        let Some(user) = session.user.get() else {
            return false;
        };
        let mut users = self.lock();
        let Some(sessions) = users.get_mut(user) else {
            return false;
        };
        sessions.retain(|s| s.id != session.id);
        if sessions.is_empty() {
            users.remove(user);
            return true;
        }
        false
    }

    /// The sessions of `user` (empty when offline).
    pub fn sessions_of(&self, user: &UserId) -> Vec<Arc<Session>> {
        self.lock().get(user).cloned().unwrap_or_default()
    }

    /// Every authenticated session.
    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        self.lock().values().flatten().cloned().collect()
    }

    /// How many distinct users are online and every authenticated session,
    /// read under one lock so that the count is the count of those sessions.
    pub fn count_and_sessions(&self) -> (usize, Vec<Arc<Session>>) {
        let users = self.lock();
        (users.len(), users.values().flatten().cloned().collect())
    }

    /// How many distinct users are online.
    pub fn user_count(&self) -> usize {
        self.lock().len()
    }

    /// The online user ids, sorted.
    pub fn user_ids(&self) -> Vec<UserId> {
        let mut ids: Vec<UserId> = self.lock().keys().cloned().collect();
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
}
