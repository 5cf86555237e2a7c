//! Peer echo server for the benchmark: `tokio-tungstenite` on tokio's
//! multi-threaded runtime (one worker per core), written like the crate's
//! own `echo-server` example: the read half is forwarded into the write
//! half, which feeds while messages are ready and flushes when not.
//!
//! Usage: `tokio-tungstenite-echo ADDR` (default `127.0.0.1:9002`).

use std::time::Duration;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|message| future::ready(message.is_text() || message.is_binary()))
        .forward(write)
        .await;
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".into());
    let listener = TcpListener::bind(&addr).await.expect("bind");
    println!(
        "listening on {}",
        listener.local_addr().expect("local addr")
    );
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            Err(e) => {
                eprintln!("tokio-tungstenite-echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
