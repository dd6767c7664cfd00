//! otelcol's `retry_on_failure`: exponential backoff with jitter, the server's throttle as a floor
//! and a give-up time; and the loop that sends one request with it and counts what became of it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::telemetry::DeliveryTelemetry;
use super::{Request, RetryConfig, SendError, Sent, Transport};
use crate::telemetry::ComponentStats;

/// The waits between attempts at one request, computed as otelcol's exporterhelper does
/// (cenkalti/backoff `ExponentialBackOff`): the interval starts at `initial_interval`, grows by
/// `multiplier` after each failure up to `max_interval`, and each wait is drawn uniformly from
/// `interval * (1 +- randomization_factor)`. A wait that would end past `max_elapsed_time` after
/// the first attempt means "give up"; a server throttle raises the wait to at least its value.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    randomization: f64,
    max_elapsed: Duration,
    current: Duration,
    started: Instant,
}

impl Backoff {
    /// The waits for a request whose first attempt starts at `now`.
    pub fn new(config: &RetryConfig, now: Instant) -> Self {
        Backoff {
            initial: config.initial_interval,
            max: config.max_interval,
            multiplier: config.multiplier,
            randomization: config.randomization_factor,
            max_elapsed: config.max_elapsed_time,
            current: config.initial_interval,
            started: now,
        }
    }

    /// The wait before the next attempt after a retryable failure at `now`, or `None` to give up.
    /// `throttle` (the server's Retry-After / RetryInfo) is a floor for the wait, as in otelcol.
    pub fn next(&mut self, now: Instant, throttle: Option<Duration>) -> Option<Duration> {
        self.next_with_random(now, throttle, fastrand::f64())
    }

    /// [`Backoff::next`] with the random draw `random` (in `[0, 1)`) given, for exact tests.
    pub fn next_with_random(&mut self, now: Instant, throttle: Option<Duration>, random: f64) -> Option<Duration> {
        let interval = self.current.as_secs_f64();
        let delta = self.randomization * interval;
        let randomized = (interval - delta) + random.clamp(0.0, 1.0) * 2.0 * delta;
        self.current = if interval >= self.max.as_secs_f64() / self.multiplier {
            self.max
        } else {
            Duration::from_secs_f64(interval * self.multiplier).min(self.max)
        };
        let wait = Duration::from_secs_f64(randomized.max(0.0));
        if !self.max_elapsed.is_zero() && now.saturating_duration_since(self.started) + wait > self.max_elapsed {
            return None;
        }
        Some(throttle.map_or(wait, |t| wait.max(t)))
    }

    /// Time since the first attempt.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// Starts a new give-up period at `now`, keeping the grown interval (a request that stays in
    /// the persistent queue after `max_elapsed_time` goes on being retried every `max_interval`).
    pub fn restart_period(&mut self, now: Instant) {
        self.started = now;
    }

    /// The interval the next wait is drawn around (before jitter).
    pub fn current_interval(&self) -> Duration {
        self.current
    }

    /// Back to the first interval, for a new request.
    pub fn reset(&mut self, now: Instant) {
        self.current = self.initial;
        self.started = now;
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Delivered (the rejected items of a partial success were counted as dropped).
    Delivered,
    /// Given up and counted as dropped: permanent error, retries exhausted, evicted from the
    /// full persistent queue, or the shutdown deadline passed with the request in memory.
    Dropped,
    /// Not delivered, not counted: it stays in the persistent queue for later or the next start.
    Kept,
}

/// Where the request being sent lives, which decides what giving up means.
#[derive(Clone, Copy)]
pub(crate) enum Holder<'a> {
    /// In memory (queue or inline): giving up drops it.
    Memory,
    /// In the persistent queue: never given up on for lack of retries; `evicted` tells whether the
    /// full queue has dropped it (oldest first) while it was being retried.
    Disk {
        /// True once the queue has evicted this request.
        evicted: &'a (dyn Fn() -> bool + Sync),
    },
}

/// Sends requests with retries and counts the outcome in the exporter's counters.
pub(crate) struct RetryingSender {
    /// The exporter's id, for logs.
    pub(crate) exporter: String,
    /// The backend.
    pub(crate) transport: Arc<dyn Transport>,
    /// `retry_on_failure`.
    pub(crate) retry: RetryConfig,
    /// The exporter's counters.
    pub(crate) stats: Arc<ComponentStats>,
    /// Extra own metrics (retries).
    pub(crate) telemetry: Arc<DeliveryTelemetry>,
    /// Cancelled shortly before the shutdown timeout: stop sending now.
    pub(crate) deadline: CancellationToken,
    /// Cancelled once the input has closed: persistent requests stop retrying (they stay on disk).
    pub(crate) closing: CancellationToken,
}

impl RetryingSender {
    /// Sends `request` until it is delivered, refused for good, or given up on, following
    /// `retry_on_failure`; with `Holder::Disk` retryable failures never drop it.
    pub(crate) async fn deliver(&self, request: &Request, holder: Holder<'_>) -> Outcome {
        let disk = matches!(holder, Holder::Disk { .. });
        let mut backoff = Backoff::new(&self.retry, Instant::now());
        let mut exhausted_logged = false;
        loop {
            let result = tokio::select! {
                biased;
                _ = self.deadline.cancelled() => return self.abandon(request, disk),
                r = self.transport.send(request) => r,
            };
            let (reason, throttle) = match result {
                Ok(sent) => {
                    self.count_sent(request, &sent);
                    return Outcome::Delivered;
                }
                Err(SendError::Permanent { reason }) => {
                    warn!(
                        exporter = %self.exporter, signal = %request.signal, items = request.items, reason = %reason,
                        "dropping request: the backend refused it and retrying cannot help"
                    );
                    self.stats.add_dropped(request.signal, request.items);
                    return Outcome::Dropped;
                }
                Err(SendError::Retryable { reason, throttle }) => (reason, throttle),
            };
            self.stats.add_failed(request.signal, request.items);
            let now = Instant::now();
            let wait = if !self.retry.enabled {
                if !disk {
                    warn!(
                        exporter = %self.exporter, signal = %request.signal, items = request.items, reason = %reason,
                        "dropping request: sending failed and retry_on_failure is disabled"
                    );
                    self.stats.add_dropped(request.signal, request.items);
                    return Outcome::Dropped;
                }
                // Nothing that reached the persistent queue is given up: try again after the first interval.
                throttle.map_or(self.retry.initial_interval, |t| t.max(self.retry.initial_interval))
            } else {
                match backoff.next(now, throttle) {
                    Some(wait) => wait,
                    None if disk => {
                        if !exhausted_logged {
                            warn!(
                                exporter = %self.exporter, signal = %request.signal, items = request.items,
                                elapsed = ?backoff.elapsed(now), reason = %reason,
                                "retries exhausted (max_elapsed_time); the request stays in the persistent queue and is retried every max_interval"
                            );
                            exhausted_logged = true;
                        }
                        backoff.restart_period(now);
                        backoff.next(now, throttle).unwrap_or(self.retry.max_interval)
                    }
                    None => {
                        warn!(
                            exporter = %self.exporter, signal = %request.signal, items = request.items,
                            elapsed = ?backoff.elapsed(now), reason = %reason,
                            "dropping request: no more retries left (max_elapsed_time reached)"
                        );
                        self.stats.add_dropped(request.signal, request.items);
                        return Outcome::Dropped;
                    }
                }
            };
            if disk && self.closing.is_cancelled() {
                debug!(exporter = %self.exporter, reason = %reason, "shutting down: the request stays in the persistent queue");
                return Outcome::Kept;
            }
            self.telemetry.add_retry();
            info!(
                exporter = %self.exporter, signal = %request.signal, items = request.items, reason = %reason,
                interval = ?wait, "Exporting failed. Will retry the request after interval."
            );
            tokio::select! {
                biased;
                _ = self.deadline.cancelled() => return self.abandon(request, disk),
                _ = self.closing.cancelled(), if disk => return Outcome::Kept,
                _ = sleep(wait) => {}
            }
            if let Holder::Disk { evicted } = holder
                && evicted()
            {
                warn!(
                    exporter = %self.exporter, signal = %request.signal, items = request.items,
                    "dropping request: the full persistent queue evicted it (oldest first) while it was being retried"
                );
                self.stats.add_dropped(request.signal, request.items);
                return Outcome::Dropped;
            }
        }
    }

    /// Counts a success: a partial success logs the backend's message and counts rejected items as dropped.
    fn count_sent(&self, request: &Request, sent: &Sent) {
        let rejected = sent.rejected_items.min(request.items);
        if sent.rejected_items > 0 || !sent.message.is_empty() {
            warn!(
                exporter = %self.exporter, signal = %request.signal, dropped_items = sent.rejected_items,
                message = %sent.message, "Partial success response"
            );
        }
        self.stats.add_sent(request.signal, request.items - rejected);
        if rejected > 0 {
            self.stats.add_dropped(request.signal, rejected);
        }
    }

    /// The shutdown deadline passed while the request was being sent or waited on.
    fn abandon(&self, request: &Request, disk: bool) -> Outcome {
        if disk {
            return Outcome::Kept;
        }
        warn!(
            exporter = %self.exporter, signal = %request.signal, items = request.items,
            "dropping request: the shutdown deadline passed while it was being sent"
        );
        self.stats.add_dropped(request.signal, request.items);
        Outcome::Dropped
    }
}
