//! The login storm: what the online list (SYSTEM 20004 / 20005) costs while
//! many users arrive and leave at once.
//!
//! `subscribers` sessions log in first and, when asked, subscribe with
//! `{"code":10004}`. Then `users` more sessions log in at a steady pace over
//! about `--storm-secs`, and after a pause log out (closing handshake) at the
//! same pace. For each of the two waves the run reports, per subscriber, the
//! 20004/20005 messages and their bytes, and the server's CPU time (user +
//! system, from /proc) from the first login of the wave until the last
//! presence window after it closed.
//!
//! The contract bounds the messages: at most one 20005 per
//! `--presence-interval`, only when the list changed. So a wave of S
//! seconds should cost each subscriber at most about 2 + S messages. The
//! run also checks what they say: a sample of subscribers replays 20004 and
//! every 20005, and must see every storm user online after the logins and
//! none after the logouts.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::chat::{Crowd, Errors, Opening};
use crate::procfs;

/// What a storm run asks for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server.
    pub addr: SocketAddr,
    /// Its process, for the CPU time.
    pub pid: u32,
    /// Sessions online before the storm.
    pub subscribers: usize,
    /// Whether they send 10004 (off: the same storm, nobody subscribed).
    pub subscribe: bool,
    /// Users that log in, then out.
    pub users: usize,
    /// Seconds over which each wave is spread.
    pub storm: Duration,
    /// The server's `--presence-interval`: the run waits two of them after
    /// each wave for the last window to close.
    pub presence_interval: Duration,
    /// Id prefix, so that runs against one server do not collide.
    pub prefix: String,
}

/// What one wave (the logins or the logouts) cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wave {
    /// From the first login (logout) sent to the last one done.
    pub secs: f64,
    /// Server CPU seconds from the wave's start to two presence intervals
    /// after its end.
    pub cpu_secs: f64,
    /// 20004/20005 messages per subscriber: mean and most.
    pub msgs_mean: f64,
    /// The most any subscriber received.
    pub msgs_max: u64,
    /// Payload bytes of those messages per subscriber: mean.
    pub bytes_mean: f64,
}

/// The whole run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Subscribers that got their 20004.
    pub subscribed: usize,
    /// The login wave.
    pub login: Wave,
    /// The logout wave.
    pub logout: Wave,
    /// Sampled subscribers whose replayed list was wrong after a wave.
    pub wrong_lists: u64,
    /// Session failures, bad or unexpected messages.
    pub errors: Errors,
}

/// Every how many subscribers one replays the list in full.
const SAMPLE_EVERY: usize = 50;

/// Per-subscriber tally for the wave in progress, and the replayed list of
/// the sampled ones.
struct Tally {
    msgs: Vec<u64>,
    bytes: Vec<u64>,
    lists: Vec<Option<BTreeSet<String>>>,
    got_list: Vec<bool>,
}

impl Tally {
    fn new(count: usize) -> Self {
        Tally {
            msgs: vec![0; count],
            bytes: vec![0; count],
            lists: (0..count)
                .map(|i| (i % SAMPLE_EVERY == 0).then(BTreeSet::new))
                .collect(),
            got_list: vec![false; count],
        }
    }

    /// Close the current wave: the per-subscriber figures, then zero them.
    fn wave(&mut self, secs: f64, cpu_secs: f64) -> Wave {
        let n = self.msgs.len().max(1) as f64;
        let wave = Wave {
            secs,
            cpu_secs,
            msgs_mean: self.msgs.iter().sum::<u64>() as f64 / n,
            msgs_max: self.msgs.iter().copied().max().unwrap_or(0),
            bytes_mean: self.bytes.iter().sum::<u64>() as f64 / n,
        };
        self.msgs.iter_mut().for_each(|m| *m = 0);
        self.bytes.iter_mut().for_each(|b| *b = 0);
        wave
    }
}

fn ids(value: &Value) -> impl Iterator<Item = String> + '_ {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
}

/// Read what reached the subscribers for up to `timeout`.
fn pump_subscribers(crowd: &mut Crowd, tally: &mut Tally, timeout: Duration) {
    crowd.pump(timeout, |crowd, i, _, payload| {
        let value: Option<Value> = serde_json::from_slice(payload).ok();
        let presence = value
            .as_ref()
            .filter(|v| v["code"] == 988)
            .and_then(|v| v["extend"]["code"].as_i64())
            .filter(|code| *code == 20004 || *code == 20005);
        let (Some(code), Some(value)) = (presence, value.as_ref()) else {
            if crowd.common(i, value).is_some() {
                crowd.errors.bad += 1;
            }
            return;
        };
        tally.msgs[i] += 1;
        tally.bytes[i] += payload.len() as u64;
        let mess = &value["extend"]["mess"];
        if code == 20004 {
            tally.got_list[i] = true;
        }
        if let Some(list) = tally.lists[i].as_mut() {
            if code == 20004 {
                *list = ids(mess).collect();
            } else {
                for id in ids(&mess["left"]) {
                    list.remove(&id);
                }
                list.extend(ids(&mess["joined"]));
            }
        }
    });
}

/// Keep reading the subscribers until `done` is set, then for `after`.
fn pump_until(crowd: &mut Crowd, tally: &mut Tally, done: &AtomicBool, after: Duration) {
    while !done.load(Ordering::Acquire) {
        pump_subscribers(crowd, tally, Duration::from_millis(20));
    }
    let end = Instant::now() + after;
    while Instant::now() < end {
        pump_subscribers(crowd, tally, Duration::from_millis(20));
    }
}

/// Count sampled subscribers whose list does not hold exactly what it should
/// of the storm's users (`present` or none of them).
fn wrong_lists(tally: &Tally, storm_ids: &[String], present: bool) -> u64 {
    tally
        .lists
        .iter()
        .flatten()
        .filter(|list| {
            let seen = storm_ids.iter().filter(|id| list.contains(*id)).count();
            seen != if present { storm_ids.len() } else { 0 }
        })
        .count() as u64
}

/// Run the storm.
pub fn run(o: &Options) -> std::io::Result<Outcome> {
    let mut subs = Crowd::connect(
        o.addr,
        "/ws",
        &format!("{}s", o.prefix),
        o.subscribers,
        Opening::FAST,
    )?;
    let mut tally = Tally::new(subs.sessions.len());
    if o.subscribe {
        for i in 0..subs.sessions.len() {
            subs.send_to(i, &json!({"code": 10004}));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while tally.got_list.iter().any(|got| !got) && Instant::now() < deadline {
            pump_subscribers(&mut subs, &mut tally, Duration::from_millis(20));
        }
    }
    // Let the subscribers' own logins leave the windows before counting.
    let quiet = Instant::now() + o.presence_interval * 2;
    while Instant::now() < quiet {
        pump_subscribers(&mut subs, &mut tally, Duration::from_millis(20));
    }
    let mut outcome = Outcome {
        subscribed: tally.got_list.iter().filter(|got| **got).count(),
        ..Outcome::default()
    };
    tally.wave(0.0, 0.0);
    let settle = o.presence_interval * 2 + Duration::from_millis(500);
    let per_second = o.users as f64 / o.storm.as_secs_f64().max(0.001);

    // The logins.
    let done = AtomicBool::new(false);
    let cpu = procfs::cpu_seconds(o.pid);
    let started = Instant::now();
    let (storm, login_secs) = std::thread::scope(|scope| {
        let wave = scope.spawn(|| {
            let opening = Opening {
                per_second,
                timeout: Duration::from_secs(10),
            };
            let crowd = Crowd::connect(o.addr, "/ws", &format!("{}u", o.prefix), o.users, opening);
            let secs = started.elapsed().as_secs_f64();
            done.store(true, Ordering::Release);
            (crowd, secs)
        });
        pump_until(&mut subs, &mut tally, &done, settle);
        wave.join().expect("the login wave panicked")
    });
    let mut storm = storm?;
    outcome.login = tally.wave(login_secs, procfs::cpu_seconds(o.pid) - cpu);
    let storm_ids: Vec<String> = storm.sessions.iter().map(|s| s.user.clone()).collect();
    if o.subscribe {
        outcome.wrong_lists += wrong_lists(&tally, &storm_ids, true);
    }

    // The logouts, at the same pace.
    let done = AtomicBool::new(false);
    let cpu = procfs::cpu_seconds(o.pid);
    let started = Instant::now();
    let logout_secs = std::thread::scope(|scope| {
        let storm = &mut storm;
        let done = &done;
        let wave = scope.spawn(move || {
            for index in 0..storm.sessions.len() {
                let due = started + Duration::from_secs_f64(index as f64 / per_second);
                while Instant::now() < due {
                    storm.pump(
                        due.saturating_duration_since(Instant::now()),
                        |crowd, i, _, p| {
                            let value = serde_json::from_slice(p).ok();
                            if crowd.common(i, value).is_some() {
                                crowd.errors.bad += 1;
                            }
                        },
                    );
                }
                storm.begin_close(index);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while storm.alive() > 0 && Instant::now() < deadline {
                storm.pump(Duration::from_millis(20), |crowd, i, _, p| {
                    let value = serde_json::from_slice(p).ok();
                    if crowd.common(i, value).is_some() {
                        crowd.errors.bad += 1;
                    }
                });
            }
            storm.errors.sessions += storm.alive() as u64;
            let secs = started.elapsed().as_secs_f64();
            done.store(true, Ordering::Release);
            secs
        });
        pump_until(&mut subs, &mut tally, done, settle);
        wave.join().expect("the logout wave panicked")
    });
    outcome.logout = tally.wave(logout_secs, procfs::cpu_seconds(o.pid) - cpu);
    if o.subscribe {
        outcome.wrong_lists += wrong_lists(&tally, &storm_ids, false);
    }

    outcome.errors = std::mem::take(&mut subs.errors);
    outcome.errors.sessions += storm.errors.sessions;
    outcome.errors.bad += storm.errors.bad;
    subs.close();
    Ok(outcome)
}
