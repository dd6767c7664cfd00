//! Bounded channels between components, with counting, and fan-out by signal that shares
//! batches (`Arc`) instead of copying them.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::model::{Payload, Signal};
use crate::telemetry::ComponentStats;

/// Capacity, in batches, of every component's input channel.
pub const CHANNEL_CAPACITY: usize = 64;

/// A component's incoming data.
pub struct Input {
    rx: mpsc::Receiver<Payload>,
    stats: Arc<ComponentStats>,
}

impl Input {
    /// The next batch, or `None` once every upstream component has stopped and the queue is empty.
    pub async fn recv(&mut self) -> Option<Payload> {
        let p = self.rx.recv().await?;
        self.stats.dequeue(p.signal(), p.items());
        self.stats.add_received(p.signal(), p.items());
        Some(p)
    }

    /// A batch if one is waiting right now.
    pub fn try_recv(&mut self) -> Option<Payload> {
        let p = self.rx.try_recv().ok()?;
        self.stats.dequeue(p.signal(), p.items());
        self.stats.add_received(p.signal(), p.items());
        Some(p)
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// A new channel: the link to send into it and the input to read from it.
    pub fn channel(capacity: usize, stats: Arc<ComponentStats>) -> (Link, Self) {
        let (tx, rx) = mpsc::channel(capacity);
        (Link { tx, target: stats.clone() }, Input { rx, stats })
    }
}

/// Downstream consumers have all stopped; the data was not delivered.
#[derive(Debug, thiserror::Error)]
#[error("downstream components have stopped; {items} items not delivered")]
pub struct Closed {
    /// Items in the batch that could not be delivered.
    pub items: u64,
}

/// The sending end of a component's input channel.
#[derive(Clone)]
pub struct Link {
    tx: mpsc::Sender<Payload>,
    target: Arc<ComponentStats>,
}

impl Link {
    /// `(batches queued, capacity)` of the channel.
    pub fn occupancy(&self) -> (usize, usize) {
        (self.tx.max_capacity() - self.tx.capacity(), self.tx.max_capacity())
    }

    /// Sends one payload, counting its items as queued at the target until it is received.
    pub async fn send(&self, payload: Payload) -> Result<(), Closed> {
        let (signal, items) = (payload.signal(), payload.items());
        self.target.enqueue(signal, items);
        self.tx.send(payload).await.map_err(|_| {
            self.target.dequeue(signal, items);
            Closed { items }
        })
    }

    pub(crate) fn downgrade_probe(&self) -> impl Fn() -> (usize, usize) + Send + Sync + 'static {
        let weak = self.tx.downgrade();
        move || match weak.upgrade() {
            Some(tx) => (tx.max_capacity() - tx.capacity(), tx.max_capacity()),
            None => (0, 0),
        }
    }
}

/// Where a component sends data: for each signal, the inputs of the next components.
#[derive(Clone)]
pub struct Output {
    routes: [Vec<Link>; Signal::COUNT],
    stats: Arc<ComponentStats>,
    /// A receiver's output: what it sends is what it received (produced), counted here once for
    /// every receiver instead of in each of them.
    receiver: bool,
}

impl Output {
    pub(crate) fn new(stats: Arc<ComponentStats>) -> Self {
        Output { routes: std::array::from_fn(|_| Vec::new()), stats, receiver: false }
    }

    /// A receiver's output, which counts every item sent as received by the receiver
    /// (`fovea_receiver_received_items_total`) before passing it on.
    pub(crate) fn for_receiver(stats: Arc<ComponentStats>) -> Self {
        Output { receiver: true, ..Output::new(stats) }
    }

    /// A receiver's output feeding the given links, as the engine builds it (tests).
    pub fn detached_receiver(stats: Arc<ComponentStats>, routes: Vec<(Signal, Link)>) -> Self {
        Output::for_receiver(stats).with_routes(routes)
    }

    pub(crate) fn add_route(&mut self, signal: Signal, link: Link) {
        let routes = &mut self.routes[signal as usize];
        if !routes.iter().any(|r| r.tx.same_channel(&link.tx)) {
            routes.push(link);
        }
    }

    /// An output feeding the given links (tests, benchmarks, and components that chain internally).
    pub fn detached(stats: Arc<ComponentStats>, routes: Vec<(Signal, Link)>) -> Self {
        Output::new(stats).with_routes(routes)
    }

    fn with_routes(mut self, routes: Vec<(Signal, Link)>) -> Self {
        for (s, link) in routes {
            self.add_route(s, link);
        }
        self
    }

    /// True when some pipeline consumes `signal` from this component.
    pub fn wants(&self, signal: Signal) -> bool {
        !self.routes[signal as usize].is_empty()
    }

    /// Sends to every consumer of the payload's signal, waiting for room (backpressure).
    /// Consumers share the batch. Data for a signal nobody consumes is discarded silently.
    pub async fn send(&self, payload: Payload) -> Result<(), Closed> {
        let signal = payload.signal();
        let items = payload.items();
        if self.receiver {
            self.stats.add_received(signal, items);
        }
        let routes = &self.routes[signal as usize];
        let mut delivered = false;
        if routes.len() > 1 {
            payload.acks().expect_more(routes.len() - 1);
        }
        if let Some((last, rest)) = routes.split_last() {
            for link in rest {
                delivered |= link.send(payload.clone()).await.is_ok();
            }
            delivered |= last.send(payload).await.is_ok();
        } else {
            // Nobody consumes this signal: it is discarded on purpose.
            payload.acks().accept();
            return Ok(());
        }
        if delivered {
            self.stats.add_sent(signal, items);
            Ok(())
        } else {
            self.stats.add_failed(signal, items);
            Err(Closed { items })
        }
    }
}
