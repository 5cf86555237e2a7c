//! `/echo` against the real binary with an independent client (tungstenite):
//! text and binary at the sizes where the frame length encoding changes,
//! large messages, fragmentation with interleaved pings, the closing
//! handshake, ping and pong, and `--echo-max-message`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use common::{client_frame, raw_upgrade, read_close_code, read_frame, Server};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// The sizes where the length encoding changes (RFC 6455 5.2: 7-bit up to
/// 125, 16-bit up to 65535, 64-bit past it), and a mebibyte.
const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1 << 20];

/// Exactly `len` bytes of UTF-8 mixing 1- to 4-byte characters, so that
/// code points straddle the server's read chunks.
fn text_of_len(len: usize) -> String {
    const PIECES: [&str; 5] = ["a", "κ", "€", "😀", "z"];
    let mut text = String::with_capacity(len);
    for piece in PIECES.iter().cycle() {
        if text.len() == len {
            break;
        }
        if text.len() + piece.len() <= len {
            text.push_str(piece);
        } else {
            text.push('.');
        }
    }
    text
}

fn binary_of_len(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn text_test_data_has_the_requested_lengths() {
    for len in SIZES {
        assert_eq!(text_of_len(len).len(), len);
    }
    assert!(text_of_len(100).contains('😀'));
}

#[test]
fn echoes_text_at_every_length_boundary() {
    let server = Server::start(&[]);
    let mut client = server.ws("/echo");
    for len in SIZES {
        let text = text_of_len(len);
        client.send_text(&text);
        let echoed = client.recv_text();
        assert!(echoed == text, "text of {len} bytes came back different");
    }
}

#[test]
fn echoes_binary_at_every_length_boundary() {
    let server = Server::start(&[]);
    let mut client = server.ws("/echo");
    for len in SIZES {
        let data = binary_of_len(len);
        client.socket.send(Message::binary(data.clone())).unwrap();
        match client.recv() {
            Message::Binary(echoed) => {
                assert!(echoed == data, "binary of {len} bytes came back different")
            }
            other => panic!("expected binary, got {other:?}"),
        }
    }
}

#[test]
fn echoes_16_mib_text_and_binary() {
    const LEN: usize = 16 << 20;
    let server = Server::start(&[]);
    let mut client = server.ws("/echo");
    let text = text_of_len(LEN);
    client.send_text(&text);
    assert!(
        client.recv_text() == text,
        "16 MiB text came back different"
    );
    drop(text);
    let data = binary_of_len(LEN);
    client.socket.send(Message::binary(data.clone())).unwrap();
    match client.recv() {
        Message::Binary(echoed) => assert!(echoed == data, "16 MiB binary came back different"),
        other => panic!("expected binary, got {other:?}"),
    }
}

#[test]
fn many_pipelined_messages_come_back_in_order() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    let mut burst = Vec::new();
    for i in 0..2000 {
        burst.extend(client_frame(0x81, format!("message {i}").as_bytes()));
    }
    stream.write_all(&burst).unwrap();
    for i in 0..2000 {
        let (b0, payload) = read_frame(&mut stream).unwrap();
        assert_eq!(b0, 0x81);
        assert_eq!(payload, format!("message {i}").as_bytes());
    }
}

#[test]
fn fragmented_messages_with_interleaved_pings() {
    let server = Server::start(&[]);
    let mut client = server.ws("/echo");
    let frames = [
        Message::Frame(Frame::message(
            b"Hel".to_vec(),
            OpCode::Data(Data::Text),
            false,
        )),
        Message::Ping(b"first".to_vec()),
        // "κ" (0xCE 0xBA) split across two fragments.
        Message::Frame(Frame::message(
            b"lo \xce".to_vec(),
            OpCode::Data(Data::Continue),
            false,
        )),
        Message::Ping(b"second".to_vec()),
        Message::Frame(Frame::message(
            b"\xba!".to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )),
        Message::Frame(Frame::message(
            vec![1, 2],
            OpCode::Data(Data::Binary),
            false,
        )),
        Message::Ping(Vec::new()),
        Message::Frame(Frame::message(
            Vec::new(),
            OpCode::Data(Data::Continue),
            false,
        )),
        Message::Frame(Frame::message(vec![3], OpCode::Data(Data::Continue), true)),
    ];
    for frame in frames {
        client.socket.send(frame).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        got.push(client.socket.read().unwrap());
    }
    assert_eq!(
        got,
        [
            Message::Pong(b"first".to_vec()),
            Message::Pong(b"second".to_vec()),
            Message::text("Hello κ!"),
            Message::Pong(Vec::new()),
            Message::binary(vec![1, 2, 3]),
        ]
    );
}

#[test]
fn ping_is_answered_with_a_pong_carrying_its_payload() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    for payload in [&b""[..], b"hello", &[0xAB; 125]] {
        stream.write_all(&client_frame(0x89, payload)).unwrap();
        let (b0, echoed) = read_frame(&mut stream).unwrap();
        assert_eq!(b0, 0x8A, "a pong with FIN set");
        assert_eq!(echoed, payload);
    }
}

#[test]
fn unsolicited_pong_is_ignored() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    let mut bytes = client_frame(0x8A, b"nobody asked");
    bytes.extend(client_frame(0x81, b"after"));
    stream.write_all(&bytes).unwrap();
    // The first frame back is the echo: the pong got no answer.
    assert_eq!(read_frame(&mut stream).unwrap(), (0x81, b"after".to_vec()));
}

#[test]
fn data_sent_with_the_handshake_is_echoed() {
    let server = Server::start(&[]);
    let mut stream = server.raw();
    let mut bytes = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    bytes.extend(client_frame(0x81, b"right behind the head"));
    stream.write_all(&bytes).unwrap();
    let head = common::read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        read_frame(&mut stream).unwrap(),
        (0x81, b"right behind the head".to_vec())
    );
}

/// Read from a raw socket until EOF; fails on the socket's read timeout.
fn assert_tcp_closed(stream: &mut std::net::TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "bytes after the close: {rest:?}"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close TCP: {e}"),
    }
}

#[test]
fn client_close_is_echoed_then_tcp_closes() {
    let server = Server::start(&[]);
    for code in [1000u16, 1001, 3000, 4999] {
        let mut stream = raw_upgrade(&server, "/echo");
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        stream.write_all(&client_frame(0x88, &payload)).unwrap();
        let (b0, reply) = read_frame(&mut stream).unwrap();
        assert_eq!(b0, 0x88);
        assert_eq!(reply, code.to_be_bytes(), "the close echoes the code");
        // RFC 6455 7.1.1: the server closes the TCP connection first.
        assert_tcp_closed(&mut stream);
    }
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&client_frame(0x88, b"")).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x88, Vec::new()));
    assert_tcp_closed(&mut stream);
}

#[test]
fn closing_handshake_with_tungstenite() {
    let server = Server::start(&[]);
    let mut client = server.ws("/echo");
    client.send_text("last words");
    assert_eq!(client.recv_text(), "last words");
    client
        .socket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .unwrap();
    assert_eq!(client.close_code(), Some(1000));
    match client.socket.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
    let tungstenite::stream::MaybeTlsStream::Plain(stream) = client.socket.get_mut() else {
        unreachable!("a plain TCP stream");
    };
    assert_tcp_closed(stream);
}

#[test]
fn echo_max_message_accepts_exactly_the_limit() {
    let server = Server::start(&["--echo-max-message", "1000"]);
    let mut client = server.ws("/echo");
    client.send_text(&"x".repeat(1000));
    assert_eq!(client.recv_text().len(), 1000);
    client.socket.send(Message::binary(vec![7; 1000])).unwrap();
    assert_eq!(client.recv(), Message::binary(vec![7; 1000]));
    client.send_text(&"x".repeat(1001));
    assert_eq!(client.close_code(), Some(1009));
}

#[test]
fn echo_max_message_counts_every_fragment() {
    let server = Server::start(&["--echo-max-message", "1000"]);
    let mut stream = raw_upgrade(&server, "/echo");
    let mut exact = client_frame(0x02, &[1; 600]);
    exact.extend(client_frame(0x80, &[2; 400]));
    stream.write_all(&exact).unwrap();
    let (b0, echoed) = read_frame(&mut stream).unwrap();
    assert_eq!((b0, echoed.len()), (0x82, 1000));
    let mut over = client_frame(0x02, &[1; 600]);
    over.extend(client_frame(0x00, &[2; 400]));
    over.extend(client_frame(0x80, &[3; 1]));
    stream.write_all(&over).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1009));
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    // A header announcing 1 GiB is refused at once: the server does not
    // wait for (or buffer) the payload.
    let server = Server::start(&["--echo-max-message", "1000"]);
    let mut stream = raw_upgrade(&server, "/echo");
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    stream.write_all(&header).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1009));
}

#[test]
fn idle_connection_is_closed_with_1001() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let mut stream = raw_upgrade(&server, "/echo");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1001));
}
