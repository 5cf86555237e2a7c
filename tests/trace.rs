//! `--trace` on the real binary: every frame in and out is printed on
//! stderr field by field, with what the server did with it. Frames are
//! built by hand on raw sockets so that every byte is known (the key of
//! `client_frame` is 11 22 33 44).

mod common;

use std::io::Write;

use common::{client_frame, raw_upgrade, read_close_code, read_frame, Server, StderrLog};

/// Every block of the trace: a frame's first line without its `[peer path]`
/// label, then its indented field lines.
fn blocks(log: &StderrLog) -> Vec<Vec<String>> {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in log.contents().lines() {
        match (line.starts_with("    "), blocks.last_mut()) {
            (true, Some(block)) => block.push(line.to_owned()),
            _ => {
                let head = line.split_once("] ").map_or(line, |(_, head)| head);
                blocks.push(vec![head.to_owned()]);
            }
        }
    }
    blocks
}

/// The first block whose first line contains `first_line`, once it is there.
fn block(log: &StderrLog, first_line: &str) -> Vec<String> {
    assert!(
        log.wait_for(first_line),
        "no {first_line:?} in the trace:\n{}",
        log.contents()
    );
    blocks(log)
        .into_iter()
        .find(|block| block[0].contains(first_line))
        .expect("the block")
}

#[test]
fn echo_traces_a_masked_text_frame_field_by_field() {
    let (server, log) = Server::start_capturing_stderr(&["--trace"]);
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&client_frame(0x81, b"Hello")).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x81, b"Hello".to_vec()));
    assert_eq!(
        block(&log, "IN frame, header 81 85 11 22 33 44"),
        [
            "IN frame, header 81 85 11 22 33 44, 5 payload bytes",
            "    FIN      1          final frame of its message",
            "    RSV      000        no extension in use",
            "    opcode   0x1        TEXT, a data frame",
            "    MASK     1          key 11 22 33 44",
            "    length   5          in the 7-bit length field",
            "    masked   59 47 5f 28 7e",
            "    payload  \"Hello\"",
            "    action   text message complete, 5 bytes: handed to the application -> echoed back",
        ]
    );
    assert_eq!(
        block(&log, "OUT frame, header 81 05"),
        [
            "OUT frame, header 81 05, 5 payload bytes",
            "    FIN      1          final frame of its message",
            "    RSV      000        no extension in use",
            "    opcode   0x1        TEXT, a data frame",
            "    MASK     0          servers never mask",
            "    length   5          in the 7-bit length field",
            "    payload  \"Hello\"",
        ]
    );
    let label = format!("[{} /echo] IN frame", stream.local_addr().unwrap());
    assert!(
        log.contents().contains(&label),
        "frames are labelled with the peer's address and the path"
    );
}

#[test]
fn echo_traces_ping_pong_and_the_closing_handshake() {
    let (server, log) = Server::start_capturing_stderr(&["--trace"]);
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&client_frame(0x89, b"ping?")).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x8A, b"ping?".to_vec()));
    stream
        .write_all(&client_frame(0x88, b"\x03\xe8bye"))
        .unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1000));

    let ping = block(&log, "IN frame, header 89 85");
    assert!(ping.contains(&"    opcode   0x9        PING, a control frame".to_owned()));
    assert!(ping.contains(&"    payload  \"ping?\"".to_owned()));
    assert_eq!(
        ping.last().unwrap(),
        "    action   queued a PONG with the same payload (RFC 6455 5.5.2)"
    );
    let pong = block(&log, "OUT frame, header 8a 05");
    assert!(pong.contains(&"    opcode   0xA        PONG, a control frame".to_owned()));
    assert!(pong.contains(&"    payload  \"ping?\"".to_owned()));

    let close = block(&log, "IN frame, header 88 85");
    assert!(close.contains(&"    payload  code 1000, reason \"bye\"".to_owned()));
    assert!(close
        .last()
        .unwrap()
        .contains("answered with Close 1000; the server then closes TCP"));
    let answer = block(&log, "OUT frame, header 88 02");
    assert!(answer.contains(&"    payload  code 1000, reason \"\"".to_owned()));
}

#[test]
fn echo_traces_fragments_and_a_protocol_failure() {
    let (server, log) = Server::start_capturing_stderr(&["--trace"]);
    let mut stream = raw_upgrade(&server, "/echo");
    stream.write_all(&client_frame(0x01, b"Hel")).unwrap();
    stream.write_all(&client_frame(0x80, b"lo")).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap(), (0x81, b"Hello".to_vec()));
    let first = block(&log, "IN frame, header 01 83");
    assert!(first.contains(&"    FIN      0          more fragments follow".to_owned()));
    assert_eq!(
        first.last().unwrap(),
        "    action   fragment stored: 3 bytes of the message so far, waiting for FIN"
    );
    let last = block(&log, "IN frame, header 80 82");
    assert!(last.contains(
        &"    opcode   0x0        CONTINUATION, the next fragment of a message".to_owned()
    ));
    assert!(last
        .last()
        .unwrap()
        .contains("text message complete, 5 bytes"));

    // Opcode 3 is reserved: the connection fails with 1002.
    stream.write_all(&client_frame(0x83, b"")).unwrap();
    assert_eq!(read_close_code(&mut stream), Some(1002));
    let bad = block(&log, "IN frame, header 83 80");
    assert!(bad.contains(
        &"    opcode   0x3        RESERVED(0x3), an opcode RFC 6455 reserves".to_owned()
    ));
    assert_eq!(
        bad.last().unwrap(),
        "    action   failed the connection (RFC 6455 7.1.7): queued Close 1002 because: \
         reserved opcode 0x3"
    );
}

#[test]
fn chat_traces_requests_and_what_became_of_them() {
    let (server, log) = Server::start_capturing_stderr(&["--trace"]);
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    alice.send_text(r#"{"code":10002,"data":{"to":"bob","text":"hi"}}"#);
    assert_eq!(bob.event()["body"]["data"]["text"], "hi");
    assert!(log.wait_for("] -> authenticated as alice: SYSTEM 20002 true"));
    assert!(log.wait_for("] -> MESSAGE 30001 queued for 1 session(s) of bob"));
    // tungstenite masks with a random key: the AUTH frame is found by its payload.
    let auth_payload = r#"    payload  "{\"code\":10000,\"id\":\"alice\"}""#;
    let auth = blocks(&log)
        .into_iter()
        .find(|block| block.iter().any(|line| line == auth_payload))
        .unwrap_or_else(|| panic!("no AUTH frame in the trace:\n{}", log.contents()));
    assert!(auth[0].starts_with("IN frame, header 81 9b "), "{auth:?}");
    assert!(auth.contains(&"    length   27         in the 7-bit length field".to_owned()));
    assert!(auth
        .last()
        .unwrap()
        .ends_with("text message complete, 27 bytes: handed to the application"));
    // The MESSAGE bob received, as the server sent it.
    let message_payload = r#"    payload  "{\"code\":1756,"#;
    assert!(log.wait_for(message_payload.trim_start()));
    let delivered = blocks(&log)
        .into_iter()
        .find(|block| block.iter().any(|line| line.starts_with(message_payload)))
        .expect("the MESSAGE block");
    assert!(
        delivered[0].starts_with("OUT frame, header 81 "),
        "{delivered:?}"
    );
    assert!(delivered.contains(&"    MASK     0          servers never mask".to_owned()));
}
