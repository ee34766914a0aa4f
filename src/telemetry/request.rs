//! One request's spans: the request's own (kind server, from arrival to the end of
//! the response) and one child per attempt at a provider (kind client, from the
//! connection to the provider's response header). The hooks below are what the proxy
//! calls; with tracing off each returns at its first line and no span exists.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{Span as _, SpanContext, SpanKind, Status, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Span;
use pingora_core::Error;
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::{attributes, propagation, tracer};
use crate::metrics::labels::OTHER_MODEL;
use crate::metrics::UpstreamErrorKind;
use crate::proxy::RequestContext;

/// The spans of one request.
#[derive(Default)]
pub struct RequestTrace {
    /// The request's own span; `None` when tracing is off, the route is not traced,
    /// or this is a subrequest (the main request holds it). Spans are boxed so that a
    /// request without them carries (and its hooks' futures copy) only a pointer.
    span: Option<Box<Span>>,
    /// Where attempts hang: the request span, or the main request's in a subrequest.
    parent: Option<SpanContext>,
    /// The attempt at a provider under way.
    attempt: Option<Box<Span>>,
    /// In a subrequest: the model the main request routed to.
    handed_model: Option<String>,
    /// In a subrequest: that model's bounded label, which names the attempt.
    handed_label: Option<Arc<str>>,
}

impl fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestTrace")
            .field("parent", &self.parent)
            .field("attempt", &self.attempt.is_some())
            .finish_non_exhaustive()
    }
}

/// The request span a subrequest's attempts belong to.
#[derive(Debug, Clone, Default)]
pub struct TraceHandoff {
    parent: Option<SpanContext>,
    model: Option<String>,
    label: Option<Arc<str>>,
}

/// The request was routed: its span starts (at its arrival), as a child of the
/// client's `traceparent` when it sent one.
pub fn request_admitted(req: &RequestHeader, ctx: &mut RequestContext) {
    let Some(tracer) = tracer() else {
        return;
    };
    if !attributes::traced_route(ctx.route_kind) {
        return;
    }
    let parent = propagation::extract(&req.headers);
    let method = req.method.as_str();
    let span = tracer
        .span_builder(attributes::span_name(None, None, method, ctx.route_kind))
        .with_kind(SpanKind::Server)
        .with_start_time(arrival(ctx.started))
        .with_attributes(attributes::request_start(
            method,
            ctx.route_kind,
            ctx.request_id.as_str(),
        ))
        .start_with_context(tracer, &parent);
    ctx.trace.parent = Some(span.span_context().clone());
    ctx.trace.span = Some(Box::new(span));
}

/// What a subrequest needs to hang its attempts under this request's span.
pub fn handoff(ctx: &RequestContext) -> TraceHandoff {
    if ctx.trace.parent.is_none() {
        return TraceHandoff::default();
    }
    TraceHandoff {
        parent: ctx.trace.parent.clone(),
        model: ctx.obs.model().map(str::to_string),
        label: ctx.obs.shared_model_label(),
    }
}

/// A subrequest starts under the main request's span.
pub fn subrequest_began(ctx: &mut RequestContext, handoff: TraceHandoff) {
    ctx.trace.parent = handoff.parent;
    ctx.trace.handed_model = handoff.model;
    ctx.trace.handed_label = handoff.label;
}

/// An attempt at the provider begins (before its connection), sending the client's
/// `method`. An attempt still open was abandoned for this one.
pub fn attempt_began(ctx: &mut RequestContext, method: &str) {
    let Some(tracer) = tracer() else {
        return;
    };
    if let Some(mut previous) = ctx.trace.attempt.take() {
        previous.set_status(Status::error("retried"));
        previous.end();
    }
    let (Some(parent), Some(upstream)) = (ctx.trace.parent.as_ref(), ctx.upstream.as_ref()) else {
        return;
    };
    let provider = Some(&*upstream.provider);
    // A subrequest routes no model of its own: the main request's stands.
    let (model, label) = match ctx.obs.model() {
        Some(model) => (Some(model), ctx.obs.model_label()),
        None => (
            ctx.trace.handed_model.as_deref(),
            ctx.trace.handed_label.as_deref(),
        ),
    };
    let upstream_path = Some(upstream.path_and_query.as_str());
    let operation = attributes::operation(ctx.route_kind, method, model.is_some(), upstream_path);
    // Named by the bounded label: a client's made-up model names no span.
    let named = model.map(|_| label.unwrap_or(OTHER_MODEL));
    let mut described = attributes::gen_ai(operation, provider, model);
    described.push(KeyValue::new(
        attributes::METHOD,
        attributes::method_name(method).to_string(),
    ));
    let span = tracer
        .span_builder(attributes::span_name(
            operation,
            named,
            method,
            ctx.route_kind,
        ))
        .with_kind(SpanKind::Client)
        .with_attributes(described)
        .start_with_context(tracer, &propagation::child_of(parent));
    ctx.trace.attempt = Some(Box::new(span));
}

/// Sets the provider's `traceparent` to the attempt under way (or the request span).
pub fn inject(ctx: &RequestContext, upstream: &mut RequestHeader) {
    let trace = &ctx.trace;
    let span = match (&trace.attempt, &trace.parent) {
        (Some(attempt), _) => attempt.span_context(),
        (None, Some(parent)) => parent,
        (None, None) => return,
    };
    propagation::inject(span, upstream);
}

/// The provider's response header arrived: the attempt is over.
pub fn attempt_answered(ctx: &mut RequestContext, status: u16) {
    let Some(mut attempt) = ctx.trace.attempt.take() else {
        return;
    };
    attempt.set_attribute(attributes::status_code(status));
    if status >= 400 {
        attempt.set_attribute(KeyValue::new(attributes::ERROR_TYPE, status.to_string()));
        attempt.set_status(Status::error(""));
    }
    attempt.end();
}

/// The attempt failed with `e` before the provider answered.
pub fn attempt_failed(ctx: &mut RequestContext, e: &Error) {
    if let Some(attempt) = ctx.trace.attempt.take() {
        end_failed(*attempt, Some(e));
    }
}

/// Ends an attempt that got no answer.
fn end_failed(mut attempt: Span, e: Option<&Error>) {
    let kind = e
        .and_then(UpstreamErrorKind::of)
        .map_or("_OTHER", UpstreamErrorKind::label);
    attempt.set_attribute(KeyValue::new(attributes::ERROR_TYPE, kind));
    attempt.set_status(Status::error(""));
    attempt.end();
}

/// A whole JSON answer the gateway read: its `model` is the response model.
pub fn answer_body(ctx: &mut RequestContext, body: &[u8]) {
    if ctx.trace.span.is_none() && ctx.trace.attempt.is_none() {
        return;
    }
    if let Some(model) = attributes::model_of_json(body) {
        response_model(ctx, &model);
    }
}

/// The model the provider says answered (`gen_ai.response.model`), when the gateway
/// read it from the answer.
pub fn response_model(ctx: &mut RequestContext, model: &str) {
    let attribute = || KeyValue::new(attributes::RESPONSE_MODEL, model.to_string());
    if let Some(span) = ctx.trace.span.as_mut() {
        span.set_attribute(attribute());
    }
    if let Some(attempt) = ctx.trace.attempt.as_mut() {
        attempt.set_attribute(attribute());
    }
}

/// The token counts the provider reported for this request, each when it reported
/// it (`gen_ai.usage.input_tokens` counts cached input too, as the convention does).
pub fn tokens_reported(ctx: &mut RequestContext, input: Option<u64>, output: Option<u64>) {
    if let Some(span) = ctx.trace.span.as_mut() {
        span.set_attributes(attributes::usage(input, output));
    }
}

/// The request is over: an attempt still open failed with `e`, and the request span
/// gets what the request learned (model, provider, status, tokens) and ends.
pub fn request_finished(session: &Session, e: Option<&Error>, ctx: &mut RequestContext) {
    if let Some(attempt) = ctx.trace.attempt.take() {
        end_failed(*attempt, e);
    }
    if ctx.trace.span.is_none() {
        return;
    }
    if let Some(usage) = ctx.obs.usage() {
        let input = usage.input + usage.cache_read + usage.cache_write;
        if ctx.obs.usage_estimated() {
            // Not what the provider reported: the convention's names stay unset.
            if let Some(span) = ctx.trace.span.as_mut() {
                span.set_attributes(attributes::estimated_usage(input, usage.output));
            }
        } else {
            tokens_reported(ctx, Some(input), Some(usage.output));
        }
    }
    let method = session.req_header().method.as_str();
    let operation = operation(ctx, method);
    let model = ctx.obs.request_model();
    let provider = ctx.attempted_provider();
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .filter(|s| *s >= 200);
    // Named by the model when configuration knows it or the provider took the call
    // (a name it answered is real); a client's made-up names become `other`, so that
    // span names stay as few as the models are.
    let answered = status.is_some_and(|s| s < 400);
    let named = model.map(|model| match ctx.obs.model_label() {
        Some(label) if label != OTHER_MODEL => label,
        _ if answered => model,
        _ => OTHER_MODEL,
    });
    let name = attributes::span_name(operation, named, method, ctx.route_kind);
    let gen_ai = attributes::gen_ai(operation, provider, model);
    let Some(mut span) = ctx.trace.span.take() else {
        return;
    };
    span.update_name(name);
    span.set_attributes(gen_ai);
    match status {
        Some(status) => {
            span.set_attribute(attributes::status_code(status));
            if status >= 500 {
                span.set_attribute(KeyValue::new(attributes::ERROR_TYPE, status.to_string()));
                span.set_status(Status::error(""));
            }
        }
        None => {
            span.set_attribute(KeyValue::new(attributes::ERROR_TYPE, "_OTHER"));
            span.set_status(Status::error(""));
        }
    }
    span.end();
}

/// The generative AI operation of the request, sent with `method`, if it is one.
fn operation(ctx: &RequestContext, method: &str) -> Option<&'static str> {
    let upstream_path = ctx.upstream.as_ref().map(|u| u.path_and_query.as_str());
    attributes::operation(
        ctx.route_kind,
        method,
        ctx.obs.request_model().is_some(),
        upstream_path,
    )
}

/// The wall-clock time of an arrival measured on the monotonic clock.
fn arrival(started: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(started.elapsed())
        .unwrap_or_else(SystemTime::now)
}
