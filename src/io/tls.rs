//! TLS for every route (`--tls-cert`, `--tls-key`; cargo feature `tls`):
//! TLS 1.3 (RFC 8446) and 1.2 (RFC 5246) by rustls with its `ring`
//! provider. This module owns the certificate and key (read from PEM,
//! checked to match, swapped on SIGHUP without touching open connections),
//! the server handshake (socket I/O on the connection's own thread within
//! `--handshake-timeout`, the CPU-heavy part on a small shared pool), and
//! the TLS session a [`Socket`] shares between the threads of one
//! connection, on rustls' unbuffered API so that the buffers are ours and
//! an idle connection holds none. How the session is shared and what a
//! write means with TLS: `docs/architecture.md`, "TLS".

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use rustls::crypto::{ring, CryptoProvider};
use rustls::server::UnbufferedServerConnection;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::InconsistentKeys;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::socket::Socket;

/// Why a certificate and key cannot be used.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Unreadable {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The certificate file holds no PEM certificate, or a broken one.
    NoCertificate(PathBuf, String),
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1), or
    /// a broken one.
    NoKey(PathBuf, String),
    /// The key is of a kind the server cannot sign with.
    UnsupportedKey(PathBuf, rustls::Error),
    /// The key is not the certificate's.
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration or the certificate.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Unreadable { what, path, error } => {
                write!(f, "cannot read the TLS {what} {}: {error}", path.display())
            }
            TlsError::NoCertificate(path, why) => {
                write!(f, "no PEM certificate in {} ({why})", path.display())
            }
            TlsError::NoKey(path, why) => write!(
                f,
                "no PEM private key (PKCS#8, PKCS#1 or SEC1) in {} ({why})",
                path.display()
            ),
            TlsError::UnsupportedKey(path, error) => {
                write!(f, "unusable TLS key {}: {error}", path.display())
            }
            TlsError::Mismatch { cert, key } => write!(
                f,
                "the TLS key {} does not match the certificate {}",
                key.display(),
                cert.display()
            ),
            TlsError::Rustls(error) => write!(f, "TLS: {error}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for io::Error {
    fn from(error: TlsError) -> io::Error {
        io::Error::other(error.to_string())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Read a certificate chain and its key from PEM files and check that they
/// belong together.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|error| TlsError::Unreadable {
            what,
            path: path.to_owned(),
            error,
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("key", key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate(cert.to_owned(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(
            cert.to_owned(),
            "the file has no CERTIFICATE block".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::NoKey(key.to_owned(), e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::UnsupportedKey(key.to_owned(), e))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(error) => Err(TlsError::NoCertificate(cert.to_owned(), error.to_string())),
    }
}

/// The certificate new handshakes present; swapped whole on reload, so a
/// handshake sees the old pair or the new one, never half of each.
#[derive(Debug)]
struct Current {
    cert: PathBuf,
    key: PathBuf,
    pair: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.pair.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

/// The server's TLS side: its configuration and its current certificate.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    current: Arc<Current>,
    pool: Arc<HandshakePool>,
}

/// Why a TLS handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    /// The client said nothing (or not enough) within the timeout.
    TimedOut,
    /// The client closed or reset the connection.
    Closed,
    /// The client spoke something that is not TLS, or TLS we refuse.
    Refused(rustls::Error),
}

impl Tls {
    /// Load the certificate and key: every start-up error names its file.
    pub fn new(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let pair = load(cert, key)?;
        let current = Arc::new(Current {
            cert: cert.to_owned(),
            key: key.to_owned(),
            pair: RwLock::new(Arc::new(pair)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        // Every route is HTTP/1.1 (a WebSocket upgrade needs it, RFC 6455
        // 4.1); saying so keeps a browser from expecting h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            current,
            pool: Arc::new(HandshakePool::new()),
        })
    }

    /// Read the certificate and key again (SIGHUP). New handshakes present
    /// the new pair; open connections keep theirs. On error the old pair
    /// stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load(&self.current.cert, &self.current.key)?;
        *self.current.pair.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// Run the server handshake on `tcp` within `timeout`. The calling
    /// thread does the socket I/O and keeps the time; each flight it reads
    /// is processed on the handshake pool (see [`HandshakePool`]). Bytes
    /// that are not a TLS ClientHello (plain HTTP, garbage) fail it at once.
    pub fn accept(&self, tcp: TcpStream, timeout: Duration) -> Result<Socket, HandshakeError> {
        let deadline = Instant::now() + timeout;
        let left = || {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then_some(left)
        };
        let mut conn: Option<Box<UnbufferedServerConnection>> = None;
        let mut incoming = Vec::new();
        let mut raw = vec![0u8; RAW_READ];
        loop {
            let limit = left().ok_or(HandshakeError::TimedOut)?;
            tcp.set_read_timeout(Some(limit))
                .map_err(|_| HandshakeError::Closed)?;
            let n = match (&tcp).read(&mut raw) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if would_block(&e) => return Err(HandshakeError::TimedOut),
                Err(_) => return Err(HandshakeError::Closed),
            };
            incoming.extend_from_slice(&raw[..n]);
            if incoming.len() > MAX_HANDSHAKE_INPUT {
                let _ = tcp.shutdown(Shutdown::Both);
                return Err(HandshakeError::Closed);
            }
            let limit = left().ok_or(HandshakeError::TimedOut)?;
            let flight = Flight {
                config: Arc::clone(&self.config),
                conn: conn.take(),
                incoming,
            };
            let done = self.pool.run(flight, limit)?;
            incoming = done.incoming;
            if !done.outgoing.is_empty() {
                let limit = left().ok_or(HandshakeError::TimedOut)?;
                let _ = tcp.set_write_timeout(Some(match done.result {
                    Err(_) => Duration::from_millis(100),
                    Ok(_) => limit,
                }));
                if let Err(e) = (&tcp).write_all(&done.outgoing) {
                    if done.result.is_ok() {
                        return Err(if would_block(&e) {
                            HandshakeError::TimedOut
                        } else {
                            HandshakeError::Closed
                        });
                    }
                }
            }
            match done.result {
                Err(error) => {
                    let _ = tcp.shutdown(Shutdown::Both);
                    return Err(error);
                }
                Ok(Progress::NeedMore) => conn = done.conn,
                Ok(Progress::Done) => {
                    let conn = done.conn.ok_or(HandshakeError::Closed)?;
                    let _ = tcp.set_read_timeout(None);
                    let _ = tcp.set_write_timeout(None);
                    let mut state = Decrypting {
                        conn,
                        incoming,
                        plaintext: Vec::new(),
                        taken: 0,
                        outgoing: Vec::new(),
                        tcp_closed: false,
                        peer_closed: false,
                    };
                    // Application data that came with the client's Finished.
                    state.decrypt().map_err(HandshakeError::Refused)?;
                    let session = Session {
                        conn: Mutex::new(state),
                        pending: Mutex::new(Vec::new()),
                    };
                    return Ok(Socket::tls(tcp, session));
                }
            }
        }
    }
}

/// One flight of handshake bytes from a client, to be processed away from
/// the connection's thread: the session so far (none before the
/// ClientHello) and the ciphertext not processed yet.
struct Flight {
    config: Arc<rustls::ServerConfig>,
    conn: Option<Box<UnbufferedServerConnection>>,
    incoming: Vec<u8>,
}

/// Where a handshake stands after a flight.
enum Progress {
    /// The client's next flight is needed.
    NeedMore,
    /// The handshake is over.
    Done,
}

/// A processed flight, back to the connection's thread: what is left of
/// the input and what to send.
struct Processed {
    conn: Option<Box<UnbufferedServerConnection>>,
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
    result: Result<Progress, HandshakeError>,
}

/// Append what `encode` writes to `out`, growing it as rustls asks
/// (`room`: the first guess).
fn encode_into(
    out: &mut Vec<u8>,
    mut room: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, usize>,
) {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return;
            }
            Err(required) if required > room => room = required,
            Err(_) => {
                out.truncate(start);
                return;
            }
        }
    }
}

fn encode_size(e: EncodeError) -> usize {
    match e {
        EncodeError::InsufficientSize(size) => size.required_size,
        _ => 0,
    }
}

fn encrypt_size(e: EncryptError) -> usize {
    match e {
        EncryptError::InsufficientSize(size) => size.required_size,
        _ => 0,
    }
}

impl Flight {
    /// The CPU-heavy part of a handshake: parse the flight, run the key
    /// exchange, sign, derive the keys, encode the server's reply.
    fn process(self) -> Processed {
        let Flight {
            config,
            conn,
            mut incoming,
        } = self;
        let mut outgoing = Vec::new();
        let mut conn = match conn {
            Some(conn) => conn,
            None => match UnbufferedServerConnection::new(config) {
                Ok(conn) => Box::new(conn),
                Err(error) => {
                    return Processed {
                        conn: None,
                        incoming,
                        outgoing,
                        result: Err(HandshakeError::Refused(error)),
                    }
                }
            },
        };
        let mut failed: Option<rustls::Error> = None;
        let result = loop {
            let status = conn.process_tls_records(&mut incoming);
            let discard = status.discard;
            let step = match status.state {
                Err(error) => {
                    // Once more, for the alert rustls queued; then stop.
                    if failed.is_some() {
                        Some(Err(HandshakeError::Refused(error)))
                    } else {
                        failed = Some(error);
                        None
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode_into(&mut outgoing, 1024, |out| {
                        data.encode(out).map_err(encode_size)
                    });
                    None
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    // Sent by the connection's thread when this returns.
                    data.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Ok(Progress::NeedMore)),
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    Some(Err(HandshakeError::Closed))
                }
                Ok(_) => Some(Ok(Progress::Done)),
            };
            incoming.drain(..discard);
            if let Some(step) = step {
                break step;
            }
        };
        let result = match failed {
            Some(error) => Err(HandshakeError::Refused(error)),
            None => result,
        };
        Processed {
            conn: Some(conn),
            incoming,
            outgoing,
            result,
        }
    }
}

/// Most handshake bytes held unprocessed: rustls joins a handshake
/// message of up to 64 KiB from records of up to 16 KiB each, and refuses
/// more; this bounds what a client can make the server hold meanwhile.
const MAX_HANDSHAKE_INPUT: usize = 96 * 1024;

/// Most flights that wait for a handshake thread; past it, a connection's
/// own thread processes its flight itself (slower to give back memory, but
/// never refused).
const POOL_QUEUE: usize = 128;

type Job = Box<dyn FnOnce() + Send>;

/// A few threads (one per core) that run every handshake's CPU-heavy
/// steps, so that no connection thread's stack ever goes as deep as rustls
/// and ring's signature do: stack pages once touched stay resident for
/// the thread's life. Why: `docs/architecture.md`, "TLS".
#[derive(Debug)]
struct HandshakePool {
    jobs: Option<SyncSender<Job>>,
}

impl HandshakePool {
    fn new() -> HandshakePool {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (jobs, queue) = mpsc::sync_channel::<Job>(POOL_QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for _ in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name("tls-handshake".into())
                .spawn(move || loop {
                    let job = relock(&queue).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        HandshakePool {
            jobs: (started > 0).then_some(jobs),
        }
    }

    /// Process `flight` on a handshake thread, or on this one if none can
    /// take it now; wait at most `limit` for the result.
    fn run(&self, flight: Flight, limit: Duration) -> Result<Processed, HandshakeError> {
        let (done, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = done.send(flight.process());
        });
        let inline = match &self.jobs {
            Some(jobs) => match jobs.try_send(job) {
                Ok(()) => None,
                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Some(job),
            },
            None => Some(job),
        };
        if let Some(job) = inline {
            job();
        }
        result.recv_timeout(limit).map_err(|e| match e {
            RecvTimeoutError::Timeout => HandshakeError::TimedOut,
            RecvTimeoutError::Disconnected => HandshakeError::Closed,
        })
    }
}

/// Most ciphertext read from the TCP stream at a time into a buffer of
/// the caller's.
const RAW_READ: usize = 4096;

/// Below this, a read's own buffer is too small to take ciphertext in.
const SMALL_READ: usize = 1024;

/// Most plaintext one write encrypts.
const WRITE_LIMIT: usize = 64 * 1024;

/// One connection's TLS session after its handshake. Two locks: `conn`
/// (the rustls state) is only ever held to encrypt or decrypt in memory,
/// never across a system call; `pending` (ciphertext not yet taken by the
/// kernel) is held by the one thread writing to the TCP stream, which
/// keeps the records in order. Lock order: `pending`, then `conn`.
#[derive(Debug)]
pub(crate) struct Session {
    conn: Mutex<Decrypting>,
    pending: Mutex<Vec<u8>>,
}

/// rustls' unbuffered connection and the buffers it leaves to us, each
/// empty and unallocated while the connection is idle.
struct Decrypting {
    conn: Box<UnbufferedServerConnection>,
    /// Ciphertext read, not yet a whole record.
    incoming: Vec<u8>,
    /// Plaintext decrypted, not yet read (from `taken` on).
    plaintext: Vec<u8>,
    taken: usize,
    /// Records rustls made by itself (alerts, key updates), for `pending`.
    outgoing: Vec<u8>,
    /// The peer closed TCP.
    tcp_closed: bool,
    /// The peer sent close_notify.
    peer_closed: bool,
}

impl fmt::Debug for Decrypting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypting")
            .field("incoming", &self.incoming.len())
            .field("plaintext", &(self.plaintext.len() - self.taken))
            .field("tcp_closed", &self.tcp_closed)
            .field("peer_closed", &self.peer_closed)
            .finish()
    }
}

impl Decrypting {
    /// Decrypt every whole record in `incoming`.
    fn decrypt(&mut self) -> Result<(), rustls::Error> {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let mut again = true;
            match status.state {
                Err(error) => {
                    self.incoming.drain(..discard);
                    // The alert rustls queued, if any.
                    let status = self.conn.process_tls_records(&mut []);
                    if let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state {
                        encode_into(&mut self.outgoing, 1024, |out| {
                            data.encode(out).map_err(encode_size)
                        });
                    }
                    return Err(error);
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode_into(&mut self.outgoing, 1024, |out| {
                        data.encode(out).map_err(encode_size)
                    });
                }
                Ok(ConnectionState::TransmitTlsData(data)) => data.done(),
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    self.peer_closed = true;
                    again = false;
                }
                Ok(_) => again = false,
            }
            self.incoming.drain(..discard);
            if !again {
                break;
            }
        }
        if self.incoming.is_empty() {
            // An idle connection keeps no buffer.
            self.incoming = Vec::new();
        }
        Ok(())
    }

    /// Encrypt `plaintext` (or close_notify) into `out`; false when rustls
    /// cannot encrypt now.
    fn encrypt(&mut self, out: &mut Vec<u8>, plaintext: Option<&[u8]>) -> bool {
        loop {
            let status = self.conn.process_tls_records(&mut []);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode_into(&mut self.outgoing, 1024, |out| {
                        data.encode(out).map_err(encode_size)
                    });
                }
                Ok(ConnectionState::TransmitTlsData(data)) => data.done(),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    out.append(&mut self.outgoing);
                    match plaintext {
                        // Each record adds at most 5 + 16 + 1 + 255 bytes.
                        Some(plaintext) => encode_into(
                            out,
                            plaintext.len() + 300 * (plaintext.len() / 16384 + 1),
                            |buf| traffic.encrypt(plaintext, buf).map_err(encrypt_size),
                        ),
                        None => encode_into(out, 64, |buf| {
                            traffic.queue_close_notify(buf).map_err(encrypt_size)
                        }),
                    }
                    return true;
                }
                _ => {
                    out.append(&mut self.outgoing);
                    return false;
                }
            }
        }
    }
}

fn relock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Session {
    /// Read plaintext: what is decrypted already, else block on the TCP
    /// stream *without* holding a lock (writers go on meanwhile), then
    /// decrypt under the lock. 0: the peer closed (close_notify or TCP).
    pub(crate) fn read(&self, tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        // Ciphertext is read into the caller's buffer and copied out at
        // once, so an idle connection holds no buffer of its own; only a
        // tiny one gets help, from the heap.
        let mut small = Vec::new();
        loop {
            {
                let mut state = relock(&self.conn);
                let state = &mut *state;
                if state.taken < state.plaintext.len() {
                    let n = (&state.plaintext[state.taken..]).read(buf)?;
                    state.taken += n;
                    if state.taken == state.plaintext.len() {
                        state.plaintext = Vec::new();
                        state.taken = 0;
                    }
                    return Ok(n);
                }
                // TCP closed without close_notify: for a WebSocket, whose
                // Close frames say whether it ended cleanly, an end like
                // any other.
                if state.tcp_closed || state.peer_closed {
                    return Ok(0);
                }
            }
            let raw: &mut [u8] = if buf.len() >= SMALL_READ {
                let limit = buf.len().min(RAW_READ);
                &mut buf[..limit]
            } else {
                small.resize(SMALL_READ, 0);
                &mut small
            };
            let n = (&*tcp).read(raw)?;
            let (processed, reply) = {
                let mut state = relock(&self.conn);
                if n == 0 {
                    state.tcp_closed = true;
                }
                state.incoming.extend_from_slice(&raw[..n]);
                let processed = state.decrypt();
                (processed, !state.outgoing.is_empty())
            };
            if reply {
                // An alert, a key update: rare, and small.
                let _ = self.flush(tcp);
            }
            if let Err(error) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    /// Hand `pending` to the kernel until it is empty or a write fails
    /// (a timeout, `WouldBlock`); what the kernel took leaves `pending`.
    fn drain(tcp: &TcpStream, pending: &mut Vec<u8>) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done == pending.len() {
                break Ok(());
            }
            match (&*tcp).write(&pending[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if done == pending.len() {
            // An idle connection keeps no buffer.
            *pending = Vec::new();
        } else {
            pending.drain(..done);
        }
        result
    }

    /// Encrypt as much of `bufs` as [`WRITE_LIMIT`] allows into `pending`;
    /// returns how many plaintext bytes that was.
    fn encrypt(&self, pending: &mut Vec<u8>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut state = relock(&self.conn);
        let mut accepted = 0;
        for buf in bufs {
            let take = buf.len().min(WRITE_LIMIT - accepted);
            if take == 0 {
                continue;
            }
            if !state.encrypt(pending, Some(&buf[..take])) {
                if accepted == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the TLS session is closed",
                    ));
                }
                break;
            }
            accepted += take;
            if accepted == WRITE_LIMIT {
                break;
            }
        }
        Ok(accepted)
    }

    /// A blocking write: first the ciphertext an earlier write left (a
    /// timeout there means nothing of `bufs` was taken), then `bufs`. A
    /// timeout after `bufs` were encrypted leaves their rest pending, sent
    /// by the next write or [`Self::flush`].
    pub(crate) fn write_vectored(
        &self,
        tcp: &TcpStream,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        let mut pending = relock(&self.pending);
        Self::drain(tcp, &mut pending)?;
        let accepted = self.encrypt(&mut pending, bufs)?;
        match Self::drain(tcp, &mut pending) {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(accepted),
        }
    }

    /// Send every pending byte (blocking, within the write timeout).
    pub(crate) fn flush(&self, tcp: &TcpStream) -> io::Result<()> {
        let mut pending = relock(&self.pending);
        {
            let mut state = relock(&self.conn);
            pending.append(&mut state.outgoing);
        }
        Self::drain(tcp, &mut pending)
    }

    /// See [`Socket::write_without_blocking`]: nothing is taken while
    /// another thread is writing, or while ciphertext of an earlier write
    /// still waits for the kernel.
    pub(crate) fn write_without_blocking(&self, tcp: &TcpStream, parts: &[&[u8]]) -> usize {
        let mut pending = match self.pending.try_lock() {
            Ok(pending) => pending,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return 0,
        };
        if tcp.set_nonblocking(true).is_err() {
            return 0;
        }
        let mut accepted = 0;
        if Self::drain(tcp, &mut pending).is_ok() {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
            accepted = self.encrypt(&mut pending, &slices).unwrap_or(0);
            let _ = Self::drain(tcp, &mut pending);
        }
        if tcp.set_nonblocking(false).is_err() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
        accepted
    }

    /// Whether encrypted bytes wait for the kernel (or another thread is
    /// writing, which comes to the same for the caller: someone must look).
    pub(crate) fn output_pending(&self) -> bool {
        match self.pending.try_lock() {
            Ok(pending) => !pending.is_empty(),
            Err(_) => true,
        }
    }

    /// Queue close_notify and send it if that does not block.
    pub(crate) fn close_notify(&self, tcp: &TcpStream) {
        let Ok(mut pending) = self.pending.try_lock() else {
            return;
        };
        {
            let mut state = relock(&self.conn);
            state.encrypt(&mut pending, None);
        }
        if tcp.set_nonblocking(true).is_ok() {
            let _ = Self::drain(tcp, &mut pending);
            let _ = tcp.set_nonblocking(false);
        }
    }
}
