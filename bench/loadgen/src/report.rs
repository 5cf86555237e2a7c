//! Turn the `RESULT` lines of a run into tables: absolute figures for each
//! server side by side, ratios against SocketBox, and the targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One `RESULT key=value ...` line.
#[derive(Debug, Clone)]
struct Row {
    fields: BTreeMap<String, String>,
}

impl Row {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
}

fn parse(text: &str) -> Vec<Row> {
    text.lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(|rest| Row {
            fields: rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
        .collect()
}

const BASE: &str = "socketbox";

struct Table<'a> {
    rows: &'a [Row],
    servers: Vec<String>,
}

impl<'a> Table<'a> {
    /// Rows of `test` whose identity keys equal `ident`, for `server`.
    /// Several runs of the same cell (`REPEAT` in `bench/run`) give their
    /// median, which one disturbed run cannot move.
    fn value(&self, test: &str, ident: &[(&str, String)], server: &str, key: &str) -> Option<f64> {
        let mut values: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| r.get("test") == Some(test) && r.get("server") == Some(server))
            .filter(|r| ident.iter().all(|(k, v)| r.get(k) == Some(v.as_str())))
            .filter_map(|r| r.num(key))
            .collect();
        values.sort_by(|a, b| a.total_cmp(b));
        match values.len() {
            0 => None,
            n if !n.is_multiple_of(2) => Some(values[n / 2]),
            n => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
        }
    }

    fn cells(&self, test: &str, keys: &[&str]) -> Vec<Vec<(&'static str, String)>> {
        let mut seen: Vec<Vec<(&'static str, String)>> = Vec::new();
        for row in self.rows.iter().filter(|r| r.get("test") == Some(test)) {
            let ident: Vec<(&'static str, String)> = keys
                .iter()
                .map(|k| (leak(k), row.get(k).unwrap_or("").to_owned()))
                .collect();
            if !seen.contains(&ident) {
                seen.push(ident);
            }
        }
        seen
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn human(v: f64) -> String {
    if v >= 100.0 {
        let whole = v.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn size_label(bytes: &str) -> String {
    match bytes.parse::<u64>() {
        Ok(b) if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        Ok(b) => format!("{b} B"),
        Err(_) => bytes.to_owned(),
    }
}

/// Format a number and its ratio to SocketBox's (`base / value`).
fn with_ratio(value: Option<f64>, base: Option<f64>, server: &str) -> String {
    match (value, base) {
        (Some(v), _) if server == BASE => human(v),
        (Some(v), Some(b)) if v > 0.0 => format!("{} ({:.2})", human(v), b / v),
        (Some(v), _) => human(v),
        (None, _) => "-".into(),
    }
}

/// A cell of two figures, `a / b`, and when `base` is given (a peer's
/// column) the ratio `base ÷ b` in parentheses.
fn pair_cell(out: &mut String, a: Option<f64>, b: Option<f64>, base: Option<f64>) {
    match (a, b, base) {
        (Some(a), Some(b), Some(base)) if b > 0.0 => {
            let _ = write!(out, " {} / {} ({:.2}) |", human(a), human(b), base / b);
        }
        (Some(a), Some(b), _) => {
            let _ = write!(out, " {} / {} |", human(a), human(b));
        }
        _ => out.push_str(" - |"),
    }
}

fn header(out: &mut String, first: &str, servers: &[String]) {
    let _ = write!(out, "| {first} |");
    for s in servers {
        let _ = write!(out, " {s} |");
    }
    out.push('\n');
    let _ = write!(out, "| --- |");
    for _ in servers {
        out.push_str(" ---: |");
    }
    out.push('\n');
}

/// Render the report (Markdown tables).
pub fn render(text: &str) -> String {
    let rows = parse(text);
    let mut servers: Vec<String> = Vec::new();
    for r in &rows {
        if let Some(s) = r.get("server") {
            if !servers.iter().any(|x| x == s) {
                servers.push(s.to_owned());
            }
        }
    }
    if let Some(at) = servers.iter().position(|s| s == BASE) {
        let base = servers.remove(at);
        servers.insert(0, base);
    }
    let t = Table {
        rows: &rows,
        servers: servers.clone(),
    };
    let mut out = String::new();
    let repeats = rows
        .iter()
        .filter(|r| r.get("test") == Some("echo") && r.get("server") == Some(BASE))
        .count();
    let cells = t.cells("echo", &["conns", "size", "inflight"]).len().max(1);
    if repeats > cells {
        let _ = writeln!(
            out,
            "\nEach echo and handshake figure is the median of {} runs.",
            repeats / cells
        );
    }
    let mut targets: Vec<(String, bool)> = Vec::new();

    // Echo throughput and latency.
    let echo = t.cells("echo", &["conns", "size", "inflight"]);
    if !echo.is_empty() {
        out.push_str("\n### Echo: messages/s (in parentheses: socketbox ÷ peer; above 1, socketbox is faster)\n\n");
        header(&mut out, "conns × size × in flight", &t.servers);
        for ident in &echo {
            let base = t.value("echo", ident, BASE, "msgs_per_s");
            let _ = write!(
                out,
                "| {} × {} × {} |",
                ident[0].1,
                size_label(&ident[1].1),
                ident[2].1
            );
            for s in &t.servers {
                let _ = write!(
                    out,
                    " {} |",
                    with_ratio(t.value("echo", ident, s, "msgs_per_s"), base, s)
                );
            }
            out.push('\n');
        }
        out.push_str("\n### Echo: latency p50 / p99, µs (in parentheses: socketbox p99 ÷ peer p99; below 1, socketbox is better)\n\n");
        header(&mut out, "conns × size × in flight", &t.servers);
        for ident in &echo {
            let base99 = t.value("echo", ident, BASE, "p99_us");
            let _ = write!(
                out,
                "| {} × {} × {} |",
                ident[0].1,
                size_label(&ident[1].1),
                ident[2].1
            );
            for s in &t.servers {
                let p50 = t.value("echo", ident, s, "p50_us");
                let p99 = t.value("echo", ident, s, "p99_us");
                pair_cell(&mut out, p50, p99, base99.filter(|_| s != BASE));
            }
            out.push('\n');
        }
        out.push_str(
            "\n### Echo: errors (bad echoes + lost or reordered messages + failed connections)\n\n",
        );
        header(&mut out, "conns × size × in flight", &t.servers);
        for ident in &echo {
            let _ = write!(
                out,
                "| {} × {} × {} |",
                ident[0].1,
                size_label(&ident[1].1),
                ident[2].1
            );
            for s in &t.servers {
                let e = t.value("echo", ident, s, "errors");
                let _ = write!(
                    out,
                    " {} |",
                    e.map(|e| format!("{e:.0}")).unwrap_or_else(|| "-".into())
                );
            }
            out.push('\n');
        }
        for ident in &echo {
            let (conns, size, inflight) = (&ident[0].1, &ident[1].1, &ident[2].1);
            let sb = t.value("echo", ident, BASE, "msgs_per_s");
            let label = format!("{conns} × {} × {inflight}", size_label(size));
            let fws = t.value("echo", ident, "fastwebsockets", "msgs_per_s");
            if inflight == "1" && (conns == "16" || conns == "256" || size == "65536") {
                if let (Some(a), Some(b)) = (sb, fws) {
                    targets.push((
                        format!(
                            "echo msgs/s ≥ fastwebsockets at {label}: ratio {:.2}",
                            a / b
                        ),
                        a >= b,
                    ));
                }
            }
            if inflight == "16" {
                if let (Some(a), Some(b)) = (
                    sb,
                    t.value("echo", ident, "tokio-tungstenite", "msgs_per_s"),
                ) {
                    targets.push((format!("echo msgs/s ≥ tokio-tungstenite with 16 in flight at {label}: ratio {:.2}", a / b), a >= b));
                }
            }
            if conns == "256" && inflight == "1" {
                let a = t.value("echo", ident, BASE, "p99_us");
                let b = t.value("echo", ident, "fastwebsockets", "p99_us");
                if let (Some(a), Some(b)) = (a, b) {
                    targets.push((
                        format!(
                            "p99 ≤ fastwebsockets at {label}: {} vs {} µs, ratio {:.2}",
                            human(a),
                            human(b),
                            a / b
                        ),
                        a <= b,
                    ));
                }
            }
        }
    }

    // Idle memory.
    let idle = t.cells("idle", &["conns"]);
    if !idle.is_empty() {
        out.push_str("\n### Idle connections: server RSS per connection, KiB (after the handshake / after one 16 B echo each; in parentheses: socketbox ÷ peer of the second)\n\n");
        header(&mut out, "connections", &t.servers);
        for ident in &idle {
            let base = t.value("idle", ident, BASE, "rss_kib_per_conn");
            let _ = write!(out, "| {} |", ident[0].1);
            for s in &t.servers {
                let hs = t.value("idle", ident, s, "rss_kib_per_conn_hs");
                let echoed = t.value("idle", ident, s, "rss_kib_per_conn");
                pair_cell(&mut out, hs, echoed, base.filter(|_| s != BASE));
            }
            out.push('\n');
        }
        out.push_str("\n### Idle connections: system memory per connection, KiB (MemAvailable drop less the generator's own RSS growth / of which kernel stacks + page tables + unreclaimable slab)\n\n");
        header(&mut out, "connections", &t.servers);
        for ident in &idle {
            let _ = write!(out, "| {} |", ident[0].1);
            for s in &t.servers {
                let sys = t.value("idle", ident, s, "sys_kib_per_conn");
                let kernel = t.value("idle", ident, s, "kernel_kib_per_conn");
                let others = t
                    .value("idle", ident, s, "other_threads_delta")
                    .unwrap_or(0.0);
                // Other processes' threads came or went: the reading is not clean.
                let mark = if others.abs() > 50.0 {
                    format!(" (disturbed: {others:+.0} threads elsewhere)")
                } else {
                    String::new()
                };
                match (sys, kernel) {
                    (Some(a), Some(b)) => {
                        let _ = write!(out, " {} / {}{mark} |", human(a), human(b));
                    }
                    _ => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
        out.push_str("\n### Idle connections: server threads while held / connections verified alive / errors\n\n");
        header(&mut out, "connections", &t.servers);
        for ident in &idle {
            let _ = write!(out, "| {} |", ident[0].1);
            for s in &t.servers {
                let th = t.value("idle", ident, s, "threads_after");
                let v = t.value("idle", ident, s, "verified");
                let e = t.value("idle", ident, s, "errors");
                match (th, v, e) {
                    (Some(a), Some(b), Some(c)) => {
                        let _ = write!(out, " {a:.0} / {b:.0} / {c:.0} |");
                    }
                    _ => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
        for ident in &idle {
            let conns = &ident[0].1;
            let hs = t.value("idle", ident, BASE, "rss_kib_per_conn_hs");
            let echoed = t.value("idle", ident, BASE, "rss_kib_per_conn");
            if let (Some(a), Some(b)) = (hs, echoed) {
                let worst = a.max(b);
                if conns == "10000" {
                    targets.push((
                        format!(
                            "RSS per idle connection ≤ 12 KiB at 10,000: {} KiB",
                            human(worst)
                        ),
                        worst <= 12.0,
                    ));
                }
                if conns == "1000" {
                    targets.push((
                        format!(
                            "RSS per idle connection < 64 KiB at 1,000: {} KiB",
                            human(worst)
                        ),
                        worst < 64.0,
                    ));
                }
            }
        }
    }

    // Handshakes.
    let hs = t.cells("handshake", &["clients"]);
    if !hs.is_empty() {
        out.push_str("\n### Handshakes/s: connect, upgrade, Close, TCP close (in parentheses: socketbox ÷ peer); p50 / p99 connect-to-101 µs below\n\n");
        header(&mut out, "clients", &t.servers);
        for ident in &hs {
            let base = t.value("handshake", ident, BASE, "rate");
            let _ = write!(out, "| {} |", ident[0].1);
            for s in &t.servers {
                let _ = write!(
                    out,
                    " {} |",
                    with_ratio(t.value("handshake", ident, s, "rate"), base, s)
                );
            }
            out.push('\n');
            let _ = write!(out, "| {} (p50 / p99 µs, errors) |", ident[0].1);
            for s in &t.servers {
                let a = t.value("handshake", ident, s, "p50_us");
                let b = t.value("handshake", ident, s, "p99_us");
                let e = t.value("handshake", ident, s, "errors");
                match (a, b, e) {
                    (Some(a), Some(b), Some(e)) => {
                        let _ = write!(out, " {} / {}, {e:.0} |", human(a), human(b));
                    }
                    _ => out.push_str(" - |"),
                }
            }
            out.push('\n');
            if let (Some(a), Some(b)) = (
                base,
                t.value("handshake", ident, "tokio-tungstenite", "rate"),
            ) {
                targets.push((
                    format!(
                        "handshakes/s ≥ tokio-tungstenite ({} clients): ratio {:.2}",
                        ident[0].1,
                        a / b
                    ),
                    a >= b,
                ));
            }
        }
    }

    // Chat.
    let fan = t.cells("fanout", &["sessions"]);
    if !fan.is_empty() {
        out.push_str("\n### Chat fan-out (socketbox only: the peers do not speak the SocketBox protocol): one BROADCAST, time until the last session has it\n\n");
        out.push_str("| receivers | rounds | last delivery, median / min / max ms | median delivery ms | errors |\n| --- | ---: | ---: | ---: | ---: |\n");
        for ident in &fan {
            let v = |k: &str| t.value("fanout", ident, BASE, k);
            let _ = writeln!(
                out,
                "| {} | {} | {} / {} / {} | {} | {} |",
                ident[0].1,
                v("rounds").map(|x| format!("{x:.0}")).unwrap_or_default(),
                v("last_ms_med").map(human).unwrap_or_default(),
                v("last_ms_min").map(human).unwrap_or_default(),
                v("last_ms_max").map(human).unwrap_or_default(),
                v("p50_ms").map(human).unwrap_or_default(),
                v("errors").map(|x| format!("{x:.0}")).unwrap_or_default(),
            );
            if ident[0].1 == "5000" {
                if let (Some(med), Some(max)) = (v("last_ms_med"), v("last_ms_max")) {
                    targets.push((
                        format!("broadcast to 5,000 delivered to all in < 50 ms: median {} ms, worst {} ms", human(med), human(max)),
                        med < 50.0,
                    ));
                }
            }
        }
    }
    let peers = t.cells("peers", &["users", "depth"]);
    if !peers.is_empty() {
        out.push_str("\n### Chat peer messages among users (socketbox only): PEER 10002 delivered and checked, per second\n\n");
        out.push_str("| users × in flight per user | messages/s | p50 / p99 µs | errors |\n| --- | ---: | ---: | ---: |\n");
        for ident in &peers {
            let v = |k: &str| t.value("peers", ident, BASE, k);
            let _ = writeln!(
                out,
                "| {} × {} | {} | {} / {} | {} |",
                ident[0].1,
                ident[1].1,
                v("msgs_per_s").map(human).unwrap_or_default(),
                v("p50_us").map(human).unwrap_or_default(),
                v("p99_us").map(human).unwrap_or_default(),
                v("errors").map(|x| format!("{x:.0}")).unwrap_or_default(),
            );
        }
    }

    if !targets.is_empty() {
        out.push_str("\n### Targets\n\n");
        for (what, met) in &targets {
            let _ = writeln!(out, "- {} {what}", if *met { "MET   " } else { "MISSED" });
        }
    }
    out
}
