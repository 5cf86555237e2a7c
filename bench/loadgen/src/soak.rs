//! `loadgen soak echo|chat`: hold N connections to a SocketBox server,
//! send at a fixed rate for a fixed time, account for every message, and
//! watch the server's resources while it happens.
//!
//! - `echo`: N connections to `/echo`, each sending a message of `--size`
//!   bytes every `1/--rate` seconds; every echo is checked byte for byte
//!   and in order (the open loop of `echo.rs`).
//! - `chat`: N users AUTH on `/ws` and send PEER messages to random others
//!   at `--rate` each; every delivery is checked (`seq` without a gap, each
//!   sender's messages once, in order, with the text sent) and every pair's
//!   sent and delivered counts compared (`chat::soak`).
//!
//! All connections are opened first (at most `--ramp` per second) and the
//! traffic starts when the last is ready, so the figures describe a server
//! holding N connections while messages flow. Both end with the closing
//! handshake on every connection. The report gives throughput, latency
//! percentiles, every kind of failure, the server's RSS, threads and
//! descriptors (`/proc/PID`, `--pid`) before, held, at peak and after, and
//! its own gauges (`GET /metrics`). A watchdog ends the process with exit
//! status 3 past `--max-time`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::chat::{self, Crowd, Opening};
use crate::echo::{self, Pace};
use crate::hist::Histogram;
use crate::procfs::{self, Sample};
use crate::stress;

/// Counts the traffic loops bump as they go, for progress lines.
#[derive(Debug, Default)]
pub struct Live {
    sent: AtomicU64,
    delivered: AtomicU64,
}

impl Live {
    /// `n` more messages sent.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
    }

    /// `n` more delivered intact.
    pub fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Relaxed);
    }
}

/// Which endpoint a soak exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/echo`.
    Echo,
    /// `/ws`, PEER messages.
    Chat,
}

/// The command line of a soak.
#[derive(Debug, Clone)]
pub struct Options {
    /// Echo or chat.
    pub kind: Kind,
    /// Server address (loopback).
    pub addr: SocketAddr,
    /// Endpoint path.
    pub path: String,
    /// Connections (echo) or users (chat).
    pub conns: usize,
    /// Messages per second per connection.
    pub rate: f64,
    /// Echo: message bytes; chat: characters of text.
    pub size: usize,
    /// Echo: text messages instead of binary.
    pub text: bool,
    /// Time of traffic.
    pub duration: Duration,
    /// Connections opened per second at most.
    pub ramp: f64,
    /// Time one connection may take to open.
    pub connect_timeout: Duration,
    /// Time after the traffic for the last deliveries.
    pub drain: Duration,
    /// The server's process id (0: do not read /proc).
    pub pid: u32,
    /// Whether to GET /metrics (it takes a connection slot).
    pub metrics: bool,
    /// Echo: most unanswered bytes per connection.
    pub window: usize,
    /// Chat: user ids are this and a number.
    pub id_prefix: String,
    /// Hard bound on the whole run (default: ramp, connect timeout,
    /// duration, drain and a minute).
    pub max_time: Option<Duration>,
}

impl Options {
    /// Refuse what cannot work.
    pub fn check(&self) -> Result<(), String> {
        if self.conns == 0 {
            return Err("at least one connection".into());
        }
        let rate_ok = self.rate.is_finite() && self.rate >= 0.0;
        if !rate_ok || self.ramp.is_nan() || self.ramp <= 0.0 {
            return Err("--rate and --ramp must be numbers, --ramp above 0".into());
        }
        match self.kind {
            Kind::Echo if !(8..=16 << 20).contains(&self.size) => {
                Err("--size: 8 bytes (each message carries its sequence number) to 16 MiB".into())
            }
            Kind::Chat if self.size > 60_000 => {
                Err("--size: chat text stays under the server's 64 KiB message limit".into())
            }
            Kind::Chat if self.conns < 2 => Err("--users: at least 2".into()),
            Kind::Chat
                if self.id_prefix.len() > 50
                    || !self
                        .id_prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b)) =>
            {
                Err("--id-prefix: up to 50 of A-Z a-z 0-9 _ . @ -".into())
            }
            _ => Ok(()),
        }
    }
}

/// Check the limits a run of this size meets here; complain before
/// connection 9,000 fails rather than after.
fn preflight(o: &Options) -> Result<(), String> {
    let need = o.conns as u64 + 64;
    if let Some(limit) = procfs::open_files_limit(0).filter(|&l| l < need) {
        return Err(format!(
            "{} connections need {need} file descriptors, this process may open {limit}: \
             run `ulimit -n {}` first",
            o.conns,
            need.max(20_000)
        ));
    }
    if o.pid != 0 {
        if let Some(limit) = procfs::open_files_limit(o.pid).filter(|&l| l < need) {
            eprintln!(
                "warning: the server may open {limit} descriptors; this run needs about {need}"
            );
        }
    }
    // The generator needs no thread per connection; the server does.
    let threads = match o.kind {
        Kind::Echo => o.conns,
        Kind::Chat => 2 * o.conns,
    } as u64
        + 200;
    for (path, name) in [
        ("/proc/sys/kernel/pid_max", "kernel.pid_max"),
        ("/proc/sys/kernel/threads-max", "kernel.threads-max"),
    ] {
        if let Some(limit) = procfs::read_number(path).filter(|&l| l < threads) {
            eprintln!("warning: {name} is {limit}; the server needs about {threads} threads");
        }
    }
    let maps = 4 * threads + 1000;
    if let Some(limit) = procfs::read_number("/proc/sys/vm/max_map_count").filter(|&l| l < maps) {
        eprintln!(
            "warning: vm.max_map_count is {limit}: each server thread takes 4 mappings, \
             this run about {maps}"
        );
    }
    Ok(())
}

/// The server's gauges, from `GET /metrics`.
fn gauges(o: &Options) -> String {
    if !o.metrics {
        return "not asked (--no-metrics)".into();
    }
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        o.addr
    );
    let text = match stress::http(o.addr, &request) {
        Ok((200, text)) => text,
        Ok((status, _)) => return format!("unavailable: status {status}"),
        Err(e) => return format!("unavailable: {e}"),
    };
    let mut out = String::new();
    for name in [
        "socketbox_connections",
        "socketbox_threads",
        "socketbox_sessions",
        "socketbox_users_online",
    ] {
        if let Some(value) = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        {
            let _ = write!(out, "{}={} ", &name["socketbox_".len()..], value.trim());
        }
    }
    for family in ["socketbox_rejections_total{", "socketbox_closes_total{"] {
        for line in text.lines().filter(|l| l.starts_with(family)) {
            let _ = write!(out, "{} ", line["socketbox_".len()..].replace(' ', "="));
        }
    }
    out.trim_end().to_owned()
}

fn describe(sample: Option<Sample>) -> String {
    match sample {
        Some(s) if s.rss_kib > 0 => format!(
            "RSS {:.1} MiB, {} threads, {} fds",
            s.rss_kib as f64 / 1024.0,
            s.threads,
            s.fds
        ),
        _ => "not readable".into(),
    }
}

fn ms(nanos: u64) -> String {
    format!("{:.2} ms", nanos as f64 / 1e6)
}

/// What the traffic came to, whichever the endpoint.
struct Tally {
    opened: usize,
    sent: u64,
    delivered: u64,
    latency: Histogram,
    /// Each kind of failure and its count.
    problems: Vec<(&'static str, u64)>,
    /// Echo: sends skipped because the server fell behind.
    skipped: u64,
}

/// What the server looked like while the traffic ran.
#[derive(Default)]
struct Watch {
    peak: Sample,
    mid_gauges: Option<String>,
}

/// Sample the server every half second until `stop`, keeping the peak;
/// read the gauges halfway through; print progress every 5 s.
fn watch(o: &Options, start: Instant, held: Sample, live: &Live, stop: &AtomicBool) -> Watch {
    let mut w = Watch {
        peak: held,
        ..Watch::default()
    };
    let mut last_progress = Instant::now();
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        let sample = (o.pid != 0).then(|| procfs::sample(o.pid));
        if let Some(s) = sample {
            w.peak.rss_kib = w.peak.rss_kib.max(s.rss_kib);
            w.peak.threads = w.peak.threads.max(s.threads);
            w.peak.fds = w.peak.fds.max(s.fds);
        }
        if w.mid_gauges.is_none() && start.elapsed() >= o.duration / 2 {
            w.mid_gauges = Some(gauges(o));
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            let server =
                sample.map_or(String::new(), |s| format!("; server {}", describe(Some(s))));
            eprintln!(
                "  {:>6.1} s: sent {}, delivered {}{server}",
                start.elapsed().as_secs_f64(),
                live.sent.load(Relaxed),
                live.delivered.load(Relaxed)
            );
        }
    }
    w
}

/// Open the connections, run the traffic while watching the server, and
/// return the tally and what the server looked like.
fn traffic(o: &Options, live: &Live) -> (Tally, Watch) {
    let ramp_start = Instant::now();
    let watch_and = |opened: usize, run: &mut dyn FnMut() -> Tally| {
        println!(
            "ramp:           {opened}/{} open in {:.1} s ({} failed)",
            o.conns,
            ramp_start.elapsed().as_secs_f64(),
            o.conns - opened
        );
        let held = (o.pid != 0).then(|| procfs::sample(o.pid));
        if o.pid != 0 {
            println!("server held:    {}", describe(held));
        }
        println!("server gauges:  {}", gauges(o));
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        std::thread::scope(|scope| {
            let watcher = scope.spawn(|| watch(o, start, held.unwrap_or_default(), live, &stop));
            let tally = run();
            stop.store(true, Relaxed);
            (tally, watcher.join().unwrap_or_default())
        })
    };
    match o.kind {
        Kind::Echo => {
            let eo = echo::Options {
                addr: o.addr,
                path: o.path.clone(),
                conns: o.conns,
                size: o.size,
                pace: Pace::Rate {
                    interval: Duration::from_secs_f64(1.0 / o.rate.max(1e-9)),
                    window: o.window,
                },
                duration: o.duration,
                warmup: Duration::ZERO,
                drain: o.drain,
                threads: 1,
                text: o.text,
                ramp: o.ramp,
                connect_timeout: o.connect_timeout,
            };
            let (groups, not_opened) = echo::open(&eo);
            let opened = o.conns - not_opened as usize;
            let mut groups = Some(groups);
            watch_and(opened, &mut || {
                let r = echo::drive(groups.take().unwrap_or_default(), &eo, Some(live));
                Tally {
                    opened,
                    sent: r.sent,
                    delivered: r.messages,
                    problems: vec![
                        ("lost", r.lost),
                        ("corrupt", r.bad),
                        ("out of order", r.out_of_order),
                        ("connections failed", r.failed),
                        ("not opened", not_opened),
                        ("unclean closes", r.unclean_closes),
                    ],
                    skipped: r.skipped,
                    latency: r.latency,
                }
            })
        }
        Kind::Chat => {
            let opening = Opening {
                per_second: o.ramp,
                timeout: o.connect_timeout,
            };
            let mut crowd = match Crowd::connect(o.addr, &o.path, &o.id_prefix, o.conns, opening) {
                Ok(crowd) => crowd,
                Err(e) => {
                    eprintln!("loadgen soak: {e}");
                    let none = Tally {
                        opened: 0,
                        sent: 0,
                        delivered: 0,
                        latency: Histogram::default(),
                        problems: vec![("not opened", o.conns as u64)],
                        skipped: 0,
                    };
                    return (none, Watch::default());
                }
            };
            // The logins' presence updates, before the server is read.
            crowd.settle(Duration::from_millis(500), Duration::from_secs(10));
            let opened = crowd.authed();
            let failed_before = crowd.errors.sessions;
            let co = chat::SoakOptions {
                rate: o.rate,
                size: o.size,
                duration: o.duration,
                drain: o.drain,
            };
            watch_and(opened, &mut || {
                let r = chat::soak(&mut crowd, &co, Some(live));
                Tally {
                    opened,
                    sent: r.sent,
                    delivered: r.delivered,
                    problems: vec![
                        ("lost", r.errors.lost),
                        ("corrupt", r.corrupt),
                        ("out of order", r.out_of_order),
                        ("duplicated or late", r.duplicated),
                        ("wrong (seq gaps, errors, unexpected)", r.errors.bad),
                        (
                            "sessions failed",
                            r.errors.sessions.saturating_sub(failed_before),
                        ),
                        ("not opened", (o.conns - opened) as u64),
                        ("unclean closes", r.unclean_closes),
                    ],
                    skipped: 0,
                    latency: r.latency,
                }
            })
        }
    }
}

/// Run a soak; Ok(true) when every message was delivered intact.
pub fn run(o: &Options, label: &str) -> Result<bool, String> {
    o.check()?;
    preflight(o)?;
    let began = Instant::now();
    let ramp_time = Duration::from_secs_f64(o.conns as f64 / o.ramp);
    let max_time = o
        .max_time
        .unwrap_or(ramp_time + o.connect_timeout + o.duration + o.drain + Duration::from_secs(60));
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(max_time);
            eprintln!("loadgen soak: gave up: the run passed --max-time {max_time:?}");
            std::process::exit(3);
        })
        .map_err(|e| format!("watchdog thread: {e}"))?;
    let (kind, what) = match o.kind {
        Kind::Echo => (
            "echo",
            format!(
                "{} connections to {}{}, {} {}-byte {} messages/s each",
                o.conns,
                o.addr,
                o.path,
                o.rate,
                o.size,
                if o.text { "text" } else { "binary" }
            ),
        ),
        Kind::Chat => (
            "chat",
            format!(
                "{} users on {}{}, {} PEER messages/s each ({}-char text)",
                o.conns, o.addr, o.path, o.rate, o.size
            ),
        ),
    };
    println!(
        "loadgen soak {kind}: {what}, {} s",
        o.duration.as_secs_f64()
    );
    let before = (o.pid != 0).then(|| procfs::sample(o.pid));
    if o.pid != 0 {
        println!("server before:  {}", describe(before));
    }
    let live = Live::default();
    let (t, w) = traffic(o, &live);
    let after = (o.pid != 0).then(|| {
        std::thread::sleep(Duration::from_millis(500));
        procfs::sample(o.pid)
    });
    let mut summary = String::new();
    for (name, count) in &t.problems {
        let _ = write!(summary, ", {count} {name}");
    }
    println!(
        "traffic:        {} sent, {} delivered intact{summary}",
        t.sent, t.delivered
    );
    if t.skipped > 0 {
        println!(
            "                {} sends skipped: --window of unanswered bytes was full (the server fell behind)",
            t.skipped
        );
    }
    let secs = o.duration.as_secs_f64().max(1e-9);
    println!(
        "throughput:     {:.0} messages/s (over the {secs:.0} s of traffic)",
        t.delivered as f64 / secs
    );
    let h = &t.latency;
    println!(
        "latency:        p50 {}, p90 {}, p99 {}, p99.9 {}, max {} ({} samples)",
        ms(h.quantile(0.5)),
        ms(h.quantile(0.9)),
        ms(h.quantile(0.99)),
        ms(h.quantile(0.999)),
        ms(h.max()),
        t.delivered
    );
    let mut per_conn = (0.0, 0.0);
    if o.pid != 0 {
        println!("server peak:    {}", describe(Some(w.peak)));
        if let (Some(base), true) = (before, t.opened > 0) {
            per_conn = (
                w.peak.rss_kib.saturating_sub(base.rss_kib) as f64 / t.opened as f64,
                w.peak.threads.saturating_sub(base.threads) as f64 / t.opened as f64,
            );
            println!(
                "                {:.1} KiB of RSS and {:.2} threads per open connection",
                per_conn.0, per_conn.1
            );
        }
    }
    if let Some(g) = &w.mid_gauges {
        println!("gauges mid-run: {g}");
    }
    if o.pid != 0 {
        println!("server after:   {}", describe(after));
    }
    println!(
        "load generator: peak RSS {:.1} MiB; run took {:.1} s",
        procfs::own_peak_rss_kib() as f64 / 1024.0,
        began.elapsed().as_secs_f64()
    );
    let errors: u64 = t.problems.iter().map(|(_, n)| n).sum();
    let ok = errors == 0 && t.opened == o.conns && t.delivered == t.sent;
    println!(
        "result:         {}",
        if ok {
            "OK: every message was delivered intact and in order"
        } else {
            "FAILED"
        }
    );
    let mut fields = String::new();
    for (name, count) in &t.problems {
        let key: String = name.split(" (").next().unwrap_or(name).replace(' ', "_");
        let _ = write!(fields, " {key}={count}");
    }
    println!(
        "RESULT {label}test=soak-{kind} conns={} rate={} size={} duration={} opened={} sent={} delivered={} errors={errors}{fields} \
         p50_us={:.1} p99_us={:.1} max_us={:.1} rss_kib_per_conn={:.1} threads_per_conn={:.2}",
        o.conns,
        o.rate,
        o.size,
        o.duration.as_secs_f64(),
        t.opened,
        t.sent,
        t.delivered,
        h.quantile(0.5) as f64 / 1e3,
        h.quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3,
        per_conn.0,
        per_conn.1
    );
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(kind: Kind, conns: usize, size: usize) -> Options {
        Options {
            kind,
            addr: "127.0.0.1:1".parse().unwrap(),
            path: "/".into(),
            conns,
            rate: 1.0,
            size,
            text: false,
            duration: Duration::from_secs(1),
            ramp: 1000.0,
            connect_timeout: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            pid: 0,
            metrics: false,
            window: 1 << 18,
            id_prefix: "soak-".into(),
            max_time: None,
        }
    }

    #[test]
    fn refuses_what_cannot_work() {
        assert!(options(Kind::Echo, 10, 64).check().is_ok());
        assert!(options(Kind::Chat, 10, 64).check().is_ok());
        assert!(options(Kind::Echo, 0, 64).check().is_err());
        // An echo message must hold its sequence number.
        assert!(options(Kind::Echo, 10, 7).check().is_err());
        assert!(options(Kind::Chat, 1, 64).check().is_err());
        assert!(options(Kind::Chat, 10, 70_000).check().is_err());
        let mut bad_prefix = options(Kind::Chat, 10, 64);
        bad_prefix.id_prefix = "no spaces".into();
        assert!(bad_prefix.check().is_err());
        let mut bad_ramp = options(Kind::Echo, 10, 64);
        bad_ramp.ramp = 0.0;
        assert!(bad_ramp.check().is_err());
    }
}
