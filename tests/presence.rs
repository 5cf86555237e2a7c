//! SYSTEM 20001, the online count (`PROTOCOL.md`, "SYSTEM codes"): sent
//! right after a session's 20002 `true`, then whenever the count changes,
//! coalesced per session to one per `--presence-interval` with the last
//! value of a window winning, so that N logins cost O(N) messages, not
//! O(N^2).

mod common;

use std::io::ErrorKind;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::Message;

use common::{tcp_of, Client, Server};

/// The next online count this client receives, skipping heartbeat PINGs.
fn next_count(client: &mut Client) -> u64 {
    loop {
        let value = client.json();
        if value["code"] == 476 {
            continue;
        }
        assert_eq!(value["code"], 988, "{value}");
        assert_eq!(value["extend"]["code"], 20001, "{value}");
        return value["extend"]["mess"].as_u64().expect("a count");
    }
}

#[test]
fn the_count_follows_logins_and_logouts_and_counts_ids_not_sessions() {
    let server = Server::start(&["--presence-interval", "200"]);
    let mut alice = server.user("alice");
    let bob_tab1 = server.user("bob");
    assert_eq!(next_count(&mut alice), 2);
    let bob_tab2 = server.user("bob");
    drop(bob_tab1);
    // bob still has a tab: no change, so nothing is sent. Then bob leaves.
    drop(bob_tab2);
    assert_eq!(next_count(&mut alice), 1);
    // An unauthenticated connection is nobody.
    let mut anonymous = server.ws("/ws");
    anonymous.send_json(&json!({"code": 10015}));
    assert_eq!(anonymous.json()["code"], 732);
    let mut carol = server.user("carol");
    assert_eq!(next_count(&mut alice), 2);
    // Only counts came: the sync's PONG is the next thing for everyone.
    assert_eq!(alice.sync(), Vec::<Value>::new());
    assert_eq!(carol.sync(), Vec::<Value>::new());
}

/// Every 20001 value one session received, in order.
struct Tally {
    client: Client,
    counts: Vec<u64>,
}

impl Tally {
    /// Read whatever has arrived, without blocking.
    fn poll(&mut self) {
        loop {
            match self.client.socket.read() {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["code"] == 476 {
                        continue;
                    }
                    assert_eq!(value["extend"]["code"], 20001, "only counts: {value}");
                    self.counts.push(value["extend"]["mess"].as_u64().unwrap());
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

#[test]
fn a_thousand_logins_cost_o_n_online_count_messages_not_o_n_squared() {
    const USERS: usize = 1000;
    const THREADS: usize = 4;
    const INTERVAL: Duration = Duration::from_millis(200);
    let server = Arc::new(Server::start(&["--presence-interval", "200"]));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let all_logged_in = Arc::new(Barrier::new(THREADS));

    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let server = Arc::clone(&server);
            let all_logged_in = Arc::clone(&all_logged_in);
            thread::spawn(move || {
                let mut tallies: Vec<Tally> = (t..USERS)
                    .step_by(THREADS)
                    .map(|i| {
                        let mut client = server.ws("/ws");
                        let count = client.auth(json!(format!("user{i}")));
                        tcp_of(&client.socket).set_nonblocking(true).unwrap();
                        Tally {
                            client,
                            counts: vec![count],
                        }
                    })
                    .collect();
                all_logged_in.wait();
                // Read until every session here has been told the final
                // count, then a few windows more for anything late.
                let mut settled_at: Option<Instant> = None;
                while settled_at.is_none_or(|at| at.elapsed() < INTERVAL * 5) {
                    assert!(Instant::now() < deadline, "counts never settled");
                    for tally in &mut tallies {
                        tally.poll();
                    }
                    let settled = tallies
                        .iter()
                        .all(|tally| tally.counts.last() == Some(&(USERS as u64)));
                    if settled && settled_at.is_none() {
                        settled_at = Some(Instant::now());
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                tallies
            })
        })
        .collect();
    let tallies: Vec<Tally> = threads
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect();
    let run_time = started.elapsed();

    let total: usize = tallies.iter().map(|tally| tally.counts.len()).sum();
    let windows = (run_time.as_millis() / INTERVAL.as_millis()) as usize;
    let bound = USERS * (1 + windows + 2);
    assert!(
        total <= bound,
        "{total} online counts for {USERS} logins in {run_time:?}: over {bound}"
    );
    for tally in &tallies {
        assert_eq!(
            tally.counts.last(),
            Some(&(USERS as u64)),
            "every session ends with the final count"
        );
        // Only logins happen, so each session's counts only grow: a count
        // is sent when it changed, and never an older one after a newer.
        assert!(
            tally.counts.windows(2).all(|pair| pair[0] < pair[1]),
            "{:?}",
            tally.counts
        );
        assert!(tally
            .counts
            .iter()
            .all(|&c| (1..=USERS as u64).contains(&c)));
    }
    eprintln!(
        "{USERS} logins: {total} online counts in {run_time:?} ({:.1} per session)",
        total as f64 / USERS as f64
    );
    assert_eq!(server.metric("socketbox_users_online"), USERS as u64);
}
