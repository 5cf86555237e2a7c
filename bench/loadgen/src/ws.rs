//! The client side of RFC 6455, as little of it as a load generator needs:
//! the opening handshake over a blocking socket, masked frames out, and a
//! frame parser for what the server sends (which must not be masked).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine;

/// The GUID of RFC 6455 section 1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A small, fast PRNG (xorshift64*): mask keys, payload patterns, recipients.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is replaced.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Sec-WebSocket-Accept for a key (RFC 6455 4.2.2 step 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Why a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// Connecting, writing or reading failed.
    Io(io::Error),
    /// The server answered, but not with a valid 101.
    Refused(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "io: {e}"),
            HandshakeError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// Connect and run the opening handshake on `path`. Returns the stream and
/// any bytes the server sent after its response head.
pub fn connect(
    addr: SocketAddr,
    path: &str,
    rng: &mut Rng,
    timeout: Duration,
) -> Result<(TcpStream, Vec<u8>), HandshakeError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let leftover = handshake(&mut stream, addr, path, rng)?;
    Ok((stream, leftover))
}

/// The opening handshake on a connected blocking stream.
pub fn handshake(
    stream: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    rng: &mut Rng,
) -> Result<Vec<u8>, HandshakeError> {
    handshake_offering(stream, addr, path, rng, None).map(|(leftover, _)| leftover)
}

/// The opening handshake, offering `extensions` (a `Sec-WebSocket-Extensions`
/// value) when given; returns the bytes after the response head and the
/// response's `Sec-WebSocket-Extensions` value, if any.
pub fn handshake_offering(
    stream: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    rng: &mut Rng,
    extensions: Option<&str>,
) -> Result<(Vec<u8>, Option<String>), HandshakeError> {
    let nonce: [u8; 16] = {
        let (a, b) = (rng.next_u64(), rng.next_u64());
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&a.to_le_bytes());
        n[8..].copy_from_slice(&b.to_le_bytes());
        n
    };
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
        offer = extensions.map_or(String::new(), |e| format!(
            "Sec-WebSocket-Extensions: {e}\r\n"
        ))
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(HandshakeError::Refused("closed before a response".into()));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = find(&head, b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > 8192 {
            return Err(HandshakeError::Refused("response head over 8 KiB".into()));
        }
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let status_line = text.lines().next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.1 101") {
        return Err(HandshakeError::Refused(status_line.to_owned()));
    }
    let expected = accept_key(&key);
    let accepted = text.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        })
    });
    if !accepted {
        return Err(HandshakeError::Refused("wrong Sec-WebSocket-Accept".into()));
    }
    let agreed = text.lines().find_map(|line| {
        line.split_once(':')
            .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, value)| value.trim().to_owned())
    });
    Ok((head[end..].to_vec(), agreed))
}

/// The first position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Opcodes of RFC 6455 5.2.
pub mod op {
    /// Continuation frame.
    pub const CONT: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xA;
}

/// XOR `data` with `key`, `data[0]` lining up with `key[offset % 4]`.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut rotated = [0u8; 4];
    for (i, byte) in rotated.iter_mut().enumerate() {
        *byte = key[(offset + i) % 4];
    }
    let word = u32::from_ne_bytes(rotated) as u64;
    let wide = (word << 32 | word).to_ne_bytes();
    let wide = u64::from_ne_bytes(wide);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut v = [0u8; 8];
        v.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(v) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

/// Append one masked client frame (FIN set) carrying `parts` concatenated.
pub fn write_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, parts: &[&[u8]], key: [u8; 4]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    for part in parts {
        out.extend_from_slice(part);
    }
    apply_mask(&mut out[start..], key, 0);
}

/// A mask key from the generator.
pub fn mask_key(rng: &mut Rng) -> [u8; 4] {
    (rng.next_u64() as u32).to_ne_bytes()
}

/// A server frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: u8,
    /// Header length in bytes.
    pub header_len: usize,
    /// Payload length in bytes.
    pub payload_len: usize,
}

/// What is wrong with the bytes the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// RFC 6455 5.1: "A server MUST NOT mask any frames".
    Masked,
    /// RSV bits without an extension.
    Reserved,
    /// A length over what the generator accepts.
    TooLong(u64),
}

/// Parse a frame header from the start of `bytes`; `Ok(None)`: incomplete.
pub fn parse_header(bytes: &[u8], max_payload: usize) -> Result<Option<Header>, FrameError> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    if bytes[0] & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    if bytes[1] & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (payload_len, header_len) = match bytes[1] & 0x7F {
        126 => {
            if bytes.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([bytes[2], bytes[3]]) as u64, 4)
        }
        127 => {
            if bytes.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if payload_len > max_payload as u64 {
        return Err(FrameError::TooLong(payload_len));
    }
    Ok(Some(Header {
        fin: bytes[0] & 0x80 != 0,
        opcode: bytes[0] & 0x0F,
        header_len,
        payload_len: payload_len as usize,
    }))
}

/// A complete message or control frame read from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A whole data message; the payload is the range the callback is given.
    Data(u8),
    /// A ping with its payload.
    Ping,
    /// A pong.
    Pong,
    /// A Close frame.
    Close,
}

/// A receive buffer that turns server bytes into messages, reassembling
/// fragmented ones. Complete single-frame messages are handed out without
/// a copy.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_payload: usize,
    fragments: Vec<u8>,
    fragment_op: Option<u8>,
}

impl Reader {
    /// A reader for messages up to `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        let cap = (max_payload + 14).clamp(4096, 256 * 1024);
        Reader {
            buf: vec![0; cap],
            start: 0,
            end: 0,
            max_payload,
            fragments: Vec::new(),
            fragment_op: None,
        }
    }

    /// Bytes that arrived with the handshake response.
    pub fn push(&mut self, bytes: &[u8]) {
        let space = self.space(bytes.len());
        space[..bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Room to read at least `want` bytes into; call [`Self::filled`] after.
    pub fn space(&mut self, want: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < want.max(1) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < want.max(1) {
                let grown = (self.end + want.max(4096)).max(self.buf.len() * 2);
                self.buf.resize(grown, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Record `n` bytes read into [`Self::space`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Read once from `stream`; `Ok(0)` is EOF.
    pub fn read_from(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        let n = stream.read(self.space(16 * 1024))?;
        self.filled(n);
        Ok(n)
    }

    /// The next complete message, given to `f` with its payload. Returns
    /// `Ok(None)` when more bytes are needed.
    pub fn next<R>(
        &mut self,
        mut f: impl FnMut(Incoming, &[u8]) -> R,
    ) -> Result<Option<R>, FrameError> {
        loop {
            let Some(header) = parse_header(&self.buf[self.start..self.end], self.max_payload)?
            else {
                return Ok(None);
            };
            let total = header.header_len + header.payload_len;
            if self.end - self.start < total {
                // Make sure the whole frame will fit.
                let _ = self.space(total - (self.end - self.start));
                return Ok(None);
            }
            let payload_at = self.start + header.header_len;
            self.start += total;
            let payload = &self.buf[payload_at..payload_at + header.payload_len];
            match header.opcode {
                op::PING => return Ok(Some(f(Incoming::Ping, payload))),
                op::PONG => return Ok(Some(f(Incoming::Pong, payload))),
                op::CLOSE => return Ok(Some(f(Incoming::Close, payload))),
                op::CONT => {
                    let Some(kind) = self.fragment_op else {
                        return Ok(Some(f(Incoming::Close, &[])));
                    };
                    self.fragments.extend_from_slice(payload);
                    if self.fragments.len() > self.max_payload {
                        return Err(FrameError::TooLong(self.fragments.len() as u64));
                    }
                    if header.fin {
                        self.fragment_op = None;
                        let whole = std::mem::take(&mut self.fragments);
                        let r = f(Incoming::Data(kind), &whole);
                        self.fragments = whole;
                        self.fragments.clear();
                        return Ok(Some(r));
                    }
                }
                kind => {
                    if header.fin {
                        return Ok(Some(f(Incoming::Data(kind), payload)));
                    }
                    self.fragment_op = Some(kind);
                    self.fragments.clear();
                    self.fragments.extend_from_slice(payload);
                }
            }
        }
    }
}

/// A masked Close frame with code 1000.
pub fn close_frame(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    write_frame(
        &mut out,
        true,
        op::CLOSE,
        &[&1000u16.to_be_bytes()],
        mask_key(rng),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc_masked_hello() {
        let mut out = Vec::new();
        write_frame(
            &mut out,
            true,
            op::TEXT,
            &[b"Hel", b"lo"],
            [0x37, 0xfa, 0x21, 0x3d],
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn mask_offsets_agree() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..37).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut split = data.clone();
        apply_mask(&mut split[..5], key, 0);
        apply_mask(&mut split[5..], key, 5);
        assert_eq!(whole, split);
    }

    #[test]
    fn reader_reassembles() {
        let mut r = Reader::new(1000);
        r.push(&[0x01, 0x02, b'a', b'b', 0x89, 0x01, b'p', 0x80, 0x01, b'c']);
        r.push(&[0x82, 0x7E, 0x00, 0x03, 1, 2, 3]);
        let mut got = Vec::new();
        while let Some(()) = r.next(|kind, p| got.push((kind, p.to_vec()))).unwrap() {}
        assert_eq!(
            got,
            vec![
                (Incoming::Ping, b"p".to_vec()),
                (Incoming::Data(op::TEXT), b"abc".to_vec()),
                (Incoming::Data(op::BINARY), vec![1, 2, 3]),
            ]
        );
        assert_eq!(r.next(|_, _| ()), Ok(None));
        r.push(&[0x82, 0x80]);
        assert_eq!(r.next(|_, _| ()), Err(FrameError::Masked));
    }
}
