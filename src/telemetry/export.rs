//! Spans leave the process from one thread of their own: a request only hands its
//! finished span to a bounded queue and goes on. When the queue is full, or the
//! collector cannot take a batch (unreachable, slow, refusing), the spans are dropped
//! and counted in `aurora_trace_spans_dropped_total`: a collector outage costs the
//! gateway nothing else.
//!
//! The SDK's own batch processor drops spans the same way but keeps its count to
//! itself, hence this one.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::IntCounter;

/// Spans waiting to be sent, at most.
pub const QUEUE_SPANS: usize = 2048;
/// Spans sent in one request to the collector, at most.
pub const BATCH_SPANS: usize = 512;
/// A span waits this long at most before it is sent.
pub const SEND_EVERY: Duration = Duration::from_secs(1);

enum Message {
    Span(Box<SpanData>),
    /// Send what is queued now, then answer.
    Flush(SyncSender<()>),
}

/// A span processor that queues finished spans for one export thread.
#[derive(Debug)]
pub struct QueuedExport {
    queue: SyncSender<Message>,
    dropped: IntCounter,
}

impl QueuedExport {
    /// Starts the thread that sends spans through `exporter`; spans that cannot be
    /// sent count in `dropped`.
    pub fn start<E>(exporter: E, dropped: IntCounter) -> std::io::Result<Self>
    where
        E: SpanExporter + 'static,
    {
        Self::with_limits(exporter, dropped, QUEUE_SPANS, SEND_EVERY)
    }

    fn with_limits<E>(
        exporter: E,
        dropped: IntCounter,
        queue: usize,
        every: Duration,
    ) -> std::io::Result<Self>
    where
        E: SpanExporter + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(queue);
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("aurora-otlp".into())
            .spawn(move || send_loop(exporter, &rx, &counter, every))?;
        Ok(Self { queue: tx, dropped })
    }
}

impl SpanProcessor for QueuedExport {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush_within(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.flush_within(timeout)
    }
}

impl QueuedExport {
    fn flush_within(&self, timeout: Duration) -> OTelSdkResult {
        let (tx, rx) = mpsc::sync_channel(1);
        self.queue
            .send(Message::Flush(tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        rx.recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

/// The export thread: batches spans and sends a batch when it is full or its oldest
/// span has waited `every`.
fn send_loop<E: SpanExporter>(
    exporter: E,
    queue: &Receiver<Message>,
    dropped: &IntCounter,
    every: Duration,
) {
    let mut batch = Vec::with_capacity(BATCH_SPANS);
    let mut due = Instant::now() + every;
    loop {
        let wait = due.saturating_duration_since(Instant::now());
        match queue.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                if batch.is_empty() {
                    due = Instant::now() + every;
                }
                batch.push(*span);
                if batch.len() >= BATCH_SPANS {
                    send(&exporter, &mut batch, dropped);
                }
            }
            Ok(Message::Flush(done)) => {
                send(&exporter, &mut batch, dropped);
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                send(&exporter, &mut batch, dropped);
                due = Instant::now() + every;
            }
            Err(RecvTimeoutError::Disconnected) => {
                send(&exporter, &mut batch, dropped);
                return;
            }
        }
    }
}

/// Sends `batch` (emptying it); a batch the collector did not take is counted as dropped.
fn send<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>, dropped: &IntCounter) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(BATCH_SPANS));
    let n = spans.len() as u64;
    // The OTLP exporter's HTTP client blocks with its own timeout; this thread is
    // the only one that waits on it.
    if let Err(e) = futures_executor::block_on(exporter.export(spans)) {
        log::debug!("{n} spans not exported: {e}");
        dropped.inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// Records batches, or fails every one.
    #[derive(Debug, Clone, Default)]
    struct Recording {
        batches: Arc<Mutex<Vec<usize>>>,
        fail: bool,
    }

    impl SpanExporter for Recording {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if self.fail {
                return Err(OTelSdkError::InternalFailure(
                    "collector unreachable".into(),
                ));
            }
            self.batches.lock().unwrap().push(batch.len());
            Ok(())
        }
    }

    fn counter() -> IntCounter {
        IntCounter::new("dropped", "dropped").unwrap()
    }

    fn provider(processor: QueuedExport) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build()
    }

    #[test]
    fn finished_spans_are_sent_in_one_batch() {
        let exporter = Recording::default();
        let processor = QueuedExport::start(exporter.clone(), counter()).unwrap();
        let provider = provider(processor);
        let tracer = provider.tracer("test");
        for _ in 0..3 {
            tracer.start("work").end();
        }
        provider.force_flush().unwrap();
        assert_eq!(*exporter.batches.lock().unwrap(), vec![3]);
    }

    #[test]
    fn spans_a_collector_refuses_are_counted_as_dropped() {
        let exporter = Recording {
            fail: true,
            ..Default::default()
        };
        let dropped = counter();
        let provider = provider(QueuedExport::start(exporter, dropped.clone()).unwrap());
        let tracer = provider.tracer("test");
        tracer.start("a").end();
        tracer.start("b").end();
        provider.force_flush().unwrap();
        assert_eq!(dropped.get(), 2);
    }

    /// Says when an export begins, then blocks until the test lets it go.
    #[derive(Debug)]
    struct Stuck {
        entered: Mutex<mpsc::Sender<()>>,
        gate: Arc<Mutex<()>>,
    }

    impl SpanExporter for Stuck {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let _ = self.entered.lock().unwrap().send(());
            drop(self.gate.lock());
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let (entered, export_began) = mpsc::channel();
        let dropped = counter();
        let stuck = Stuck {
            entered: Mutex::new(entered),
            gate: Arc::clone(&gate),
        };
        let processor =
            QueuedExport::with_limits(stuck, dropped.clone(), 4, Duration::from_millis(1)).unwrap();
        let provider = provider(processor);
        let tracer = provider.tracer("test");
        tracer.start("first").end();
        export_began.recv_timeout(Duration::from_secs(5)).unwrap();
        // The collector holds the first batch: 4 spans fit in the queue, the rest
        // are dropped at once.
        let started = Instant::now();
        for _ in 0..100 {
            tracer.start("work").end();
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(dropped.get(), 96);
        drop(held);
    }
}
