//! Several nodes over Redis (`PROTOCOL.md`, "Several nodes over Redis"),
//! sentence by sentence: a real `redis-server` started by each test (a free
//! port, a temporary directory, no persistence, stopped by its PID) and
//! three nodes of the real binary, driven by tungstenite clients; Redis is
//! also watched by a raw RESP subscriber of the test's own.
//!
//! Built only with the `redis` feature (`cargo test --features redis`).
//! Without `redis-server` on PATH each test is reported as ignored, with
//! the reason, and under `CI=true` it fails instead: `.ci/run` installs it.
//! Its own harness (libtest-mimic) for that, as in `tests/browser.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde_json::{json, Value};

use common::{eventually, extend_code, Client, Server, StderrLog};

/// Generous: two cores shared with other builds.
const WAIT: Duration = Duration::from_secs(10);

const ADMIN: &str = "secret-admin";

type Test = fn() -> Result<(), Failed>;

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let tests: [(&str, Test); 8] = [
        (
            "peer_and_broadcast_reach_every_node_in_order_with_seq_per_session",
            peer_and_broadcast,
        ),
        ("api_push_broadcast_and_online_count_every_node", admin_api),
        (
            "counts_and_lists_are_of_distinct_ids_over_all_nodes",
            counts_and_lists,
        ),
        (
            "a_message_to_local_users_only_never_goes_to_redis",
            local_stays_local,
        ),
        (
            "a_node_killed_with_sigkill_stops_counting_within_10_s",
            killed_node,
        ),
        (
            "while_redis_is_down_nodes_serve_locally_and_recover_after",
            redis_outage,
        ),
        (
            "a_node_started_while_redis_is_down_serves_locally_then_joins",
            start_without_redis,
        ),
        (
            "a_malformed_redis_url_is_a_start_up_error_naming_the_flag",
            malformed_url,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::ignorable_test(name, move || match missing_redis() {
                Some(why) if on_ci() => Err(format!("CI must have redis-server: {why}").into()),
                Some(why) => Ok(Completion::ignored_with(why)),
                None => test().map(|()| Completion::Completed),
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"))
}

fn missing_redis() -> Option<String> {
    match Command::new("redis-server").arg("--version").output() {
        Ok(output) if output.status.success() => None,
        _ => Some("not run: redis-server is not on PATH (apt-get install redis-server)".into()),
    }
}

// ---- Redis, started and stopped by this test ----

/// A `redis-server` of this test's own, killed on drop.
struct Redis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("socketbox-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut redis = Redis {
            port,
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start it (again) on its port, and wait until it answers.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        assert!(
            eventually(WAIT, || self.ping()),
            "redis-server answers PING on port {}",
            self.port
        );
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Kill it by its PID (SIGKILL: an outage, not a shutdown).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A subscriber of the test's own to every SocketBox channel.
    fn watch(&self) -> TcpStream {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream
            .write_all(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$11\r\nsocketbox:*\r\n")
            .unwrap();
        stream
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Everything `watcher` received for `time`.
fn drain(watcher: &mut TcpStream, time: Duration) -> String {
    let deadline = Instant::now() + time;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 65536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ = watcher.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match watcher.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

// ---- nodes ----

struct Node {
    server: Server,
    log: StderrLog,
}

fn node(redis_url: &str, id: &str) -> Node {
    let (server, log) = Server::start_capturing_stderr(&[
        "--redis",
        redis_url,
        "--node-id",
        id,
        "--admin-token",
        ADMIN,
        "--presence-interval",
        "100",
    ]);
    Node { server, log }
}

impl Node {
    fn online(&self) -> (u64, Vec<String>) {
        let (status, body) = self.server.request("GET", "/api/online", Some(ADMIN), "");
        assert_eq!(status, 200, "{body}");
        let value: Value = serde_json::from_str(&body).unwrap();
        let users = value["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect();
        (value["online"].as_u64().unwrap(), users)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self
            .server
            .request("POST", path, Some(ADMIN), &body.to_string());
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn user(&self, id: &str) -> Client {
        let mut client = self.server.user(id);
        client.set_read_timeout(WAIT);
        client
    }

    fn metric(&self, name: &str) -> u64 {
        self.server.metric(name)
    }
}

/// Three nodes on `redis`, each hearing the two others.
fn three_nodes(redis: &Redis) -> [Node; 3] {
    let url = redis.url();
    let nodes = [node(&url, "a"), node(&url, "b"), node(&url, "c")];
    for (node, name) in nodes.iter().zip(["a", "b", "c"]) {
        assert!(
            eventually(WAIT, || node.metric("socketbox_redis_up") == 1
                && node.metric("socketbox_redis_nodes") == 2),
            "every node hears the others:\n{}",
            node.log.contents()
        );
        // "--node-id ID names a node in logs and metrics".
        let (_, metrics) = node.server.get("/metrics");
        let info = format!("socketbox_node_info{{node=\"{name}\"}} 1");
        assert!(metrics.contains(&info), "{info} in:\n{metrics}");
        assert!(node.log.contents().contains(&format!("node {name} joins")));
    }
    nodes
}

/// Wait until every node lists exactly `users` (sorted) online.
fn all_list(nodes: &[&Node], users: &[&str]) -> Result<(), Failed> {
    for node in nodes {
        let ok = eventually(WAIT, || {
            let (count, list) = node.online();
            count == users.len() as u64 && list == users
        });
        if !ok {
            return Err(format!("a node lists {:?}, expected {users:?}", node.online()).into());
        }
    }
    Ok(())
}

fn peer(to: &str, data: Value) -> Value {
    json!({"code": 10002, "data": {"to": to, "n": data}})
}

/// The next MESSAGE (1756) `client` gets: its body.
fn message(client: &mut Client) -> Value {
    let value = client.event();
    assert_eq!(value["code"], 1756, "expected a MESSAGE: {value}");
    value["body"].clone()
}

fn check(condition: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what().into())
    }
}

// ---- the sentences ----

/// "PEER reaches every session of the recipient on any node; BROADCAST
/// every other authenticated session on every node"; "`seq` stays per
/// session"; "at most once, in order per sender and recipient"; "40400
/// means offline on every node".
fn peer_and_broadcast() -> Result<(), Failed> {
    let redis = Redis::start();
    let [a, b, c] = three_nodes(&redis);
    let mut alice = a.user("alice");
    let mut bob_b = b.user("bob");
    let mut bob_c = c.user("bob");
    let mut carol = c.user("carol");
    all_list(&[&a, &b, &c], &["alice", "bob", "carol"])?;

    for n in 0..50 {
        alice.send_json(&peer("bob", json!(n)));
    }
    for bob in [&mut bob_b, &mut bob_c] {
        for n in 0..50u64 {
            let body = message(bob);
            check(
                body["type"] == 30001 && body["from"] == "alice" && body["to"] == "bob",
                || format!("a PEER from alice: {body}"),
            )?;
            check(body["data"]["n"] == n, || {
                format!("in order: {n}th is {body}")
            })?;
            check(body["seq"] == n + 1, || format!("seq per session: {body}"))?;
        }
    }
    alice.send_json(&json!({"code": 10003, "data": "hello all"}));
    for (client, seq) in [(&mut bob_b, 51), (&mut bob_c, 51), (&mut carol, 1)] {
        let body = message(client);
        check(
            body["type"] == 30002 && body["data"] == "hello all" && body["seq"] == seq,
            || format!("a BROADCAST with seq {seq}: {body}"),
        )?;
    }
    check(alice.sync().is_empty(), || {
        "the sender gets no broadcast of its own".into()
    })?;
    // A PEER the other way, through another node.
    carol.send_json(&peer("alice", json!("hi")));
    let body = message(&mut alice);
    check(body["from"] == "carol" && body["seq"] == 1, || {
        format!("{body}")
    })?;
    // Offline everywhere: 40400.
    alice.send_json(&peer("nobody", json!(0)));
    let error = alice.event();
    check(extend_code(&error) == 40400, || format!("40400: {error}"))?;
    // Nothing was delivered twice.
    for client in [&mut bob_b, &mut bob_c, &mut carol] {
        let extra = client.sync();
        check(extra.is_empty(), || format!("no duplicates: {extra:?}"))?;
    }
    Ok(())
}

/// "`/api/push` and `/api/broadcast` on any node reach sessions on all
/// nodes, and `delivered` counts them all"; `/api/online` counts distinct
/// ids over all nodes.
fn admin_api() -> Result<(), Failed> {
    let redis = Redis::start();
    let [a, b, c] = three_nodes(&redis);
    let mut bob_b = b.user("bob");
    let mut bob_c = c.user("bob");
    let mut bob_c2 = c.user("bob");
    let mut dave = a.user("dave");
    all_list(&[&a, &b, &c], &["bob", "dave"])?;

    let answer = a.post("/api/push", json!({"to": "bob", "data": {"x": 1}}));
    check(answer == json!({"delivered": 3}), || {
        format!("3 tabs of bob: {answer}")
    })?;
    for bob in [&mut bob_b, &mut bob_c, &mut bob_c2] {
        let body = message(bob);
        check(
            body["type"] == 30003 && body["from"].is_null() && body["to"] == "bob",
            || format!("a push: {body}"),
        )?;
    }
    let answer = b.post("/api/push", json!({"to": "nobody", "data": 1}));
    check(answer == json!({"delivered": 0}), || format!("{answer}"))?;
    let answer = c.post("/api/broadcast", json!({"data": "all"}));
    check(answer == json!({"delivered": 4}), || {
        format!("4 sessions: {answer}")
    })?;
    for client in [&mut bob_b, &mut bob_c, &mut bob_c2, &mut dave] {
        let body = message(client);
        check(body["type"] == 30003 && body["to"].is_null(), || {
            format!("{body}")
        })?;
    }
    Ok(())
}

/// "20001, 20004, 20005 and `/api/online` count distinct ids over all
/// nodes (a user with tabs on two nodes counts once)".
fn counts_and_lists() -> Result<(), Failed> {
    let redis = Redis::start();
    let [a, b, c] = three_nodes(&redis);
    let mut watcher = a.user("watcher");
    let _x_b = b.user("xavier");
    all_list(&[&a, &b, &c], &["watcher", "xavier"])?;
    watcher.send_json(&json!({"code": 10004}));
    let list = watcher.event();
    check(
        extend_code(&list) == 20004
            && list["extend"]["mess"] == json!({"online": 2, "users": ["watcher", "xavier"]}),
        || format!("20004 of both nodes: {list}"),
    )?;
    // Two tabs of yolanda, on two nodes: one id.
    let y_b = b.user("yolanda");
    let mut y_c = c.user("yolanda");
    all_list(&[&a, &b, &c], &["watcher", "xavier", "yolanda"])?;
    let mut joined = Vec::new();
    let mut online = 0;
    while joined != ["yolanda"] {
        let change = watcher.event();
        check(extend_code(&change) == 20005, || format!("{change}"))?;
        let mess = &change["extend"]["mess"];
        joined.extend(
            mess["joined"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string().replace('"', "")),
        );
        online = mess["online"].as_u64().unwrap();
    }
    check(online == 3, || format!("20005 online {online}"))?;
    // The count a new session gets counts ids, not sessions.
    let mut zed = c.server.ws("/ws");
    let count = zed.auth(json!("zed"));
    check(count == 4, || format!("20001 after AUTH on c: {count}"))?;
    all_list(&[&a, &b, &c], &["watcher", "xavier", "yolanda", "zed"])?;
    let counted = eventually(WAIT, || a.metric("socketbox_users_online") == 4);
    check(counted, || "socketbox_users_online on a".into())?;
    // One tab of yolanda leaves: she stays online; the last: she leaves.
    drop(y_b);
    thread_sleep(Duration::from_millis(500));
    all_list(&[&a, &b, &c], &["watcher", "xavier", "yolanda", "zed"])?;
    y_c.socket.close(None).ok();
    while y_c.socket.read().is_ok() {}
    all_list(&[&a, &b, &c], &["watcher", "xavier", "zed"])?;
    let mut left = Vec::new();
    while left.is_empty() {
        let change = watcher.event();
        check(extend_code(&change) == 20005, || format!("{change}"))?;
        let mess = &change["extend"]["mess"];
        left.extend(
            mess["left"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string().replace('"', "")),
        );
    }
    check(left == ["yolanda"], || format!("left {left:?}"))?;
    Ok(())
}

fn thread_sleep(time: Duration) {
    std::thread::sleep(time);
}

/// "A message whose recipients are all on the sending node costs no Redis
/// round trip" (the issue's wording of it): a watcher of every SocketBox
/// channel sees the cross-node PEER and never the local one.
fn local_stays_local() -> Result<(), Failed> {
    let redis = Redis::start();
    let [a, b, _c] = three_nodes(&redis);
    let mut watcher = redis.watch();
    let mut alice = a.user("alice");
    let mut amy = a.user("amy");
    all_list(&[&a, &b], &["alice", "amy"])?;
    drain(&mut watcher, Duration::from_millis(200));
    // No session on another node: a BROADCAST stays here too.
    alice.send_json(&json!({"code": 10003, "data": "local-marker-0"}));
    check(message(&mut amy)["data"] == "local-marker-0", || {
        "amy".into()
    })?;
    let seen = drain(&mut watcher, Duration::from_secs(1));
    check(!seen.contains("local-marker-0"), || {
        "a BROADCAST with no session elsewhere went through Redis".into()
    })?;
    let mut bob = b.user("bob");
    all_list(&[&a, &b], &["alice", "amy", "bob"])?;
    drain(&mut watcher, Duration::from_millis(200));
    alice.send_json(&peer("amy", json!("local-marker-1")));
    alice.send_json(&peer("bob", json!("remote-marker-2")));
    check(message(&mut amy)["data"]["n"] == "local-marker-1", || {
        "amy".into()
    })?;
    check(message(&mut bob)["data"]["n"] == "remote-marker-2", || {
        "bob".into()
    })?;
    let seen = drain(&mut watcher, Duration::from_secs(1));
    check(seen.contains("remote-marker-2"), || {
        format!("the watcher sees Redis traffic: {seen}")
    })?;
    check(!seen.contains("local-marker-1"), || {
        "a PEER between two sessions of one node went through Redis".into()
    })?;
    Ok(())
}

/// "A node that dies (killed, host lost) stops counting as online on the
/// other nodes within 10 s."
fn killed_node() -> Result<(), Failed> {
    let redis = Redis::start();
    let [a, b, c] = three_nodes(&redis);
    let mut alice = a.user("alice");
    let _carol = c.user("carol");
    let _bob = b.user("bob");
    all_list(&[&a, &b, &c], &["alice", "bob", "carol"])?;
    let killed_at = Instant::now();
    drop(c); // SIGKILL: no goodbye to anyone
    all_list(&[&a, &b], &["alice", "bob"])?;
    let took = killed_at.elapsed();
    check(took <= WAIT, || format!("forgotten after {took:?}"))?;
    alice.send_json(&peer("carol", json!(1)));
    let error = alice.event();
    check(extend_code(&error) == 40400, || {
        format!("carol is offline everywhere: {error}")
    })?;
    Ok(())
}

/// "While Redis is unreachable each node keeps serving its own sessions
/// (local PEER, BROADCAST and counts keep working); a PEER that needs
/// another node gets ERROR 50300; the node reconnects by itself with
/// backoff, subscribes again and republishes its presence, and `/healthz`
/// (503) and `/metrics` show the outage."
fn redis_outage() -> Result<(), Failed> {
    let mut redis = Redis::start();
    let [a, b, c] = three_nodes(&redis);
    let mut alice = a.user("alice");
    let mut amy = a.user("amy");
    let mut bob = b.user("bob");
    all_list(&[&a, &b, &c], &["alice", "amy", "bob"])?;
    check(a.server.get("/healthz") == (200, "ok".into()), || {
        "healthy".into()
    })?;

    redis.stop();
    let down = eventually(WAIT, || a.server.get("/healthz").0 == 503);
    check(down, || "/healthz answers 503 while Redis is down".into())?;
    let (_, reason) = a.server.get("/healthz");
    check(reason.contains("redis"), || format!("the reason: {reason}"))?;
    check(a.metric("socketbox_redis_up") == 0, || {
        "socketbox_redis_up 0".into()
    })?;
    // Local service goes on.
    alice.send_json(&peer("amy", json!("still here")));
    check(message(&mut amy)["data"]["n"] == "still here", || {
        "local PEER".into()
    })?;
    alice.send_json(&json!({"code": 10003, "data": "local broadcast"}));
    check(message(&mut amy)["data"] == "local broadcast", || {
        "local BROADCAST".into()
    })?;
    let mut late = a.server.ws("/ws");
    let count = late.auth(json!("ann"));
    check(count >= 3, || format!("local counts go on: {count}"))?;
    // A PEER that needs another node: 50300, the connection stays.
    alice.send_json(&peer("bob", json!("lost")));
    let error = alice.event();
    check(extend_code(&error) == 50300, || format!("50300: {error}"))?;
    check(alice.sync().is_empty(), || "the connection stays".into())?;

    redis.restart();
    for node in [&a, &b, &c] {
        let back = eventually(WAIT, || {
            node.server.get("/healthz").0 == 200 && node.metric("socketbox_redis_up") == 1
        });
        check(back, || format!("reconnected:\n{}", node.log.contents()))?;
        check(node.metric("socketbox_redis_reconnects_total") >= 1, || {
            "socketbox_redis_reconnects_total counts it".into()
        })?;
    }
    all_list(&[&a, &b, &c], &["alice", "amy", "ann", "bob"])?;
    alice.send_json(&peer("bob", json!("after")));
    let body = message(&mut bob);
    check(body["data"]["n"] == "after", || format!("{body}"))?;
    check(bob.sync().is_empty(), || {
        "the lost PEER stays lost (at most once)".into()
    })?;
    Ok(())
}

/// "A node started while Redis is down starts and serves locally."
fn start_without_redis() -> Result<(), Failed> {
    let mut redis = Redis::start();
    redis.stop();
    let a = node(&redis.url(), "a");
    check(a.server.get("/healthz").0 == 503, || {
        "unhealthy at first".into()
    })?;
    let mut alice = a.user("alice");
    let mut amy = a.user("amy");
    alice.send_json(&peer("amy", json!(1)));
    check(message(&mut amy)["data"]["n"] == 1, || {
        "served locally".into()
    })?;
    redis.restart();
    let b = node(&redis.url(), "b");
    let _bob = b.user("bob");
    all_list(&[&a, &b], &["alice", "amy", "bob"])?;
    check(a.server.get("/healthz").0 == 200, || {
        "healthy once joined".into()
    })?;
    Ok(())
}

/// "A malformed `--redis` value is a start-up error naming the flag."
fn malformed_url() -> Result<(), Failed> {
    for url in ["localhost:6379", "redis://", "redis://host:port"] {
        let output = Command::new(env!("CARGO_BIN_EXE_socketbox"))
            .args(["--listen", "127.0.0.1:0", "--redis", url])
            .output()
            .expect("run socketbox");
        let stderr = String::from_utf8_lossy(&output.stderr);
        check(!output.status.success(), || format!("{url}: refused"))?;
        check(stderr.contains("--redis"), || {
            format!("{url}: names the flag: {stderr}")
        })?;
        check(output.stdout.is_empty(), || {
            format!("{url}: never listened")
        })?;
    }
    Ok(())
}
