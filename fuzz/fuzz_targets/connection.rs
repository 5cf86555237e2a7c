//! The whole server-side connection state machine (RFC 6455 5, 7, 8.1) fed
//! an arbitrary client byte stream, with the application doing what the
//! server does with it.
//!
//! Input layout: byte 0 picks `max_message` (bits 0-2: 0 B to 64 KiB, edges
//! included) and what the application does (bits 3-4, [`App`]); byte 1 a
//! number of cut points (0 to 16) that follow as u16 each; the rest is the
//! stream. The stream is fed four times, to four connections: whole with
//! `receive`; one byte at a time, sending the output (`clear_output`) after
//! each and releasing the buffers whenever the connection is between
//! messages (`release_idle_buffers`); in the pieces the cut points make
//! through `read_space`/`commit_read` with `--trace` on, taking the output
//! after each; and in the same pieces as `/echo` reads, straight into the
//! message (`read_payload_with`, sometimes past the frame's end) whenever
//! `direct_payload_room` offers room. Checked:
//! - chunking does not matter: the four runs give the same events and
//!   errors in the same order, the same bytes out, the same final state and
//!   the same unprocessed input; neither does tracing;
//! - `next_event` always comes to `Ok(None)`: no input makes it loop;
//! - memory is bounded: after every piece at most a header or a control
//!   frame's payload stays buffered, and the peak heap held by a run is
//!   linear in `max_message` and the stream, whatever lengths headers claim;
//! - every message is within `max_message`;
//! - what the server sends is well-formed: unmasked, unfragmented frames
//!   with RSV clear; pongs echoing exactly the pings received while open;
//!   data frames exactly the ones the application sent; at most one Close,
//!   last, valid, with the first error's code when the server failed the
//!   connection, preceded by the application's last words if it had any;
//! - nothing follows the peer's Close, after which the state is Closed;
//! - nothing follows an error (RFC 6455 7.1.7: no more data is processed
//!   once the connection is failed): the state is then Failed and no input
//!   is left buffered.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socketbox::protocol::close::parse_close_payload;
use socketbox::protocol::frame::{
    FrameHeader, HeaderParse, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use socketbox::protocol::trace::{describe_frames, Direction};
use socketbox::protocol::{CloseCode, Config, Connection, Event, Message, ProtocolError, State};
use socketbox_fuzz::{peak_heap_growth, piece_ends, Choices};

/// What the application does around the stream. Each choice depends only on
/// the events, so it must not make chunking matter either.
#[derive(Debug, Clone, Copy, PartialEq)]
enum App {
    /// Only reads.
    Passive,
    /// Echoes every message, as `/echo` does, and answers a message over
    /// the limit with last words before the Close, as `/ws` does.
    Echo,
    /// Sends a text and a ping, then closes with 1001, before any input
    /// (the server shutting down).
    ClosesFirst,
    /// Queues a text and closes with 1001, and another thread takes that
    /// output away to write it (the shutdown, a `/ws` session's outbox),
    /// before any input.
    ClosedAndTaken,
}

const GREETING: &str = "hello";
const SERVER_PING: &[u8] = b"p";
const LAST_WORDS: &str = "too big";

/// What one run observed.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Result<Event, ProtocolError>>,
    output: Vec<u8>,
    state: State,
    buffered: usize,
    /// Whether `send_text_before_close` found a Close to precede.
    last_words: bool,
}

/// How a run hands bytes to the connection and sends its output.
#[derive(Clone, Copy)]
enum Feed {
    /// `receive`; the output is sent once, at the end.
    Whole,
    /// `receive` one byte at a time; `clear_output` after each, and
    /// `release_idle_buffers` when between messages.
    Bytewise,
    /// `read_space`, copy, `commit_read`, as the server's I/O loop does,
    /// with `--trace` on; `take_output` after each piece.
    Pieces,
    /// As `/echo` reads: the rest of a piece goes straight into the message
    /// (`read_payload_with`) whenever `direct_payload_room` allows, even
    /// when it holds more than the frame's remaining payload; otherwise
    /// `receive` takes the next header's worth of bytes. `clear_output` after each piece, and
    /// `release_idle_buffers` when between messages.
    Direct,
}

fuzz_target!(|data: &[u8]| {
    let mut choices = Choices::new(data);
    let config_byte = choices.byte();
    let max_message = match config_byte % 8 {
        0 => 0,
        1 => 1,
        2 => 125,
        3 => 126,
        4 => 1024,
        5 => 65_535,
        _ => 64 * 1024,
    };
    let app = match (config_byte >> 3) % 4 {
        0 => App::Passive,
        1 => App::Echo,
        2 => App::ClosesFirst,
        _ => App::ClosedAndTaken,
    };
    let config = Config { max_message };
    let cuts = choices.cut_points(16);
    let stream = choices.rest();

    let whole = measured_run(config, app, stream, &[stream.len()], Feed::Whole);
    check_run(config, app, &whole);
    let every_byte: Vec<usize> = (1..=stream.len()).collect();
    let bytewise = measured_run(config, app, stream, &every_byte, Feed::Bytewise);
    assert_eq!(bytewise, whole, "byte-at-a-time differs from whole");
    let ends = piece_ends(&cuts, stream.len());
    let pieces = measured_run(config, app, stream, &ends, Feed::Pieces);
    assert_eq!(pieces, whole, "fed in pieces differs from whole");
    let direct = measured_run(config, app, stream, &ends, Feed::Direct);
    assert_eq!(direct, whole, "read into the message differs from whole");
});

/// Runs, and checks the run's peak heap: the message under assembly (at most
/// `max_message`, doubled by `Vec` growth), the read buffer (a read chunk
/// plus a partial frame), and the events and output collected, which never
/// exceed a constant factor of the stream. A traced run may also hold the
/// trace records not yet taken: at most `MAX_PENDING` (1024) blocks of a
/// few hundred bytes each, since payloads are only previewed.
fn measured_run(config: Config, app: App, stream: &[u8], ends: &[usize], feed: Feed) -> Run {
    let (run, peak) = peak_heap_growth(|| run(config, app, stream, ends, feed));
    let trace_records = match feed {
        Feed::Pieces => 1024 * 1024,
        Feed::Whole | Feed::Bytewise | Feed::Direct => 0,
    };
    let budget = 4 * config.max_message + 64 * stream.len() + 64 * 1024 + trace_records;
    assert!(peak <= budget, "held {peak} bytes, budget {budget}");
    run
}

fn run(config: Config, app: App, stream: &[u8], ends: &[usize], feed: Feed) -> Run {
    let mut conn = Connection::new(config);
    let tracing = matches!(feed, Feed::Pieces);
    if tracing {
        conn.trace_frames("fuzz");
    }
    match app {
        App::Passive | App::Echo => {}
        App::ClosesFirst => {
            assert!(conn.send_text(GREETING));
            assert!(conn.send_ping(SERVER_PING));
            conn.close(CloseCode::GOING_AWAY, "bye");
            assert!(!conn.send_binary(b"after close"));
        }
        App::ClosedAndTaken => {
            assert!(conn.send_text("sent elsewhere"));
            conn.close(CloseCode::GOING_AWAY, "bye");
            assert!(!conn.take_output().is_empty());
            assert!(conn.output().is_empty());
        }
    }
    let mut run = Run {
        events: Vec::new(),
        output: Vec::new(),
        state: State::Open,
        buffered: 0,
        last_words: false,
    };
    let mut fed = 0;
    for &end in ends {
        let piece = &stream[fed..end];
        fed = end;
        match feed {
            Feed::Whole | Feed::Bytewise => conn.receive(piece),
            Feed::Direct => {
                // A header's worth at a time through `receive`, so that
                // room opens up inside the piece; then all the rest at once.
                let mut rest = piece;
                while !rest.is_empty() {
                    let n = match conn.direct_payload_room() {
                        Some(_) => {
                            conn.read_payload_with(|message| message.extend_from_slice(rest));
                            rest.len()
                        }
                        None => {
                            let n = rest.len().min(MAX_HEADER_LEN);
                            conn.receive(&rest[..n]);
                            n
                        }
                    };
                    rest = &rest[n..];
                    drain(&mut conn, app, &mut run, stream.len(), tracing);
                }
            }
            Feed::Pieces => {
                let mut rest = piece;
                while !rest.is_empty() {
                    let space = conn.read_space();
                    assert!(!space.is_empty(), "read_space offered no room");
                    let n = space.len().min(rest.len());
                    space[..n].copy_from_slice(&rest[..n]);
                    conn.commit_read(n);
                    rest = &rest[n..];
                }
            }
        }
        drain(&mut conn, app, &mut run, stream.len(), tracing);
        match feed {
            Feed::Whole => {}
            Feed::Bytewise | Feed::Direct => {
                run.output.extend_from_slice(conn.output());
                conn.clear_output();
                // As the server does when a connection goes idle.
                if conn.is_between_messages() {
                    assert_eq!(conn.buffered_input(), 0);
                    conn.release_idle_buffers();
                }
            }
            Feed::Pieces => {
                for record in conn.take_trace() {
                    assert!(record.starts_with("[fuzz]"), "{record}");
                }
                let sent = conn.take_output();
                let _ = describe_frames(Direction::Out, &sent);
                run.output.extend_from_slice(&sent);
            }
        }
        assert!(
            conn.buffered_input() <= MAX_HEADER_LEN.max(MAX_CONTROL_PAYLOAD),
            "{} bytes left buffered",
            conn.buffered_input()
        );
    }
    run.output.extend_from_slice(conn.output());
    run.state = conn.state();
    run.buffered = conn.buffered_input();
    run
}

/// Calls `next_event` until it wants more input, reacting as `app` does.
/// Every event or error consumes at least one input byte, so more calls
/// than that mean a loop.
fn drain(conn: &mut Connection, app: App, run: &mut Run, stream_len: usize, tracing: bool) {
    for _ in 0..stream_len + 8 {
        let next = conn.next_event();
        match (&next, app) {
            (Ok(None), _) => return,
            (Ok(Some(Event::Message(message))), App::Echo) => {
                let sent = match message {
                    Message::Text(text) => conn.send_text(text),
                    Message::Binary(bytes) => conn.send_binary(bytes),
                };
                assert_eq!(sent, conn.state() == State::Open);
            }
            (Err(ProtocolError::MessageTooBig { .. }), App::Echo) => {
                run.last_words |= conn.send_text_before_close(LAST_WORDS);
            }
            _ => {}
        }
        if tracing && matches!(next, Ok(Some(Event::Message(_)))) {
            conn.trace_note(|| "delivered to the fuzzer".to_owned());
        }
        run.events.push(next.transpose().expect("not None"));
    }
    panic!("next_event never returned Ok(None)");
}

/// A frame the server sent.
struct Sent {
    opcode: OpCode,
    payload: Vec<u8>,
}

/// Splits the output into frames, checking each is a well-formed server frame.
fn sent_frames(mut output: &[u8]) -> Vec<Sent> {
    let mut frames = Vec::new();
    while !output.is_empty() {
        let Ok(HeaderParse::Complete { header, header_len }) = FrameHeader::parse(output) else {
            panic!("server sent a broken frame header: {output:x?}");
        };
        // RFC 6455 5.1: "A server MUST NOT mask any frames that it sends".
        assert!(
            header.fin && header.rsv == 0 && header.mask.is_none(),
            "{header:?}"
        );
        let end = header_len + header.payload_len as usize;
        assert!(end <= output.len(), "server sent a truncated frame");
        frames.push(Sent {
            opcode: header.opcode,
            payload: output[header_len..end].to_vec(),
        });
        output = &output[end..];
    }
    frames
}

fn check_run(config: Config, app: App, run: &Run) {
    let opens_open = matches!(app, App::Passive | App::Echo);
    let mut pings_answered = Vec::new();
    let mut messages = Vec::new();
    let mut first_error = None;
    for (i, event) in run.events.iter().enumerate() {
        match event {
            Ok(Event::Message(message)) => {
                let len = match message {
                    Message::Text(text) => text.len(),
                    Message::Binary(bytes) => bytes.len(),
                };
                assert!(len <= config.max_message);
                if first_error.is_none() {
                    messages.push(message.clone());
                }
            }
            Ok(Event::Ping(payload)) => {
                assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
                if opens_open && first_error.is_none() {
                    pings_answered.push(payload.clone());
                }
            }
            Ok(Event::Pong(payload)) => assert!(payload.len() <= MAX_CONTROL_PAYLOAD),
            Ok(Event::Close(_)) => {
                assert_eq!(i + 1, run.events.len(), "events after the peer's Close");
                assert_eq!(run.state, State::Closed);
            }
            Err(error) => {
                assert_eq!(i + 1, run.events.len(), "events after failing");
                assert_eq!(run.state, State::Failed);
                assert_eq!(run.buffered, 0, "input kept after failing");
                first_error.get_or_insert(*error);
            }
        }
    }

    let mut frames = sent_frames(&run.output);
    let close = match frames.last() {
        Some(last) if last.opcode == OpCode::Close => {
            let payload = frames.pop().map(|frame| frame.payload).unwrap_or_default();
            Some(parse_close_payload(&payload).expect("the server's Close is valid"))
        }
        _ => None,
    };
    let close_code = close
        .as_ref()
        .map(|close| close.as_ref().map(|frame| frame.code));
    if run.last_words {
        assert_eq!(app, App::Echo);
        assert!(close.is_some(), "last words without a Close");
        let words = frames.pop().expect("the last words");
        assert_eq!(
            (words.opcode, &words.payload[..]),
            (OpCode::Text, LAST_WORDS.as_bytes())
        );
    }
    let mut pongs = Vec::new();
    let mut data = Vec::new();
    for (i, frame) in frames.into_iter().enumerate() {
        match (frame.opcode, app) {
            (OpCode::Pong, _) => pongs.push(frame.payload),
            (OpCode::Close, _) => panic!("bytes after the server's Close"),
            (OpCode::Text, App::ClosesFirst) if i == 0 => {
                assert_eq!(frame.payload, GREETING.as_bytes())
            }
            (OpCode::Ping, App::ClosesFirst) if i == 1 => assert_eq!(frame.payload, SERVER_PING),
            (OpCode::Text, App::Echo) => data.push(Message::Text(
                String::from_utf8(frame.payload).expect("an echoed text is UTF-8"),
            )),
            (OpCode::Binary, App::Echo) => data.push(Message::Binary(frame.payload)),
            (other, _) => panic!("server sent an unprompted {other} frame"),
        }
    }
    assert_eq!(
        pongs, pings_answered,
        "pongs must echo the pings received while open"
    );
    if app == App::Echo {
        assert_eq!(
            data, messages,
            "the echoes must be the messages received while open"
        );
    }

    match app {
        App::Passive | App::Echo => {
            // The first error always finds the connection open, so the
            // server failed it with that error's code.
            if let Some(error) = first_error {
                assert_eq!(close_code, Some(Some(error.close_code())), "{error}");
            } else if run.state == State::Closed {
                assert!(close_code.is_some(), "closed without sending a Close");
            }
        }
        App::ClosesFirst => assert_eq!(close_code, Some(Some(CloseCode::GOING_AWAY))),
        App::ClosedAndTaken => assert_eq!(close_code, None),
    }
}
