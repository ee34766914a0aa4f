//! The metrics listener (`server.metrics_listen`): a second Pingora service answering
//! `GET /metrics` without auth, for Prometheus to scrape, and the usage report
//! `GET /admin/usage?key=NAME&period=month` behind the master key. It binds loopback
//! by default; anything else is a 404.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::{HttpServer, ServeHttp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;

use super::guarded_app::GuardedHttpApp;
use crate::auth::Caller;
use crate::config::LiveConfig;
use crate::limits::{self, LimitStore};
use crate::metrics;

/// Serves the process-wide metrics and the usage report.
pub struct MetricsApp {
    config: Arc<LiveConfig>,
    store: Arc<dyn LimitStore>,
}

/// The metrics listener on `addr`; the usage report reads `store`.
pub fn metrics_service(
    addr: &str,
    config: Arc<LiveConfig>,
    store: Arc<dyn LimitStore>,
) -> Service<GuardedHttpApp<HttpServer<MetricsApp>>> {
    // The main listener's guards: a scraper's port is often reachable beyond loopback,
    // and a connection dripping its header or never reading its answer would otherwise
    // be held for ever, with the proxy's memory and descriptors.
    let app = HttpServer::new_app(MetricsApp {
        config: Arc::clone(&config),
        store,
    });
    let mut service = Service::new(
        "aurora metrics".to_string(),
        GuardedHttpApp::new(app, config),
    );
    service.add_tcp(addr);
    service
}

/// What the usage report answers: its status and JSON body.
struct UsageAnswer {
    status: StatusCode,
    body: Vec<u8>,
}

impl UsageAnswer {
    fn error(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: error_json(message),
        }
    }
}

impl MetricsApp {
    /// `GET /admin/usage?key=NAME&period=day|week|month` (month by default), for the
    /// master key only.
    async fn usage(&self, session: &ServerSession) -> UsageAnswer {
        let req = session.req_header();
        let config = self.config.snapshot();
        // Its `key` parameter names the key reported: the token is read from headers only.
        match config
            .auth
            .authenticate(&req.headers, None, SystemTime::now)
        {
            Ok(Caller::Master) => {}
            _ => {
                return UsageAnswer::error(
                    StatusCode::UNAUTHORIZED,
                    "the usage report needs the master key",
                )
            }
        }
        let mut key = None;
        let mut period = "month".to_string();
        for (name, value) in query_pairs(req.uri.query().unwrap_or("")) {
            match name.as_str() {
                "key" => key = Some(value),
                "period" => period = value,
                _ => {}
            }
        }
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return UsageAnswer::error(StatusCode::BAD_REQUEST, "name the key: ?key=NAME");
        };
        let Some(period) = limits::parse_period(&period) else {
            return UsageAnswer::error(StatusCode::BAD_REQUEST, "period is day, week or month");
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match limits::usage_report(&*self.store, &key, period, now).await {
            Ok(report) if limits::reports_no_key(&report, config.auth.has_key_named(&key)) => {
                UsageAnswer::error(
                    StatusCode::NOT_FOUND,
                    &format!("no key is named `{key}`, and nothing was used under that name"),
                )
            }
            Ok(report) => UsageAnswer {
                status: StatusCode::OK,
                body: report.to_string().into_bytes(),
            },
            Err(e) => UsageAnswer::error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }
}

fn error_json(message: &str) -> Vec<u8> {
    serde_json::json!({"error": {"message": message}})
        .to_string()
        .into_bytes()
}

/// The query's `name=value` pairs, percent-decoded.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(name), decode(value))
    })
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // A client that does not read its answer is let go, as on the main listener.
        session.set_write_timeout(Some(self.config.snapshot().server.send_timeout));
        let req = session.req_header();
        let readable = req.method == Method::GET || req.method == Method::HEAD;
        let path = req.uri.path();
        let mut answer = Response::builder();
        let (status, content_type, body) = if path != "/metrics" && path != "/admin/usage" {
            (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec())
        } else if !readable {
            answer = answer.header(http::header::ALLOW, "GET, HEAD");
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"GET or HEAD only\n".to_vec(),
            )
        } else if path == "/admin/usage" {
            let usage = self.usage(session).await;
            // A key's spend, for the master key only: kept by no cache on the way.
            answer = answer.header(http::header::CACHE_CONTROL, "no-store");
            if usage.status == StatusCode::UNAUTHORIZED {
                answer = answer.header(http::header::WWW_AUTHENTICATE, "Bearer");
            }
            (usage.status, "application/json", usage.body)
        } else {
            let body = metrics::metrics().map(|m| m.render()).unwrap_or_default();
            (StatusCode::OK, metrics::CONTENT_TYPE, body)
        };
        let head = session.req_header().method == Method::HEAD;
        let answer = answer
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len());
        let body = if head { Vec::new() } else { body };
        // Every header above is a valid name and value: building cannot fail.
        answer.body(body).unwrap_or_default()
    }
}
