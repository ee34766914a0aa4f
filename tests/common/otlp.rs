//! A trace collector for the tests: an OTLP/HTTP receiver on loopback (the mock
//! server answering `POST /v1/traces`) that decodes what the gateway exports.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::{MockUpstream, Reply};

/// Span kinds as OTLP numbers them.
pub const SERVER: i32 = 2;
pub const CLIENT: i32 = 3;

/// A running OTLP/HTTP receiver.
pub struct OtlpReceiver {
    mock: MockUpstream,
}

/// One exported span and the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub service: Option<String>,
    pub span: Span,
}

impl ExportedSpan {
    /// The attribute `key` as text (strings as they are, numbers in decimal).
    pub fn attr(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }

    pub fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }

    pub fn parent_span_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }
}

fn attribute(attrs: &[KeyValue], key: &str) -> Option<String> {
    let value = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

impl OtlpReceiver {
    /// A receiver that takes every export (`200` with an empty response message).
    pub async fn start() -> Self {
        let mock = MockUpstream::start(|rec| match (rec.method.as_str(), rec.uri.as_str()) {
            ("POST", "/v1/traces") => Reply::Full {
                status: 200,
                headers: vec![("content-type".into(), "application/x-protobuf".into())],
                body: bytes::Bytes::new(),
            },
            _ => Reply::json(404, "{}"),
        })
        .await;
        Self { mock }
    }

    /// The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.mock.url("")
    }

    /// The raw bodies of every export received.
    pub fn bodies(&self) -> Vec<bytes::Bytes> {
        self.mock
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.uri == "/v1/traces")
            .inspect(|r| {
                assert_eq!(
                    r.header("content-type"),
                    Some("application/x-protobuf"),
                    "OTLP/HTTP with protobuf"
                );
            })
            .map(|r| r.body)
            .collect()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        let mut out = Vec::new();
        for body in self.bodies() {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
            for resource_spans in request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| attribute(&r.attributes, "service.name"));
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        out.push(ExportedSpan {
                            service: service.clone(),
                            span,
                        });
                    }
                }
            }
        }
        out
    }

    /// The spans received once there are at least `n` (the gateway sends a batch
    /// every second).
    pub async fn wait_for(&self, n: usize) -> Vec<ExportedSpan> {
        for _ in 0..200 {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} spans, got {:#?}", self.spans());
    }
}
