//! A bounded background load: a few workers repeating one request and keeping every
//! outcome for the test to judge afterwards.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests one load may send in all, whatever the test does: keeps it bounded.
const MAX_REQUESTS: usize = 20_000;

/// Workers sending requests until stopped.
pub struct Load<T> {
    results: Arc<Mutex<Vec<T>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl<T: Send + 'static> Load<T> {
    /// Starts `workers` loops, each awaiting `request()` and recording its outcome.
    pub fn start<F, Fut>(workers: usize, request: F) -> Self
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = T> + Send,
    {
        let results = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let workers = (0..workers)
            .map(|_| {
                let (results, stop, sent, request) =
                    (results.clone(), stop.clone(), sent.clone(), request.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst)
                        && sent.fetch_add(1, Ordering::SeqCst) < MAX_REQUESTS
                    {
                        let outcome = request().await;
                        results.lock().unwrap().push(outcome);
                    }
                })
            })
            .collect();
        Self {
            results,
            stop,
            workers,
        }
    }

    /// Requests completed so far.
    pub fn completed(&self) -> usize {
        self.results.lock().unwrap().len()
    }

    /// Waits until `n` more requests than `since` have completed; panics after a
    /// generous deadline.
    pub async fn wait_more(&self, since: usize, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = self.completed();
            if done >= since + n {
                return done;
            }
            assert!(
                Instant::now() < deadline,
                "load stalled at {done} requests (waiting for {})",
                since + n
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the workers after their current request and returns every outcome.
    pub async fn stop(self) -> Vec<T> {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            w.await.unwrap();
        }
        std::mem::take(&mut *self.results.lock().unwrap())
    }
}
