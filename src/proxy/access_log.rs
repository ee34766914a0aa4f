//! One access line per request. Credentials never appear: the caller is named by its
//! key name, and the query string (where some APIs put keys) is left out.

use pingora_core::Error;
use pingora_proxy::Session;

use super::RequestContext;

/// Target of access lines, so they can be filtered: `RUST_LOG=aurora::access=info`.
pub const ACCESS_TARGET: &str = "aurora::access";

/// Writes the access line for a finished request.
pub fn log_request(session: &Session, e: Option<&Error>, ctx: &RequestContext) {
    if !log::log_enabled!(target: ACCESS_TARGET, log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let upstream_status = ctx
        .upstream_status
        .map_or_else(|| "-".to_string(), |s| s.to_string());
    let error = match (&ctx.error, e) {
        (Some(g), _) => format!(" error=\"{}\"", g.message.replace('"', "'")),
        (None, Some(e)) => format!(" error=\"{}\"", e.etype().as_str()),
        _ => String::new(),
    };
    log::info!(
        target: ACCESS_TARGET,
        "request_id={} method={} path={} route={} provider={} caller={} status={} upstream_status={} duration_ms={:.3} bytes_in={} bytes_out={}{}",
        ctx.request_id,
        req.method,
        req.uri.path(),
        ctx.route_kind,
        ctx.provider_name().unwrap_or("-"),
        ctx.caller.as_ref().map_or("-", |c| c.label()),
        status,
        upstream_status,
        ctx.started.elapsed().as_secs_f64() * 1000.0,
        session.body_bytes_read(),
        session.body_bytes_sent(),
        error,
    );
}
