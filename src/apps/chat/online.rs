//! The online list (`../shared/PROTOCOL.md`, SYSTEM 20004 and 20005,
//! *added*), as pure data: the [`Journal`] of ids that came online or went
//! offline during one presence window, the net change it amounts to from
//! any point of the window, and what each subscribed session is due when
//! the window ends ([`Subscription::window_end`]). No RFC: WebSocket has no
//! users. The registry ([`super::registry`]) records into the journal under
//! its lock; the presence thread ([`super::Hub::run_presence`]) sends.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::message::{self, codes, UserId};

/// An id came online (its first session) or went offline (its last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The id's first session was bound.
    Joined,
    /// The id's last session left.
    Left,
}

/// The changes of one presence window, in order. Recorded only while
/// someone is subscribed, so that a server whose clients never send 10004
/// keeps nothing.
///
/// A log rather than a map that cancels out: a session that subscribes in
/// the middle of a window already has, in its 20004, what happened before
/// it; it must be told only the net change from its own position on
/// ([`Journal::net_since`]).
#[derive(Debug, Default)]
pub struct Journal {
    events: Vec<(UserId, Change)>,
}

/// What changed between two points of a window, each list sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetChange {
    /// Offline at the first point, online at the second.
    pub joined: Vec<UserId>,
    /// Online at the first point, offline at the second.
    pub left: Vec<UserId>,
}

impl NetChange {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty()
    }
}

impl Journal {
    /// `id` came online or went offline.
    pub fn record(&mut self, id: &UserId, change: Change) {
        self.events.push((id.clone(), change));
    }

    /// The position a subscriber's snapshot stands at.
    pub fn position(&self) -> usize {
        self.events.len()
    }

    /// The window so far, leaving this journal empty for the next one.
    pub fn take(&mut self) -> Journal {
        std::mem::take(self)
    }

    /// The net change since position `from`. An id's changes alternate
    /// (the registry records them under one lock), so it changed on net
    /// exactly when its first and last change in the span agree: joined,
    /// left and joined again is joined; joined then left is nothing.
    pub fn net_since(&self, from: usize) -> NetChange {
        let mut first_and_last: BTreeMap<&UserId, (Change, Change)> = BTreeMap::new();
        for (id, change) in self.events.get(from..).unwrap_or_default() {
            first_and_last
                .entry(id)
                .and_modify(|(_, last)| *last = *change)
                .or_insert((*change, *change));
        }
        let mut net = NetChange::default();
        for (id, (first, last)) in first_and_last {
            match (first, last) {
                (Change::Joined, Change::Joined) => net.joined.push(id.clone()),
                (Change::Left, Change::Left) => net.left.push(id.clone()),
                _ => {}
            }
        }
        net
    }
}

/// Where a subscribed session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// It holds the list as of position `from` of the current window.
    Live {
        /// Journal position of its last 20004 (0 once a window has ended).
        from: usize,
    },
    /// It was told the list is over `--presence-list-max` and waits for it
    /// to shrink.
    Truncated,
}

/// What a subscriber is due at the end of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Due {
    /// Nothing.
    Nothing,
    /// A 20005 with the net change since `from`, if there is any.
    Changes {
        /// Where its knowledge starts in the ending window.
        from: usize,
    },
    /// The last 20005 before the list went over the limit: `truncated: true`.
    LastChanges {
        /// Where its knowledge starts in the ending window.
        from: usize,
    },
    /// A fresh 20004: the list is back within the limit.
    FreshList,
}

impl Subscription {
    /// A window ends with `online` ids online. PROTOCOL.md: over
    /// `--presence-list-max`, "sessions already subscribed get one last
    /// 20005 with `"truncated": true` and no more until the count falls
    /// under the limit again (then a fresh 20004)".
    pub fn window_end(&mut self, online: usize, list_max: usize) -> Due {
        let over = online > list_max;
        let (next, due) = match (*self, over) {
            (Subscription::Live { from }, false) => {
                (Subscription::Live { from: 0 }, Due::Changes { from })
            }
            (Subscription::Live { from }, true) => {
                (Subscription::Truncated, Due::LastChanges { from })
            }
            (Subscription::Truncated, true) => (Subscription::Truncated, Due::Nothing),
            (Subscription::Truncated, false) => (Subscription::Live { from: 0 }, Due::FreshList),
        };
        *self = next;
        due
    }
}

/// SYSTEM 20004: `{"online": N, "users": [sorted ids]}`.
pub fn list(sorted: &[UserId]) -> String {
    let users: Vec<&str> = sorted.iter().map(UserId::as_str).collect();
    message::system(
        codes::SYSTEM_ONLINE_LIST,
        json!({"online": users.len(), "users": users}),
    )
}

/// SYSTEM 20005: `{"online": N, "joined": [...], "left": [...]}`, with
/// `"truncated": true` on the last one before the list goes over the limit.
pub fn changes(online: usize, net: &NetChange, truncated: bool) -> String {
    let ids = |ids: &[UserId]| -> Value { ids.iter().map(UserId::as_str).collect() };
    let mut mess = json!({"online": online, "joined": ids(&net.joined), "left": ids(&net.left)});
    if truncated {
        mess["truncated"] = Value::Bool(true);
    }
    message::system(codes::SYSTEM_ONLINE_CHANGES, mess)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> UserId {
        UserId::new(text).unwrap()
    }

    fn ids(texts: &[&str]) -> Vec<UserId> {
        texts.iter().map(|text| id(text)).collect()
    }

    #[test]
    fn an_id_that_leaves_and_comes_back_within_a_window_is_in_neither_list() {
        let mut journal = Journal::default();
        journal.record(&id("bob"), Change::Left);
        journal.record(&id("carol"), Change::Joined);
        journal.record(&id("bob"), Change::Joined);
        journal.record(&id("dave"), Change::Joined);
        journal.record(&id("dave"), Change::Left);
        let net = journal.net_since(0);
        assert_eq!(net.joined, ids(&["carol"]));
        assert!(net.left.is_empty(), "{net:?}");
    }

    #[test]
    fn joined_left_and_joined_again_is_joined_and_the_lists_are_sorted() {
        let mut journal = Journal::default();
        for name in ["zed", "Bob", "alice"] {
            journal.record(&id(name), Change::Joined);
        }
        journal.record(&id("zed"), Change::Left);
        journal.record(&id("zed"), Change::Joined);
        journal.record(&id("old"), Change::Left);
        let net = journal.net_since(0);
        // Sorted by code point: upper case first.
        assert_eq!(net.joined, ids(&["Bob", "alice", "zed"]));
        assert_eq!(net.left, ids(&["old"]));
    }

    #[test]
    fn a_mid_window_subscriber_is_told_only_what_changed_after_its_snapshot() {
        let mut journal = Journal::default();
        journal.record(&id("alice"), Change::Joined);
        journal.record(&id("bob"), Change::Joined);
        let snapshot_at = journal.position();
        journal.record(&id("bob"), Change::Left);
        journal.record(&id("carol"), Change::Joined);
        let late = journal.net_since(snapshot_at);
        assert_eq!(late.joined, ids(&["carol"]));
        assert_eq!(late.left, ids(&["bob"]), "its snapshot had bob");
        let early = journal.net_since(0);
        assert_eq!(early.joined, ids(&["alice", "carol"]));
        assert!(early.left.is_empty());
        assert!(journal.net_since(journal.position()).is_empty());
    }

    #[test]
    fn take_starts_an_empty_window() {
        let mut journal = Journal::default();
        journal.record(&id("alice"), Change::Joined);
        let window = journal.take();
        assert_eq!(window.net_since(0).joined, ids(&["alice"]));
        assert_eq!(journal.position(), 0);
        assert!(journal.net_since(0).is_empty());
    }

    #[test]
    fn over_the_limit_a_live_subscriber_gets_one_last_truncated_20005_then_nothing_then_a_fresh_list(
    ) {
        let mut subscription = Subscription::Live { from: 3 };
        assert_eq!(subscription.window_end(2, 2), Due::Changes { from: 3 });
        assert_eq!(subscription, Subscription::Live { from: 0 });
        assert_eq!(subscription.window_end(3, 2), Due::LastChanges { from: 0 });
        assert_eq!(subscription.window_end(4, 2), Due::Nothing);
        assert_eq!(subscription.window_end(3, 2), Due::Nothing);
        assert_eq!(subscription.window_end(2, 2), Due::FreshList);
        assert_eq!(subscription.window_end(1, 2), Due::Changes { from: 0 });
    }

    #[test]
    fn messages_render_as_protocol_md_writes_them() {
        let list: Value = serde_json::from_str(&list(&ids(&["a", "b"]))).unwrap();
        assert_eq!(
            list,
            json!({"code": 988, "extend": {"code": 20004, "mess": {"online": 2, "users": ["a", "b"]}}})
        );
        let net = NetChange {
            joined: ids(&["c"]),
            left: ids(&["a"]),
        };
        let plain: Value = serde_json::from_str(&changes(2, &net, false)).unwrap();
        assert_eq!(
            plain["extend"],
            json!({"code": 20005, "mess": {"online": 2, "joined": ["c"], "left": ["a"]}})
        );
        let last: Value = serde_json::from_str(&changes(5, &net, true)).unwrap();
        assert_eq!(last["extend"]["mess"]["truncated"], true);
    }
}
