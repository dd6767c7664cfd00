//! The persistent queue on a full disk (a 256 KiB tmpfs mounted by the test): batches that cannot
//! be written are refused and counted, nothing of them is sent, and once delivery frees space the
//! queue accepts again. Needs root to mount; skips without it, and fails in CI (`CI=true`).

mod delivery_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use delivery_support::*;
use fovea::delivery::DeliveryExporter;

/// A small tmpfs, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _base: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("small-disk");
        std::fs::create_dir(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let why = "cannot mount a tmpfs to fill (needs root, or CAP_SYS_ADMIN)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipping: {why}");
            return None;
        }
        Some(Tmpfs { dir, _base: base })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a test that failed may still hold files open on it.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn padded(dir: &Path, backend: Arc<Scripted>) -> DeliveryExporter {
    DeliveryExporter::new(
        "otlp".into(),
        disk_queue(1, 100_000, dir, 64),
        fast_retry(0),
        Arc::new(PaddedEncoder),
        backend,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_batches_and_accepts_again_once_delivery_frees_space() {
    let Some(disk) = Tmpfs::mount("256k") else { return };
    let dir = disk.dir.join("queue");
    let backend = Arc::new(Scripted::default());
    backend.down.store(true, Ordering::SeqCst);
    let h = run(padded(&dir, backend.clone())).await.unwrap();

    // 1 KiB requests until the 256 KiB disk is full.
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for id in 0..400 {
        if h.send_acked([id]).await.wait().await {
            accepted.push(id as u64);
        } else {
            refused.push(id as u64);
        }
    }
    assert!(accepted.len() > 100, "{} accepted", accepted.len());
    assert!(refused.len() > 100, "{} refused", refused.len());
    assert_eq!(*accepted.last().unwrap() + 1, refused[0], "refusals start when the disk is full");
    assert_eq!(h.counts().dropped, refused.len() as u64);

    // The backend comes back: what was accepted is sent, its segment deleted, space freed.
    backend.down.store(false, Ordering::SeqCst);
    wait_until("everything accepted is delivered", || backend.delivered().len() == accepted.len()).await;
    for id in 1000..1050 {
        let mut waited = 0;
        // The first batch after the space came back may still meet the full disk.
        while !h.send_acked([id]).await.wait().await {
            waited += 1;
            assert!(waited < 100, "batch {id} still refused after space was freed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        accepted.push(id as u64);
    }
    wait_until("the new batches are delivered", || backend.delivered().len() == accepted.len()).await;
    let counts = h.finish().await;
    assert_eq!(backend.delivered(), accepted, "what was accepted, once, in order; nothing refused");
    assert_eq!(counts.sent, accepted.len() as u64);
}
