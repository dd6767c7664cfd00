//! `kill -9` of a process writing to the persistent queue. The child (this test binary, re-run in
//! child mode) feeds batches into a delivery exporter with a persistent queue and prints
//! `accepted <id>` after each batch's acknowledgement; the parent kills it with SIGKILL mid-stream,
//! reopens the queue in-process and checks against a real HTTP backend that every accepted request
//! is delivered, none twice except the few that were in flight at the kill.

mod delivery_support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delivery_support::*;

const CHILD: &str = "FOVEA_DELIVERY_CRASH_CHILD";

/// In child mode (env `FOVEA_DELIVERY_CRASH_CHILD=<dir>,<backend addr>,<consumers>`): feeds batches
/// until killed. Otherwise does nothing.
#[test]
fn child_process_entry_point() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let parts: Vec<&str> = spec.split(',').collect();
    let (dir, addr, consumers) =
        (parts[0].to_string(), parts[1].parse::<SocketAddr>().unwrap(), parts[2].parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let transport = Arc::new(HttpTransport { addr, timeout: Duration::from_secs(5) });
        let h = run(exporter(disk_queue(consumers, 1_000_000, Path::new(&dir), 256), fast_retry(0), transport))
            .await
            .unwrap();
        let mut out = std::io::stdout();
        for id in 0.. {
            assert!(h.send_acked([id]).await.wait().await, "a persistent queue refused batch {id}");
            writeln!(out, "accepted {id}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// The child process; killed when dropped.
struct ChildProcess {
    child: Child,
    accepted: Arc<Mutex<Vec<u64>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ChildProcess {
    fn spawn(dir: &Path, backend: SocketAddr, consumers: usize) -> ChildProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_process_entry_point", "--nocapture", "--test-threads=1"])
            .env(CHILD, format!("{},{backend},{consumers}", dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let sink = accepted.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("accepted ") {
                    sink.lock().unwrap().push(id.parse().unwrap());
                }
            }
        });
        ChildProcess { child, accepted, reader: Some(reader) }
    }

    fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then everything it printed before dying.
    fn kill_9(mut self) -> Vec<u64> {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "the child was killed, it did not exit: {status}");
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.accepted.lock().unwrap().clone()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reopens the queue in `dir` in this process and sends what it holds to `backend`.
async fn recover(dir: &Path, backend: &HttpBackend) -> Counts {
    let transport = Arc::new(HttpTransport { addr: backend.addr, timeout: Duration::from_secs(5) });
    let h = run(exporter(disk_queue(1, 1_000_000, dir, 256), fast_retry(0), transport)).await.unwrap();
    h.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_delivering_loses_nothing_and_repeats_at_most_one_request_per_consumer() {
    let consumers = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut backend = HttpBackend::start().await;
    // A slow backend, so that a backlog builds up on disk behind the requests in flight.
    backend.set_delay(Duration::from_millis(3));
    let child = ChildProcess::spawn(dir.path(), backend.addr, consumers);
    wait_until("the child has batches accepted and delivered", || {
        child.accepted() >= 500 && backend.received_ids().len() >= 100
    })
    .await;
    let accepted = child.kill_9();
    // Requests the backend was answering when the child died still count as received.
    backend.stop().await;
    backend.restart().await;
    let before = backend.received_ids().len();

    backend.set_delay(Duration::ZERO);
    let counts = recover(dir.path(), &backend).await;
    let received = backend.received_ids();
    let seen = occurrences(&received);
    for id in &accepted {
        assert!(seen.contains_key(id), "request {id} was accepted before the kill and never delivered");
    }
    // Batches were fed one at a time, so what was written is a prefix of the ids: no gaps.
    let highest = *received.iter().max().unwrap();
    assert!(highest >= *accepted.last().unwrap());
    for id in 0..=highest {
        assert!(seen.contains_key(&id), "request {id} is missing (highest delivered: {highest})");
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "accepted {} before the kill, {before} delivered by the child, {} by the recovery, {duplicates} duplicates",
        accepted.len(),
        counts.sent
    );
    assert!(duplicates <= consumers, "{duplicates} duplicates; at most {consumers} requests can be in flight");
    assert_eq!(counts.dropped, 0);
    assert_eq!(counts.sent as usize, received.len() - before, "the recovery sent the rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_nothing_in_flight_repeats_nothing_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let backend = HttpBackend::start().await;
    // The backend refuses everything (503, retryable) while the child runs: nothing is delivered,
    // so nothing can be in flight between a success and its record in the done log.
    backend.set_status(503);
    let child = ChildProcess::spawn(dir.path(), backend.addr, 1);
    wait_until("the child has batches accepted", || child.accepted() >= 200).await;
    // While the child lives, its directory cannot be opened by another process.
    let transport = Arc::new(HttpTransport { addr: backend.addr, timeout: Duration::from_secs(5) });
    let err = match run(exporter(disk_queue(1, 1000, dir.path(), 256), fast_retry(0), transport)).await {
        Err(e) => e,
        Ok(_) => panic!("two processes opened the same queue directory"),
    };
    assert!(err.contains(&format!("in use by process {}", child.child.id())), "{err}");
    let accepted = child.kill_9();
    assert!(backend.received_ids().is_empty());

    backend.set_status(200);
    let counts = recover(dir.path(), &backend).await;
    let received = backend.received_ids();
    assert!(received.len() >= accepted.len());
    assert_eq!(received, (0..received.len() as u64).collect::<Vec<_>>(), "each request once, in order");
    assert_eq!(counts.sent as usize, received.len());
    assert_eq!(counts.dropped, 0);
}
