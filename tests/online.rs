//! The online list (`PROTOCOL.md`, 10004 PRESENCE, SYSTEM 20004 and 20005,
//! ERROR 40003, `--presence-list-max`), sentence by sentence, against the
//! real binary with tungstenite clients. Windows are short
//! (`--presence-interval`) to keep the tests quick; what is asserted is
//! what arrives, never when, except where a test needs two changes to fall
//! in one window (it says so, and leaves the window wide).

mod common;

use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use common::{extend_code, Client, Server};

const PRESENCE: i64 = 10004;

/// The next message that is not a heartbeat or an online count: a 20004
/// or 20005, whose `mess` this returns with its code.
fn next_list(client: &mut Client) -> (i64, Value) {
    let value = client.event();
    assert_eq!(value["code"], 988, "expected SYSTEM 20004/20005: {value}");
    let code = extend_code(&value);
    assert!(code == 20004 || code == 20005, "{value}");
    (code, value["extend"]["mess"].clone())
}

/// Send 10004 and read the 20004 it gets at once: the sorted ids.
fn subscribe(client: &mut Client) -> Vec<String> {
    client.send_json(&json!({"code": PRESENCE}));
    let (code, mess) = next_list(client);
    assert_eq!(code, 20004, "{mess}");
    let users = names(&mess["users"]);
    assert_eq!(mess["online"], users.len(), "{mess}");
    users
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list of ids: {list}"))
        .iter()
        .map(|id| id.as_str().expect("ids are strings").to_owned())
        .collect()
}

/// The next 20005: `(joined, left, online)`.
fn next_changes(client: &mut Client) -> (Vec<String>, Vec<String>, u64) {
    let (code, mess) = next_list(client);
    assert_eq!(code, 20005, "{mess}");
    assert!(mess.get("truncated").is_none(), "{mess}");
    (
        names(&mess["joined"]),
        names(&mess["left"]),
        mess["online"].as_u64().unwrap(),
    )
}

/// Close `client` with a closing handshake. The server takes a session
/// out of the registry when the Close arrives, so once its answer is here
/// the id (if this was its last session) is offline.
fn leave(mut client: Client) {
    client.socket.close(None).expect("send close");
    while client.socket.read().is_ok() {}
}

/// Nothing but heartbeats and counts arrives for `client` over a few
/// windows of `interval`.
fn assert_quiet(client: &mut Client, interval: Duration) {
    thread::sleep(interval * 4);
    assert_eq!(client.sync(), Vec::<Value>::new(), "nothing more");
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|text| (*text).to_owned()).collect()
}

#[test]
fn presence_answers_20004_at_once_with_every_online_id_sorted_by_code_point() {
    let server = Server::start(&["--presence-interval", "200"]);
    let _clients: Vec<Client> = ["bob", "alice", "Zed", "alice", "42"]
        .iter()
        .map(|id| server.user(id))
        .collect();
    let mut watcher = server.user("watcher");
    assert_eq!(
        subscribe(&mut watcher),
        strings(&["42", "Zed", "alice", "bob", "watcher"])
    );
}

#[test]
fn before_auth_presence_is_answered_like_peer_with_1500_40100() {
    let server = Server::start(&[]);
    let mut anonymous = server.ws("/ws");
    anonymous.send_json(&json!({"code": PRESENCE}));
    let answer = anonymous.json();
    assert_eq!(answer["code"], 1500, "{answer}");
    assert_eq!(extend_code(&answer), 40100, "{answer}");
    // The connection stays, and once authenticated it may subscribe.
    anonymous.auth(json!("late"));
    assert_eq!(subscribe(&mut anonymous), strings(&["late"]));
}

#[test]
fn a_subscriber_gets_the_net_change_in_20005s_and_a_session_that_never_asked_gets_none() {
    let interval = Duration::from_millis(200);
    let server = Server::start(&["--presence-interval", "200"]);
    let mut plain = server.user("plain");
    let mut watcher = server.user("watcher");
    let mut list = subscribe(&mut watcher);

    let dave = server.user("dave");
    let (joined, left, online) = next_changes(&mut watcher);
    assert_eq!((joined, left), (strings(&["dave"]), vec![]));
    list.extend(strings(&["dave"]));
    list.sort();
    assert_eq!(online, list.len() as u64);

    leave(dave);
    let (joined, left, online) = next_changes(&mut watcher);
    assert_eq!((joined, left), (vec![], strings(&["dave"])));
    list.retain(|id| id != "dave");
    assert_eq!(online, list.len() as u64);

    // Applying the 20005s to the 20004 gives what a fresh 20004 says.
    assert_eq!(subscribe(&mut watcher), list);
    // Nothing changed: nothing is sent.
    assert_quiet(&mut watcher, interval);
    // PROTOCOL.md: "a session that never sends 10004 pays nothing".
    assert_eq!(plain.sync(), Vec::<Value>::new());
}

#[test]
fn presence_again_on_a_subscribed_session_is_a_fresh_20004() {
    let server = Server::start(&["--presence-interval", "200"]);
    let mut watcher = server.user("watcher");
    assert_eq!(subscribe(&mut watcher), strings(&["watcher"]));
    let _bob = server.user("bob");
    // The 20004 may come before or after the 20005 about bob; either way
    // it is a whole list with bob in it.
    watcher.send_json(&json!({"code": PRESENCE}));
    loop {
        let (code, mess) = next_list(&mut watcher);
        if code == 20004 {
            assert_eq!(names(&mess["users"]), strings(&["bob", "watcher"]));
            break;
        }
    }
}

#[test]
fn an_id_leaves_only_with_its_last_tab_and_one_that_leaves_and_comes_back_in_a_window_is_in_neither_list(
) {
    // A wide window: the leave and the return below must fall in one.
    let server = Server::start(&["--presence-interval", "2000"]);
    let mut watcher = server.user("watcher");
    let bob_tab1 = server.user("bob");
    let bob_tab2 = server.user("bob");
    subscribe(&mut watcher);

    // One of bob's tabs goes: bob is still online.
    leave(bob_tab1);
    let carol = server.user("carol");
    assert_eq!(next_changes(&mut watcher).0, strings(&["carol"]));
    // That 20005 was sent at the start of a window: bob leaves and comes
    // back inside it, and dave arrives.
    leave(bob_tab2);
    let _bob = server.user("bob");
    let _dave = server.user("dave");
    let (joined, left, online) = next_changes(&mut watcher);
    assert_eq!((joined, left), (strings(&["dave"]), vec![]));
    assert_eq!(online, 4, "watcher, bob, carol, dave");
    drop(carol);
}

#[test]
fn a_session_that_subscribes_mid_window_is_not_told_as_joined_what_its_20004_had() {
    let server = Server::start(&["--presence-interval", "1500"]);
    let mut early = server.user("early");
    subscribe(&mut early);
    let mut late = server.user("late");
    // The sweep that tells `early` about `late` begins a window.
    assert_eq!(next_changes(&mut early).0, strings(&["late"]));
    let _yann = server.user("yann");
    assert_eq!(
        subscribe(&mut late),
        strings(&["early", "late", "yann"]),
        "its 20004 has yann"
    );
    let _zoe = server.user("zoe");
    // Whatever the windows turn out to be, `late` hears of zoe and never
    // of yann as joined.
    let mut heard = Vec::new();
    while !heard.contains(&"zoe".to_owned()) {
        let (joined, left, _) = next_changes(&mut late);
        assert!(!joined.contains(&"yann".to_owned()), "{joined:?}");
        assert!(left.is_empty(), "{left:?}");
        heard.extend(joined);
    }
    let mut early_heard = Vec::new();
    while !early_heard.contains(&"zoe".to_owned()) {
        early_heard.extend(next_changes(&mut early).0);
    }
    assert!(early_heard.contains(&"yann".to_owned()), "{early_heard:?}");
}

#[test]
fn many_logins_are_coalesced_into_a_few_20005s_per_window() {
    let server = Server::start(&["--presence-interval", "1000"]);
    let mut watcher = server.user("watcher");
    subscribe(&mut watcher);
    let ids: Vec<String> = (0..30).map(|n| format!("user{n:02}")).collect();
    let _clients: Vec<Client> = ids.iter().map(|id| server.user(id)).collect();
    let mut heard = Vec::new();
    let mut messages = 0;
    while heard.len() < ids.len() {
        let (joined, left, _) = next_changes(&mut watcher);
        assert!(left.is_empty());
        heard.extend(joined);
        messages += 1;
    }
    heard.sort();
    assert_eq!(heard, ids, "each id joined exactly once");
    assert!(
        messages < ids.len(),
        "{messages} 20005s for {} logins: not coalesced",
        ids.len()
    );
}

#[test]
fn over_presence_list_max_10004_is_40003_subscribers_get_one_truncated_20005_then_nothing_then_a_fresh_20004(
) {
    let interval = Duration::from_millis(200);
    let server = Server::start(&["--presence-interval", "200", "--presence-list-max", "3"]);
    let mut watcher = server.user("watcher");
    let mut alice = server.user("alice");
    subscribe(&mut watcher);
    let bob = server.user("bob");
    assert_eq!(next_changes(&mut watcher).0, strings(&["bob"]));

    // Three online is the limit, not over it. A fourth is over.
    let carol = server.user("carol");
    let (code, mess) = next_list(&mut watcher);
    assert_eq!(code, 20005, "{mess}");
    assert_eq!(mess["truncated"], true, "{mess}");
    assert_eq!(mess["online"], 4, "{mess}");

    alice.send_json(&json!({"code": PRESENCE}));
    let refused = alice.event();
    assert_eq!(refused["code"], 1244, "{refused}");
    assert_eq!(extend_code(&refused), 40003, "{refused}");

    // Still over: nothing, whatever changes.
    let dave = server.user("dave");
    assert_quiet(&mut watcher, interval);

    // Back within the limit: a fresh 20004.
    leave(carol);
    leave(dave);
    let (code, mess) = next_list(&mut watcher);
    assert_eq!(code, 20004, "{mess}");
    assert_eq!(names(&mess["users"]), strings(&["alice", "bob", "watcher"]));
    assert_eq!(mess["online"], 3);
    // And 20005s again after it.
    leave(bob);
    let (joined, left, _) = next_changes(&mut watcher);
    assert_eq!((joined, left), (vec![], strings(&["bob"])));
}
