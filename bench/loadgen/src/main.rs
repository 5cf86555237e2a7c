//! `loadgen`: SocketBox's load generator, for the benchmark grid and for
//! soak runs. Raw sockets, the client side of RFC 6455 written for the job
//! (masked frames), sharing no code with the server so that a bug in one
//! cannot hide the same bug in the other; every echoed byte and every chat
//! delivery checked; errors are counted apart and never as throughput.
//! Every mode is bounded in time and talks to loopback addresses only. Each
//! mode prints one `RESULT key=value ...` line on stdout; `loadgen report
//! FILE` turns those into tables. The modes and their flags: [`USAGE`].

mod chat;
mod echo;
mod handshakes;
mod hist;
mod idle;
mod procfs;
mod report;
mod soak;
mod storm;
mod stress;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
loadgen: load for SocketBox (and, for echo, idle and handshake, any
WebSocket echo server) on loopback addresses. Every mode prints a RESULT
line; exit status 0 when nothing went wrong, 1 when something did, 2 on
bad usage, 3 when a soak passed --max-time.

  loadgen echo      --addr A [--path /echo] --conns N --size BYTES --inflight K --duration S --warmup S [--threads T] [--text]
  loadgen idle      --addr A [--path /echo] --conns N --pid PID [--settle S] [--hold S] [--deflate]
  loadgen chat-idle --addr A --sessions N --pid PID [--settle S]   # SocketBox /ws only
  loadgen handshake --addr A [--path /echo] --clients C --duration S --warmup S
  loadgen fanout    --addr A [--addr2 B] --sessions N --rounds R [--pid PID] [--flavour chat|broadcast] [--path P] [--stopped N] [--size BYTES]
  loadgen peers     --addr A [--addr2 B] --users N --depth K --duration S --warmup S [--pid PID]
  loadgen storm     --addr A --pid PID [--subscribers N] [--subscribe 1|0] [--users M] [--storm-secs S] [--presence-interval-ms MS]
  loadgen stress    --addr A [--secret S] [--admin T] [--only PREFIX] [--pid PID --stack-kib K]
  loadgen soak echo --addr A [--conns N] [--rate R] [--size BYTES] [--duration S] [--text] [SOAK FLAGS]
  loadgen soak chat --addr A [--users N] [--rate R] [--size CHARS] [--duration S] [--id-prefix T] [SOAK FLAGS]
  loadgen report    FILE

--label NAME adds server=NAME to the RESULT line.

soak: hold N connections (echo: to /echo; chat: N users AUTHed on /ws),
then send R messages/s on each (chat: PEER to random other users) for S
seconds; check every echo byte for byte and in order, every chat delivery
once, in order, with its seq unbroken; close every connection with the
closing handshake; report throughput, latency, every failure and the
server's resources. Defaults in brackets:
  --conns/--users N      connections or users                [100]
  --rate R               messages per second per connection  [1]
  --size N               echo: message bytes (8 or more); chat: text characters [64]
  --duration S           seconds of traffic                  [10]
  --ramp N               connections opened per second       [1000]
  --connect-timeout S    time one connection may take to open [30]
  --drain S              time to wait for the last deliveries [10]
  --pid PID              read the server's RSS, threads and fds from /proc
  --no-metrics           do not GET /metrics (it takes a connection slot)
  --deflate              idle: offer permessage-deflate, require it, echo 1 KiB compressed
                         (idle --text: the same 1 KiB text, uncompressed)
  --path PATH            endpoint                            [/echo or /ws]
  --window BYTES         echo: most unanswered bytes per connection [262144]
  --id-prefix TEXT       chat: user ids are TEXT0, TEXT1, ... [soak<pid>-]
  --max-time S           hard bound on the whole run [ramp + connect timeout + duration + drain + 60]
fanout:
  --stopped N            the first N receivers never read after AUTH (sockets kept open) [0]
  --size BYTES           filler added to each broadcast's data [0]
N connections need N descriptors here and in the server: `ulimit -n 20000`.
";

struct Args {
    flags: HashMap<String, String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut flags = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let Some(name) = args[i].strip_prefix("--") else {
                return Err(format!("unexpected argument {:?}", args[i]));
            };
            if name == "text" || name == "no-metrics" || name == "deflate" {
                flags.insert(name.to_owned(), "1".to_owned());
                i += 1;
                continue;
            }
            let value = args.get(i + 1).ok_or(format!("--{name} needs a value"))?;
            flags.insert(name.to_owned(), value.clone());
            i += 2;
        }
        Ok(Args { flags })
    }

    fn str(&self, name: &str, default: &str) -> String {
        self.flags
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.flags.get(name) {
            Some(v) => v.parse().map_err(|_| format!("--{name}: cannot use {v:?}")),
            None => Ok(default),
        }
    }

    fn secs(&self, name: &str, default: f64) -> Result<Duration, String> {
        Ok(Duration::from_secs_f64(self.num(name, default)?))
    }

    /// The server: a loopback address, since load stays on this machine.
    fn addr(&self) -> Result<SocketAddr, String> {
        let text = self.str("addr", "127.0.0.1:8080");
        let addr: SocketAddr = text
            .parse()
            .map_err(|_| format!("--addr: cannot use {text:?}"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("--addr {addr}: not a loopback address"));
        }
        Ok(addr)
    }

    /// `--addr`, and `--addr2` when given (a second SocketBox node).
    fn addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let mut addrs = vec![self.addr()?];
        if let Some(text) = self.flags.get("addr2") {
            let addr: SocketAddr = text
                .parse()
                .map_err(|_| format!("--addr2: cannot use {text:?}"))?;
            if !addr.ip().is_loopback() {
                return Err(format!("--addr2 {addr}: not a loopback address"));
            }
            addrs.push(addr);
        }
        Ok(addrs)
    }

    fn label(&self) -> String {
        match self.flags.get("label") {
            Some(name) => format!("server={name} "),
            None => String::new(),
        }
    }
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

fn run(mode: &str, args: &Args) -> Result<bool, String> {
    let label = args.label();
    match mode {
        "echo" => {
            let inflight = args.num("inflight", 1)?;
            let opts = echo::Options {
                addr: args.addr()?,
                path: args.str("path", "/echo"),
                conns: args.num("conns", 1)?,
                size: args.num("size", 16)?,
                pace: echo::Pace::Inflight(inflight),
                duration: args.secs("duration", 3.0)?,
                warmup: args.secs("warmup", 1.0)?,
                drain: Duration::from_secs(3),
                threads: args.num("threads", 1)?,
                text: args.flags.contains_key("text"),
                ramp: f64::INFINITY,
                connect_timeout: Duration::from_secs(5),
            };
            let o = echo::run(&opts);
            let errors = o.errors();
            println!(
                "RESULT {label}test=echo conns={} size={} inflight={} msgs_per_s={:.0} p50_us={:.1} p99_us={:.1} max_us={:.1} \
                 messages={} errors={errors} bad={} lost={} out_of_order={} failed={}",
                opts.conns,
                opts.size,
                inflight,
                o.messages as f64 / opts.duration.as_secs_f64(),
                micros(o.latency.quantile(0.5)),
                micros(o.latency.quantile(0.99)),
                micros(o.latency.max()),
                o.messages,
                o.bad,
                o.lost,
                o.out_of_order,
                o.failed
            );
            Ok(errors == 0)
        }
        "idle" => {
            let opts = idle::Options {
                addr: args.addr()?,
                path: args.str("path", "/echo"),
                conns: args.num("conns", 1000)?,
                pid: args.num("pid", 0)?,
                settle: args.secs("settle", 2.0)?,
                openers: args.num("openers", 4)?,
                hold: args.secs("hold", 0.0)?,
                deflate: args.flags.contains_key("deflate"),
                text: args.flags.contains_key("text"),
            };
            let o = idle::run(&opts);
            let n = o.opened.max(1) as f64;
            let per = |after: u64, before: u64| (after as f64 - before as f64) / n;
            let (b, h, e) = (o.before, o.open, o.echoed);
            let sys = ((b.mem_available_kib as f64 - e.mem_available_kib as f64)
                - (e.self_rss_kib as f64 - b.self_rss_kib as f64))
                / n;
            let kernel = (per(e.kernel_stack_kib, b.kernel_stack_kib))
                + per(e.page_tables_kib, b.page_tables_kib)
                + per(e.slab_unreclaim_kib, b.slab_unreclaim_kib);
            println!(
                "RESULT {label}test=idle conns={} opened={} verified={} errors={} rss_kib_before={} rss_kib_open={} rss_kib_echoed={} \
                 rss_kib_per_conn_hs={:.2} rss_kib_per_conn={:.2} sys_kib_per_conn={:.2} kernel_kib_per_conn={:.2} \
                 kstack_kib_per_conn={:.2} pagetables_kib_per_conn={:.2} slab_kib_per_conn={:.2} \
                 threads_before={} threads_after={} other_threads_delta={} open_secs={:.2}",
                opts.conns,
                o.opened,
                o.verified,
                o.errors,
                b.rss_kib,
                h.rss_kib,
                e.rss_kib,
                per(h.rss_kib, b.rss_kib),
                per(e.rss_kib, b.rss_kib),
                sys,
                kernel,
                per(e.kernel_stack_kib, b.kernel_stack_kib),
                per(e.page_tables_kib, b.page_tables_kib),
                per(e.slab_unreclaim_kib, b.slab_unreclaim_kib),
                b.threads,
                e.threads,
                // Threads that appeared or ended elsewhere meanwhile: the
                // system-wide figures are only clean when this is near 0.
                (e.system_threads as i64 - b.system_threads as i64) - (e.threads as i64 - b.threads as i64),
                o.open_secs
            );
            Ok(o.errors == 0)
        }
        "chat-idle" => {
            let sessions: usize = args.num("sessions", 1000)?;
            let pid: u32 = args.num("pid", 0)?;
            let o = chat::idle(args.addr()?, sessions, pid, args.secs("settle", 2.0)?);
            let n = o.authed.max(1) as f64;
            let per = |after: u64, before: u64| (after as f64 - before as f64) / n;
            let (b, c) = (&o.before, &o.checked);
            let sys = ((b.mem_available_kib as f64 - c.mem_available_kib as f64)
                - (c.self_rss_kib as f64 - b.self_rss_kib as f64))
                / n;
            let kernel = per(c.kernel_stack_kib, b.kernel_stack_kib)
                + per(c.page_tables_kib, b.page_tables_kib)
                + per(c.slab_unreclaim_kib, b.slab_unreclaim_kib);
            println!(
                "RESULT {label}test=chat-idle sessions={sessions} authed={} alive={} errors={} \
                 rss_kib_before={} rss_kib_open={} rss_kib_checked={} rss_kib_per_session_open={:.2} \
                 rss_kib_per_session={:.2} sys_kib_per_session={sys:.2} kernel_kib_per_session={kernel:.2} \
                 kstack_kib_per_session={:.2} pagetables_kib_per_session={:.2} slab_kib_per_session={:.2} \
                 threads_before={} threads_open={} threads_checked={} threads_per_session={:.3} open_secs={:.2}",
                o.authed,
                o.alive,
                o.errors.total(),
                b.rss_kib,
                o.open.rss_kib,
                c.rss_kib,
                per(o.open.rss_kib, b.rss_kib),
                per(c.rss_kib, b.rss_kib),
                per(c.kernel_stack_kib, b.kernel_stack_kib),
                per(c.page_tables_kib, b.page_tables_kib),
                per(c.slab_unreclaim_kib, b.slab_unreclaim_kib),
                b.threads,
                o.open.threads,
                c.threads,
                per(c.threads, b.threads),
                o.open_secs
            );
            Ok(o.errors.total() == 0)
        }
        "handshake" => {
            let opts = handshakes::Options {
                addr: args.addr()?,
                path: args.str("path", "/echo"),
                clients: args.num("clients", 8)?,
                duration: args.secs("duration", 3.0)?,
                warmup: args.secs("warmup", 0.5)?,
            };
            let o = handshakes::run(&opts);
            println!(
                "RESULT {label}test=handshake clients={} rate={:.0} p50_us={:.1} p99_us={:.1} handshakes={} errors={}",
                opts.clients,
                o.handshakes as f64 / opts.duration.as_secs_f64(),
                micros(o.latency.quantile(0.5)),
                micros(o.latency.quantile(0.99)),
                o.handshakes,
                o.errors
            );
            Ok(o.errors == 0)
        }
        "fanout" => {
            let sessions: usize = args.num("sessions", 1000)?;
            let flavour = match args.str("flavour", "chat").as_str() {
                "chat" => chat::Flavour::Chat,
                "broadcast" => chat::Flavour::Plain,
                other => return Err(format!("--flavour: {other:?} is neither chat nor broadcast")),
            };
            let opts = chat::FanoutOptions {
                addrs: args.addrs()?,
                path: args.str("path", if flavour == chat::Flavour::Chat { "/ws" } else { "/" }),
                flavour,
                prefix: format!("f{}x{}-u", std::process::id(), sessions),
                receivers: sessions,
                rounds: args.num("rounds", 5)?,
                pid: args.num("pid", 0)?,
                stopped: args.num("stopped", 0)?,
                size: args.num("size", 0)?,
            };
            let o = chat::fanout(&opts).map_err(|e| e.to_string())?;
            let mut last: Vec<u64> = o.last.clone();
            last.sort_unstable();
            let ms = |n: u64| n as f64 / 1e6;
            let memory = match o.memory {
                Some((b, e)) => {
                    let n = (o.receivers + 1) as f64;
                    let per = |after: u64, before: u64| (after as f64 - before as f64) / n;
                    let kernel = per(e.kernel_stack_kib, b.kernel_stack_kib)
                        + per(e.page_tables_kib, b.page_tables_kib)
                        + per(e.slab_unreclaim_kib, b.slab_unreclaim_kib);
                    format!(
                        " rss_kib_per_session={:.2} kernel_kib_per_session={:.2} threads={}",
                        per(e.rss_kib, b.rss_kib),
                        kernel,
                        e.threads
                    )
                }
                None => String::new(),
            };
            let stopped = match &o.stopped {
                Some(s) => format!(
                    " stopped={} size={} dropped_with_1008={} ended_otherwise={} of_which_reset={} other_close_codes={} still_open={} rss_start_kib={} rss_peak_kib={} rss_after_kib={}",
                    opts.stopped,
                    opts.size,
                    s.dropped,
                    s.ended_otherwise,
                    s.reset,
                    s.other_codes.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
                    s.open,
                    o.memory.as_ref().map_or(0, |(_, e)| e.rss_kib),
                    s.rss_peak_kib,
                    s.rss_after_kib
                ),
                None => format!(" stopped=0 size={}", opts.size),
            };
            // Per delivery: the CPU the server and this generator spent
            // over the rounds, divided by the deliveries made; and what
            // that CPU, spread over every core, leaves as the least time a
            // round can take when both run on this machine.
            let cpu = match o.cpu {
                Some(cpu) if !last.is_empty() => {
                    let deliveries = (o.deliveries.count() as f64).max(1.0);
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                    let per_round = (cpu.server + cpu.loadgen) / last.len() as f64;
                    format!(
                        " server_cpu_us_per_delivery={:.2} loadgen_cpu_us_per_delivery={:.2} cpu_ms_per_round={:.1} cores={cores} cpu_floor_ms={:.1}",
                        cpu.server * 1e6 / deliveries,
                        cpu.loadgen * 1e6 / deliveries,
                        per_round * 1e3,
                        per_round * 1e3 / cores as f64
                    )
                }
                _ => String::new(),
            };
            println!(
                "RESULT {label}test=fanout flavour={} sessions={sessions} receivers={} rounds={} last_ms_med={:.2} last_ms_min={:.2} last_ms_max={:.2} \
                 p50_ms={:.2} errors={} session_errors={} bad={} lost={}{memory}{stopped}{cpu} last_ms_all={}",
                args.str("flavour", "chat"),
                o.receivers,
                last.len(),
                ms(last.get(last.len() / 2).copied().unwrap_or(0)),
                ms(last.first().copied().unwrap_or(0)),
                ms(last.last().copied().unwrap_or(0)),
                ms(o.deliveries.quantile(0.5)),
                o.errors.total(),
                o.errors.sessions,
                o.errors.bad,
                o.errors.lost,
                o.last.iter().map(|n| format!("{:.1}", ms(*n))).collect::<Vec<_>>().join(",")
            );
            Ok(o.errors.total() == 0)
        }
        "peers" => {
            let users: usize = args.num("users", 1000)?;
            let depth: usize = args.num("depth", 1)?;
            let duration = args.secs("duration", 3.0)?;
            let prefix = format!("p{}x{}-u", std::process::id(), users);
            let o = chat::peers(
                &args.addrs()?,
                &prefix,
                users,
                depth,
                args.secs("warmup", 1.0)?,
                duration,
                args.num("pid", 0)?,
            )
            .map_err(|e| e.to_string())?;
            // As for fanout: CPU per checked delivery inside the window,
            // and the rate that CPU allows when both share this machine.
            let cpu = match o.cpu {
                Some(cpu) if o.delivered > 0 => {
                    let per = |seconds: f64| seconds * 1e6 / o.delivered as f64;
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                    format!(
                        " server_cpu_us_per_delivery={:.2} loadgen_cpu_us_per_delivery={:.2} cores={cores} cpu_ceiling_msgs_per_s={:.0}",
                        per(cpu.server),
                        per(cpu.loadgen),
                        cores as f64 * 1e6 / (per(cpu.server) + per(cpu.loadgen))
                    )
                }
                _ => String::new(),
            };
            println!(
                "RESULT {label}test=peers users={users} depth={depth} msgs_per_s={:.0} p50_us={:.1} p99_us={:.1} delivered={} \
                 errors={} session_errors={} bad={} lost={}{cpu}",
                o.delivered as f64 / duration.as_secs_f64(),
                micros(o.latency.quantile(0.5)),
                micros(o.latency.quantile(0.99)),
                o.delivered,
                o.errors.total(),
                o.errors.sessions,
                o.errors.bad,
                o.errors.lost
            );
            Ok(o.errors.total() == 0)
        }
        "storm" => {
            let opts = storm::Options {
                addr: args.addr()?,
                pid: args.num("pid", 0)?,
                subscribers: args.num("subscribers", 1000)?,
                subscribe: args.num::<u8>("subscribe", 1)? != 0,
                users: args.num("users", 1000)?,
                storm: args.secs("storm-secs", 1.0)?,
                presence_interval: Duration::from_millis(args.num("presence-interval-ms", 1000)?),
                prefix: format!("st{}-", std::process::id()),
            };
            if opts.pid == 0 {
                return Err("storm: --pid is required (the server's CPU time is the point)".into());
            }
            let o = storm::run(&opts).map_err(|e| e.to_string())?;
            let wave = |name: &str, w: &storm::Wave| {
                format!(
                    "{name}_secs={:.2} {name}_cpu_s={:.2} {name}_msgs_mean={:.2} {name}_msgs_max={} {name}_bytes_mean={:.0}",
                    w.secs, w.cpu_secs, w.msgs_mean, w.msgs_max, w.bytes_mean
                )
            };
            println!(
                "RESULT {label}test=storm subscribers={} subscribe={} subscribed={} users={} {} {} wrong_lists={} errors={} session_errors={} bad={}",
                opts.subscribers,
                u8::from(opts.subscribe),
                o.subscribed,
                opts.users,
                wave("login", &o.login),
                wave("logout", &o.logout),
                o.wrong_lists,
                o.errors.total() + o.wrong_lists,
                o.errors.sessions,
                o.errors.bad
            );
            Ok(o.errors.total() + o.wrong_lists == 0 && (!opts.subscribe || o.subscribed == opts.subscribers))
        }
        "stress" => {
            let secret = args.flags.get("secret").cloned();
            let admin = args.flags.get("admin").cloned();
            let pid: u32 = args.num("pid", 0)?;
            let stack_kib: u64 = args.num("stack-kib", 0)?;
            let mut stacks = (0, 0);
            let (passed, failed) = stress::run(
                args.addr()?,
                secret,
                admin,
                args.flags.get("only").cloned(),
                || {
                    if pid > 0 && stack_kib > 0 {
                        stacks = procfs::stack_high_water(pid, stack_kib);
                    }
                },
            );
            let (high, count) = stacks;
            println!(
                "RESULT {label}test=stress passed={passed} failed={failed} stack_rss_max_kib={high} stack_mappings={count}"
            );
            Ok(failed == 0)
        }
        "stacks" => {
            let pid: u32 = args.num("pid", 0)?;
            let stack_kib: u64 = args.num("stack-kib", 64)?;
            let (high, count) = procfs::stack_high_water(pid, stack_kib);
            println!("RESULT {label}test=stacks stack_rss_max_kib={high} stack_mappings={count}");
            Ok(true)
        }
        "soak echo" | "soak chat" => {
            let chat = mode == "soak chat";
            let opts = soak::Options {
                kind: if chat {
                    soak::Kind::Chat
                } else {
                    soak::Kind::Echo
                },
                addr: args.addr()?,
                path: args.str("path", if chat { "/ws" } else { "/echo" }),
                conns: args.num(if chat { "users" } else { "conns" }, 100)?,
                rate: args.num("rate", 1.0)?,
                size: args.num("size", 64)?,
                text: args.flags.contains_key("text"),
                duration: args.secs("duration", 10.0)?,
                ramp: args.num("ramp", 1000.0)?,
                connect_timeout: args.secs("connect-timeout", 30.0)?,
                drain: args.secs("drain", 10.0)?,
                pid: args.num("pid", 0)?,
                metrics: !args.flags.contains_key("no-metrics"),
                window: args.num("window", 256 * 1024)?,
                id_prefix: args.str("id-prefix", &format!("soak{}-", std::process::id())),
                max_time: match args.flags.get("max-time") {
                    Some(_) => Some(args.secs("max-time", 0.0)?),
                    None => None,
                },
            };
            soak::run(&opts, &label)
        }
        _ => Err(format!(
            "unknown mode {mode:?} (echo, idle, chat-idle, handshake, fanout, peers, storm, stress, stacks, soak echo, soak chat, report)"
        )),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = argv.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    if matches!(mode.as_str(), "help" | "-h" | "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if mode == "report" {
        let Some(path) = argv.get(1) else {
            eprintln!("usage: loadgen report FILE");
            return ExitCode::from(2);
        };
        return match std::fs::read_to_string(path) {
            Ok(text) => {
                print!("{}", report::render(&text));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadgen: {path}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // `soak` takes the endpoint as a second word.
    let (mode, flags) = match (mode.as_str(), argv.get(1)) {
        ("soak", Some(kind)) if !kind.starts_with("--") => (format!("soak {kind}"), &argv[2..]),
        _ => (mode.clone(), &argv[1..]),
    };
    let args = match Args::parse(flags) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&mode, &args) {
        Ok(true) => ExitCode::SUCCESS,
        // Errors are in the RESULT line; the exit code says there were some.
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Args {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        Args::parse(&words).unwrap()
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(args("--addr 127.0.0.1:80").addr().is_ok());
        assert!(args("--addr [::1]:80").addr().is_ok());
        assert!(args("--addr 10.0.0.1:80").addr().is_err());
        assert!(args("--addr 0.0.0.0:80").addr().is_err());
    }

    #[test]
    fn flags_with_and_without_values() {
        let a = args("--no-metrics --rate 2.5 --text --users 3");
        assert!(a.flags.contains_key("no-metrics") && a.flags.contains_key("text"));
        assert_eq!(a.num("rate", 1.0), Ok(2.5));
        assert_eq!(a.num("users", 0usize), Ok(3));
        assert!(a.num::<usize>("rate", 0).is_err());
        assert!(Args::parse(&["--size".into()]).is_err());
        assert!(Args::parse(&["echo".into()]).is_err());
    }
}
