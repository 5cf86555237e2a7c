//! `GET /healthz` and `GET /metrics`: what a supervisor and Prometheus ask.

use crate::io::app::{Exchange, HttpHandler};

/// `GET /healthz`: `200 ok`.
#[derive(Debug, Default)]
pub struct Health;

impl HttpHandler for Health {
    fn respond(&self, exchange: &mut Exchange<'_>) {
        exchange.send(200, "text/plain; charset=utf-8", &[], b"ok");
    }
}

/// `GET /metrics`: the counters as Prometheus text.
#[derive(Debug, Default)]
pub struct MetricsPage;

impl HttpHandler for MetricsPage {
    fn respond(&self, exchange: &mut Exchange<'_>) {
        let body = exchange.context().metrics.render();
        exchange.send(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &[],
            body.as_bytes(),
        );
    }
}
