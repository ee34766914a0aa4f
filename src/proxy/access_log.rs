//! One access line per request. Credentials never appear: the caller is named by its
//! gateway key name and, for a caller's own provider key, a short hash of it; the
//! query string (where some APIs put keys) is left out. Every free-text value is
//! escaped, so a name sent by a client can never start a line of its own.

use std::borrow::Cow;
use std::fmt::Write;

use pingora_core::Error;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::headers::REQUEST_ID;
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
    let written = session.response_written();
    let status = super::final_status(session).unwrap_or(0);
    let upstream_status = ctx
        .upstream_status
        .map_or_else(|| "-".to_string(), |s| s.to_string());
    let upstream_id = written
        .and_then(provider_request_id)
        .unwrap_or(Cow::Borrowed("-"));
    let omitted = ctx.omitted_tools.as_deref().map_or_else(String::new, |t| {
        format!(" omitted_tools={}", field_value(t))
    });
    let error = match (&ctx.error, e) {
        (Some(g), _) => format!(" error={}", quoted(&g.message)),
        (None, Some(e)) => format!(" error={}", quoted(e.etype().as_str())),
        _ => String::new(),
    };
    log::info!(
        target: ACCESS_TARGET,
        "request_id={} upstream_request_id={} method={} path={} route={} provider={} caller={} status={} upstream_status={} duration_ms={:.3} bytes_in={} bytes_out={}{}{}",
        field_value(&ctx.request_id),
        field_value(&upstream_id),
        field_value(req.method.as_str()),
        field_value(req.uri.path()),
        ctx.route_kind,
        field_value(ctx.provider_name().unwrap_or("-")),
        field_value(&caller_field(ctx.caller.as_ref(), ctx.passthru_label())),
        status,
        upstream_status,
        ctx.started.elapsed().as_secs_f64() * 1000.0,
        session.body_bytes_read(),
        session.body_bytes_sent(),
        omitted,
        error,
    );
}

/// The provider's own `X-Request-Id` on a response it sent; gateway-made responses
/// carry none.
pub(crate) fn provider_request_id(resp: &ResponseHeader) -> Option<Cow<'_, str>> {
    resp.headers
        .get(REQUEST_ID)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// What Pingora's own error lines say about a request: method, path and `Host`, never
/// the query string (where some APIs put keys) and never another header.
pub fn request_summary(req: &RequestHeader) -> String {
    let host = req
        .headers
        .get(http::header::HOST)
        .map_or(Cow::Borrowed("-"), |h| {
            String::from_utf8_lossy(h.as_bytes())
        });
    format!(
        "{} {}, Host: {}",
        field_value(req.method.as_str()),
        field_value(req.uri.path()),
        field_value(&host)
    )
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

/// A free-text value as one field of the access line: escaped (see [`escape`]) and,
/// when it holds a space or `=` or is empty, quoted, so it can neither end the line
/// nor pass for another field.
pub(crate) fn field_value(raw: &str) -> Cow<'_, str> {
    if raw.is_empty() || raw.contains([' ', '=']) {
        Cow::Owned(quoted(raw))
    } else {
        escape(raw)
    }
}

/// `raw` escaped and in double quotes.
fn quoted(raw: &str) -> String {
    format!("\"{}\"", escape(raw))
}

/// `raw` with every control character (and the Unicode line and paragraph separators)
/// written as an escape (`\n`, `\r`, `\t`, else `\u{1b}`), and a backslash before
/// each `"` and `\`. Borrowed when nothing needed escaping, which is nearly always.
pub(crate) fn escape(raw: &str) -> Cow<'_, str> {
    let needs_escape =
        |c: char| c.is_control() || c == '"' || c == '\\' || c == '\u{2028}' || c == '\u{2029}';
    if !raw.contains(needs_escape) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for c in raw.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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

    #[test]
    fn escape_writes_control_characters_quotes_and_backslashes_as_escapes() {
        assert_eq!(escape("a\nb\rc\td"), r"a\nb\rc\td");
        assert_eq!(escape("\u{1b}[31m\u{7f}\u{85}"), r"\u{1b}[31m\u{7f}\u{85}");
        assert_eq!(escape("say \"hi\" \\ bye"), r#"say \"hi\" \\ bye"#);
        assert_eq!(escape("\u{2028}\u{2029}\0"), r"\u{2028}\u{2029}\u{0}");
    }

    #[test]
    fn escape_borrows_plain_text_including_non_ascii_letters() {
        assert!(matches!(escape("/p/openai/chat"), Cow::Borrowed(_)));
        assert!(matches!(
            escape("modèle-日本"),
            Cow::Borrowed("modèle-日本")
        ));
    }

    #[test]
    fn escaped_text_never_holds_a_line_break() {
        let forged = "x\n[2026-01-01T00:00:00Z INFO  aurora::access] request_id=forged\r\n";
        let out = field_value(forged);
        assert!(!out.contains(['\n', '\r']), "{out}");
        assert!(out.starts_with('"') && out.ends_with('"'), "{out}");
    }

    #[test]
    fn field_value_quotes_values_that_could_pass_for_another_field() {
        assert_eq!(field_value("openai"), "openai");
        assert_eq!(field_value("a status=200"), r#""a status=200""#);
        assert_eq!(field_value("k=v"), r#""k=v""#);
        assert_eq!(field_value(""), r#""""#);
        assert_eq!(field_value("a\"b"), r#"a\"b"#);
    }

    #[test]
    fn request_summary_leaves_out_the_query_string() {
        let mut req = RequestHeader::build(
            "POST",
            b"/p/gemini/models/x:generateContent?key=AIza-secret-test&alt=sse",
            None,
        )
        .unwrap();
        req.insert_header("host", "gw.local").unwrap();
        req.insert_header("x-goog-api-key", "AIza-secret-test")
            .unwrap();
        let summary = request_summary(&req);
        assert_eq!(
            summary,
            "POST /p/gemini/models/x:generateContent, Host: gw.local"
        );
    }

    #[test]
    fn provider_request_id_reads_the_providers_header() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        assert!(provider_request_id(&resp).is_none());
        resp.insert_header("x-request-id", "req_011CX").unwrap();
        assert_eq!(provider_request_id(&resp).as_deref(), Some("req_011CX"));
    }
}
