//! `socketbox-load`: a load and soak tool for SocketBox, built as a second
//! binary of the package (`cargo run --release --bin socketbox-load -- ...`)
//! and never run by `cargo test`.
//!
//! Two modes:
//!
//! - `echo`: N connections to `/echo`; each sends masked messages of S
//!   bytes at R messages per second for T seconds and checks that every
//!   echo comes back complete, byte for byte, in order.
//! - `chat`: N users AUTH on `/ws`; each sends PEER (10002) messages to
//!   random other users at R per second for T seconds. Every recipient
//!   checks that MESSAGE `seq` counts 1, 2, 3... without a gap (PROTOCOL.md:
//!   "a receiver can tell that it missed none"), that each sender's messages
//!   arrive in the order sent, exactly once, with the content sent.
//!
//! All connections are opened first (at `--ramp` per second) and held; the
//! traffic starts when the last one is ready, so the figures describe a
//! server holding N connections while messages flow. At the end it reports
//! throughput, latency percentiles, every loss, and the server's resident
//! memory, thread count and descriptors (from `/proc/PID` with
//! `--server-pid`) and its own gauges (from `GET /metrics`).
//!
//! The client side of RFC 6455 is written here again on purpose, sharing no
//! code with the server: a bug in the server's frame code cannot hide behind
//! the same bug in its checker. One thread per connection, with a small
//! stack, like the server; every wait is bounded, and a watchdog ends the
//! process past `--max-time`. It talks to loopback addresses only.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;

const USAGE: &str = "\
socketbox-load: hold N WebSocket connections to a SocketBox server, send
messages at a set rate for a set time, verify every delivery, and report.

USAGE:
  socketbox-load echo [OPTIONS]    N connections to /echo
  socketbox-load chat [OPTIONS]    N users on /ws sending PEER messages

OPTIONS:
  --addr HOST:PORT       server (loopback only)              [127.0.0.1:8080]
  --connections N        connections (echo) or users (chat)  [100]
  --rate R               messages per second per connection  [1]
  --size BYTES           echo: message size; chat: text size [64]
  --duration SECS        seconds of traffic                  [10]
  --ramp N               connections opened per second       [1000]
  --connect-timeout SECS time one connection may take to open [30]
  --drain SECS           time to wait for the last deliveries [10]
  --server-pid PID       read the server's RSS, threads and fds from /proc
  --no-metrics           do not GET /metrics (it needs a free connection slot)
  --binary               echo: binary messages instead of text
  --path PATH            override the endpoint path (/echo or /ws)
  --id-prefix TEXT       chat: user ids are TEXT0, TEXT1, ...    [load-]
  --window BYTES         echo: most unanswered bytes in flight  [262144]
  --stack BYTES          stack of each client thread         [131072]
  --max-time SECS        hard bound on the whole run [computed from the rest]

Opening N connections needs N file descriptors here and on the server:
run `ulimit -n 20000` (or more) in both shells first.
Exit status: 0 every message delivered intact; 1 something lost, corrupt,
out of order or failed; 2 bad usage; 3 the hard time bound was hit.
";

/// Which endpoint the run exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Echo,
    Chat,
}

/// The command line.
#[derive(Debug, Clone)]
struct Options {
    mode: Mode,
    addr: SocketAddr,
    connections: usize,
    rate: f64,
    size: usize,
    duration: Duration,
    ramp: f64,
    connect_timeout: Duration,
    drain: Duration,
    server_pid: Option<u32>,
    metrics: bool,
    binary: bool,
    path: String,
    id_prefix: String,
    window: usize,
    stack: usize,
    max_time: Option<Duration>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mode = match args.first().map(String::as_str) {
        Some("echo") => Mode::Echo,
        Some("chat") => Mode::Chat,
        Some(other) => return Err(format!("unknown mode {other:?}: echo or chat")),
        None => return Err("missing mode: echo or chat".into()),
    };
    let mut o = Options {
        mode,
        addr: "127.0.0.1:8080".parse().expect("a literal address"),
        connections: 100,
        rate: 1.0,
        size: 64,
        duration: Duration::from_secs(10),
        ramp: 1000.0,
        connect_timeout: Duration::from_secs(30),
        drain: Duration::from_secs(10),
        server_pid: None,
        metrics: true,
        binary: false,
        path: match mode {
            Mode::Echo => "/echo".into(),
            Mode::Chat => "/ws".into(),
        },
        id_prefix: "load-".into(),
        window: 256 * 1024,
        stack: 128 * 1024,
        max_time: None,
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--no-metrics" => o.metrics = false,
            "--binary" => o.binary = true,
            "-h" | "--help" => return Err(String::new()),
            _ => {
                let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
                let number = || -> Result<f64, String> {
                    value
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .ok_or_else(|| format!("{flag}: not a number: {value:?}"))
                };
                let secs = || number().map(Duration::from_secs_f64);
                match flag.as_str() {
                    "--addr" => o.addr = loopback_addr(value)?,
                    "--connections" | "--users" => o.connections = number()? as usize,
                    "--rate" => o.rate = number()?,
                    "--size" => o.size = number()? as usize,
                    "--duration" => o.duration = secs()?,
                    "--ramp" => o.ramp = number()?.max(1.0),
                    "--connect-timeout" => o.connect_timeout = secs()?,
                    "--drain" => o.drain = secs()?,
                    "--server-pid" => o.server_pid = Some(number()? as u32),
                    "--path" => o.path = value.clone(),
                    "--id-prefix" => o.id_prefix = value.clone(),
                    "--window" => o.window = number()? as usize,
                    "--stack" => o.stack = (number()? as usize).max(32 * 1024),
                    "--max-time" => o.max_time = Some(secs()?),
                    _ => return Err(format!("unknown option {flag}")),
                }
            }
        }
    }
    if o.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if o.mode == Mode::Chat && o.size > 60_000 {
        return Err("--size: chat text must stay under the server's 64 KiB limit".into());
    }
    if o.size > 16 << 20 {
        return Err("--size: at most 16 MiB".into());
    }
    if !o
        .id_prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b))
        || o.id_prefix.len() > 50
    {
        return Err("--id-prefix: up to 50 of A-Z a-z 0-9 _ . @ -".into());
    }
    Ok(o)
}

/// The tool generates load on this machine only: refuse anything that is
/// not a loopback address.
fn loopback_addr(text: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("--addr {text}: {e}"))?
        .collect();
    // `localhost` may resolve to ::1 first; the server's default is IPv4.
    let loopback = addrs.iter().copied().filter(|a| a.ip().is_loopback());
    loopback
        .clone()
        .find(SocketAddr::is_ipv4)
        .or_else(|| loopback.clone().next())
        .ok_or_else(|| format!("--addr {text}: not a loopback address (127.0.0.1, ::1)"))
}

// ---------------------------------------------------------------------------
// Small pieces: a random generator, deterministic payloads, a histogram.

/// xorshift64*: enough randomness for masks, jitter and targets.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn time_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed)
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Echo message `index` of connection `conn`: a readable prefix naming it,
/// then `size` bytes' worth of content only this message has.
fn echo_payload(conn: usize, index: u64, size: usize, binary: bool) -> Vec<u8> {
    let mut out = format!("c{conn}m{index}:").into_bytes();
    out.truncate(size);
    let mut rng = Rng::new(((conn as u64) << 40) ^ index ^ 0xec40);
    while out.len() < size {
        let r = rng.next();
        out.push(if binary {
            r as u8
        } else {
            ALNUM[(r % ALNUM.len() as u64) as usize]
        });
    }
    out
}

/// The message index an echo payload names, if its prefix is intact.
fn echo_index(payload: &[u8]) -> Option<u64> {
    let text = payload.split(|&b| b == b':').next()?;
    let text = std::str::from_utf8(text).ok()?;
    text.split_once('m')?.1.parse().ok()
}

/// The text of chat message `k` from user `from` to user `to`.
fn chat_payload(from: u32, to: u32, k: u64, size: usize) -> String {
    let mut rng = Rng::new((u64::from(from) << 40) ^ (u64::from(to) << 20) ^ k);
    (0..size)
        .map(|_| ALNUM[(rng.next() % ALNUM.len() as u64) as usize] as char)
        .collect()
}

/// A latency histogram in microseconds, shared by every thread: exact below
/// 128 us, then 64 buckets per power of two (under 1.6% error).
struct Histogram {
    counts: Vec<AtomicU64>,
    max: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    /// 128 exact buckets, then 64 for each bit position from 7 to 63.
    const BUCKETS: usize = 64 * 59;

    fn new() -> Self {
        Histogram {
            counts: (0..Self::BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    fn bucket(us: u64) -> usize {
        if us < 128 {
            return us as usize;
        }
        let msb = 63 - us.leading_zeros() as usize; // 7 and up
        let shift = msb - 6;
        (((shift + 1) << 6) + ((us >> shift) as usize & 63)).min(Self::BUCKETS - 1)
    }

    /// The largest value bucket `index` holds.
    fn upper(index: usize) -> u64 {
        if index < 128 {
            return index as u64;
        }
        let shift = (index >> 6) - 1;
        ((((index & 63) | 64) as u64) << shift) | ((1u64 << shift) - 1)
    }

    fn record(&self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.counts[Self::bucket(us)].fetch_add(1, Relaxed);
        self.max.fetch_max(us, Relaxed);
        self.total.fetch_add(1, Relaxed);
    }

    fn percentile(&self, q: f64) -> u64 {
        let total = self.total.load(Relaxed);
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count.load(Relaxed);
            if seen >= rank {
                return Self::upper(index).min(self.max.load(Relaxed));
            }
        }
        self.max.load(Relaxed)
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

// ---------------------------------------------------------------------------
// A minimal RFC 6455 client.

/// What the client got from the server.
enum Incoming {
    Data { binary: bool, payload: Vec<u8> },
    Close(Option<u16>),
}

/// One client connection, after its opening handshake.
struct Ws {
    stream: TcpStream,
    /// Received bytes; `buf[start..]` is not parsed yet.
    buf: Vec<u8>,
    start: usize,
    chunk: usize,
    /// The opcode and data of a fragmented message being reassembled.
    fragments: Option<(bool, Vec<u8>)>,
    rng: Rng,
    frame: Vec<u8>,
    read_timeout: Option<Duration>,
    close_sent: bool,
}

const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_INCOMING: u64 = 64 << 20;

impl Ws {
    /// Connect (retrying until `deadline`: a full accept queue drops SYNs,
    /// which looks like a slow connect) and perform the opening handshake.
    fn connect(
        addr: SocketAddr,
        path: &str,
        deadline: Instant,
        seed: u64,
        chunk: usize,
    ) -> Result<Ws, String> {
        let mut backoff = Duration::from_millis(20);
        let stream = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("connect: timed out".into());
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() + backoff >= deadline => {
                    return Err(format!("connect: {e}"))
                }
                Err(_) => {
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(10))))
            .map_err(|e| format!("socket options: {e}"))?;
        let mut rng = Rng::new(seed);
        let nonce: Vec<u8> = (0..16).map(|_| rng.next() as u8).collect();
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut ws = Ws {
            stream,
            buf: Vec::with_capacity(chunk),
            start: 0,
            chunk,
            fragments: None,
            rng,
            frame: Vec::new(),
            read_timeout: Some(left),
            close_sent: false,
        };
        (&ws.stream)
            .write_all(request.as_bytes())
            .map_err(|e| format!("handshake: write: {e}"))?;
        let head_end = loop {
            if let Some(at) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if ws.buf.len() > 8192 {
                return Err("handshake: response head over 8 KiB".into());
            }
            match ws.fill() {
                Ok(0) => return Err("handshake: the server closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("handshake: read: {e}")),
            }
        };
        let head = String::from_utf8_lossy(&ws.buf[..head_end]).into_owned();
        ws.start = head_end;
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101") {
            return Err(format!("handshake: {status}"));
        }
        // RFC 6455 4.1: the client MUST fail the connection unless the
        // accept value is base64(SHA-1(key + GUID)).
        let mut sha = sha1_smol::Sha1::new();
        sha.update(key.as_bytes());
        sha.update(ACCEPT_GUID.as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
        let accept = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim())
        });
        if accept != Some(expected.as_str()) {
            return Err(format!("handshake: bad Sec-WebSocket-Accept {accept:?}"));
        }
        Ok(ws)
    }

    /// Read once, appending to the buffer.
    fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.capacity() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + self.chunk, 0);
        let result = (&self.stream).read(&mut self.buf[len..]);
        self.buf.truncate(len + *result.as_ref().unwrap_or(&0));
        result
    }

    /// Send one masked frame: RFC 6455 5.1, "a client MUST mask all frames
    /// that it sends to the server", with a fresh random key each time.
    fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let key = (self.rng.next() as u32).to_be_bytes();
        self.frame.clear();
        self.frame.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => self.frame.push(0x80 | n as u8),
            n @ 126..=65535 => {
                self.frame.push(0x80 | 126);
                self.frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.frame.push(0x80 | 127);
                self.frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.frame.extend_from_slice(&key);
        self.frame
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        (&self.stream).write_all(&self.frame)
    }

    fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(0x1, text.as_bytes())
    }

    /// The next complete frame in the buffer, if any. Pings are answered
    /// here; pongs are skipped.
    fn parse(&mut self) -> Result<Option<Incoming>, String> {
        loop {
            let data = &self.buf[self.start..];
            if data.len() < 2 {
                return Ok(None);
            }
            let (b0, b1) = (data[0], data[1]);
            if b1 & 0x80 != 0 {
                // RFC 6455 5.1: "A client MUST close a connection if it
                // detects a masked frame."
                return Err("the server sent a masked frame".into());
            }
            if b0 & 0x70 != 0 {
                return Err("the server set RSV bits".into());
            }
            let (len, head) = match b1 & 0x7f {
                126 if data.len() >= 4 => (u64::from(u16::from_be_bytes([data[2], data[3]])), 4),
                127 if data.len() >= 10 => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(&data[2..10]);
                    (u64::from_be_bytes(be), 10)
                }
                126 | 127 => return Ok(None),
                n => (u64::from(n), 2),
            };
            if len > MAX_INCOMING {
                return Err(format!("the server sent a {len}-byte frame"));
            }
            let len = len as usize;
            if data.len() < head + len {
                self.chunk = self.chunk.max((head + len).min(1 << 20));
                return Ok(None);
            }
            let payload = data[head..head + len].to_vec();
            self.start += head + len;
            let fin = b0 & 0x80 != 0;
            match b0 & 0x0f {
                0x0 => {
                    let Some((binary, mut message)) = self.fragments.take() else {
                        return Err("continuation frame without a message".into());
                    };
                    message.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(Incoming::Data {
                            binary,
                            payload: message,
                        }));
                    }
                    self.fragments = Some((binary, message));
                }
                op @ (0x1 | 0x2) => {
                    if self.fragments.is_some() {
                        return Err("new message inside a fragmented one".into());
                    }
                    let binary = op == 0x2;
                    if fin {
                        return Ok(Some(Incoming::Data { binary, payload }));
                    }
                    self.fragments = Some((binary, payload));
                }
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    // RFC 6455 5.5.1: answer a Close with a Close, echoing the code.
                    if !self.close_sent {
                        self.close_sent = true;
                        let echo = code.map(u16::to_be_bytes);
                        let _ = self.send(0x8, echo.as_ref().map_or(&[][..], |c| &c[..]));
                    }
                    return Ok(Some(Incoming::Close(code)));
                }
                0x9 => self.send(0xA, &payload).map_err(|e| format!("pong: {e}"))?,
                0xA => {}
                op => return Err(format!("the server sent opcode {op:#x}")),
            }
        }
    }

    /// The next message or Close, waiting until `until` at most (`None`
    /// when nothing complete arrived by then).
    fn recv(&mut self, until: Instant) -> Result<Option<Incoming>, String> {
        loop {
            if let Some(incoming) = self.parse()? {
                return Ok(Some(incoming));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Setting a timeout is a system call: skip it when it barely changes.
            let stale = self.read_timeout.is_none_or(|t| {
                t > left + Duration::from_millis(2) || t + Duration::from_millis(50) < left
            });
            if stale {
                self.stream
                    .set_read_timeout(Some(left))
                    .map_err(|e| format!("set_read_timeout: {e}"))?;
                self.read_timeout = Some(left);
            }
            match self.fill() {
                Ok(0) => return Err("the server closed TCP without a Close frame".into()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.read_timeout = None;
                    if Instant::now() >= until {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The closing handshake from the client's side, bounded by 5 s.
    fn close(mut self) -> Result<(), String> {
        self.close_sent = true;
        self.send(0x8, &1000u16.to_be_bytes())
            .map_err(|e| format!("close: {e}"))?;
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self.recv(until)? {
                Some(Incoming::Close(_)) => return Ok(()),
                Some(Incoming::Data { .. }) => {}
                None => return Err("close: no Close from the server within 5 s".into()),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The run: shared state, the connection threads, the report.

/// Counters every connection thread adds to.
#[derive(Default)]
struct Counters {
    connected: AtomicUsize,
    connect_failed: AtomicUsize,
    finished: AtomicUsize,
    senders_done: AtomicUsize,
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    corrupt: AtomicU64,
    out_of_order: AtomicU64,
    duplicates: AtomicU64,
    seq_gaps: AtomicU64,
    unexpected: AtomicU64,
    server_errors: AtomicU64,
    window_full: AtomicU64,
    failed: AtomicU64,
    close_failed: AtomicU64,
}

/// When the traffic starts, and (chat) who can be written to.
#[derive(Default)]
struct Gate {
    start: Option<Instant>,
    abort: bool,
    users: Arc<Vec<u32>>,
}

/// Everything the threads share.
struct Run {
    options: Options,
    epoch: Instant,
    counters: Counters,
    latency: Histogram,
    gate: Mutex<Gate>,
    opened: Condvar,
    ready_users: Mutex<Vec<u32>>,
    /// The first few failures, word for word.
    errors: Mutex<Vec<String>>,
}

impl Run {
    fn error(&self, what: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < 10 {
            errors.push(what);
        }
    }

    /// Block until the main thread starts the traffic; `None` on abort.
    fn wait_start(&self) -> Option<(Instant, Arc<Vec<u32>>)> {
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if gate.abort {
                return None;
            }
            if let Some(start) = gate.start {
                return Some((start, Arc::clone(&gate.users)));
            }
            gate = self
                .opened
                .wait_timeout(gate, Duration::from_secs(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn micros(&self, at: Instant) -> u64 {
        at.duration_since(self.epoch).as_micros() as u64
    }
}

/// What one chat user sent and received, for the per-pair accounting.
#[derive(Default)]
struct ChatTally {
    user: u32,
    sent_to: HashMap<u32, u64>,
    got_from: HashMap<u32, u64>,
}

/// Marks a connection finished (and, in chat, done sending) even when its
/// thread returns early.
struct Finished<'a> {
    run: &'a Run,
    sending: bool,
}

impl Finished<'_> {
    fn done_sending(&mut self) {
        if self.sending {
            self.sending = false;
            self.run.counters.senders_done.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.done_sending();
        self.run.counters.finished.fetch_add(1, Relaxed);
    }
}

fn chunk_for(options: &Options) -> usize {
    (options.size + 64).clamp(4096, 64 * 1024)
}

/// One `/echo` connection: open, wait for the start, send on schedule,
/// check every echo against what was sent, drain, close.
fn echo_connection(run: &Run, conn: usize, deadline: Instant) {
    let o = &run.options;
    let c = &run.counters;
    let mut finished = Finished {
        run,
        sending: false,
    };
    let mut ws = match Ws::connect(
        o.addr,
        &o.path,
        deadline,
        time_seed() ^ conn as u64,
        chunk_for(o),
    ) {
        Ok(ws) => ws,
        Err(e) => {
            c.connect_failed.fetch_add(1, Relaxed);
            return run.error(format!("connection {conn}: {e}"));
        }
    };
    c.connected.fetch_add(1, Relaxed);
    let Some((start, _)) = run.wait_start() else {
        return;
    };
    let interval = Duration::from_secs_f64(1.0 / o.rate.max(1e-9));
    let end = start + o.duration;
    let drain_end = end + o.drain;
    let mut next = start + interval.mul_f64(ws.rng.unit());
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut in_flight = 0usize;
    let mut skipped: HashSet<u64> = HashSet::new();
    let mut index = 0u64;
    let opcode = if o.binary { 0x2 } else { 0x1 };
    let failure = loop {
        let now = Instant::now();
        if o.rate > 0.0 && now < end && now >= next {
            next += interval;
            if in_flight + o.size > o.window.max(o.size) {
                // Do not write while the server's answers wait unread: both
                // sides blocked in write would be a deadlock of our making.
                c.window_full.fetch_add(1, Relaxed);
                continue;
            }
            let payload = echo_payload(conn, index, o.size, o.binary);
            if let Err(e) = ws.send(opcode, &payload) {
                break Some(format!("send: {e}"));
            }
            pending.push_back((index, now));
            in_flight += o.size;
            index += 1;
            c.sent.fetch_add(1, Relaxed);
            c.bytes_sent.fetch_add(o.size as u64, Relaxed);
            continue;
        }
        if now >= end && pending.is_empty() {
            break None;
        }
        if now >= drain_end {
            break Some(format!("{} echoes missing after the drain", pending.len()));
        }
        let until = if now < end { next.min(end) } else { drain_end };
        match ws.recv(until) {
            Ok(None) => {}
            Ok(Some(Incoming::Data { binary, payload })) => {
                let arrived = Instant::now();
                let named = echo_index(&payload);
                // A message given up for lost arrives after all: reordered.
                if named.is_some_and(|i| skipped.remove(&i)) {
                    c.lost.fetch_sub(1, Relaxed);
                    c.out_of_order.fetch_add(1, Relaxed);
                    continue;
                }
                // The echo of a later message: the ones before it are lost
                // (or late, see above).
                if let Some(i) = named.filter(|i| pending.iter().any(|(x, _)| x == i)) {
                    while pending.front().is_some_and(|(x, _)| *x != i) {
                        if let Some((x, _)) = pending.pop_front() {
                            skipped.insert(x);
                            in_flight -= o.size;
                            c.lost.fetch_add(1, Relaxed);
                        }
                    }
                }
                let Some((expected, sent_at)) = pending.pop_front() else {
                    c.unexpected.fetch_add(1, Relaxed);
                    continue;
                };
                in_flight -= o.size;
                if binary != o.binary || payload != echo_payload(conn, expected, o.size, o.binary) {
                    c.corrupt.fetch_add(1, Relaxed);
                    continue;
                }
                c.received.fetch_add(1, Relaxed);
                c.bytes_received.fetch_add(payload.len() as u64, Relaxed);
                run.latency.record(arrived - sent_at);
            }
            Ok(Some(Incoming::Close(code))) => {
                break Some(format!("the server closed with {code:?}"))
            }
            Err(e) => break Some(e),
        }
    };
    c.lost.fetch_add(pending.len() as u64, Relaxed);
    if let Some(why) = failure {
        c.failed.fetch_add(1, Relaxed);
        return run.error(format!("connection {conn}: {why}"));
    }
    if let Err(e) = ws.close() {
        c.close_failed.fetch_add(1, Relaxed);
        run.error(format!("connection {conn}: {e}"));
    }
    finished.done_sending();
}

/// One `/ws` user: AUTH, wait for the start, send PEER messages to random
/// other users on schedule while checking everything that arrives.
fn chat_connection(run: &Run, user: u32, deadline: Instant) -> ChatTally {
    let o = &run.options;
    let c = &run.counters;
    let mut tally = ChatTally {
        user,
        ..ChatTally::default()
    };
    let mut finished = Finished {
        run,
        sending: false,
    };
    let opened = Ws::connect(
        o.addr,
        &o.path,
        deadline,
        time_seed() ^ u64::from(user),
        chunk_for(o),
    )
    .and_then(|mut ws| {
        let auth = format!(r#"{{"code":10000,"id":"{}{user}"}}"#, o.id_prefix);
        ws.send_text(&auth).map_err(|e| format!("AUTH: {e}"))?;
        loop {
            match ws.recv(deadline)? {
                Some(Incoming::Data { payload, .. }) => {
                    let value: Value = serde_json::from_slice(&payload)
                        .map_err(|e| format!("AUTH answer is not JSON: {e}"))?;
                    if value["code"] == 988 && value["extend"]["code"] == 20002 {
                        if value["extend"]["mess"] == true {
                            return Ok(ws);
                        }
                        return Err(format!("AUTH refused: {value}"));
                    }
                }
                Some(Incoming::Close(code)) => return Err(format!("closed during AUTH: {code:?}")),
                None => return Err("no AUTH answer in time".into()),
            }
        }
    });
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(e) => {
            c.connect_failed.fetch_add(1, Relaxed);
            run.error(format!("user {user}: {e}"));
            return tally;
        }
    };
    run.ready_users
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(user);
    c.connected.fetch_add(1, Relaxed);
    let Some((start, users)) = run.wait_start() else {
        return tally;
    };
    finished.sending = true;
    let interval = Duration::from_secs_f64(1.0 / o.rate.max(1e-9));
    let end = start + o.duration;
    let drain_end = end + o.drain;
    let mut next = start + interval.mul_f64(ws.rng.unit());
    let can_send = o.rate > 0.0 && users.len() >= 2;
    let mut last_seq = 0u64;
    let mut last_k: HashMap<u32, u64> = HashMap::new();
    let failure = loop {
        let now = Instant::now();
        if now >= end {
            finished.done_sending();
        }
        if can_send && now < end && now >= next {
            next += interval;
            let to = loop {
                let candidate = users[ws.rng.below(users.len() as u64) as usize];
                if candidate != user {
                    break candidate;
                }
            };
            let k = tally.sent_to.entry(to).or_insert(0);
            *k += 1;
            let text = format!(
                r#"{{"code":10002,"data":{{"to":"{prefix}{to}","k":{k},"t":{t},"p":"{p}"}}}}"#,
                prefix = o.id_prefix,
                t = run.micros(now),
                p = chat_payload(user, to, *k, o.size),
            );
            if let Err(e) = ws.send_text(&text) {
                break Some(format!("send: {e}"));
            }
            c.sent.fetch_add(1, Relaxed);
            c.bytes_sent.fetch_add(text.len() as u64, Relaxed);
            continue;
        }
        if now >= end
            && c.senders_done.load(Relaxed) + c.connect_failed.load(Relaxed) >= o.connections
            && c.received.load(Relaxed) >= c.sent.load(Relaxed)
        {
            break None;
        }
        if now >= drain_end {
            break None;
        }
        let until = if now < end {
            next.min(end)
        } else {
            (now + Duration::from_millis(100)).min(drain_end)
        };
        let payload = match ws.recv(until) {
            Ok(None) => continue,
            Ok(Some(Incoming::Data {
                binary: false,
                payload,
            })) => payload,
            Ok(Some(Incoming::Data { binary: true, .. })) => {
                break Some("a binary message on /ws".into())
            }
            Ok(Some(Incoming::Close(code))) => {
                break Some(format!("the server closed with {code:?}"))
            }
            Err(e) => break Some(e),
        };
        let arrived = Instant::now();
        let Ok(value) = serde_json::from_slice::<Value>(&payload) else {
            c.corrupt.fetch_add(1, Relaxed);
            continue;
        };
        match value["code"].as_i64() {
            Some(1756) => {
                let body = &value["body"];
                let seq = body["seq"].as_u64().unwrap_or(0);
                if seq != last_seq + 1 {
                    c.seq_gaps.fetch_add(1, Relaxed);
                }
                last_seq = seq;
                let data = &body["data"];
                let from = body["from"]
                    .as_str()
                    .and_then(|f| f.strip_prefix(o.id_prefix.as_str()))
                    .and_then(|n| n.parse::<u32>().ok());
                let (Some(from), Some(k), Some(t), Some(p)) = (
                    from,
                    data["k"].as_u64(),
                    data["t"].as_u64(),
                    data["p"].as_str(),
                ) else {
                    c.corrupt.fetch_add(1, Relaxed);
                    continue;
                };
                let last = last_k.entry(from).or_insert(0);
                if k <= *last {
                    c.duplicates.fetch_add(1, Relaxed);
                } else if k != *last + 1 {
                    c.out_of_order.fetch_add(1, Relaxed);
                }
                *last = (*last).max(k);
                *tally.got_from.entry(from).or_insert(0) += 1;
                if body["type"] != 30001 || p != chat_payload(from, user, k, o.size) {
                    c.corrupt.fetch_add(1, Relaxed);
                    continue;
                }
                c.received.fetch_add(1, Relaxed);
                c.bytes_received.fetch_add(payload.len() as u64, Relaxed);
                run.latency
                    .record(Duration::from_micros(run.micros(arrived).saturating_sub(t)));
            }
            // The heartbeat PING: answer it (PROTOCOL.md: "the client answers 10016").
            Some(476) => {
                if let Err(e) = ws.send_text(r#"{"code":10016}"#) {
                    break Some(format!("send: {e}"));
                }
            }
            Some(988 | 732) => {}
            Some(1244) => {
                c.server_errors.fetch_add(1, Relaxed);
                run.error(format!("user {user}: the server answered {value}"));
            }
            _ => {
                c.unexpected.fetch_add(1, Relaxed);
            }
        }
    };
    finished.done_sending();
    if let Some(why) = failure {
        c.failed.fetch_add(1, Relaxed);
        run.error(format!("user {user}: {why}"));
        return tally;
    }
    if let Err(e) = ws.close() {
        c.close_failed.fetch_add(1, Relaxed);
        run.error(format!("user {user}: {e}"));
    }
    tally
}

// ---------------------------------------------------------------------------
// Observing the server and the host.

/// A field of a `/proc/.../status` or `/proc/.../limits` style text.
fn proc_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The server process as `/proc` sees it.
#[derive(Debug, Clone, Copy, Default)]
struct ProcSample {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        rss_kib: proc_field(&status, "VmRSS")?,
        threads: proc_field(&status, "Threads")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0),
    })
}

fn describe_proc(sample: Option<ProcSample>) -> String {
    match sample {
        Some(s) => format!(
            "RSS {:.1} MiB, {} threads, {} fds",
            s.rss_kib as f64 / 1024.0,
            s.threads,
            s.fds
        ),
        None => "not readable".into(),
    }
}

/// The server's gauges, from `GET /metrics`.
fn server_gauges(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default().to_owned();
    if status.is_empty() {
        return Err("no answer within 5 s (is the server unable to accept?)".into());
    }
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("{status:?}"));
    }
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
            let _ = write!(
                out,
                "{}={} ",
                name.trim_start_matches("socketbox_"),
                value.trim()
            );
        }
    }
    for family in ["socketbox_rejections_total{", "socketbox_closes_total{"] {
        for line in text.lines().filter(|l| l.starts_with(family)) {
            let _ = write!(
                out,
                "{} ",
                line.trim_start_matches("socketbox_").replace(' ', "=")
            );
        }
    }
    Ok(out.trim_end().to_owned())
}

fn describe_gauges(run: &Run) -> String {
    if !run.options.metrics {
        return "not asked (--no-metrics)".into();
    }
    server_gauges(run.options.addr).unwrap_or_else(|e| format!("unavailable: {e}"))
}

/// Check the limits a run of this size meets on this host; complain early
/// rather than fail at connection 9,000.
fn preflight(o: &Options) -> Result<(), String> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let need = o.connections as u64 + 64;
    if let Some(nofile) = proc_field(&limits, "Max open files") {
        if nofile < need {
            return Err(format!(
                "{} connections need {need} file descriptors, this process may open {nofile}: \
                 run `ulimit -n {}` first",
                o.connections,
                need.max(20_000)
            ));
        }
    }
    if let Some(pid) = o.server_pid {
        let server = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        if let Some(nofile) = proc_field(&server, "Max open files") {
            if nofile < need {
                eprintln!(
                    "warning: the server may open {nofile} descriptors; {} connections need about {need}",
                    o.connections
                );
            }
        }
    }
    let server_threads = match o.mode {
        Mode::Echo => o.connections,
        Mode::Chat => 2 * o.connections,
    } as u64;
    let threads = server_threads + o.connections as u64 + 200;
    for (path, what) in [
        ("/proc/sys/kernel/pid_max", "kernel.pid_max"),
        ("/proc/sys/kernel/threads-max", "kernel.threads-max"),
    ] {
        if read_number(path).is_some_and(|limit| limit < threads) {
            eprintln!(
                "warning: {what} is {}; this run needs about {threads} threads (server and client)",
                read_number(path).unwrap_or(0)
            );
        }
    }
    let maps = 2 * o.connections as u64 + 1000;
    if read_number("/proc/sys/vm/max_map_count").is_some_and(|limit| limit < maps) {
        eprintln!("warning: vm.max_map_count is below {maps}: each thread stack is two mappings");
    }
    Ok(())
}

// ---------------------------------------------------------------------------

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("socketbox-load: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = preflight(&options) {
        eprintln!("socketbox-load: {e}");
        return ExitCode::from(2);
    }
    let ramp_time = Duration::from_secs_f64(options.connections as f64 / options.ramp);
    let max_time = options.max_time.unwrap_or(
        ramp_time
            + options.connect_timeout
            + options.duration
            + options.drain
            + Duration::from_secs(60),
    );
    thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            thread::sleep(max_time);
            eprintln!("socketbox-load: gave up: the run passed --max-time {max_time:?}");
            std::process::exit(3);
        })
        .expect("a watchdog thread");
    let run = Arc::new(Run {
        options: options.clone(),
        epoch: Instant::now(),
        counters: Counters::default(),
        latency: Histogram::new(),
        gate: Mutex::new(Gate::default()),
        opened: Condvar::new(),
        ready_users: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    });
    std::process::exit(execute(&run));
}

/// The whole run; returns the exit status.
fn execute(run: &Arc<Run>) -> i32 {
    let o = &run.options;
    let c = &run.counters;
    let n = o.connections;
    let what = match o.mode {
        Mode::Echo => format!(
            "echo: {n} connections to {}{}, {} {}-byte {} messages/s each, {:?}",
            o.addr,
            o.path,
            o.rate,
            o.size,
            if o.binary { "binary" } else { "text" },
            o.duration
        ),
        Mode::Chat => format!(
            "chat: {n} users on {}{}, {} PEER messages/s each ({}-char text), {:?}",
            o.addr, o.path, o.rate, o.size, o.duration
        ),
    };
    println!("socketbox-load {what}");
    let baseline = o.server_pid.and_then(proc_sample);
    if o.server_pid.is_some() {
        println!("server before:  {}", describe_proc(baseline));
    }

    // Ramp: open every connection, at most --ramp per second.
    let ramp_start = Instant::now();
    let mut echo_threads = Vec::new();
    let mut chat_threads = Vec::new();
    let mut spawn_failed = 0usize;
    let mut last_progress = Instant::now();
    for i in 0..n {
        let due = ramp_start + Duration::from_secs_f64(i as f64 / o.ramp);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let deadline = Instant::now() + o.connect_timeout;
        let thread_run = Arc::clone(run);
        let builder = thread::Builder::new().stack_size(o.stack);
        let spawned = match o.mode {
            Mode::Echo => builder
                .spawn(move || echo_connection(&thread_run, i, deadline))
                .map(|h| echo_threads.push(h)),
            Mode::Chat => builder
                .spawn(move || chat_connection(&thread_run, i as u32, deadline))
                .map(|h| chat_threads.push(h)),
        };
        if let Err(e) = spawned {
            spawn_failed += 1;
            c.connect_failed.fetch_add(1, Relaxed);
            run.error(format!("connection {i}: cannot spawn a client thread: {e}"));
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            eprintln!(
                "  ramp: {} started, {} open, {} failed",
                i + 1,
                c.connected.load(Relaxed),
                c.connect_failed.load(Relaxed)
            );
        }
    }
    let open_deadline = Instant::now() + o.connect_timeout + Duration::from_secs(1);
    while c.connected.load(Relaxed) + c.connect_failed.load(Relaxed) < n
        && Instant::now() < open_deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
    let ramp_took = ramp_start.elapsed();
    let open = c.connected.load(Relaxed);
    println!(
        "ramp:           {open}/{n} open in {:.1} s ({} failed{})",
        ramp_took.as_secs_f64(),
        c.connect_failed.load(Relaxed),
        if spawn_failed > 0 {
            format!(", {spawn_failed} client threads not spawned")
        } else {
            String::new()
        }
    );
    let loaded = o.server_pid.and_then(proc_sample);
    if o.server_pid.is_some() {
        println!("server held:    {}", describe_proc(loaded));
    }
    println!("server gauges:  {}", describe_gauges(run));

    // Traffic.
    let start = Instant::now() + Duration::from_millis(200);
    {
        let mut gate = run.gate.lock().unwrap_or_else(|p| p.into_inner());
        gate.start = Some(start);
        let mut users = run
            .ready_users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        users.sort_unstable();
        gate.users = Arc::new(users);
        run.opened.notify_all();
    }
    let mut peak = loaded.unwrap_or_default();
    let mut mid_gauges = None;
    let mut last_progress = Instant::now();
    while c.finished.load(Relaxed) < n.saturating_sub(spawn_failed) {
        thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        if let Some(sample) = o.server_pid.and_then(proc_sample) {
            peak.rss_kib = peak.rss_kib.max(sample.rss_kib);
            peak.threads = peak.threads.max(sample.threads);
            peak.fds = peak.fds.max(sample.fds);
        }
        if mid_gauges.is_none() && now >= start + o.duration / 2 {
            mid_gauges = Some(describe_gauges(run));
        }
        if now.duration_since(last_progress) >= Duration::from_secs(5) {
            last_progress = now;
            eprintln!(
                "  {:>5.1} s: sent {}, received {}, {} connections finished",
                now.saturating_duration_since(start).as_secs_f64(),
                c.sent.load(Relaxed),
                c.received.load(Relaxed),
                c.finished.load(Relaxed)
            );
        }
    }
    let traffic_secs = o.duration.as_secs_f64().max(1e-9);
    let finished_at = Instant::now();

    let mut pair_lost = 0u64;
    let mut pair_extra = 0u64;
    for handle in echo_threads {
        let _ = handle.join();
    }
    if o.mode == Mode::Chat {
        let tallies: Vec<ChatTally> = chat_threads
            .into_iter()
            .filter_map(|h| h.join().ok())
            .collect();
        let mut got: HashMap<(u32, u32), u64> = HashMap::new();
        for t in &tallies {
            for (&from, &count) in &t.got_from {
                got.insert((from, t.user), count);
            }
        }
        for t in &tallies {
            for (&to, &sent) in &t.sent_to {
                let received = got.remove(&(t.user, to)).unwrap_or(0);
                pair_lost += sent.saturating_sub(received);
                pair_extra += received.saturating_sub(sent);
            }
        }
        pair_extra += got.values().sum::<u64>();
    }
    let after = o.server_pid.and_then(|pid| {
        thread::sleep(Duration::from_millis(500));
        proc_sample(pid)
    });

    // The report.
    let sent = c.sent.load(Relaxed);
    let received = c.received.load(Relaxed);
    let lost = match o.mode {
        Mode::Echo => c.lost.load(Relaxed),
        Mode::Chat => pair_lost,
    };
    let problems = [
        ("lost", lost),
        ("corrupt", c.corrupt.load(Relaxed)),
        ("out of order", c.out_of_order.load(Relaxed)),
        ("duplicated", c.duplicates.load(Relaxed) + pair_extra),
        ("seq gaps", c.seq_gaps.load(Relaxed)),
        ("unexpected", c.unexpected.load(Relaxed)),
        ("server errors", c.server_errors.load(Relaxed)),
        ("connections failed", c.failed.load(Relaxed)),
        ("not opened", c.connect_failed.load(Relaxed) as u64),
        ("unclean closes", c.close_failed.load(Relaxed)),
    ];
    let mut summary = String::new();
    for (name, count) in problems {
        let _ = write!(summary, ", {count} {name}");
    }
    println!("traffic:        {sent} sent, {received} delivered intact{summary}");
    if c.window_full.load(Relaxed) > 0 {
        println!(
            "                {} sends skipped: --window of unanswered bytes was full (the server fell behind)",
            c.window_full.load(Relaxed)
        );
    }
    println!(
        "throughput:     {:.0} messages/s, {:.2} MB/s sent, {:.2} MB/s received (over the {:.0} s of traffic)",
        received as f64 / traffic_secs,
        c.bytes_sent.load(Relaxed) as f64 / traffic_secs / 1e6,
        c.bytes_received.load(Relaxed) as f64 / traffic_secs / 1e6,
        traffic_secs
    );
    let h = &run.latency;
    println!(
        "latency:        p50 {}, p90 {}, p99 {}, p99.9 {}, max {} ({} samples)",
        ms(h.percentile(0.50)),
        ms(h.percentile(0.90)),
        ms(h.percentile(0.99)),
        ms(h.percentile(0.999)),
        ms(h.max.load(Relaxed)),
        h.total.load(Relaxed)
    );
    if o.server_pid.is_some() {
        println!("server peak:    {}", describe_proc(Some(peak)));
        if let (Some(base), true) = (baseline, open > 0) {
            println!(
                "                {:.1} KiB of RSS and {:.2} threads per open connection",
                peak.rss_kib.saturating_sub(base.rss_kib) as f64 / open as f64,
                peak.threads.saturating_sub(base.threads) as f64 / open as f64
            );
        }
    }
    if let Some(gauges) = mid_gauges {
        println!("gauges mid-run: {gauges}");
    }
    if o.server_pid.is_some() {
        println!("server after:   {}", describe_proc(after));
    }
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    println!(
        "load generator: peak RSS {:.1} MiB; run took {:.1} s",
        proc_field(&own, "VmHWM").unwrap_or(0) as f64 / 1024.0,
        finished_at.duration_since(run.epoch).as_secs_f64()
    );
    let errors = run.errors.lock().unwrap_or_else(|p| p.into_inner());
    for e in errors.iter() {
        println!("  error: {e}");
    }
    let failures: u64 = problems.iter().map(|(_, count)| count).sum();
    let all_open = open == n;
    if failures == 0 && all_open && h.total.load(Relaxed) == received {
        println!("result:         OK: every message was delivered intact and in order");
        0
    } else {
        println!("result:         FAILED");
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_continuous_and_bounded() {
        let mut previous = 0;
        for us in (0..200_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let b = Histogram::bucket(us);
            assert!(b >= previous || us > 200_000, "{us}");
            previous = b;
            assert!(Histogram::upper(b) >= us.min(Histogram::upper(Histogram::BUCKETS - 1)));
        }
        assert_eq!(Histogram::bucket(127), 127);
        assert_eq!(Histogram::upper(Histogram::bucket(1000)), 1007);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::new();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.percentile(0.5), 503);
        assert_eq!(h.percentile(1.0), 1000);
    }

    #[test]
    fn echo_payloads_name_their_index_and_differ() {
        let a = echo_payload(7, 42, 64, false);
        assert_eq!(a.len(), 64);
        assert!(a.starts_with(b"c7m42:"));
        assert_eq!(echo_index(&a), Some(42));
        assert_ne!(a, echo_payload(7, 43, 64, false));
        assert_eq!(a, echo_payload(7, 42, 64, false));
        assert_eq!(echo_payload(1, 2, 3, true).len(), 3);
        assert!(std::str::from_utf8(&echo_payload(3, 9, 500, false)).is_ok());
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(loopback_addr("127.0.0.1:80").is_ok());
        assert!(loopback_addr("[::1]:80").is_ok());
        assert!(loopback_addr("10.0.0.1:80").is_err());
    }

    #[test]
    fn options_parse() {
        let args: Vec<String> = "chat --users 3 --rate 2.5 --duration 1"
            .split(' ')
            .map(String::from)
            .collect();
        let o = parse_options(&args).unwrap();
        assert_eq!(
            (o.mode, o.connections, o.path.as_str()),
            (Mode::Chat, 3, "/ws")
        );
        assert_eq!(o.rate, 2.5);
        assert!(parse_options(&["echo".into(), "--bogus".into(), "1".into()]).is_err());
        assert!(parse_options(&["echo".into(), "--size".into()]).is_err());
    }
}
