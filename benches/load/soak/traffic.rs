//! The soak's traffic: a fixed mix of request kinds, each with the answer it must get
//! (an error where one is due), sent by a few paced workers on keep-alive connections
//! until a deadline. The requests of the load bench's scenarios are reused as they are.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use super::client::{self, Failure, RequestSpec, Sender};
use super::mock;
use super::scenarios::Scenario;
use super::servers::{Target, GATEWAY_KEY};

/// No single request may take longer than this (a stall is a failure, not a hang).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// The slow reader's request body, echoed back by the mock.
const ECHO_BYTES: usize = 256 * 1024;

/// The slow reader's receive buffer and its pause after each piece it reads.
const SLOW_RECEIVE_BUFFER: u32 = 4096;
const SLOW_READ_PAUSE: Duration = Duration::from_millis(5);

/// Failure messages kept per kind.
const KEEP_SAMPLES: usize = 3;

/// One kind of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    PassthroughJson,
    PassthroughSse,
    ChatJsonTranslated,
    ChatStreamTranslated,
    MessagesStreamTranslated,
    ProviderRateLimited,
    ProviderErrorTranslated,
    BadGatewayKey,
    UnknownModel,
    HangUpMidStream,
    SlowReader,
    ModelList,
}

impl Kind {
    /// The name `AURORA_SOAK_KINDS` knows it by.
    pub fn key(self) -> &'static str {
        match self {
            Kind::PassthroughJson => "passthrough_json",
            Kind::PassthroughSse => "passthrough_sse",
            Kind::ChatJsonTranslated => "chat_json",
            Kind::ChatStreamTranslated => "chat_stream",
            Kind::MessagesStreamTranslated => "messages_stream",
            Kind::ProviderRateLimited => "provider_429",
            Kind::ProviderErrorTranslated => "provider_500",
            Kind::BadGatewayKey => "bad_key",
            Kind::UnknownModel => "unknown_model",
            Kind::HangUpMidStream => "hang_up",
            Kind::SlowReader => "slow_reader",
            Kind::ModelList => "model_list",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::PassthroughJson => "passthrough JSON",
            Kind::PassthroughSse => "passthrough SSE",
            Kind::ChatJsonTranslated => "/v1/chat/completions → Anthropic, JSON",
            Kind::ChatStreamTranslated => "/v1/chat/completions → Anthropic, stream",
            Kind::MessagesStreamTranslated => "/v1/messages → OpenAI, stream",
            Kind::ProviderRateLimited => "provider 429 (passthrough)",
            Kind::ProviderErrorTranslated => "provider 500 (translated)",
            Kind::BadGatewayKey => "bad gateway key (401)",
            Kind::UnknownModel => "unknown model (400)",
            Kind::HangUpMidStream => "client hangs up mid-stream",
            Kind::SlowReader => "slow reader, 256 KiB echo",
            Kind::ModelList => "GET /v1/models",
        }
    }
}

/// The order each worker goes through (from its own offset): the weights of the mix.
pub const SCHEDULE: [Kind; 20] = [
    Kind::PassthroughJson,
    Kind::ChatStreamTranslated,
    Kind::PassthroughSse,
    Kind::ProviderRateLimited,
    Kind::ChatJsonTranslated,
    Kind::HangUpMidStream,
    Kind::PassthroughJson,
    Kind::MessagesStreamTranslated,
    Kind::BadGatewayKey,
    Kind::PassthroughSse,
    Kind::SlowReader,
    Kind::PassthroughJson,
    Kind::ChatJsonTranslated,
    Kind::ProviderErrorTranslated,
    Kind::MessagesStreamTranslated,
    Kind::HangUpMidStream,
    Kind::PassthroughJson,
    Kind::UnknownModel,
    Kind::ChatStreamTranslated,
    Kind::ModelList,
];

/// A request and the answer it must get.
struct Expected {
    spec: RequestSpec,
    status: StatusCode,
}

/// Every request of the mix, for a gateway at `addr`.
pub struct Traffic {
    addr: SocketAddr,
    requests: BTreeMap<Kind, Expected>,
    /// Streams to hang up on, taken in turn: a passthrough one and a translated one.
    hang_ups: [RequestSpec; 2],
}

fn scenario(name: &str, port: u16) -> RequestSpec {
    Scenario::request_named(name, Target::Aurora, port)
        .unwrap_or_else(|| panic!("load scenario {name}"))
}

/// `base` with another path, body and end marker.
fn variant(base: &RequestSpec, path: &str, body: Bytes, marker: &'static str) -> RequestSpec {
    RequestSpec {
        path: path.to_string(),
        body,
        marker,
        ..base.clone()
    }
}

fn ok(spec: RequestSpec) -> Expected {
    Expected {
        spec,
        status: StatusCode::OK,
    }
}

/// A chat request to `model`, without streaming.
fn chat_body(model: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello to the soak."}}],"max_tokens":64}}"#
    ))
}

/// The slow reader's body: JSON of exactly [`ECHO_BYTES`], with an end marker.
fn echo_body() -> Bytes {
    let head = r#"{"pad":""#;
    let tail = r#"","end":"soak-echo"}"#;
    let pad = ECHO_BYTES - head.len() - tail.len();
    Bytes::from(format!("{head}{}{tail}", "e".repeat(pad)))
}

impl Traffic {
    pub fn new(addr: SocketAddr) -> Self {
        let port = addr.port();
        let small = scenario("passthrough_small_json", port);
        let chat = scenario("chat_to_anthropic_json", port);
        let mut bad_key = small.clone();
        bad_key.headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer soak-wrong-gateway-key"),
        );
        // Sorted by id, the steady alias comes last.
        let mut models = variant(&small, "/v1/models", Bytes::new(), r#""id":"soak-steady""#);
        models.method = Method::GET;
        models.headers.remove(http::header::CONTENT_TYPE);
        let requests = BTreeMap::from([
            (Kind::PassthroughJson, ok(small.clone())),
            (Kind::PassthroughSse, ok(scenario("passthrough_sse", port))),
            (Kind::ChatJsonTranslated, ok(chat.clone())),
            (
                Kind::ChatStreamTranslated,
                ok(scenario("chat_to_anthropic_stream", port)),
            ),
            (
                Kind::MessagesStreamTranslated,
                ok(scenario("messages_to_openai_stream", port)),
            ),
            (
                Kind::ProviderRateLimited,
                Expected {
                    spec: variant(
                        &small,
                        "/p/openai/v1/status/429",
                        small.body.clone(),
                        "mock answered 429",
                    ),
                    status: StatusCode::TOO_MANY_REQUESTS,
                },
            ),
            (
                Kind::ProviderErrorTranslated,
                Expected {
                    spec: variant(
                        &chat,
                        &chat.path,
                        chat_body(&format!("anthropic/{}", mock::canned::failing_model(500))),
                        "mock answered 500",
                    ),
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                },
            ),
            (
                Kind::BadGatewayKey,
                Expected {
                    spec: RequestSpec {
                        marker: "error",
                        ..bad_key
                    },
                    status: StatusCode::UNAUTHORIZED,
                },
            ),
            (
                Kind::UnknownModel,
                Expected {
                    spec: variant(&chat, &chat.path, chat_body("no-such-model"), "model"),
                    status: StatusCode::BAD_REQUEST,
                },
            ),
            (
                Kind::SlowReader,
                ok(variant(
                    &small,
                    "/p/openai/v1/echo",
                    echo_body(),
                    "\"end\":\"soak-echo\"}",
                )),
            ),
            (Kind::ModelList, ok(models)),
        ]);
        Self {
            addr,
            requests,
            hang_ups: [
                scenario("passthrough_sse", port),
                scenario("chat_to_anthropic_stream", port),
            ],
        }
    }

    /// Sends one request of `kind` (on `sender`, reconnecting when the gateway closed
    /// it) and judges the answer; `turn` picks among the variants of a kind.
    async fn send(
        &self,
        kind: Kind,
        sender: &mut Option<Sender>,
        turn: usize,
    ) -> Result<(), String> {
        let work = async {
            match kind {
                Kind::HangUpMidStream => self.hang_up(turn).await,
                Kind::SlowReader => self.read_slowly().await,
                _ => self.exchange(kind, sender).await,
            }
        };
        tokio::time::timeout(REQUEST_DEADLINE, work)
            .await
            .unwrap_or_else(|_| Err(format!("no complete answer within {REQUEST_DEADLINE:?}")))
    }

    async fn exchange(&self, kind: Kind, sender: &mut Option<Sender>) -> Result<(), String> {
        let expected = self
            .requests
            .get(&kind)
            .ok_or_else(|| format!("no request for {kind:?}"))?;
        for _ in 0..3 {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                *sender = Some(client::connect(self.addr).await?);
            }
            let Some(s) = sender.as_mut() else {
                continue;
            };
            match client::exchange_answer(s, &expected.spec).await {
                Ok(answer) => {
                    if answer.status != expected.status {
                        *sender = None;
                        return Err(format!(
                            "status {} (expected {}): …{}",
                            answer.status,
                            expected.status,
                            answer.ending()
                        ));
                    }
                    if !answer.ends_with_marker(expected.spec.marker) {
                        *sender = None;
                        return Err(format!(
                            "answer without `{}` at its end: …{}",
                            expected.spec.marker,
                            answer.ending()
                        ));
                    }
                    return Ok(());
                }
                // The gateway closed an idle keep-alive connection: not a failure.
                Err(Failure::Closed) => *sender = None,
                Err(Failure::Request(why)) => {
                    *sender = None;
                    return Err(why);
                }
            }
        }
        Err("connection kept closing".into())
    }

    /// Opens a stream, takes its first event and leaves.
    async fn hang_up(&self, turn: usize) -> Result<(), String> {
        let spec = &self.hang_ups[turn % self.hang_ups.len()];
        let (sender, body) = client::open_stream(self.addr, spec).await?;
        // Dropping both closes the connection with the answer half read.
        drop(body);
        drop(sender);
        Ok(())
    }

    /// Uploads the echo body through a small receive window and reads the answer a
    /// piece at a time, so the gateway has to hold back.
    async fn read_slowly(&self) -> Result<(), String> {
        let expected = self
            .requests
            .get(&Kind::SlowReader)
            .ok_or("no slow-reader request")?;
        let mut sender =
            client::connect_with_receive_buffer(self.addr, SLOW_RECEIVE_BUFFER).await?;
        let resp = sender
            .send_request(client::build(&expected.spec))
            .await
            .map_err(|e| format!("send: {e}"))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("status {}", resp.status()));
        }
        let mut body = resp.into_body();
        let mut received = Vec::with_capacity(ECHO_BYTES);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                received.extend_from_slice(data);
            }
            tokio::time::sleep(SLOW_READ_PAUSE).await;
        }
        if received != expected.spec.body {
            return Err(format!(
                "echo of {} bytes came back as {} different bytes",
                expected.spec.body.len(),
                received.len()
            ));
        }
        Ok(())
    }
}

/// Answers counted per kind.
#[derive(Debug, Default, Clone)]
pub struct Count {
    pub served: u64,
    pub failed: u64,
    pub samples: Vec<String>,
}

/// Counts of every kind, shared by the workers.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<Kind, Count>>,
}

impl Tally {
    fn record(&self, kind: Kind, outcome: Result<(), String>) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let count = counts.entry(kind).or_default();
        match outcome {
            Ok(()) => count.served += 1,
            Err(why) => {
                count.failed += 1;
                if count.samples.len() < KEEP_SAMPLES && !count.samples.contains(&why) {
                    count.samples.push(why);
                }
            }
        }
    }

    /// The counts so far, by kind.
    pub fn counts(&self) -> BTreeMap<Kind, Count> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Served and failed requests of every kind.
    pub fn totals(&self) -> (u64, u64) {
        self.counts()
            .values()
            .fold((0, 0), |(s, f), c| (s + c.served, f + c.failed))
    }
}

/// [`SCHEDULE`] with only the kinds whose keys `only` names (all without a list); the
/// unknown names, if any, as the error.
pub fn schedule(only: Option<&[String]>) -> Result<Vec<Kind>, String> {
    let Some(only) = only else {
        return Ok(SCHEDULE.to_vec());
    };
    let unknown: Vec<&str> = only
        .iter()
        .map(String::as_str)
        .filter(|name| !SCHEDULE.iter().any(|k| k.key() == *name))
        .collect();
    if !unknown.is_empty() {
        return Err(unknown.join(", "));
    }
    Ok(SCHEDULE
        .into_iter()
        .filter(|k| only.iter().any(|name| name == k.key()))
        .collect())
}

/// `workers` loops sending the kinds of `schedule` in turn, at `rate` requests per
/// second in all, until `until`.
pub async fn run(
    traffic: Arc<Traffic>,
    tally: Arc<Tally>,
    schedule: Arc<Vec<Kind>>,
    workers: usize,
    rate: f64,
    until: Instant,
) {
    let period = Duration::from_secs_f64(workers as f64 / rate.max(1.0));
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (traffic, tally, schedule) = (traffic.clone(), tally.clone(), schedule.clone());
            tokio::spawn(async move {
                let mut sender = None;
                // Workers start spread over one period and at different places in the mix.
                let mut next = Instant::now() + period.mul_f64(w as f64 / workers as f64);
                let mut turn = w * 7;
                while next < until && !schedule.is_empty() {
                    tokio::time::sleep_until(next.into()).await;
                    let kind = schedule[turn % schedule.len()];
                    let outcome = traffic.send(kind, &mut sender, turn / schedule.len()).await;
                    tally.record(kind, outcome);
                    turn += 1;
                    // Behind schedule (a slow reader, say): carry on from now, no burst.
                    next = (next + period).max(Instant::now());
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_holds_every_kind() {
        let traffic = Traffic::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        for kind in SCHEDULE {
            assert!(
                matches!(kind, Kind::HangUpMidStream) || traffic.requests.contains_key(&kind),
                "{kind:?}"
            );
        }
        let kinds: std::collections::BTreeSet<Kind> = SCHEDULE.into_iter().collect();
        assert_eq!(kinds.len(), 12);
    }

    #[test]
    fn a_list_of_kinds_keeps_only_those_in_their_turns() {
        assert_eq!(schedule(None).unwrap(), SCHEDULE.to_vec());
        let only = ["hang_up".to_string(), "bad_key".to_string()];
        let picked = schedule(Some(&only)).unwrap();
        assert_eq!(
            picked,
            [
                Kind::HangUpMidStream,
                Kind::BadGatewayKey,
                Kind::HangUpMidStream
            ]
        );
        let wrong = ["hang_up".to_string(), "nope".to_string()];
        assert_eq!(schedule(Some(&wrong)).unwrap_err(), "nope");
    }

    #[test]
    fn error_kinds_expect_their_error_and_the_rest_success() {
        let traffic = Traffic::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let status = |k| traffic.requests[&k].status.as_u16();
        assert_eq!(status(Kind::ProviderRateLimited), 429);
        assert_eq!(status(Kind::ProviderErrorTranslated), 500);
        assert_eq!(status(Kind::BadGatewayKey), 401);
        assert_eq!(status(Kind::UnknownModel), 400);
        assert_eq!(status(Kind::PassthroughJson), 200);
        assert_eq!(
            traffic.requests[&Kind::SlowReader].spec.body.len(),
            ECHO_BYTES
        );
        let bad = &traffic.requests[&Kind::BadGatewayKey].spec;
        assert_ne!(
            bad.headers["authorization"],
            format!("Bearer {GATEWAY_KEY}")
        );
    }
}
