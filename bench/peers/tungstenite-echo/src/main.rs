//! Peer echo server for the benchmark: `tungstenite` in its sync form, one
//! std thread per connection with Rust's default thread stack. This is the
//! same architecture as SocketBox, built from crates.io.
//!
//! Usage: `tungstenite-echo ADDR` (default `127.0.0.1:9001`); every path
//! upgrades, every text and binary message is sent back.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use tungstenite::{Error, Message};

fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    loop {
        match ws.read() {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(message).is_err() {
                    return;
                }
            }
            // Pings are answered and closes echoed by tungstenite itself.
            Ok(_) => {}
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => return,
            Err(_) => return,
        }
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).expect("bind");
    println!(
        "listening on {}",
        listener.local_addr().expect("local addr")
    );
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = thread::Builder::new().spawn(move || serve(stream)) {
                    eprintln!("tungstenite-echo: cannot spawn: {e}");
                }
            }
            Err(e) => {
                eprintln!("tungstenite-echo: accept: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
