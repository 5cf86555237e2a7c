//! The stack-size probe's workload: every path through a SocketBox server
//! that could need a deep stack, driven once, with the answers checked.
//! `/echo`: a 16 MiB message, a fragmented 1 MiB text with a ping inside,
//! pipelined bursts, every failure path (bad UTF-8, too big, bad close).
//! `/ws`: AUTH with and without valid tokens, PEER and BROADCAST whose data
//! nests as deep as the lax JSON parser allows (and one level deeper),
//! strings holding JSON, a message of exactly the limit and one byte over,
//! binary on `/ws`, and the HTTP routes and `/api/*`.
//!
//! A server whose connection threads have too small a stack dies on one of
//! these (Rust prints "has overflowed its stack" and aborts with SIGSEGV);
//! the caller checks that the process is still alive afterwards.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::ws::{self, op, Incoming, Rng};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Client {
    stream: TcpStream,
    reader: ws::Reader,
    rng: Rng,
}

type Check = Result<(), String>;

impl Client {
    fn open(addr: SocketAddr, path: &str, rng: &mut Rng) -> Result<Client, String> {
        let (stream, leftover) =
            ws::connect(addr, path, rng, TIMEOUT).map_err(|e| e.to_string())?;
        let mut reader = ws::Reader::new(17 << 20);
        reader.push(&leftover);
        Ok(Client {
            stream,
            reader,
            rng: Rng::new(rng.next_u64()),
        })
    }

    fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Check {
        let mut out = Vec::with_capacity(payload.len() + 14);
        ws::write_frame(
            &mut out,
            fin,
            opcode,
            &[payload],
            ws::mask_key(&mut self.rng),
        );
        self.stream.write_all(&out).map_err(|e| e.to_string())
    }

    fn text(&mut self, text: &str) -> Check {
        self.frame(true, op::TEXT, text.as_bytes())
    }

    fn recv(&mut self) -> Result<(Incoming, Vec<u8>), String> {
        loop {
            if let Some(got) = self
                .reader
                .next(|kind, payload| (kind, payload.to_vec()))
                .map_err(|e| format!("{e:?}"))?
            {
                return Ok(got);
            }
            match self.reader.read_from(&mut self.stream) {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The next JSON message, skipping presence (20001) and server pings.
    fn json(&mut self) -> Result<Value, String> {
        loop {
            let (kind, payload) = self.recv()?;
            match kind {
                Incoming::Data(op::TEXT) => {
                    let value: Value =
                        serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                    let presence = value["code"] == 988 && value["extend"]["code"] == 20001;
                    if presence || value["code"] == 476 {
                        continue;
                    }
                    return Ok(value);
                }
                Incoming::Close => return Err(format!("closed: {}", close_code(&payload))),
                Incoming::Ping | Incoming::Pong => {}
                Incoming::Data(other) => return Err(format!("opcode {other}")),
            }
        }
    }

    /// Read until a Close frame; its code.
    fn close_code(&mut self) -> Result<u16, String> {
        loop {
            let (kind, payload) = self.recv()?;
            if kind == Incoming::Close {
                return Ok(close_code(&payload));
            }
        }
    }
}

fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}

fn expect(what: bool, why: impl FnOnce() -> String) -> Check {
    if what {
        Ok(())
    } else {
        Err(why())
    }
}

/// HMAC-SHA1 (RFC 2104).
fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..20].copy_from_slice(&sha1_smol::Sha1::from(key).digest().bytes());
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha1_smol::Sha1::new();
    inner.update(&block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = sha1_smol::Sha1::new();
    outer.update(&block.map(|b| b ^ 0x5c));
    outer.update(&inner.digest().bytes());
    outer.digest().bytes()
}

/// An AUTH token for `id` (PROTOCOL.md "Authentication").
fn token(secret: &str, id: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 3600;
    let mac = hmac_sha1(secret.as_bytes(), format!("{id}.{exp}").as_bytes());
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("{exp}.{hex}")
}

fn auth(client: &mut Client, id: &str, secret: Option<&str>) -> Check {
    let mut request = json!({"code": 10000, "id": id});
    if let Some(secret) = secret {
        request["token"] = Value::String(token(secret, id));
    }
    client.text(&request.to_string())?;
    let answer = client.json()?;
    expect(
        answer["code"] == 988
            && answer["extend"]["code"] == 20002
            && answer["extend"]["mess"] == true,
        || format!("AUTH answer {answer}"),
    )
}

pub(crate) fn http(addr: SocketAddr, request: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))?;
    Ok((status, text))
}

/// Nested lax-JSON objects: `{'k':{'k':...1...}}`, `depth` levels.
fn nested_objects(depth: usize) -> String {
    format!("{}1{}", "{'k':".repeat(depth), "}".repeat(depth))
}

/// Nested arrays, `depth` levels.
fn nested_arrays(depth: usize) -> String {
    format!("{}\"deep\"{}", "[".repeat(depth), "]".repeat(depth))
}

struct Probe {
    addr: SocketAddr,
    rng: Rng,
    secret: Option<String>,
    admin: Option<String>,
    passed: usize,
    failed: usize,
    /// Connections kept open to the end, so that their threads (and the
    /// stack pages they touched) are still there when the stacks are read.
    keep: Vec<Client>,
    /// Run only the checks whose name starts with this.
    only: Option<String>,
}

impl Probe {
    fn run(&mut self, name: &str, check: impl FnOnce(&mut Probe) -> Check) {
        if self
            .only
            .as_ref()
            .is_some_and(|only| !name.starts_with(only.as_str()))
        {
            return;
        }
        match check(self) {
            Ok(()) => {
                self.passed += 1;
                println!("  ok   {name}");
            }
            Err(why) => {
                self.failed += 1;
                println!("  FAIL {name}: {why}");
            }
        }
    }

    fn client(&mut self, path: &str) -> Result<Client, String> {
        Client::open(self.addr, path, &mut self.rng)
    }

    fn user(&mut self, path: &str, id: &str) -> Result<Client, String> {
        let mut client = self.client(path)?;
        let secret = self.secret.clone();
        auth(&mut client, id, secret.as_deref())?;
        Ok(client)
    }
}

/// Drive every path once; prints one line per check, then calls `before_close`
/// while the connections that are still open are held, and returns (passed,
/// failed).
pub fn run(
    addr: SocketAddr,
    secret: Option<String>,
    admin: Option<String>,
    only: Option<String>,
    before_close: impl FnOnce(),
) -> (usize, usize) {
    let mut p = Probe {
        addr,
        rng: Rng::new(0x57ac),
        secret,
        admin,
        passed: 0,
        failed: 0,
        keep: Vec::new(),
        only,
    };
    p.run("echo: 16 MiB binary message", |p| {
        let mut c = p.client("/echo")?;
        let payload: Vec<u8> = (0..16usize << 20)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        c.frame(true, op::BINARY, &payload)?;
        let (kind, got) = c.recv()?;
        expect(kind == Incoming::Data(op::BINARY) && got == payload, || {
            "echo differs".into()
        })?;
        p.keep.push(c);
        Ok(())
    });
    p.run("echo: 1 MiB text in 64 fragments with a ping inside", |p| {
        let mut c = p.client("/echo")?;
        let text = "κόσμε ".repeat((1 << 20) / "κόσμε ".len());
        let bytes = text.as_bytes();
        let pieces = bytes.chunks(bytes.len().div_ceil(64)).collect::<Vec<_>>();
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 { op::TEXT } else { op::CONT };
            c.frame(i + 1 == pieces.len(), opcode, piece)?;
            if i == 10 {
                c.frame(true, op::PING, &[b'p'; 125])?;
            }
        }
        let (kind, got) = c.recv()?;
        expect(kind == Incoming::Pong && got == [b'p'; 125], || {
            format!("{kind:?} first")
        })?;
        let (kind, got) = c.recv()?;
        expect(kind == Incoming::Data(op::TEXT) && got == bytes, || {
            "echo differs".into()
        })?;
        p.keep.push(c);
        Ok(())
    });
    p.run("echo: 4000 pipelined 1 KiB messages", |p| {
        let c = p.client("/echo")?;
        let mut writer = c.stream.try_clone().map_err(|e| e.to_string())?;
        let mut rng = Rng::new(5);
        let send = std::thread::spawn(move || {
            let mut out = Vec::new();
            for i in 0..4000u32 {
                let mut payload = vec![(i % 251) as u8; 1024];
                payload[..4].copy_from_slice(&i.to_le_bytes());
                ws::write_frame(
                    &mut out,
                    true,
                    op::BINARY,
                    &[&payload],
                    ws::mask_key(&mut rng),
                );
            }
            writer.write_all(&out)
        });
        let mut c = c;
        for i in 0..4000u32 {
            let (kind, got) = c.recv()?;
            let ok = kind == Incoming::Data(op::BINARY)
                && got.len() == 1024
                && got[..4] == i.to_le_bytes()
                && got[4..].iter().all(|&b| b == (i % 251) as u8);
            expect(ok, || format!("message {i} differs"))?;
        }
        send.join()
            .map_err(|_| "writer panicked".to_string())?
            .map_err(|e| e.to_string())?;
        p.keep.push(c);
        Ok(())
    });
    p.run("echo: invalid UTF-8 fails with 1007", |p| {
        let mut c = p.client("/echo")?;
        c.frame(true, op::TEXT, b"ok \xff\xfe")?;
        let code = c.close_code()?;
        expect(code == 1007, || format!("close {code}"))
    });
    p.run(
        "echo: a header over --echo-max-message fails with 1009",
        |p| {
            let mut c = p.client("/echo")?;
            let mut out = vec![0x82, 0xFF];
            out.extend_from_slice(&((16u64 << 20) + 1).to_be_bytes());
            out.extend_from_slice(&[1, 2, 3, 4]);
            c.stream.write_all(&out).map_err(|e| e.to_string())?;
            let code = c.close_code()?;
            expect(code == 1009, || format!("close {code}"))
        },
    );
    p.run("echo: reserved opcode fails with 1002", |p| {
        let mut c = p.client("/echo")?;
        c.frame(true, 0x3, b"x")?;
        let code = c.close_code()?;
        expect(code == 1002, || format!("close {code}"))
    });
    p.run("echo: Close with a 123-byte reason is answered", |p| {
        let mut c = p.client("/echo")?;
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&[b'r'; 123]);
        c.frame(true, op::CLOSE, &payload)?;
        let code = c.close_code()?;
        expect(code == 1000, || format!("close {code}"))
    });
    p.run("ws: AUTH, PING, PEER and BROADCAST with deep data", |p| {
        let mut a = p.user("/ws", "probe-a")?;
        let mut b = p.user("/ws", "probe-b")?;
        a.text("{'code':10015}")?;
        let pong = a.json()?;
        expect(pong["code"] == 732, || format!("PING answer {pong}"))?;
        // laxjson allows 64 levels; the envelope takes one, data the rest.
        a.text(&format!(
            "{{'code':10002,'data':{{'to':'probe-b','x':{}}}}}",
            nested_objects(62)
        ))?;
        let got = b.json()?;
        expect(got["body"]["type"] == 30001, || {
            format!("PEER delivery {got}")
        })?;
        for data in [nested_arrays(63), nested_objects(63)] {
            a.text(&format!("{{\"code\":10003,\"data\":{data}}}"))?;
            let got = b.json()?;
            expect(got["body"]["type"] == 30002, || {
                format!("BROADCAST delivery {got}")
            })?;
        }
        // A JSON text in a `data` string is a text of its own: 64 levels.
        let inner = serde_json::to_string(&nested_arrays(64)).map_err(|e| e.to_string())?;
        a.text(&format!("{{\"code\":10003,\"data\":{inner}}}"))?;
        let got = b.json()?;
        expect(got["body"]["type"] == 30002, || {
            format!("string data delivery {got}")
        })?;
        a.text(&format!(
            "{{'code':10003,'data':'{}1{}'}}",
            "[".repeat(64),
            "]".repeat(64)
        ))?;
        let got = b.json()?;
        expect(got["body"]["type"] == 30002, || {
            format!("lax string data {got}")
        })?;
        a.text(&format!(
            "{{\"code\":10003,\"data\":{}}}",
            nested_arrays(70)
        ))?;
        let got = a.json()?;
        expect(got["code"] == 1244, || format!("too deep: {got}"))?;
        a.text(&format!("{{'code':10003,'data':{}}}", "[".repeat(60_000)))?;
        let got = a.json()?;
        expect(got["code"] == 1244, || format!("60000 brackets: {got}"))?;
        a.text("{'code':12345}")?;
        let got = a.json()?;
        expect(got["extend"]["code"] == 40001, || {
            format!("unknown code: {got}")
        })?;
        a.text("not json at all")?;
        let got = a.json()?;
        expect(got["extend"]["code"] == 40000, || {
            format!("not JSON: {got}")
        })?;
        a.text("{'code':10002,'data':{'to':'nobody-here'}}")?;
        let got = a.json()?;
        expect(got["extend"]["code"] == 40400, || {
            format!("offline peer: {got}")
        })?;
        a.text("{'code':10000,'id':'someone-else'}")?;
        let got = a.json()?;
        expect(got["extend"]["code"] == 40900, || {
            format!("second AUTH: {got}")
        })?;
        let envelope = "{\"code\":10003,\"data\":\"\"}".len();
        let exact = format!(
            "{{\"code\":10003,\"data\":\"{}\"}}",
            "é".repeat((65536 - envelope) / 2)
        );
        let exact = if exact.len() < 65536 {
            exact.replace("\"code\"", " \"code\"")
        } else {
            exact
        };
        expect(exact.len() == 65536, || {
            format!("test bug: {} bytes", exact.len())
        })?;
        a.text(&exact)?;
        let got = b.json()?;
        expect(got["body"]["type"] == 30002, || {
            format!("65536-byte message: {got}")
        })?;
        p.keep.push(a);
        p.keep.push(b);
        let mut f = p.user("/ws", "probe-f")?;
        let over = format!("{exact} ");
        f.text(&over)?;
        let got = f.json()?;
        expect(got["extend"]["code"] == 41300, || {
            format!("65537 bytes: {got}")
        })?;
        let code = f.close_code()?;
        expect(code == 1009, || format!("close {code}"))
    });
    p.run("ws: PEER before AUTH gets 1500", |p| {
        let mut c = p.client("/ws")?;
        c.text("{'code':10002,'data':{'to':'probe-b'}}")?;
        let got = c.json()?;
        expect(got["code"] == 1500, || format!("{got}"))
    });
    p.run("ws: binary is closed with 1003", |p| {
        let mut c = p.user("/ws", "probe-c")?;
        c.frame(true, op::BINARY, b"\x00\x01")?;
        let code = c.close_code()?;
        expect(code == 1003, || format!("close {code}"))
    });
    if let Some(secret) = p.secret.clone() {
        p.run("ws: a bad token gets false, 40101, close 1008", |p| {
            let mut c = p.client("/ws")?;
            let bad = token(&format!("{secret}x"), "probe-d");
            c.text(&json!({"code": 10000, "id": "probe-d", "token": bad}).to_string())?;
            let first = c.json()?;
            expect(first["extend"]["mess"] == false, || format!("{first}"))?;
            let second = c.json()?;
            expect(second["extend"]["code"] == 40101, || format!("{second}"))?;
            let code = c.close_code()?;
            expect(code == 1008, || format!("close {code}"))
        });
    }
    p.run("http: healthz, metrics, 404, 426, bad upgrade", |p| {
        let addr = p.addr;
        let (status, _) = http(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
        expect(status == 200, || format!("healthz {status}"))?;
        let (status, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        expect(status == 200 && body.contains("socketbox_threads"), || format!("metrics {status}"))?;
        let (status, _) = http(addr, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")?;
        expect(status == 404, || format!("unknown path {status}"))?;
        let (status, _) = http(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")?;
        expect(status == 426, || format!("plain GET /ws {status}"))?;
        let (status, _) = http(
            addr,
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )?;
        expect(status == 400, || format!("upgrade without a key {status}"))
    });
    if let Some(admin) = p.admin.clone() {
        p.run("api: online, push, broadcast with deep data", |p| {
            let mut listener = p.user("/ws", "probe-e")?;
            let addr = p.addr;
            let post = |path: &str, body: &str| {
                http(
                    addr,
                    &format!(
                        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                )
            };
            let (status, body) = http(
                addr,
                &format!(
                    "GET /api/online HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\r\n"
                ),
            )?;
            expect(status == 200 && body.contains("probe-e"), || {
                format!("online {status}")
            })?;
            let (status, _) = post(
                "/api/push",
                &format!(
                    "{{\"to\":\"probe-e\",\"data\":{}}}",
                    nested_objects(63).replace('\'', "\"")
                ),
            )?;
            expect(status == 200, || format!("push {status}"))?;
            let got = listener.json()?;
            expect(got["body"]["type"] == 30003, || {
                format!("push delivery {got}")
            })?;
            let (status, _) = post(
                "/api/broadcast",
                &format!("{{\"data\":{}}}", nested_arrays(63)),
            )?;
            expect(status == 200, || format!("broadcast {status}"))?;
            let got = listener.json()?;
            expect(got["body"]["type"] == 30003, || {
                format!("broadcast delivery {got}")
            })?;
            p.keep.push(listener);
            Ok(())
        });
    }
    if let Some(admin) = p.admin.clone() {
        let addr = p.addr;
        let post = move |body: String| {
            http(
                addr,
                &format!(
                    "POST /api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            )
        };
        let deep = post.clone();
        p.run(
            "api: broadcast of data nested 64 deep (one past the limit)",
            move |_| {
                let (status, _) = deep(format!("{{\"data\":{}}}", nested_arrays(64)))?;
                expect(status == 400, || format!("status {status}"))
            },
        );
        p.run("api: broadcast of 100000 open brackets", move |_| {
            let (status, _) = post(format!("{{\"data\":{}}}", "[".repeat(100_000)))?;
            expect(status == 400, || format!("status {status}"))
        });
    }
    // Let the writer threads finish what they were sending.
    std::thread::sleep(Duration::from_millis(300));
    before_close();
    (p.passed, p.failed)
}
