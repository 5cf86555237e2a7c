//! Peer echo server for the benchmark: `fastwebsockets` behind hyper's
//! HTTP/1.1 upgrade on tokio's multi-threaded runtime, written like the
//! crate's own `echo_server` example (a `FragmentCollector`, automatic
//! pongs and closes).
//!
//! Usage: `fastwebsockets-echo ADDR` (default `127.0.0.1:9003`).

use std::time::Duration;

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn echo(upgrade: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(upgrade.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn upgrade(mut request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, upgrade) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let _ = tokio::task::unconstrained(echo(upgrade)).await;
    });
    Ok(response)
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
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let connection = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(upgrade))
                        .with_upgrades();
                    let _ = connection.await;
                });
            }
            Err(e) => {
                eprintln!("fastwebsockets-echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
