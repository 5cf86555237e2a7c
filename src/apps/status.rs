//! `GET /healthz` and `GET /metrics`: what a supervisor and Prometheus ask.

//! An application may add a check to the first (a reason it is unwell)
//! and lines to the second.

use std::sync::Arc;

use crate::io::app::{Exchange, HttpHandler};

/// What makes the server unwell: `Err(reason)`.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// More metric lines, appended to the server's own.
pub type MoreMetrics = Arc<dyn Fn(&mut String) + Send + Sync>;

/// `GET /healthz`: `200 ok`, or `503` and the reason a check gives.
#[derive(Default)]
pub struct Health {
    /// Asked on every request.
    pub check: Option<HealthCheck>,
}

impl HttpHandler for Health {
    fn respond(&self, exchange: &mut Exchange<'_>) {
        let text = "text/plain; charset=utf-8";
        match self.check.as_ref().map_or(Ok(()), |check| check()) {
            Ok(()) => exchange.send(200, text, &[], b"ok"),
            Err(reason) => exchange.send(503, text, &[], reason.as_bytes()),
        }
    }
}

/// `GET /metrics`: the counters as Prometheus text.
#[derive(Default)]
pub struct MetricsPage {
    /// Appends the application's own lines.
    pub more: Option<MoreMetrics>,
}

impl HttpHandler for MetricsPage {
    fn respond(&self, exchange: &mut Exchange<'_>) {
        let mut body = exchange.context().metrics.render();
        if let Some(more) = &self.more {
            more(&mut body);
        }
        exchange.send(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &[],
            body.as_bytes(),
        );
    }
}
