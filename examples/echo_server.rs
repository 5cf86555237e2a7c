//! A minimal echo server on SocketBox's sans-IO core: a thread per connection,
//! the opening handshake (RFC 6455 4.2), then a `Connection` turning bytes into
//! events (RFC 6455 5-7). `cargo run --example echo_server -- 127.0.0.1:9001`

use socketbox::protocol::handshake::{self, accept_key};
use socketbox::protocol::http::{self, ErrorResponse, Parse};
use socketbox::protocol::{Config, Connection, Event, Message, State};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(std::env::args().nth(1).unwrap_or("127.0.0.1:9001".into()))?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
    Ok(())
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    let (mut head, mut chunk, mut out) = (Vec::new(), [0; 1024], Vec::new());
    let (accepted, head_len): (Result<_, Box<dyn ErrorResponse>>, _) = loop {
        let n = stream.read(&mut chunk)?;
        head.extend_from_slice(&chunk[..n]);
        match http::parse_request(&head) {
            Ok(Parse::Partial) if n > 0 => {}
            Ok(Parse::Partial) => return Ok(()), // the client left
            Ok(Parse::Complete(req)) => {
                break (
                    handshake::validate_upgrade(&req).map_err(|e| Box::new(e) as _),
                    req.head_len,
                )
            }
            Err(error) => break (Err(Box::new(error)), 0),
        }
    };
    // 101 Switching Protocols, or an HTTP error (400, 426...) and the end.
    match &accepted {
        Ok(u) => handshake::write_switching_protocols(&mut out, &accept_key(u.key), None),
        Err(error) => http::write_error_response(&mut out, error.as_ref()),
    }
    stream.write_all(&out)?;
    if accepted.is_err() {
        return Ok(());
    }
    let mut conn = Connection::new(Config::default());
    conn.receive(&head[head_len..]); // frames sent right behind the head
    loop {
        while let Some(event) = conn.next_event().transpose() {
            match event {
                Ok(Event::Message(Message::Text(text))) => conn.send_text(&text),
                Ok(Event::Message(Message::Binary(data))) => conn.send_binary(&data),
                _ => true, // the Connection itself answers pings and Close frames
            };
        }
        stream.write_all(&conn.take_output())?;
        if conn.state() == State::Closed {
            return Ok(()); // RFC 6455 7.1.1: the server closes TCP first.
        }
        let n = stream.read(conn.read_space())?;
        conn.commit_read(n);
        if n == 0 {
            return Ok(());
        }
    }
}
