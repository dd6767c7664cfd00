//! Unit tests of the delivery layer's parts: backoff arithmetic, the disk format, the memory
//! queue, and the persistent queue's bookkeeping. Whole-exporter behaviour is tested in
//! `tests/delivery_*.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::disk::{self, AckLog, DoneSet, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::memory::MemoryQueue;
use super::persistent::{Limits, PersistentQueue};
use super::*;
use crate::model::Signal;
use crate::telemetry::{ComponentKind, ComponentStats};

fn retry(initial_ms: u64, max_ms: u64, max_elapsed_ms: u64, multiplier: f64, randomization: f64) -> RetryConfig {
    RetryConfig {
        enabled: true,
        initial_interval: Duration::from_millis(initial_ms),
        max_interval: Duration::from_millis(max_ms),
        max_elapsed_time: Duration::from_millis(max_elapsed_ms),
        multiplier,
        randomization_factor: randomization,
    }
}

fn request(n: u64) -> Request {
    Request { signal: Signal::Metrics, items: n % 7 + 1, body: Bytes::from(format!("request-{n}")) }
}

fn stats() -> Arc<ComponentStats> {
    Arc::new(ComponentStats::new(ComponentKind::Exporter, "test", None))
}

#[test]
fn backoff_follows_otelcol_defaults_without_jitter() {
    let now = Instant::now();
    let mut b = Backoff::new(&retry(5_000, 30_000, 300_000, 1.5, 0.0), now);
    let waits: Vec<_> = (0..8).map(|_| b.next(now, None).unwrap().as_secs_f64()).collect();
    assert_eq!(waits, [5.0, 7.5, 11.25, 16.875, 25.3125, 30.0, 30.0, 30.0]);
}

#[test]
fn backoff_jitter_stays_within_the_randomization_factor() {
    let now = Instant::now();
    let config = retry(1_000, 1_000, 0, 1.0, 0.5);
    let mut b = Backoff::new(&config, now);
    assert_eq!(b.next_with_random(now, None, 0.0), Some(Duration::from_millis(500)));
    assert_eq!(b.next_with_random(now, None, 0.5), Some(Duration::from_millis(1_000)));
    assert_eq!(b.next_with_random(now, None, 1.0), Some(Duration::from_millis(1_500)));
    for _ in 0..1000 {
        let w = b.next(now, None).unwrap();
        assert!(w >= Duration::from_millis(500) && w <= Duration::from_millis(1_500), "{w:?}");
    }
}

#[test]
fn backoff_interval_is_capped_by_max_interval() {
    let now = Instant::now();
    let mut b = Backoff::new(&retry(100, 250, 0, 2.0, 0.0), now);
    let waits: Vec<_> = (0..4).map(|_| b.next(now, None).unwrap().as_millis()).collect();
    assert_eq!(waits, [100, 200, 250, 250]);
}

#[test]
fn throttle_is_a_floor_for_the_wait() {
    let now = Instant::now();
    let mut b = Backoff::new(&retry(100, 1_000, 0, 2.0, 0.0), now);
    assert_eq!(b.next(now, Some(Duration::from_secs(3))), Some(Duration::from_secs(3)));
    // A throttle shorter than the backoff does not shorten it; the interval kept growing.
    assert_eq!(b.next(now, Some(Duration::from_millis(10))), Some(Duration::from_millis(200)));
}

#[test]
fn backoff_gives_up_once_the_wait_would_end_past_max_elapsed_time() {
    let start = Instant::now();
    let mut b = Backoff::new(&retry(1_000, 1_000, 3_500, 1.0, 0.0), start);
    assert_eq!(b.next(start, None), Some(Duration::from_secs(1)));
    assert_eq!(b.next(start + Duration::from_secs(2), None), Some(Duration::from_secs(1)));
    assert_eq!(b.next(start + Duration::from_millis(2_500), None), Some(Duration::from_secs(1)));
    assert_eq!(b.next(start + Duration::from_millis(2_501), None), None);
    // 0 = never give up.
    let mut forever = Backoff::new(&retry(1_000, 1_000, 0, 1.0, 0.0), start);
    assert_eq!(forever.next(start + Duration::from_secs(86_400 * 365), None), Some(Duration::from_secs(1)));
}

#[test]
fn records_round_trip_and_scan_stops_at_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let file = disk::create_segment(dir.path(), 10).unwrap();
    let mut buf = Vec::new();
    for n in 10..13 {
        disk::encode_record(&mut buf, n, &request(n));
    }
    let whole = buf.len();
    // A fourth record cut in the middle of its body, as a crash mid-write leaves it.
    disk::encode_record(&mut buf, 13, &request(13));
    buf.truncate(whole + RECORD_HEADER_LEN + 3);
    std::os::unix::fs::FileExt::write_all_at(&file, &buf, SEGMENT_HEADER_LEN).unwrap();

    let mut seen = Vec::new();
    let scan = disk::scan_segment(&file, 10, |meta, body| seen.push((meta, body.to_vec()))).unwrap().unwrap();
    assert_eq!(seen.len(), 3);
    for (i, (meta, body)) in seen.iter().enumerate() {
        let n = 10 + i as u64;
        assert_eq!((meta.seq, meta.items, meta.signal), (n, request(n).items, Signal::Metrics));
        assert_eq!(body, &request(n).body.to_vec());
        let back = disk::read_record(&file, meta.offset, meta.len, n).unwrap();
        assert_eq!(back, request(n).body);
    }
    assert_eq!(scan.end_seq, 13);
    assert_eq!(scan.valid_len, SEGMENT_HEADER_LEN + whole as u64);
    let (offset, why) = scan.damage.unwrap();
    assert_eq!(offset, SEGMENT_HEADER_LEN + whole as u64);
    assert!(why.contains("cut short"), "{why}");
}

#[test]
fn scan_detects_a_flipped_bit_by_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let file = disk::create_segment(dir.path(), 0).unwrap();
    let mut buf = Vec::new();
    disk::encode_record(&mut buf, 0, &request(0));
    let second = buf.len();
    disk::encode_record(&mut buf, 1, &request(1));
    buf[second + RECORD_HEADER_LEN + 2] ^= 0x10;
    std::os::unix::fs::FileExt::write_all_at(&file, &buf, SEGMENT_HEADER_LEN).unwrap();
    let mut seqs = Vec::new();
    let scan = disk::scan_segment(&file, 0, |meta, _| seqs.push(meta.seq)).unwrap().unwrap();
    assert_eq!(seqs, [0]);
    assert_eq!(scan.damage.unwrap().1, "checksum mismatch");
    assert!(disk::read_record(&file, SEGMENT_HEADER_LEN + second as u64, request(1).body.len() as u32, 1).is_err());
}

#[test]
fn done_set_merges_ranges() {
    let done = DoneSet::new(vec![(5, 6), (0, 3), (3, 4), (8, 10), (9, 12), (7, 7)]);
    let member: Vec<u64> = (0..14).filter(|&s| done.contains(s)).collect();
    assert_eq!(member, [0, 1, 2, 3, 5, 8, 9, 10, 11]);
    assert_eq!(done.end(), 12);
}

#[test]
fn done_log_survives_a_torn_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AckLog::create(dir.path(), &[(0, 100)]).unwrap();
    log.append(100, 1).unwrap();
    log.append(105, 3).unwrap();
    drop(log);
    let path = dir.path().join("acks");
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(&[1, 2, 3, 4, 5]);
    std::fs::write(&path, &data).unwrap();
    let (done, damage) = AckLog::read(dir.path()).unwrap();
    assert!(damage.unwrap().contains("cut short"));
    let member: Vec<u64> = (95..110).filter(|&s| done.contains(s)).collect();
    assert_eq!(member, [95, 96, 97, 98, 99, 100, 105, 106, 107]);
}

#[tokio::test]
async fn memory_queue_takes_whole_batches_or_none() {
    let q = MemoryQueue::new(3);
    let mut batch = vec![request(0), request(1)];
    assert!(q.try_push_all(&mut batch));
    assert!(batch.is_empty());
    let mut batch = vec![request(2), request(3)];
    assert!(!q.try_push_all(&mut batch), "2 + 2 > 3");
    assert_eq!(batch.len(), 2, "a refused batch is left with the caller");
    assert_eq!(q.len(), 2);
    assert_eq!(q.bytes(), request(0).body.len() + request(1).body.len());
    assert_eq!(q.pop().await.unwrap(), request(0));
    let mut one = vec![request(2)];
    assert!(q.try_push_all(&mut one));
    assert_eq!(q.pop().await.unwrap(), request(1));
    assert_eq!(q.pop().await.unwrap(), request(2));
    // A batch larger than the queue is let in when the queue is empty.
    let mut big: Vec<_> = (10..15).map(request).collect();
    assert!(q.try_push_all(&mut big));
    q.close();
    let mut rest = Vec::new();
    while let Some(r) = q.pop().await {
        rest.push(r);
    }
    assert_eq!(rest, (10..15).map(request).collect::<Vec<_>>());
    assert_eq!(q.bytes(), 0);
}

#[tokio::test]
async fn memory_queue_blocks_for_room_until_stopped() {
    let q = Arc::new(MemoryQueue::new(1));
    assert!(q.try_push_all(&mut vec![request(0)]));
    let stop = CancellationToken::new();
    let pusher = {
        let (q, stop) = (q.clone(), stop.clone());
        tokio::spawn(async move { q.push_all(&mut vec![request(1)], &stop).await })
    };
    tokio::task::yield_now().await;
    assert!(!pusher.is_finished());
    assert_eq!(q.pop().await.unwrap(), request(0));
    assert!(pusher.await.unwrap(), "room was made");
    let stop = CancellationToken::new();
    stop.cancel();
    assert!(!q.push_all(&mut vec![request(2)], &stop).await, "full and stopped");
}

#[tokio::test]
async fn memory_queue_wakes_every_waiting_consumer() {
    let q = Arc::new(MemoryQueue::new(100));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while q.pop().await.is_some() {
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::task::yield_now().await;
    assert!(q.try_push_all(&mut (0..40).map(request).collect()));
    q.close();
    let mut total = 0;
    for c in consumers {
        total += c.await.unwrap();
    }
    assert_eq!(total, 40);
}

/// Waits (up to 10 s) for the queue's threads to reach a state.
async fn wait_until(done: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < give_up, "timed out waiting for the queue");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Opens a persistent queue in `dir`, appends `requests`, and returns it with its appender dropped
/// (closed for writing once the writer has drained).
async fn persistent_with(
    dir: &std::path::Path,
    limits: Limits,
    requests: impl Iterator<Item = Request>,
) -> Arc<PersistentQueue> {
    let (q, appender) = PersistentQueue::open(dir, limits, "test", stats()).unwrap();
    for r in requests {
        appender.append(r, None).await.unwrap();
    }
    drop(appender);
    Arc::new(q)
}

#[tokio::test]
async fn persistent_queue_replays_only_what_was_not_completed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::new(1000, 16);
    let q = persistent_with(dir.path(), limits, (0..10).map(request)).await;
    let c = q.consumer();
    for n in 0..4 {
        let lease = c.pop().await.unwrap();
        assert_eq!(lease.request, request(n));
        c.complete(lease).await;
    }
    // Taken but neither completed nor released: still pending after a restart.
    let lease = c.pop().await.unwrap();
    assert_eq!(lease.request, request(4));
    drop(lease);
    drop(c);
    q.close().await;
    drop(q);

    let q = persistent_with(dir.path(), limits, std::iter::empty()).await;
    assert_eq!(q.len(), 6);
    let c = q.consumer();
    let mut got = Vec::new();
    while let Some(lease) = c.pop().await {
        got.push(lease.request.clone());
        c.complete(lease).await;
    }
    assert_eq!(got, (4..10).map(request).collect::<Vec<_>>());
    q.close().await;
}

#[tokio::test]
async fn persistent_queue_release_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = persistent_with(dir.path(), Limits::new(1000, 16), (0..3).map(request)).await;
    let (a, b) = (q.consumer(), q.consumer());
    let first = a.pop().await.unwrap();
    let second = b.pop().await.unwrap();
    assert!(b.release(second));
    assert!(a.release(first));
    let mut got = Vec::new();
    while let Some(lease) = a.pop().await {
        got.push(lease.request.clone());
        a.complete(lease).await;
    }
    assert_eq!(got, (0..3).map(request).collect::<Vec<_>>());
    q.close().await;
}

#[tokio::test]
async fn persistent_queue_count_bound_evicts_the_oldest_including_one_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let stats = stats();
    let (q, appender) = PersistentQueue::open(dir.path(), Limits::new(5, 16), "test", stats.clone()).unwrap();
    let q = Arc::new(q);
    for n in 0..5 {
        appender.append(request(n), None).await.unwrap();
    }
    let c = q.consumer();
    let head = c.pop().await.unwrap();
    assert_eq!(head.request, request(0));
    // Make sure the first five are written before the next three arrive, so the bound is applied to them.
    wait_until(|| q.len() == 5).await;
    for n in 5..8 {
        appender.append(request(n), None).await.unwrap();
    }
    drop(appender);
    // Requests 0 (in flight: counted by its consumer), 1 and 2 (pending: counted now) make room.
    let dropped_now: u64 = (1..3).map(|n| request(n).items).sum();
    wait_until(|| stats.snapshot(Signal::Metrics).2 == dropped_now && q.len() == 5).await;
    assert!(c.is_evicted(&head));
    assert!(!c.release(head), "an evicted request cannot go back");
    let mut got = Vec::new();
    while let Some(lease) = c.pop().await {
        got.push(lease.request.clone());
        c.complete(lease).await;
    }
    assert_eq!(got, (3..8).map(request).collect::<Vec<_>>());
    q.close().await;
    drop(q);
    let q = persistent_with(dir.path(), Limits::new(5, 16), std::iter::empty()).await;
    assert_eq!(q.len(), 0, "evicted and delivered requests do not come back");
    q.close().await;
}

#[tokio::test]
async fn persistent_queue_byte_bound_gives_back_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let stats = stats();
    // 1 MiB bound, 64 KiB segments; 10 KiB bodies: 6 records per segment.
    let limits = Limits::new(100_000, 1);
    assert_eq!(limits.segment_bytes, 64 << 10);
    let body = Bytes::from(vec![7u8; 10 << 10]);
    let (q, appender) = PersistentQueue::open(dir.path(), limits, "test", stats.clone()).unwrap();
    for _ in 0..300 {
        appender.append(Request { signal: Signal::Flows, items: 1, body: body.clone() }, None).await.unwrap();
    }
    drop(appender);
    let q = Arc::new(q);
    // Every request is written once it is either queued or counted as dropped.
    let written = || q.len() as u64 + stats.snapshot(Signal::Flows).2 == 300;
    wait_until(written).await;
    let c = q.consumer();
    let mut left = 0u64;
    while let Some(lease) = c.pop().await {
        left += 1;
        c.complete(lease).await;
    }
    let dropped = stats.snapshot(Signal::Flows).2;
    assert_eq!(left + dropped, 300, "every request is either kept or counted as dropped");
    assert!(dropped > 0);
    // What is kept fits the bound: whole segments of 6 records, at most 1 MiB of them.
    let record = (RECORD_HEADER_LEN + (10 << 10)) as u64;
    assert!(left * record <= 1 << 20, "{left} records kept");
    assert!(left * record + 2 * limits.segment_bytes > 1 << 20, "at most one segment more than needed was given back");
    q.close().await;
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (q, appender) = PersistentQueue::open(dir.path(), Limits::new(10, 1), "first", stats()).unwrap();
    let err = match PersistentQueue::open(dir.path(), Limits::new(10, 1), "second", stats()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened twice"),
    };
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("another exporter of this process"), "{err}");
    drop(appender);
    q.close().await;
    drop(q);
    let (q, appender) = PersistentQueue::open(dir.path(), Limits::new(10, 1), "again", stats()).unwrap();
    drop(appender);
    q.close().await;
}
