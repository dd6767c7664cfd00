//! A backend outage loses nothing: data flows every second while the real Prometheus is stopped
//! for 60 s and started again on the same data; afterwards every timestamp sent is stored
//! exactly once with its value, in order (Prometheus refuses out-of-order samples, which would
//! show as missing), with the in-memory queue and with the persistent queue.

#[path = "support/prometheus.rs"]
mod prometheus_server;
#[path = "support/remote_write.rs"]
mod remote_write;

use std::time::{Duration, Instant};

use prometheus_server::{Options, Prometheus, labels};
use remote_write::{SEC, batch, config, counter_point, now_whole_second, start, unix_seconds};

/// Ticks sent before the outage.
const BEFORE: u64 = 15;
/// Length of the outage, in ticks (seconds).
const OUTAGE: u64 = 60;
/// Ticks sent after Prometheus is back.
const AFTER: u64 = 15;

async fn outage_loses_nothing(queue: &str) {
    let Some(mut p) = tokio::task::spawn_blocking(|| {
        Prometheus::start(Options { remote_write_receiver: true, ..Options::default() })
    })
    .await
    .expect("start prometheus") else {
        return;
    };
    // Retries wait at most 5s (default 30s) so the test does not idle after the outage.
    let cfg = config(&format!(
        "    endpoint: {}\n    remote_write_queue:\n{queue}    retry_on_failure: {{max_interval: 5s}}\n",
        p.remote_write_url()
    ));
    let exporter = start(&cfg).await;
    let t0 = now_whole_second();
    let start_time = t0 - 3600 * SEC;
    let total = BEFORE + OUTAGE + AFTER;
    let began = Instant::now();
    for i in 0..total {
        if i == BEFORE {
            p = tokio::task::spawn_blocking(move || {
                p.stop();
                p
            })
            .await
            .expect("stop prometheus");
        }
        if i == BEFORE + OUTAGE {
            p = tokio::task::spawn_blocking(move || {
                p.restart();
                p
            })
            .await
            .expect("restart prometheus");
        }
        let t = t0 + i * SEC;
        let m = counter_point("outage.ticks", &[("tick", "all")], start_time, t, i as i64 * 10);
        exporter.send(batch("node-1", vec![m])).await;
        tokio::time::sleep_until((began + Duration::from_secs(i + 1)).into()).await;
    }

    let want: Vec<(i64, f64)> = (0..total).map(|i| (((t0 + i * SEC) / 1_000_000) as i64, i as f64 * 10.0)).collect();
    let at = unix_seconds(t0 + (total + 60) * SEC);
    let end = Instant::now() + Duration::from_secs(120);
    let got = loop {
        let got = p.raw_samples("outage_ticks_total", "10m", at);
        let n: usize = got.iter().map(|(_, v)| v.len()).sum();
        if n >= want.len() || Instant::now() > end {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let series = labels(&[
        ("__name__", "outage_ticks_total"),
        ("instance", "node-1"),
        ("job", "fovea"),
        ("otel_scope_name", "fovea/test"),
        ("otel_scope_version", "0.1.0"),
        ("tick", "all"),
    ]);
    assert_eq!(got.len(), 1, "one series: {got:?}\n{}", p.log());
    assert_eq!(got[0].0, series);
    let missing: Vec<i64> = want.iter().filter(|w| !got[0].1.contains(w)).map(|w| w.0).collect();
    assert!(missing.is_empty(), "{} samples missing: {missing:?}\nprometheus log:\n{}", missing.len(), p.log());
    assert_eq!(got[0].1, want, "every sample exactly once, with its value, in order");
    let (received, sent, dropped, _failed) = exporter.stop(Duration::from_secs(10)).await;
    assert_eq!((received, sent, dropped), (total, total, 0), "received, sent, dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60s_outage_loses_nothing_with_the_memory_queue() {
    outage_loses_nothing("      enabled: true\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60s_outage_loses_nothing_with_the_persistent_queue() {
    let dir = tempfile::tempdir().expect("queue dir");
    let queue = format!("      storage: {{directory: {}}}\n", dir.path().join("queue").display());
    outage_loses_nothing(&queue).await;
}
