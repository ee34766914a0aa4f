//! The access log's writer: one background thread fed through a bounded channel.
//!
//! A worker hands a finished line over and goes on; it never waits for the sink. When
//! the sink stalls (a full pipe, a stuck journald) the channel fills and further lines
//! are dropped and counted rather than blocking a request.

use std::borrow::Cow;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use prometheus::IntCounter;

/// Lines held for the writer at most (a few MiB at typical line lengths).
pub const ACCESS_LOG_CAPACITY: usize = 8192;

/// What the writer does to each line before writing it (credential redaction, off
/// the request path).
pub type LineFilter = fn(&str) -> Cow<'_, str>;

/// Bytes gathered into one write when lines queue up.
const BATCH_BYTES: usize = 64 * 1024;

/// After a write, the writer lets lines gather this long before it looks again: a
/// worker that hands a line over then never has to wake the writer, which would cost
/// it a system call and, on a busy CPU, a context switch per request.
const GATHER: Duration = Duration::from_millis(10);

/// What the writer thread is handed.
enum Entry {
    Line(String),
    /// Write what is queued before this, then answer.
    Flush(SyncSender<()>),
}

/// The sending side of the access log.
#[derive(Debug)]
pub struct AccessLogWriter {
    lines: SyncSender<Entry>,
    dropped: IntCounter,
}

impl AccessLogWriter {
    /// Starts the thread that writes every line it is sent to `sink` (through
    /// `filter`), holding at most `capacity` lines waiting; lines beyond it are
    /// counted in `dropped`.
    pub fn spawn(
        sink: Box<dyn Write + Send>,
        filter: LineFilter,
        capacity: usize,
        dropped: IntCounter,
    ) -> std::io::Result<Self> {
        let (lines, received) = sync_channel(capacity);
        thread::Builder::new()
            .name("aurora-access-log".into())
            .spawn(move || write_lines(received, filter, sink))?;
        Ok(Self { lines, dropped })
    }

    /// Queues `line` (ending in a newline) without waiting: `false` when it was
    /// dropped because the writer is behind or gone.
    pub fn submit(&self, line: String) -> bool {
        match self.lines.try_send(Entry::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
                false
            }
        }
    }

    /// Waits (at most `timeout`) until every line queued so far is written: the
    /// process calls it before it exits, so the last requests' lines are not lost.
    /// `false` when the writer did not get there in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, written) = sync_channel(1);
        let mut entry = Entry::Flush(done);
        loop {
            match self.lines.try_send(entry) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    entry = back;
                    thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The writer thread: lines that queued up meanwhile go out together in one write
/// (whole lines only, so they never interleave with other writers' lines), and a
/// quiet log is never held back.
fn write_lines(lines: Receiver<Entry>, filter: LineFilter, mut sink: Box<dyn Write + Send>) {
    let mut batch = String::new();
    while let Ok(entry) = lines.recv() {
        batch.clear();
        let mut flushed = None;
        match entry {
            Entry::Line(line) => batch.push_str(&filter(&line)),
            Entry::Flush(done) => flushed = Some(done),
        }
        let mut drained = false;
        while flushed.is_none() && batch.len() < BATCH_BYTES {
            match lines.try_recv() {
                Ok(Entry::Line(more)) => batch.push_str(&filter(&more)),
                Ok(Entry::Flush(done)) => flushed = Some(done),
                Err(_) => {
                    drained = true;
                    break;
                }
            }
        }
        // A failed write has nowhere to be reported (the sink is stderr); carrying on
        // keeps the channel draining, so workers still never wait.
        if !batch.is_empty() {
            let _ = sink.write_all(batch.as_bytes());
            let _ = sink.flush();
        }
        if let Some(done) = flushed {
            let _ = done.try_send(());
        }
        // Lines still queued are written at once; a drained queue gathers a while.
        if drained {
            thread::sleep(GATHER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A sink that blocks every write until released, then records what it got.
    struct BlockedSink {
        release: Arc<Mutex<Option<Receiver<()>>>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for BlockedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(gate) = self.release.lock().unwrap().take() {
                let _ = gate.recv();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn as_is(line: &str) -> Cow<'_, str> {
        Cow::Borrowed(line)
    }

    #[test]
    fn flush_returns_once_every_queued_line_is_written() {
        let (open_gate, gate) = channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = BlockedSink {
            release: Arc::new(Mutex::new(Some(gate))),
            written: Arc::clone(&written),
        };
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let writer = AccessLogWriter::spawn(Box::new(sink), as_is, 16, dropped).unwrap();
        for i in 0..5 {
            assert!(writer.submit(format!("line {i}\n")));
        }
        // The sink is stalled: a flush gives up at its timeout.
        assert!(!writer.flush(Duration::from_millis(50)));
        open_gate.send(()).unwrap();
        assert!(writer.flush(Duration::from_secs(10)));
        let lines = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(lines.lines().count(), 5, "{lines}");
        assert!(lines.ends_with("line 4\n"), "{lines}");
    }

    #[test]
    fn a_stalled_sink_drops_and_counts_lines_without_blocking_the_sender() {
        let (open_gate, gate) = channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = BlockedSink {
            release: Arc::new(Mutex::new(Some(gate))),
            written: Arc::clone(&written),
        };
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let writer = AccessLogWriter::spawn(Box::new(sink), as_is, 2, dropped.clone()).unwrap();
        let started = Instant::now();
        let accepted = (0..100)
            .filter(|i| writer.submit(format!("line {i}\n")))
            .count();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "submitting waited for the sink"
        );
        // The writer holds at most one line in its stalled write, the channel two more.
        assert!((2..=3).contains(&accepted), "{accepted} lines accepted");
        assert_eq!(dropped.get(), 100 - accepted as u64);

        open_gate.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while written
            .lock()
            .unwrap()
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            < accepted
        {
            assert!(Instant::now() < deadline, "accepted lines never written");
            thread::sleep(Duration::from_millis(5));
        }
        assert!(writer.submit("after\n".into()), "the writer caught up");
    }
}
