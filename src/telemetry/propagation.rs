//! W3C Trace Context (`traceparent`, `tracestate`) read from the client's request
//! header and written into the provider's.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pingora_http::RequestHeader;

/// Reads a header map for the propagator.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes into a request header for the propagator.
struct HeaderInjector<'a>(&'a mut RequestHeader);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator only writes valid header values; should one be refused, the
        // provider simply gets no trace context.
        let _ = self.0.insert_header(key.to_string(), value);
    }
}

/// The parent the client's `traceparent` names, as a context to start a span in;
/// an empty context (a new trace) when it sent none or an invalid one.
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(headers))
}

/// Sets `traceparent` (and `tracestate` when there is one) on `req` to `span`,
/// replacing any the client sent.
pub fn inject(span: &SpanContext, req: &mut RequestHeader) {
    let cx = Context::new().with_remote_span_context(span.clone());
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(req));
}

/// A context whose parent is `span`.
pub fn child_of(span: &SpanContext) -> Context {
    Context::new().with_remote_span_context(span.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_client_traceparent_becomes_the_remote_parent() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        let cx = extract(&headers);
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(sc.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
    }

    #[test]
    fn a_missing_or_broken_traceparent_starts_a_new_trace() {
        assert!(!extract(&http::HeaderMap::new()).has_active_span());
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", "00-zz-yy-01".parse().unwrap());
        assert!(!extract(&headers).span().span_context().is_valid());
    }

    #[test]
    fn the_provider_gets_the_given_span_as_its_parent_replacing_the_clients() {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        req.insert_header("traceparent", PARENT).unwrap();
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("1111111111111111").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        inject(&sc, &mut req);
        let sent: Vec<_> = req.headers.get_all("traceparent").iter().collect();
        assert_eq!(
            sent,
            ["00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"]
        );
    }
}
