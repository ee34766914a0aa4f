//! One access line per request. Credentials never appear: the caller is named by its
//! gateway key name and, for a caller's own provider key, a short hash of it; the
//! query string (where some APIs put keys) is left out.

use pingora_core::Error;
use pingora_proxy::Session;

use super::RequestContext;
use crate::auth::Caller;

/// Target of access lines, so they can be filtered: `RUST_LOG=aurora::access=info`.
pub const ACCESS_TARGET: &str = "aurora::access";

/// Writes the access line for a finished request.
pub fn log_request(session: &Session, e: Option<&Error>, ctx: &RequestContext) {
    if !log::log_enabled!(target: ACCESS_TARGET, log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let status = super::final_status(session).unwrap_or(0);
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
        caller_field(ctx.caller.as_ref(), ctx.passthru_label()),
        status,
        upstream_status,
        ctx.started.elapsed().as_secs_f64() * 1000.0,
        session.body_bytes_read(),
        session.body_bytes_sent(),
        error,
    );
}

/// The `caller` field: the gateway key's name, the passthru label of the caller's own
/// provider key, both joined by `+`, or `-` when neither is known.
pub(crate) fn caller_field(caller: Option<&Caller>, passthru_label: Option<&str>) -> String {
    let gateway = caller.filter(|c| **c != Caller::Open).map(Caller::label);
    match (gateway, passthru_label) {
        (Some(name), Some(label)) => format!("{name}+{label}"),
        (Some(name), None) => name.to_string(),
        (None, Some(label)) => label.to_string(),
        (None, None) => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_field_names_gateway_key_and_passthru_hash() {
        let label = Some("passthru:0123abcd");
        assert_eq!(caller_field(None, None), "-");
        assert_eq!(caller_field(Some(&Caller::Open), None), "-");
        assert_eq!(
            caller_field(Some(&Caller::Open), label),
            "passthru:0123abcd"
        );
        assert_eq!(caller_field(Some(&Caller::Master), None), "master");
        assert_eq!(
            caller_field(Some(&Caller::Managed("ci".into())), label),
            "ci+passthru:0123abcd"
        );
    }
}
