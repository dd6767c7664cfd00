//! A real HTTP backend on loopback goes away (port closed) and answers 503 for a while, then comes
//! back: every request is delivered exactly once, in order with one consumer, whether the queue is
//! in memory (retrying without end) or on disk (retries exhausted many times over), and across an
//! agent restart in the middle of the outage.

mod delivery_support;

use std::sync::Arc;
use std::time::Duration;

use delivery_support::*;

/// Sends `ids` one batch each, 1 ms apart.
async fn feed(h: &Harness, ids: std::ops::Range<i64>) {
    for id in ids {
        h.send([id]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn transport(backend: &HttpBackend) -> Arc<HttpTransport> {
    Arc::new(HttpTransport { addr: backend.addr, timeout: Duration::from_secs(5) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_queue_rides_out_an_outage_and_delivers_in_order_once() {
    let mut backend = HttpBackend::start().await;
    let h = run(exporter(memory_queue(1, 1000), fast_retry(0), transport(&backend))).await.unwrap();
    feed(&h, 0..100).await;
    backend.stop().await;
    feed(&h, 100..200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    backend.restart().await;
    backend.set_status(503);
    feed(&h, 200..250).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.set_status(200);
    feed(&h, 250..300).await;
    let counts = h.finish().await;

    assert_eq!(backend.received_ids(), (0..300).collect::<Vec<_>>());
    assert_eq!((counts.received, counts.sent, counts.dropped), (300, 300, 0));
    assert!(counts.failed > 0, "the outage was seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_queue_outlasts_max_elapsed_time_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = HttpBackend::start().await;
    // Retries give up after 100 ms; the outage lasts over 600 ms.
    let h = run(exporter(disk_queue(1, 1000, dir.path(), 64), fast_retry(100), transport(&backend))).await.unwrap();
    feed(&h, 0..50).await;
    backend.stop().await;
    feed(&h, 50..150).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    backend.restart().await;
    feed(&h, 150..200).await;
    let counts = h.finish().await;

    assert_eq!(backend.received_ids(), (0..200).collect::<Vec<_>>());
    assert_eq!((counts.received, counts.sent, counts.dropped), (200, 200, 0));
    assert!(counts.failed > 0, "the outage was seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_during_the_outage_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = HttpBackend::start().await;
    let h = run(exporter(disk_queue(1, 1000, dir.path(), 64), fast_retry(0), transport(&backend))).await.unwrap();
    feed(&h, 0..50).await;
    backend.stop().await;
    feed(&h, 50..120).await;
    // The agent stops while the backend is away: what is queued stays on disk.
    let counts = h.finish().await;
    assert_eq!(counts.dropped, 0);
    let before = backend.received_ids();
    assert!(!before.is_empty() && before.len() < 120, "{} delivered before the outage", before.len());

    backend.restart().await;
    let h = run(exporter(disk_queue(1, 1000, dir.path(), 64), fast_retry(0), transport(&backend))).await.unwrap();
    feed(&h, 120..150).await;
    let counts = h.finish().await;
    assert_eq!(counts.dropped, 0);
    assert_eq!(backend.received_ids(), (0..150).collect::<Vec<_>>(), "each request once, in order");
}
