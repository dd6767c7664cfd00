//! The delivery exporter with its persistent queue, on real files: what was accepted survives an
//! exporter stop and comes back exactly once and in order; damaged tails are skipped; the size
//! bound drops the oldest; retries never give up on what is on disk; one process per directory.

mod delivery_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use delivery_support::*;

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Runs an exporter on `dir` with a working backend and no new input, until it has sent what the
/// queue holds; returns what was delivered, in order, and the counters.
async fn drain(dir: &Path, consumers: usize) -> (Vec<u64>, Counts) {
    let backend = Arc::new(Scripted::default());
    let h = run(exporter(disk_queue(consumers, 1000, dir, 64), fast_retry(0), backend.clone())).await.unwrap();
    let counts = h.finish().await;
    (backend.delivered(), counts)
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn undelivered_requests_survive_a_stop_and_come_back_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Scripted::default());
    down.down.store(true, Ordering::SeqCst);
    let h = run(exporter(disk_queue(1, 1000, dir.path(), 64), fast_retry(0), down.clone())).await.unwrap();
    for id in 0..50 {
        assert!(h.send_acked([id]).await.wait().await, "accepted once on disk");
    }
    // The input closes; the backend is down: the exporter stops without waiting for the deadline.
    let counts = h.finish().await;
    assert_eq!((counts.sent, counts.dropped), (0, 0));
    assert!(down.delivered().is_empty());

    let (delivered, counts) = drain(dir.path(), 1).await;
    assert_eq!(delivered, (0..50).collect::<Vec<_>>());
    assert_eq!((counts.sent, counts.dropped), (50, 0));
    let (again, _) = drain(dir.path(), 1).await;
    assert!(again.is_empty(), "nothing is sent twice");
}

#[tokio::test]
async fn after_a_partial_delivery_only_the_rest_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Scripted::default());
    // 20 fails, and is retried until the input closes; then it stays on disk with everything behind it.
    backend.on(20, std::iter::repeat_n(Step::Retry(None), 1000));
    let h = run(exporter(disk_queue(1, 1000, dir.path(), 64), fast_retry(0), backend.clone())).await.unwrap();
    for id in 0..40 {
        h.send([id]).await;
    }
    wait_until("request 20 is retried", || backend.attempts_at(20).len() >= 2).await;
    let counts = h.finish().await;
    assert_eq!(backend.delivered(), (0..20).collect::<Vec<_>>());
    assert_eq!((counts.sent, counts.dropped), (20, 0));

    let (delivered, counts) = drain(dir.path(), 1).await;
    assert_eq!(delivered, (20..40).collect::<Vec<_>>());
    assert_eq!((counts.sent, counts.dropped), (20, 0));
}

#[tokio::test]
async fn several_consumers_leave_exactly_the_undelivered_requests() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Scripted::default());
    // Fewer failing requests than consumers: each failing one holds a consumer (retried without
    // end), the others go on.
    let failing: Vec<u64> = vec![4, 50, 77];
    for &id in &failing {
        backend.on(id, std::iter::repeat_n(Step::Retry(None), 1000));
    }
    let h = run(exporter(disk_queue(4, 1000, dir.path(), 64), fast_retry(0), backend.clone())).await.unwrap();
    for id in 0..100 {
        h.send([id]).await;
    }
    wait_until("all but the failing ones are delivered", || backend.delivered().len() == 100 - failing.len()).await;
    h.finish().await;
    let (mut delivered, _) = drain(dir.path(), 4).await;
    delivered.sort_unstable();
    assert_eq!(delivered, failing, "exactly the requests never delivered come back");
}

#[tokio::test]
async fn a_record_cut_short_by_a_crash_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Scripted::default());
    down.down.store(true, Ordering::SeqCst);
    let h = run(exporter(disk_queue(1, 1000, dir.path(), 64), fast_retry(0), down)).await.unwrap();
    for id in 1000..1010 {
        assert!(h.send_acked([id]).await.wait().await);
    }
    h.finish().await;
    let files = segments(dir.path());
    let full: Vec<_> = files.iter().filter(|p| std::fs::metadata(p).unwrap().len() > 16).collect();
    assert_eq!(full.len(), 1, "{files:?}");
    let file = std::fs::OpenOptions::new().write(true).open(full[0]).unwrap();
    let len = file.metadata().unwrap().len();
    // The last record's body was "1009": cut two bytes of it, as a crash mid-write would.
    file.set_len(len - 2).unwrap();
    drop(file);

    let (delivered, counts) = drain(dir.path(), 1).await;
    assert_eq!(delivered, (1000..1009).collect::<Vec<_>>());
    assert_eq!(counts.sent, 9);
    let (again, _) = drain(dir.path(), 1).await;
    assert!(again.is_empty());
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_requests_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Scripted::default());
    down.down.store(true, Ordering::SeqCst);
    let h = run(exporter(disk_queue(1, 10, dir.path(), 64), fast_retry(0), down)).await.unwrap();
    for id in 0..25 {
        assert!(h.send_acked([id]).await.wait().await, "a persistent queue never refuses new data");
    }
    wait_until("the queue holds its bound", || h.stats.queue() == (10, 10)).await;
    let counts = h.finish().await;
    assert_eq!((counts.received, counts.sent, counts.dropped), (25, 0, 15));

    let (delivered, counts) = drain(dir.path(), 1).await;
    assert_eq!(delivered, (15..25).collect::<Vec<_>>());
    assert_eq!(counts.dropped, 0);
}

#[tokio::test]
async fn exhausted_retries_keep_the_request_on_disk_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Scripted::default());
    // 20 failures take about 0.7 s, far beyond max_elapsed_time (50 ms).
    backend.on(0, std::iter::repeat_n(Step::Retry(None), 20));
    let h = run(exporter(disk_queue(1, 100, dir.path(), 64), fast_retry(50), backend.clone())).await.unwrap();
    h.send([0]).await;
    h.send([1]).await;
    wait_until("everything is delivered", || backend.delivered().len() == 2).await;
    let counts = h.finish().await;
    assert_eq!(backend.delivered(), [0, 1]);
    assert_eq!(counts, Counts { received: 2, sent: 2, dropped: 0, failed: 20 });
    assert_eq!(backend.attempts_at(0).len(), 21);
}

#[tokio::test]
async fn a_batch_is_accepted_only_once_its_requests_are_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Scripted::default());
    down.down.store(true, Ordering::SeqCst);
    let h = run(exporter(disk_queue(1, 100, dir.path(), 64), fast_retry(0), down)).await.unwrap();
    assert!(h.send_acked([987_654_321, 123_456_789]).await.wait().await);
    let on_disk: Vec<u8> = segments(dir.path()).iter().flat_map(|p| std::fs::read(p).unwrap()).collect();
    for body in [&b"987654321"[..], &b"123456789"[..]] {
        assert!(on_disk.windows(body.len()).any(|w| w == body), "{} is in a segment", String::from_utf8_lossy(body));
    }
    h.finish().await;
}

#[tokio::test]
async fn queue_metrics_report_the_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Scripted::default());
    down.down.store(true, Ordering::SeqCst);
    let h = run(exporter(disk_queue(1, 100, dir.path(), 8), fast_retry(0), down)).await.unwrap();
    for id in 0..30 {
        h.send([id]).await;
    }
    wait_until("everything is written", || h.stats.queue() == (30, 100)).await;
    let files: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "lock")
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(h.metric("fovea.exporter.queue.bytes"), Some(files as i64));
    assert_eq!(h.metric("fovea.exporter.queue.capacity_bytes"), Some(8 << 20));
    h.finish().await;
}

#[tokio::test]
async fn a_second_exporter_on_the_same_directory_fails_to_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Scripted::default());
    let first = run(exporter(disk_queue(1, 100, dir.path(), 8), fast_retry(0), backend.clone())).await.unwrap();
    let err = match run(exporter(disk_queue(1, 100, dir.path(), 8), fast_retry(0), backend.clone())).await {
        Err(e) => e,
        Ok(_) => panic!("two exporters share a queue directory"),
    };
    assert!(err.contains(&format!("{} is in use", dir.path().display())), "{err}");
    first.finish().await;
    // Free again once the first one has stopped.
    let again = run(exporter(disk_queue(1, 100, dir.path(), 8), fast_retry(0), backend)).await.unwrap();
    again.finish().await;
}

#[tokio::test]
async fn the_queue_directory_is_created_when_missing() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("var/lib/fovea/queue/otlp");
    let down = Arc::new(Scripted::default());
    down.down.store(true, Ordering::SeqCst);
    let h = run(exporter(disk_queue(1, 100, &dir, 8), fast_retry(0), down)).await.unwrap();
    h.send([7]).await;
    h.finish().await;
    let (delivered, _) = drain(&dir, 1).await;
    assert_eq!(delivered, [7]);
}
