//! Peer broadcast server for the benchmark: what a user would write for a
//! small chat with `tokio-tungstenite`, shaped like the crate's own
//! `server.rs` example. A shared map of peers, each with an unbounded
//! channel; every message a client sends is cloned into the channel of
//! every other client, and a task per client forwards its channel into its
//! socket. Nothing bounds a slow client's channel: that is the example's
//! design, kept as is.
//!
//! Usage: `tokio-tungstenite-broadcast ADDR` (default `127.0.0.1:9003`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::{future, pin_mut, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type Peers = Arc<Mutex<HashMap<SocketAddr, UnboundedSender<Message>>>>;

async fn serve(peers: Peers, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (to_me, for_me) = unbounded();
    peers.lock().expect("peers").insert(addr, to_me);
    let (write, read) = ws.split();
    let relay = read.try_for_each(|message| {
        if message.is_text() || message.is_binary() {
            let peers = peers.lock().expect("peers");
            for (_, other) in peers.iter().filter(|(peer, _)| **peer != addr) {
                let _ = other.unbounded_send(message.clone());
            }
        }
        future::ok(())
    });
    let deliver = for_me.map(Ok).forward(write);
    pin_mut!(relay, deliver);
    future::select(relay, deliver).await;
    peers.lock().expect("peers").remove(&addr);
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9003".into());
    let listener = TcpListener::bind(&addr).await.expect("bind");
    println!(
        "listening on {}",
        listener.local_addr().expect("local addr")
    );
    let peers = Peers::default();
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                tokio::spawn(serve(Arc::clone(&peers), stream, addr));
            }
            Err(e) => {
                eprintln!("tokio-tungstenite-broadcast: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
