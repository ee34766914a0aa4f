//! The metrics listener (`server.metrics_listen`): a second Pingora service answering
//! `GET /metrics` without auth, for Prometheus to scrape. It binds loopback by
//! default; anything but `/metrics` is a 404.

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;

use crate::metrics;

/// Serves the process-wide metrics.
pub struct MetricsApp;

/// The metrics listener on `addr`.
pub fn metrics_service(addr: &str) -> Service<MetricsApp> {
    let mut service = Service::new("aurora metrics".to_string(), MetricsApp);
    service.add_tcp(addr);
    service
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (status, content_type, body) = if req.uri.path() != "/metrics" {
            (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec())
        } else if req.method != Method::GET && req.method != Method::HEAD {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"GET only\n".to_vec(),
            )
        } else {
            let body = metrics::metrics().map(|m| m.render()).unwrap_or_default();
            (StatusCode::OK, metrics::CONTENT_TYPE, body)
        };
        let head = req.method == Method::HEAD;
        let mut builder = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len());
        if status == StatusCode::METHOD_NOT_ALLOWED {
            builder = builder.header(http::header::ALLOW, "GET, HEAD");
        }
        let body = if head { Vec::new() } else { body };
        // Every header above is a valid name and value: building cannot fail.
        builder.body(body).unwrap_or_default()
    }
}
