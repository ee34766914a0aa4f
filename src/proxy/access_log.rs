//! One access line per finished request, as `key=value` text or as JSON
//! (`server.access_log`), handed to the access log's writer thread. Credentials never
//! appear: the caller is named by its gateway key name and, for a caller's own
//! provider key, a short hash of it; the query string (where some APIs put keys) is
//! left out. Every free-text value is escaped, so a name sent by a client can never
//! start a line of its own.

use std::borrow::Cow;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use pingora_core::Error;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use serde::Serialize;

use super::headers::REQUEST_ID;
use super::{observe, RequestContext};
use crate::auth::Caller;
use crate::config::AccessLogFormat;
use crate::metrics::usage::Usage;

/// Target of access lines, so they can be filtered: `RUST_LOG=aurora::access=info`.
pub const ACCESS_TARGET: &str = "aurora::access";

/// Everything one access line says. Token counts and cost join here as optional
/// fields once they are read from answers.
#[derive(Debug, Serialize)]
pub struct AccessRecord<'a> {
    /// The gateway's request id (`X-Aurora-Request-Id`).
    pub request_id: &'a str,
    /// The provider's request id ([`provider_request_id`]), `-` when there is none.
    pub upstream_request_id: Cow<'a, str>,
    pub method: Cow<'a, str>,
    /// The path, never the query string. This and the other fields a client writes
    /// are clipped (see [`MAX_FIELD_TEXT`]).
    pub path: Cow<'a, str>,
    pub route: &'a str,
    /// Provider instance, `-` when the request was answered before any attempt.
    pub provider: &'a str,
    /// The model the provider was asked for, `-` when the route names none.
    pub model: Cow<'a, str>,
    /// `master`, a managed key's name, `caller_key` or `open` (as the metrics' `key`).
    pub key_name: &'a str,
    /// Gateway key name and caller-key hash of the caller's own provider key.
    pub caller: Cow<'a, str>,
    /// Status sent to the client, 0 when none could be sent.
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub duration_ms: f64,
    /// The provider's time from the request header to its response header.
    pub first_byte_ms: Option<f64>,
    /// The gateway's own time: arrival to the request header handed to the provider,
    /// plus its work on the answer (as `aurora_gateway_overhead_seconds`).
    pub overhead_ms: Option<f64>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    /// The tokens the provider reported, by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenFields>,
    /// Their cost in US dollars, when the model has a price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted_tools: Option<Cow<'a, str>>,
    /// Each attempt (`provider/model:outcome:ms`), when there was more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Cow<'a, str>>,
}

/// The most bytes of a client-written field an access line holds: the line queue is
/// bounded in lines, and a model name or a path can be as long as a request may be.
pub const MAX_FIELD_TEXT: usize = 2048;

fn field_text(text: &str) -> Cow<'_, str> {
    crate::logging::clipped(text, MAX_FIELD_TEXT)
}

/// An answer's tokens, as the access line names them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TokenFields {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
    /// Web searches the model ran, billed apart from the tokens; written when any.
    #[serde(skip_serializing_if = "no_searches")]
    pub web_searches: u64,
    /// Estimated, in part or whole: a stream without its final usage.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl TokenFields {
    /// The fields of `u`, `estimated` or reported.
    fn of(u: Usage, estimated: bool) -> Self {
        Self {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read,
            cache_write: u.cache_write,
            reasoning: u.reasoning,
            web_searches: u.web_searches,
            estimated,
        }
    }
}

fn no_searches(searches: &u64) -> bool {
    *searches == 0
}

/// Hands the access line of a finished request to the writer.
pub fn log_request(session: &Session, e: Option<&Error>, ctx: &RequestContext) {
    let format = ctx
        .config
        .as_ref()
        .map_or(AccessLogFormat::default(), |c| c.server.access_log);
    if format == AccessLogFormat::Off || !log::log_enabled!(target: ACCESS_TARGET, log::Level::Info)
    {
        return;
    }
    let Some(writer) = crate::logging::access_log() else {
        return;
    };
    let req = session.req_header();
    let error = match (&ctx.error, e) {
        (Some(g), _) => Some(g.message.as_str()),
        (None, Some(e)) => Some(e.etype().as_str()),
        _ => None,
    };
    let record = AccessRecord {
        request_id: ctx.request_id.as_str(),
        // The gateway's own answers carry its id where a provider's would be.
        upstream_request_id: session
            .response_written()
            .and_then(provider_request_id)
            .filter(|id| id != ctx.request_id.as_str())
            .unwrap_or(Cow::Borrowed("-")),
        // A client writes the method, of any length, as it writes the path.
        method: field_text(req.method.as_str()),
        path: field_text(req.uri.path()),
        route: ctx.route_kind,
        provider: ctx.attempted_provider().map_or("-", |p| p.name.as_str()),
        model: field_text(ctx.obs.model().unwrap_or("-")),
        key_name: observe::key_name(ctx),
        caller: caller_field(ctx.caller.as_ref(), ctx.caller_key_label()),
        status: super::final_status(session).unwrap_or(0),
        upstream_status: ctx.upstream_status,
        duration_ms: millis(ctx.started.elapsed()),
        first_byte_ms: ctx.obs.first_byte().map(millis),
        overhead_ms: ctx.obs.overhead().map(millis),
        bytes_in: session.body_bytes_read(),
        bytes_out: session.body_bytes_sent(),
        tokens: ctx
            .obs
            .usage()
            .map(|u| TokenFields::of(u, ctx.obs.usage_estimated())),
        cost_usd: observe::cost_usd(ctx),
        omitted_tools: ctx.omitted_tools.as_deref().map(field_text),
        attempts: ctx
            .plan
            .as_ref()
            .and_then(super::attempts::attempts_list)
            .map(|list| {
                if list.len() > MAX_FIELD_TEXT {
                    field_text(&list).into_owned()
                } else {
                    list
                }
            }),
        error: error.map(field_text),
    };
    let now = SystemTime::now();
    let line = match format {
        AccessLogFormat::Json => json_line(&record, now),
        _ => text_line(&record, now),
    };
    writer.submit(line);
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The text line, as the gateway's other log lines look:
/// `[2026-01-01T00:00:00Z INFO  aurora::access] request_id=… status=200 …`.
pub fn text_line(r: &AccessRecord<'_>, at: SystemTime) -> String {
    let mut line = String::with_capacity(384);
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        "[{} INFO  {ACCESS_TARGET}] request_id={} upstream_request_id={} method={} path={} route={} provider={} model={} key_name={} caller={} status={} upstream_status=",
        humantime::format_rfc3339_seconds(at),
        field_value(r.request_id),
        field_value(&r.upstream_request_id),
        field_value(&r.method),
        field_value(&r.path),
        r.route,
        field_value(r.provider),
        field_value(&r.model),
        field_value(r.key_name),
        field_value(&r.caller),
        r.status,
    );
    match r.upstream_status {
        Some(s) => {
            let _ = write!(line, "{s}");
        }
        None => line.push('-'),
    }
    let _ = write!(line, " duration_ms={:.3} first_byte_ms=", r.duration_ms);
    write_optional_ms(&mut line, r.first_byte_ms);
    line.push_str(" overhead_ms=");
    write_optional_ms(&mut line, r.overhead_ms);
    let _ = write!(line, " bytes_in={} bytes_out={}", r.bytes_in, r.bytes_out);
    if let Some(t) = r.tokens {
        let _ = write!(
            line,
            " tokens_input={} tokens_output={} tokens_cache_read={} tokens_cache_write={} tokens_reasoning={}",
            t.input, t.output, t.cache_read, t.cache_write, t.reasoning
        );
        if t.web_searches > 0 {
            let _ = write!(line, " web_searches={}", t.web_searches);
        }
        if t.estimated {
            line.push_str(" tokens_estimated=true");
        }
    }
    if let Some(cost) = r.cost_usd {
        let _ = write!(line, " cost_usd={cost:.6}");
    }
    if let Some(tools) = r.omitted_tools.as_deref() {
        let _ = write!(line, " omitted_tools={}", field_value(tools));
    }
    if let Some(attempts) = &r.attempts {
        let _ = write!(line, " attempts={}", field_value(attempts));
    }
    if let Some(error) = r.error.as_deref() {
        let _ = write!(line, " error={}", quoted(error));
    }
    line.push('\n');
    line
}

fn write_optional_ms(line: &mut String, ms: Option<f64>) {
    match ms {
        Some(ms) => {
            let _ = write!(line, "{ms:.3}");
        }
        None => line.push('-'),
    }
}

/// The JSON line: one object, the record's fields after `ts` and `target`. JSON's own
/// escaping keeps every control character inside its string.
pub fn json_line(r: &AccessRecord<'_>, at: SystemTime) -> String {
    #[derive(Serialize)]
    struct Line<'r, 'a> {
        ts: String,
        target: &'static str,
        #[serde(flatten)]
        record: &'r AccessRecord<'a>,
    }
    let line = Line {
        ts: humantime::format_rfc3339_millis(at).to_string(),
        target: ACCESS_TARGET,
        record: r,
    };
    match serde_json::to_string(&line) {
        Ok(mut json) => {
            json.push('\n');
            json
        }
        // Plain strings and numbers always serialise; kept as a guard.
        Err(_) => String::new(),
    }
}

/// The provider's own request id on a response it sent (`X-Request-Id`, else
/// Anthropic's `Request-Id`); gateway-made responses carry none.
pub(crate) fn provider_request_id(resp: &ResponseHeader) -> Option<Cow<'_, str>> {
    resp.headers
        .get(REQUEST_ID)
        .or_else(|| resp.headers.get(super::headers::ANTHROPIC_REQUEST_ID))
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
        field_value(&field_text(req.method.as_str())),
        field_value(&field_text(req.uri.path())),
        field_value(&field_text(&host))
    )
}

/// The `caller` field: the gateway key's name, the caller-key label of the caller's own
/// provider key, both joined by `+`, or `-` when neither is known.
pub(crate) fn caller_field<'a>(
    caller: Option<&'a Caller>,
    caller_key_label: Option<&'a str>,
) -> Cow<'a, str> {
    let gateway = caller.filter(|c| **c != Caller::Open).map(Caller::label);
    match (gateway, caller_key_label) {
        (Some(name), Some(label)) => Cow::Owned(format!("{name}+{label}")),
        (Some(name), None) => Cow::Borrowed(name),
        (None, Some(label)) => Cow::Borrowed(label),
        (None, None) => Cow::Borrowed("-"),
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
    fn caller_field_names_gateway_key_and_caller_key_hash() {
        let label = Some("caller_key:0123abcd");
        assert_eq!(caller_field(None, None), "-");
        assert_eq!(caller_field(Some(&Caller::Open), None), "-");
        assert_eq!(
            caller_field(Some(&Caller::Open), label),
            "caller_key:0123abcd"
        );
        assert_eq!(caller_field(Some(&Caller::Master), None), "master");
        assert_eq!(
            caller_field(Some(&Caller::Managed("ci".into())), label),
            "ci+caller_key:0123abcd"
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
    fn provider_request_id_is_x_request_id_else_anthropics_request_id() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        assert!(provider_request_id(&resp).is_none());
        resp.insert_header("request-id", "req_011CX").unwrap();
        assert_eq!(provider_request_id(&resp).as_deref(), Some("req_011CX"));
        resp.insert_header("x-request-id", "chatcmpl-req").unwrap();
        assert_eq!(provider_request_id(&resp).as_deref(), Some("chatcmpl-req"));
    }
}
