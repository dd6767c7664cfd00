//! Delivery acknowledgements: lets a receiver whose client can resend (the OTLP receiver) answer
//! only once every exporter has durably taken the data (queued in memory, or written to its
//! persistent queue). Data that is never acknowledged counts as failed, so the client retries.
//!
//! Batches produced by the agent itself carry no acknowledgements and pay nothing for them.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::oneshot;

/// The state behind one client request.
struct AckState {
    /// Acceptances still expected (one per exporter copy).
    expected: AtomicUsize,
    failed: AtomicBool,
    done: Mutex<Option<oneshot::Sender<bool>>>,
}

impl AckState {
    fn complete(&self, ok: bool) {
        if let Ok(mut done) = self.done.lock()
            && let Some(tx) = done.take()
        {
            let _ = tx.send(ok);
        }
    }
}

impl Drop for AckState {
    fn drop(&mut self) {
        // Nobody accepted the data before it disappeared: report failure.
        self.complete(false);
    }
}

/// Resolves when the data of one request has been accepted by every exporter (`true`) or
/// failed somewhere (`false`).
pub struct AckWaiter(oneshot::Receiver<bool>);

impl AckWaiter {
    /// Waits for the outcome; `false` if the data was lost, dropped or refused.
    pub async fn wait(self) -> bool {
        self.0.await.unwrap_or(false)
    }
}

/// The acknowledgements a batch carries (usually none).
#[derive(Clone, Default)]
pub struct Acks(Vec<Arc<AckState>>);

impl Acks {
    /// A new acknowledgement expecting one acceptance, and its waiter.
    pub fn new_request() -> (Acks, AckWaiter) {
        let (tx, rx) = oneshot::channel();
        let state =
            AckState { expected: AtomicUsize::new(1), failed: AtomicBool::new(false), done: Mutex::new(Some(tx)) };
        (Acks(vec![Arc::new(state)]), AckWaiter(rx))
    }

    /// True when there is nothing to acknowledge.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The batch now goes to `extra` more consumers, each of which must accept it.
    pub fn expect_more(&self, extra: usize) {
        for a in &self.0 {
            a.expected.fetch_add(extra, Ordering::AcqRel);
        }
    }

    /// One consumer has durably taken the data (or dropped it on purpose, e.g. a filter).
    pub fn accept(&self) {
        for a in &self.0 {
            if a.expected.fetch_sub(1, Ordering::AcqRel) == 1 {
                a.complete(!a.failed.load(Ordering::Acquire));
            }
        }
    }

    /// The data could not be taken (queue full, permanent error ...): the request fails.
    pub fn fail(&self) {
        for a in &self.0 {
            a.failed.store(true, Ordering::Release);
            a.complete(false);
        }
    }

    /// Merges another batch's acknowledgements into these (batching).
    pub fn merge(&mut self, other: Acks) {
        self.0.extend(other.0);
    }
}

impl std::fmt::Debug for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Acks({})", self.0.len())
    }
}

impl PartialEq for Acks {
    /// Acknowledgements are bookkeeping, not data: batches compare by content.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_after_every_consumer_accepts() {
        let (acks, waiter) = Acks::new_request();
        acks.expect_more(1);
        let copy = acks.clone();
        acks.accept();
        drop(acks);
        copy.accept();
        assert!(waiter.wait().await);
    }

    #[tokio::test]
    async fn dropping_without_accepting_fails() {
        let (acks, waiter) = Acks::new_request();
        drop(acks);
        assert!(!waiter.wait().await);
        let (acks, waiter) = Acks::new_request();
        acks.expect_more(1);
        acks.fail();
        acks.accept();
        assert!(!waiter.wait().await);
    }
}
