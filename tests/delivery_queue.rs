//! The delivery exporter with its in-memory queue (and without a queue), against a scripted
//! in-process backend: retries and their waits, permanent errors, partial success, ordering,
//! acknowledgements, overflow, shutdown. Time is paused, so waits are exact and instant.

mod delivery_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use delivery_support::*;
use fovea::delivery::{DeliveryExporter, RetryConfig, SendingQueueConfig};

fn ids(range: std::ops::Range<u64>) -> Vec<u64> {
    range.collect()
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_are_retried_with_growing_waits_until_delivered() {
    let backend = Arc::new(Scripted::default());
    backend.on(0, [Step::Retry(None), Step::Retry(None), Step::Retry(None)]);
    let h = run(exporter(memory_queue(1, 100), fast_retry(0), backend.clone())).await.unwrap();
    h.send([0]).await;
    let retries = {
        tokio::time::sleep(Duration::from_secs(1)).await;
        h.metric("fovea.exporter.retries")
    };
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 1, sent: 1, dropped: 0, failed: 3 });
    assert_eq!(retries, Some(3));
    assert_eq!(backend.delivered(), [0]);
    let times = backend.attempts_at(0);
    let waits: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(waits, [Duration::from_millis(5), Duration::from_millis(10), Duration::from_millis(20)]);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_drops_the_request_without_retrying() {
    let backend = Arc::new(Scripted::default());
    backend.on(0, [Step::Permanent("400 Bad Request: invalid metric name")]);
    let h = run(exporter(memory_queue(1, 100), fast_retry(0), backend.clone())).await.unwrap();
    h.send([0, 1]).await;
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 2, sent: 1, dropped: 1, failed: 0 });
    assert_eq!(backend.attempts_at(0).len(), 1);
    assert_eq!(backend.delivered(), [1]);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_max_elapsed_time_and_the_request_is_dropped() {
    let backend = Arc::new(Scripted::default());
    backend.down.store(true, Ordering::SeqCst);
    // Waits 5, 10, 20, 40 ms end at 75 ms; the next (40 ms) would end past 100 ms.
    let h = run(exporter(memory_queue(1, 100), fast_retry(100), backend.clone())).await.unwrap();
    h.send([0]).await;
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 1, sent: 0, dropped: 1, failed: 5 });
    assert_eq!(backend.attempts_at(0).len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_server_throttle_is_a_floor_for_the_next_wait() {
    let backend = Arc::new(Scripted::default());
    backend.on(0, [Step::Retry(Some(Duration::from_millis(300))), Step::Retry(None)]);
    let h = run(exporter(memory_queue(1, 100), fast_retry(0), backend.clone())).await.unwrap();
    h.send([0]).await;
    h.finish().await;
    let times = backend.attempts_at(0);
    let waits: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // The throttle replaces the 5 ms backoff; the interval went on growing underneath (10 ms).
    assert_eq!(waits, [Duration::from_millis(300), Duration::from_millis(10)]);
}

#[tokio::test(start_paused = true)]
async fn a_partial_success_counts_rejected_items_as_dropped() {
    let backend = Arc::new(Scripted::default());
    backend.on(0, [Step::Partial(3, "3 data points rejected: out of order samples")]);
    let exporter = DeliveryExporter::new(
        "prometheusremotewrite".into(),
        memory_queue(1, 100),
        fast_retry(0),
        Arc::new(BatchEncoder),
        backend.clone(),
    );
    let h = run(exporter).await.unwrap();
    h.send(0..10).await;
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 10, sent: 7, dropped: 3, failed: 0 });
    assert_eq!(backend.attempts_at(0).len(), 1, "a partial success is not retried");
}

#[tokio::test(start_paused = true)]
async fn one_consumer_sends_in_queue_order_and_a_failing_head_blocks_the_rest() {
    let backend = Arc::new(Scripted::default());
    backend.on(10, [Step::Retry(None), Step::Retry(None), Step::Retry(None)]);
    backend.on(50, [Step::Retry(None), Step::Retry(None)]);
    let h = run(exporter(memory_queue(1, 1000), fast_retry(0), backend.clone())).await.unwrap();
    for id in 0..100 {
        h.send([id]).await;
    }
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 100, sent: 100, dropped: 0, failed: 5 });
    assert_eq!(backend.delivered(), ids(0..100));
    // Head-of-line: nothing behind 10 was attempted before 10 succeeded.
    let last_try_of_10 = *backend.attempts_at(10).last().unwrap();
    assert!(backend.attempts_at(11)[0] >= last_try_of_10);
    assert_eq!(backend.attempts_at(11).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn several_consumers_deliver_everything_exactly_once() {
    let backend = Arc::new(Scripted::default());
    for id in (0..200).step_by(7) {
        backend.on(id, [Step::Retry(None)]);
    }
    let h = run(exporter(memory_queue(4, 1000), fast_retry(0), backend.clone())).await.unwrap();
    for id in 0..200 {
        h.send([id]).await;
    }
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 200, sent: 200, dropped: 0, failed: 29 });
    let mut delivered = backend.delivered();
    delivered.sort_unstable();
    assert_eq!(delivered, ids(0..200));
}

#[tokio::test(start_paused = true)]
async fn batches_are_accepted_once_queued_and_refused_when_the_queue_is_full() {
    let backend = Arc::new(Scripted::default());
    backend.on(0, [Step::Hang]);
    let h = run(exporter(memory_queue(1, 2), fast_retry(0), backend.clone())).await.unwrap();
    assert!(h.send_acked([0]).await.wait().await, "accepted once queued");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(backend.attempts_at(0).len(), 1, "request 0 is being sent (and hangs)");
    assert!(h.send_acked([1]).await.wait().await);
    assert!(h.send_acked([2]).await.wait().await);
    assert_eq!(h.stats.queue(), (2, 2), "the sending queue is full");
    assert_eq!(h.metric("fovea.exporter.queue.bytes"), Some(2));
    assert!(!h.send_acked([3]).await.wait().await, "refused: the queue is full");
    assert!(!h.send_acked([4, 5]).await.wait().await, "refused: the queue is full");
    assert_eq!(h.counts().dropped, 3);
    assert!(backend.delivered().is_empty(), "nothing was delivered: acceptance means queued");
    // Shutdown with the backend hanging: the request in flight and the two queued are dropped.
    let counts = h.finish_by(Duration::from_millis(50)).await;
    assert_eq!(counts, Counts { received: 6, sent: 0, dropped: 6, failed: 0 });
}

#[tokio::test(start_paused = true)]
async fn block_on_overflow_waits_for_room_instead_of_refusing() {
    let backend = Arc::new(Scripted::default());
    for id in 0..20 {
        backend.on(id, [Step::Retry(None)]);
    }
    let queue = SendingQueueConfig { block_on_overflow: true, ..memory_queue(1, 1) };
    let h = run(exporter(queue, fast_retry(0), backend.clone())).await.unwrap();
    let mut waiters = Vec::new();
    for id in 0..20 {
        waiters.push(h.send_acked([id]).await);
    }
    for w in waiters {
        assert!(w.wait().await);
    }
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 20, sent: 20, dropped: 0, failed: 20 });
    assert_eq!(backend.delivered(), ids(0..20));
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_cannot_be_encoded_is_refused_and_counted() {
    let backend = Arc::new(Scripted::default());
    let h = run(exporter(memory_queue(1, 10), fast_retry(0), backend.clone())).await.unwrap();
    assert!(!h.send_acked([1, -1]).await.wait().await);
    assert!(h.send_acked([2]).await.wait().await);
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 3, sent: 1, dropped: 2, failed: 0 });
    assert_eq!(backend.delivered(), [2]);
}

#[tokio::test(start_paused = true)]
async fn without_a_queue_batches_are_sent_inline_and_accepted_once_delivered() {
    let backend = Arc::new(Scripted::default());
    backend.on(0, [Step::Retry(None)]);
    backend.on(1, [Step::Permanent("401 Unauthorized")]);
    let queue = SendingQueueConfig { enabled: false, ..memory_queue(1, 10) };
    let h = run(exporter(queue, fast_retry(0), backend.clone())).await.unwrap();
    assert!(h.send_acked([0]).await.wait().await);
    assert_eq!(backend.delivered(), [0], "delivered before the acknowledgement");
    assert!(!h.send_acked([1]).await.wait().await, "a dropped batch is refused");
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 2, sent: 1, dropped: 1, failed: 1 });
}

#[tokio::test(start_paused = true)]
async fn with_retry_disabled_a_failure_drops_the_request() {
    let backend = Arc::new(Scripted::default());
    backend.on(0, [Step::Retry(None)]);
    let retry = RetryConfig { enabled: false, ..fast_retry(0) };
    let h = run(exporter(memory_queue(1, 10), retry, backend.clone())).await.unwrap();
    h.send([0]).await;
    h.send([1]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.metric("fovea.exporter.retries"), Some(0));
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 2, sent: 1, dropped: 1, failed: 1 });
    assert_eq!(backend.attempts_at(0).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn at_the_shutdown_deadline_what_is_left_in_memory_is_counted_as_dropped() {
    let backend = Arc::new(Scripted::default());
    backend.down.store(true, Ordering::SeqCst);
    let h = run(exporter(memory_queue(1, 100), fast_retry(0), backend.clone())).await.unwrap();
    for id in 0..5 {
        h.send([id]).await;
    }
    // Queued requests keep being sent (retried) after the input closes, until the deadline.
    let counts = h.finish_by(Duration::from_secs(2)).await;
    assert_eq!(counts.sent, 0);
    assert_eq!(counts.dropped, 5, "one in flight and four queued");
    assert!(backend.attempts_at(0).len() > 10, "retried until the deadline");
    assert!(backend.attempts_at(1).is_empty(), "one consumer: the head blocks the rest");
}

#[tokio::test(start_paused = true)]
async fn after_the_input_closes_the_queue_is_drained_before_returning() {
    let backend = Arc::new(Scripted::default());
    for id in 0..50 {
        backend.on(id, [Step::Retry(None)]);
    }
    let h = run(exporter(memory_queue(2, 100), fast_retry(0), backend.clone())).await.unwrap();
    for id in 0..50 {
        h.send([id]).await;
    }
    let counts = h.finish().await;
    assert_eq!(counts, Counts { received: 50, sent: 50, dropped: 0, failed: 50 });
}
