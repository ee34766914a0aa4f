//! An SSE stream the test drives event by event: the mock side is fed through a
//! channel, the client side records what arrives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{client, Gateway, Reply};

/// The text of event `n`.
pub fn event(n: usize) -> String {
    format!("event: tick\ndata: {{\"n\":{n}}}\n\n")
}

/// Events `0..count`, concatenated: what a complete stream looks like.
pub fn events(count: usize) -> String {
    (0..count).map(event).collect()
}

/// The test's end of the provider's stream.
pub struct SseFeed {
    tx: Option<UnboundedSender<Bytes>>,
}

impl SseFeed {
    /// Makes the provider send event `n`.
    pub fn send(&self, n: usize) {
        if let Some(tx) = &self.tx {
            tx.send(Bytes::from(event(n))).unwrap();
        }
    }

    /// Ends the provider's response.
    pub fn close(&mut self) {
        self.tx = None;
    }
}

/// The mock's end: hands out the channel to the first request that asks.
pub struct SseSource {
    rx: Mutex<Option<UnboundedReceiver<Bytes>>>,
}

impl SseSource {
    /// The streaming reply; only one request can get it.
    pub fn reply(&self) -> Reply {
        Reply::Channel {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: self.rx.lock().unwrap().take().expect("one stream per feed"),
        }
    }
}

/// A feed and the source to answer one request with.
pub fn channel() -> (SseFeed, Arc<SseSource>) {
    let (tx, rx) = unbounded_channel();
    (
        SseFeed { tx: Some(tx) },
        Arc::new(SseSource {
            rx: Mutex::new(Some(rx)),
        }),
    )
}

/// Opens a streamed chat completion through `gw`'s OpenAI passthrough with `key`,
/// feeds the provider's first event and waits until it reached the client.
pub async fn open_passthrough_stream(gw: &Gateway, key: &str, feed: &SseFeed) -> SseClient {
    feed.send(0);
    let resp = client()
        .post(gw.url("/p/openai/chat/completions"))
        .bearer_auth(key)
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stream = SseClient::start(resp);
    stream.wait_events(1).await;
    stream
}

/// Reads a streaming response in the background.
pub struct SseClient {
    received: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl SseClient {
    /// Starts reading `resp`'s body.
    pub fn start(mut resp: reqwest::Response) -> Self {
        let received = Arc::new(Mutex::new(String::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk)),
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(format!("stream broke: {e:?}")),
                }
            }
        });
        Self { received, task }
    }

    /// Complete events received so far.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().matches("\n\n").count()
    }

    /// Waits until `n` complete events have arrived; panics after a generous deadline.
    pub async fn wait_events(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events arrived: {:?}",
                self.count(),
                self.received.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the end of the body: everything received, and whether it ended cleanly.
    pub async fn finish(self) -> (String, Result<(), String>) {
        let end = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .map_err(|_| "stream did not end".to_string())
            .and_then(|joined| joined.map_err(|e| e.to_string()))
            .and_then(|r| r);
        let text = self.received.lock().unwrap().clone();
        (text, end)
    }
}
