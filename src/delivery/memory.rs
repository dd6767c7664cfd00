//! The in-memory sending queue: a bounded FIFO of encoded requests shared by the consumers.
//!
//! A batch's requests enter together or not at all, so a batch is never half accepted. When they do
//! not fit, the queue refuses them (otelcol's default: the newest data is refused and counted) or,
//! with `block_on_overflow`, the producer waits for room.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Request, lock};

struct State {
    requests: VecDeque<Request>,
    closed: bool,
}

/// A bounded FIFO of requests with async pop for several consumers.
pub(crate) struct MemoryQueue {
    state: Mutex<State>,
    capacity: usize,
    /// Woken when requests arrive or the queue closes.
    ready: Notify,
    /// Woken when room is made.
    room: Notify,
    len: AtomicUsize,
    bytes: AtomicUsize,
}

impl MemoryQueue {
    /// An empty queue holding at most `capacity` requests.
    pub(crate) fn new(capacity: usize) -> Self {
        MemoryQueue {
            state: Mutex::new(State { requests: VecDeque::new(), closed: false }),
            capacity,
            ready: Notify::new(),
            room: Notify::new(),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Moves all of `requests` into the queue if they fit, else leaves them and returns false.
    /// A batch larger than the whole queue is let in when the queue is empty, so it cannot wait forever.
    pub(crate) fn try_push_all(&self, requests: &mut Vec<Request>) -> bool {
        let mut state = lock(&self.state);
        let len = state.requests.len();
        if len > 0 && len + requests.len() > self.capacity {
            return false;
        }
        let bytes: usize = requests.iter().map(|r| r.body.len()).sum();
        state.requests.extend(requests.drain(..));
        self.len.store(state.requests.len(), Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        drop(state);
        self.ready.notify_one();
        true
    }

    /// Like [`MemoryQueue::try_push_all`] but waits for room; false if `stop` is cancelled first.
    pub(crate) async fn push_all(&self, requests: &mut Vec<Request>, stop: &CancellationToken) -> bool {
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            if self.try_push_all(requests) {
                return true;
            }
            if stop.is_cancelled() {
                return false;
            }
            tokio::select! {
                _ = room => {}
                _ = stop.cancelled() => return false,
            }
        }
    }

    /// The oldest request; `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<Request> {
        loop {
            let mut ready = pin!(self.ready.notified());
            ready.as_mut().enable();
            {
                let mut state = lock(&self.state);
                if let Some(request) = state.requests.pop_front() {
                    let more = !state.requests.is_empty();
                    self.len.store(state.requests.len(), Ordering::Relaxed);
                    self.bytes.fetch_sub(request.body.len(), Ordering::Relaxed);
                    drop(state);
                    self.room.notify_one();
                    if more {
                        // Pass the wake-up on: one notification may stand for several requests.
                        self.ready.notify_one();
                    }
                    return Some(request);
                }
                if state.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// No more requests will come: consumers finish once the queue is empty.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_waiters();
    }

    /// Takes every request still queued (shutdown).
    pub(crate) fn take_all(&self) -> VecDeque<Request> {
        let mut state = lock(&self.state);
        let taken = std::mem::take(&mut state.requests);
        self.len.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        taken
    }

    /// Requests queued.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Capacity in requests.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of the request bodies queued.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}
