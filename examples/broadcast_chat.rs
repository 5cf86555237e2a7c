//! A minimal broadcast chat on SocketBox's sans-IO core: each text message goes
//! to every other client. Handshake as in echo_server.rs, minus its HTTP errors.

use socketbox::protocol::frame::{write_frame, OpCode};
use socketbox::protocol::handshake::{self, accept_key};
use socketbox::protocol::http::{parse_request, Parse};
use socketbox::protocol::{Config, Connection, Event, Message, State};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Every open socket, by id. Writing under this lock keeps frames whole, but a client
/// that stops reading stalls everyone (SocketBox gives each session an outbox instead).
static PEERS: std::sync::Mutex<Vec<(usize, TcpStream)>> = std::sync::Mutex::new(Vec::new());

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(std::env::args().nth(1).unwrap_or("127.0.0.1:9002".into()))?;
    println!("listening on {}", listener.local_addr()?);
    for (id, stream) in listener.incoming().flatten().enumerate() {
        std::thread::spawn(move || serve(id, stream));
    }
    Ok(())
}

fn serve(id: usize, mut stream: TcpStream) -> io::Result<()> {
    let (mut head, mut chunk, mut out) = (Vec::new(), [0; 1024], Vec::new());
    let (upgrade, head_len) = loop {
        let n = stream.read(&mut chunk)?;
        head.extend_from_slice(&chunk[..n]);
        match parse_request(&head) {
            Ok(Parse::Partial) if n > 0 => {}
            Ok(Parse::Complete(req)) => break (handshake::validate_upgrade(&req), req.head_len),
            _ => return Ok(()), // the client left, or did not speak HTTP
        }
    };
    let accept = accept_key(upgrade.map_err(io::Error::other)?.key);
    handshake::write_switching_protocols(&mut out, &accept, None);
    stream.write_all(&out)?;
    PEERS.lock().unwrap().push((id, stream.try_clone()?));
    let mut conn = Connection::new(Config::default());
    conn.receive(&head[head_len..]);
    let mut n = 1;
    while n > 0 && conn.state() != State::Closed {
        out.clear(); // this client's text messages, framed for the others
        while let Some(event) = conn.next_event().transpose() {
            if let Ok(Event::Message(Message::Text(text))) = event {
                write_frame(&mut out, OpCode::Text, text.as_bytes());
            }
        }
        for (peer, socket) in PEERS.lock().unwrap().iter_mut() {
            let _ = socket.write_all(if *peer == id { conn.output() } else { &out });
        }
        conn.clear_output(); // its pongs and Close frames went to this client only
        if conn.state() != State::Closed {
            n = stream.read(conn.read_space()).unwrap_or(0);
            conn.commit_read(n);
        }
    }
    PEERS.lock().unwrap().retain(|(peer, _)| *peer != id);
    Ok(())
}
