//! Malformed frames on raw sockets against the real binary: every rule of
//! RFC 6455 sections 5 and 7 a client can break, and the close code each
//! one earns. After the server's Close the test answers with its own and
//! checks that the server then closes TCP (RFC 6455 7.1.1).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use common::{client_frame, raw_upgrade, read_close_code, read_frame, Server};

/// Send `bytes` on a fresh `/echo` connection and expect a Close with `code`,
/// then finish the closing handshake and expect TCP to close.
fn expect_close(server: &Server, what: &str, bytes: &[u8], code: u16) {
    let mut stream = raw_upgrade(server, "/echo");
    stream.write_all(bytes).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(code), "{what}");
    finish_close(&mut stream, what);
}

/// Answer the server's Close and wait for the server to close TCP.
fn finish_close(stream: &mut TcpStream, what: &str) {
    // The server may already have closed after a frame it could not parse;
    // a failed write is fine, a connection left open is not.
    let _ = stream.write_all(&client_frame(0x88, &1000u16.to_be_bytes()));
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: the server did not close TCP: {e}"),
    }
}

#[test]
fn unmasked_frame_is_1002() {
    let server = Server::start(&[]);
    // RFC 6455 5.1: "The server MUST close the connection upon receiving a
    // frame that is not masked."
    expect_close(&server, "unmasked text", &[0x81, 0x02, b'h', b'i'], 1002);
    expect_close(&server, "unmasked ping", &[0x89, 0x00], 1002);
}

#[test]
fn rsv_bits_are_1002() {
    let server = Server::start(&[]);
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        expect_close(
            &server,
            &format!("RSV {rsv:#x}"),
            &client_frame(0x80 | rsv | 0x1, b"x"),
            1002,
        );
    }
    // On a control frame too.
    expect_close(
        &server,
        "RSV on ping",
        &client_frame(0x80 | 0x40 | 0x9, b""),
        1002,
    );
}

#[test]
fn reserved_opcodes_are_1002() {
    let server = Server::start(&[]);
    for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        expect_close(
            &server,
            &format!("opcode {opcode:#x}"),
            &client_frame(0x80 | opcode, b""),
            1002,
        );
    }
}

#[test]
fn control_frame_over_125_bytes_is_1002() {
    let server = Server::start(&[]);
    for opcode in [0x8, 0x9, 0xA] {
        let mut payload = vec![b'p'; 126];
        if opcode == 0x8 {
            payload[..2].copy_from_slice(&1000u16.to_be_bytes());
        }
        expect_close(
            &server,
            &format!("opcode {opcode:#x}"),
            &client_frame(0x80 | opcode, &payload),
            1002,
        );
    }
}

#[test]
fn fragmented_control_frame_is_1002() {
    let server = Server::start(&[]);
    expect_close(&server, "ping without FIN", &client_frame(0x09, b"p"), 1002);
    expect_close(&server, "pong without FIN", &client_frame(0x0A, b"p"), 1002);
    expect_close(
        &server,
        "close without FIN",
        &client_frame(0x08, &1000u16.to_be_bytes()),
        1002,
    );
    // Inside a fragmented message as well.
    let mut bytes = client_frame(0x01, b"start");
    bytes.extend(client_frame(0x09, b"p"));
    expect_close(&server, "fragmented ping inside a message", &bytes, 1002);
}

#[test]
fn continuation_without_a_start_is_1002() {
    let server = Server::start(&[]);
    expect_close(
        &server,
        "final continuation",
        &client_frame(0x80, b"x"),
        1002,
    );
    expect_close(
        &server,
        "non-final continuation",
        &client_frame(0x00, b"x"),
        1002,
    );
    // Also right after a complete message.
    let mut bytes = client_frame(0x81, b"whole");
    bytes.extend(client_frame(0x80, b"x"));
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&bytes).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x81, b"whole".to_vec()));
    assert_eq!(read_close_code(&mut stream), Some(1002));
    finish_close(&mut stream, "continuation after a message");
}

#[test]
fn new_message_during_a_fragmented_one_is_1002() {
    let server = Server::start(&[]);
    for (first, second) in [(0x01, 0x81), (0x01, 0x82), (0x02, 0x01), (0x02, 0x82)] {
        let mut bytes = client_frame(first, b"a");
        bytes.extend(client_frame(second, b"b"));
        expect_close(
            &server,
            &format!("{first:#x} then {second:#x}"),
            &bytes,
            1002,
        );
    }
}

#[test]
fn length_with_its_high_bit_set_is_1002() {
    let server = Server::start(&[]);
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    bytes.extend_from_slice(&[0; 5]);
    expect_close(&server, "64-bit length with MSB set", &bytes, 1002);
}

#[test]
fn non_minimal_length_is_1002() {
    let server = Server::start(&[]);
    // RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the
    // length": 5 bytes in a 16-bit and in a 64-bit length.
    let mut sixteen = vec![0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4];
    sixteen.extend_from_slice(b"hello");
    expect_close(&server, "16-bit length for 5 bytes", &sixteen, 1002);
    let mut sixty_four = vec![0x81, 0x80 | 127];
    sixty_four.extend_from_slice(&5u64.to_be_bytes());
    sixty_four.extend_from_slice(&[1, 2, 3, 4]);
    sixty_four.extend_from_slice(b"hello");
    expect_close(&server, "64-bit length for 5 bytes", &sixty_four, 1002);
}

#[test]
fn invalid_close_payloads_are_1002() {
    let server = Server::start(&[]);
    // RFC 6455 7.4.1 and 7.4.2: 1005, 1006 and 1015 are never sent, 0-999
    // are not used, 1016-2999 are unassigned, 5000 and up do not exist.
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        expect_close(
            &server,
            &format!("close code {code}"),
            &client_frame(0x88, &code.to_be_bytes()),
            1002,
        );
    }
    expect_close(
        &server,
        "1-byte close payload",
        &client_frame(0x88, &[0x03]),
        1002,
    );
}

#[test]
fn close_reason_that_is_not_utf8_is_1007() {
    let server = Server::start(&[]);
    expect_close(
        &server,
        "close reason \\xff",
        &client_frame(0x88, b"\x03\xe8ok\xff"),
        1007,
    );
}

#[test]
fn invalid_utf8_text_is_1007() {
    let server = Server::start(&[]);
    for (what, payload) in [
        ("lone continuation byte", &b"\x80"[..]),
        ("0xFF", b"abc\xff"),
        ("overlong encoding", b"\xc0\xaf"),
        ("UTF-16 surrogate", b"\xed\xa0\x80"),
        ("past U+10FFFF", b"\xf4\x90\x80\x80"),
        ("cut-off code point", b"ok\xce"),
    ] {
        expect_close(&server, what, &client_frame(0x81, payload), 1007);
    }
}

#[test]
fn invalid_utf8_across_fragments_is_1007() {
    let server = Server::start(&[]);
    // A code point left unfinished by the last fragment.
    let mut cut = client_frame(0x01, b"ok");
    cut.extend(client_frame(0x80, b"\xce"));
    expect_close(&server, "cut at the end", &cut, 1007);
    // A code point whose continuation is wrong in the next fragment.
    let mut wrong = client_frame(0x01, b"ok\xce");
    wrong.extend(client_frame(0x80, b"a"));
    expect_close(
        &server,
        "bad continuation in the next fragment",
        &wrong,
        1007,
    );
}

#[test]
fn invalid_utf8_fails_fast_before_the_frame_is_complete() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    // "κόσμε" then U+110000 (invalid from its second byte) then "edite".
    let payload =
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65";
    assert_eq!(payload.len(), 20);
    let frame = client_frame(0x81, payload);
    let header_len = 2 + 4;
    // The header of the 20-byte frame, and the payload up to and including
    // the first byte that can no longer be UTF-8.
    let (sent, rest) = frame.split_at(header_len + 13);
    stream.write_all(sent).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1007));
    // Only now does the rest of the frame go out.
    let _ = stream.write_all(rest);
    finish_close(&mut stream, "fail-fast UTF-8");
}

#[test]
fn valid_text_up_to_the_bad_byte_is_not_echoed() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    let mut bytes = client_frame(0x81, b"fine");
    bytes.extend(client_frame(0x81, b"almost\xff"));
    bytes.extend(client_frame(0x81, b"never echoed"));
    stream.write_all(&bytes).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x81, b"fine".to_vec()));
    // The next frame is the Close: nothing of the bad message, nothing after.
    let (b0, payload) = read_frame(&mut stream).unwrap();
    assert_eq!(b0, 0x88);
    assert_eq!(&payload[..2], &1007u16.to_be_bytes());
    finish_close(&mut stream, "after the bad text");
}

#[test]
fn the_server_close_carries_a_utf8_reason() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&client_frame(0x80 | 0x3, b"")).unwrap();
    let (b0, payload) = read_frame(&mut stream).unwrap();
    assert_eq!(b0, 0x88, "a Close with FIN set");
    assert!(payload.len() <= 125);
    assert_eq!(&payload[..2], &1002u16.to_be_bytes());
    assert!(std::str::from_utf8(&payload[2..]).is_ok());
    finish_close(&mut stream, "reason");
}

#[test]
fn data_after_the_server_close_is_ignored() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&client_frame(0x81, b"\xff")).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1007));
    // Not echoed, not answered: the next thing is the end of the stream.
    let mut late = client_frame(0x81, b"late");
    late.extend(client_frame(0x89, b"ping"));
    late.extend(client_frame(0x88, &1002u16.to_be_bytes()));
    stream.write_all(&late).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "the server sent {rest:?} after its Close"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close TCP: {e}"),
    }
}

#[test]
fn frames_split_into_single_bytes_are_reassembled() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    let mut bytes = client_frame(0x01, "κό".as_bytes());
    bytes.extend(client_frame(0x89, b"in between"));
    bytes.extend(client_frame(0x80, "σμε".as_bytes()));
    for byte in bytes {
        stream.write_all(&[byte]).unwrap();
    }
    assert_eq!(
        read_frame(&mut stream).unwrap(),
        (0x8A, b"in between".to_vec())
    );
    assert_eq!(
        read_frame(&mut stream).unwrap(),
        (0x81, "κόσμε".as_bytes().to_vec())
    );
}

#[test]
fn binary_on_echo_may_hold_any_bytes() {
    let server = Server::start(&[]);
    let mut stream = raw_upgrade(&server, "/echo");
    let data: Vec<u8> = (0..=255).collect();
    stream.write_all(&client_frame(0x82, &data)).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x82, data));
}
