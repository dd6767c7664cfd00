//! The persistent sending queue: requests are appended to segment files and fsynced (in groups)
//! before their batch is acknowledged; consumers take them in order; each request that is done
//! (delivered or refused for good) is recorded in the done log right away, so that a restart, even
//! after `kill -9`, sends every request not yet delivered, once. Bounded by `queue_size` requests
//! and `max_size_mib` of segments: when full, the oldest requests are dropped and counted; new data
//! is never refused.
//!
//! File I/O never runs on tokio workers: a writer thread appends (group commit: every request
//! waiting is written, then one fdatasync) and enforces the bounds; a done-log thread records
//! finished requests, compacts the log and deletes segments with nothing left to send. Consumers
//! take short locks and read bodies not kept in memory with `spawn_blocking`.
//!
//! Duplicate window after a restart: a request is sent again only if the process died between the
//! backend's success and the done-log write that follows it (at most one request per consumer, as
//! every consumer waits for that write before taking the next request), or, after a power loss or
//! kernel crash (not a process crash), if its done-log entry was written in the last second.
//!
//! `state.rs` keeps the books, `writer.rs` and `done_log.rs` are the two threads; this file opens
//! and closes the queue and hands requests to consumers.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tracing::{error, info, warn};

mod done_log;
mod state;
mod writer;

use super::disk::{self, AckLog, DirLock, SEGMENT_HEADER_LEN};
use super::{DeliveryError, Request, lock};
use crate::model::Payload;
use crate::telemetry::ComponentStats;
use done_log::{AckMsg, DoneLogger};
use state::{Entry, Evicted, InFlight, Segment, State};
use writer::{Writer, WriterMsg};

/// Requests waiting for the writer before the intake waits (backpressure from a slow disk).
const WRITER_CHANNEL: usize = 1024;

/// Size bounds of one persistent queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most requests kept (`queue_size`).
    pub(crate) max_requests: usize,
    /// Most bytes of segment files (`max_size_mib`).
    pub(crate) max_bytes: u64,
    /// Size at which a new segment is started; the unit in which disk space is given back.
    pub(crate) segment_bytes: u64,
    /// Bodies of pending requests kept in memory up to this many bytes (the rest is read back).
    pub(crate) cache_bytes: usize,
}

impl Limits {
    /// Bounds for `queue_size` requests and `max_size_mib` MiB.
    pub(crate) fn new(queue_size: usize, max_size_mib: u64) -> Self {
        let max_bytes = max_size_mib.saturating_mul(1 << 20);
        Limits {
            max_requests: queue_size.max(1),
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(64 << 10, 32 << 20),
            cache_bytes: (max_bytes / 8).min(32 << 20) as usize,
        }
    }
}

/// What the queue's threads and consumers share.
struct Shared {
    dir: PathBuf,
    exporter: String,
    limits: Limits,
    stats: Arc<ComponentStats>,
    state: Mutex<State>,
    /// Woken when requests are published or the intake is done.
    ready: Notify,
    live: AtomicUsize,
    segment_bytes: AtomicU64,
    ack_bytes: AtomicU64,
    /// Held until the queue is closed (or, if never closed, until its last thread ends).
    dir_lock: Mutex<Option<DirLock>>,
}

impl Shared {
    /// Updates the lock-free copies read by probes and telemetry.
    fn mirror(&self, state: &State) {
        self.live.store(state.live(), Ordering::Relaxed);
        self.segment_bytes.store(state.segment_bytes, Ordering::Relaxed);
    }

    /// Deletes segment files with nothing left to send (on the queue's own threads).
    fn delete(&self, dead: &mut Vec<Segment>) {
        if dead.is_empty() {
            return;
        }
        for s in dead.drain(..) {
            let path = disk::segment_path(&self.dir, s.first_seq);
            if let Err(e) = fs::remove_file(&path) {
                warn!(exporter = %self.exporter, path = %path.display(), error = %e, "persistent queue: cannot delete a finished segment");
            }
        }
        if let Err(e) = disk::sync_dir(&self.dir) {
            warn!(exporter = %self.exporter, directory = %self.dir.display(), error = %e, "persistent queue: cannot sync directory");
        }
    }
}

/// The intake's handle: appends requests. Dropping it tells the queue no more will come.
pub(crate) struct Appender {
    tx: mpsc::Sender<WriterMsg>,
    dir: PathBuf,
}

impl Appender {
    /// Hands `request` to the writer; with `accept`, that batch's acknowledgements are accepted
    /// once the request (the batch's last) is written and fsynced, or failed if writing fails.
    pub(crate) async fn append(&self, request: Request, accept: Option<Payload>) -> Result<(), DeliveryError> {
        self.tx.send(WriterMsg { request, accept, failed: false }).await.map_err(|e| {
            if let Some(p) = e.0.accept {
                p.acks().fail();
            }
            DeliveryError::WriterStopped { directory: self.dir.clone() }
        })
    }
}

/// The persistent queue, shared by the consumers.
pub(crate) struct PersistentQueue {
    shared: Arc<Shared>,
    acks: std_mpsc::Sender<AckMsg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl PersistentQueue {
    /// Opens (creating if needed) the queue in `dir`: takes the directory lock, replays the files
    /// (skipping damaged records), applies the bounds, and starts the writer and done-log threads.
    /// Blocking: call it from a blocking context.
    pub(crate) fn open(
        dir: &Path,
        limits: Limits,
        exporter: &str,
        stats: Arc<ComponentStats>,
    ) -> Result<(PersistentQueue, Appender), DeliveryError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| DeliveryError::Io { action, path, source }
        };
        fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        let dir_lock = disk::lock_dir(dir)?;
        AckLog::remove_leftovers(dir).map_err(io("clean up", dir))?;
        let (done, damage) = AckLog::read(dir).map_err(io("read the done log in", dir))?;
        if let Some(why) = damage {
            warn!(
                exporter, directory = %dir.display(), problem = %why,
                "persistent queue: the done log is damaged; requests it no longer covers will be sent again"
            );
        }

        let mut state = State::default();
        let mut next_seq = done.end();
        for (first, path) in disk::list_segments(dir)? {
            let file = Arc::new(OpenOptions::new().read(true).write(true).open(&path).map_err(io("open", &path))?);
            let (pending, cached) = (&mut state.pending, &mut state.cached_bytes);
            let scan = disk::scan_segment(&file, first, |meta, body| {
                if done.contains(meta.seq) {
                    return;
                }
                let keep = *cached + body.len() <= limits.cache_bytes;
                if keep {
                    *cached += body.len();
                }
                pending.push_back(Entry {
                    seq: meta.seq,
                    signal: meta.signal,
                    items: meta.items,
                    file: Some(file.clone()),
                    offset: meta.offset,
                    len: meta.len,
                    body: keep.then(|| Bytes::copy_from_slice(body)),
                });
            })
            .map_err(io("read", &path))?;
            let scan = match scan {
                Ok(scan) => scan,
                Err(why) => {
                    let aside = path.with_extension("seg.damaged");
                    warn!(
                        exporter, path = %path.display(), problem = %why, moved_to = %aside.display(),
                        "persistent queue: not a usable segment; moving it aside"
                    );
                    fs::rename(&path, &aside).map_err(io("move aside", &path))?;
                    continue;
                }
            };
            if let Some((offset, why)) = &scan.damage {
                warn!(
                    exporter, path = %path.display(), offset, problem = %why,
                    "persistent queue: damaged or cut-short record (as left by a crash mid-write); skipping it and the rest of the file"
                );
                file.set_len(scan.valid_len).and_then(|()| file.sync_all()).map_err(io("truncate", &path))?;
            }
            next_seq = next_seq.max(scan.end_seq);
            state.segment_bytes += scan.valid_len;
            state.segments.push_back(Segment {
                first_seq: first,
                end_seq: scan.end_seq,
                bytes: scan.valid_len,
                closed: true,
            });
        }
        state.pending.make_contiguous().sort_unstable_by_key(|e| e.seq);

        // Writing resumes in a fresh segment; an empty one left at that sequence number is replaced.
        if let Some(i) = state.segments.iter().position(|s| s.first_seq >= next_seq)
            && let Some(s) = state.segments.remove(i)
        {
            state.segment_bytes = state.segment_bytes.saturating_sub(s.bytes);
        }
        let active = Arc::new(disk::create_segment(dir, next_seq).map_err(io("create a segment in", dir))?);
        state.segments.push_back(Segment {
            first_seq: next_seq,
            end_seq: next_seq,
            bytes: SEGMENT_HEADER_LEN,
            closed: false,
        });
        state.segment_bytes += SEGMENT_HEADER_LEN;
        state.next_seq = next_seq;

        // The bounds may have shrunk since the last run.
        let mut evicted = Evicted::default();
        let over = state.live().saturating_sub(limits.max_requests);
        state.evict(over, 0, &stats, &mut evicted);
        let mut dead = Vec::new();
        state.take_dead_segments(&mut dead);
        while state.segment_bytes > limits.max_bytes {
            let Some(end) = state.segments.iter().find(|s| s.closed).map(|s| s.end_seq) else { break };
            state.evict(0, end, &stats, &mut evicted);
            let before = state.segments.len();
            state.take_dead_segments(&mut dead);
            if state.segments.len() == before {
                break;
            }
        }
        if evicted.requests > 0 {
            warn!(
                exporter, directory = %dir.display(), requests = evicted.requests, items = evicted.items,
                "persistent queue: more data on disk than queue_size / max_size_mib allow; dropped the oldest"
            );
        }
        let log = AckLog::create(dir, &state.done_ranges()).map_err(io("write the done log in", dir))?;
        let (backlog, backlog_items) = (state.pending.len(), state.pending_items());

        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            exporter: exporter.to_string(),
            limits,
            stats,
            live: AtomicUsize::new(state.live()),
            segment_bytes: AtomicU64::new(state.segment_bytes),
            ack_bytes: AtomicU64::new(log.bytes()),
            state: Mutex::new(state),
            ready: Notify::new(),
            dir_lock: Mutex::new(Some(dir_lock)),
        });
        shared.delete(&mut dead);
        if backlog > 0 {
            info!(
                exporter, directory = %dir.display(), requests = backlog, items = backlog_items,
                bytes = shared.segment_bytes.load(Ordering::Relaxed),
                "persistent queue: sending what a previous run left undelivered"
            );
        }

        let (ack_tx, ack_rx) = std_mpsc::channel();
        let (tx, rx) = mpsc::channel(WRITER_CHANNEL);
        let writer = Writer::new(shared.clone(), ack_tx.clone(), active, next_seq);
        let logger = DoneLogger::new(shared.clone(), log, backlog as u64);
        let writer = std::thread::Builder::new()
            .name("fovea-queue-wr".into())
            .spawn(move || writer.run(rx))
            .map_err(io("start a thread for", dir))?;
        let logger = std::thread::Builder::new()
            .name("fovea-queue-ack".into())
            .spawn(move || logger.run(ack_rx))
            .map_err(io("start a thread for", dir))?;
        let queue = PersistentQueue { shared, acks: ack_tx, threads: Mutex::new(vec![writer, logger]) };
        Ok((queue, Appender { tx, dir: dir.to_path_buf() }))
    }

    /// A handle for one consumer task.
    pub(crate) fn consumer(self: &Arc<Self>) -> DiskConsumer {
        DiskConsumer { queue: self.clone(), done: Arc::new(Notify::new()) }
    }

    /// Requests not yet done (pending or being sent).
    pub(crate) fn len(&self) -> usize {
        self.shared.live.load(Ordering::Relaxed)
    }

    /// Bytes of the queue's files (segments and done log).
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.shared.segment_bytes.load(Ordering::Relaxed) + self.shared.ack_bytes.load(Ordering::Relaxed)
    }

    /// The queue directory.
    pub(crate) fn directory(&self) -> &Path {
        &self.shared.dir
    }

    /// Waits for the writer (the [`Appender`] must be dropped first) and the done-log thread to
    /// finish, releases the directory, and returns the `(requests, items)` left for the next start.
    pub(crate) async fn close(&self) -> (u64, u64) {
        let threads = std::mem::take(&mut *lock(&self.threads));
        let acks = self.acks.clone();
        let shared = self.shared.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut threads = threads.into_iter();
            // The writer ends once the appender is gone; its last messages go before `Stop`.
            if let Some(writer) = threads.next() {
                let _ = writer.join();
            }
            let _ = acks.send(AckMsg::Stop);
            for t in threads {
                let _ = t.join();
            }
            // Nothing writes any more: the directory is free for the next open, even while handles remain.
            lock(&shared.dir_lock).take();
        })
        .await;
        if let Err(e) = joined {
            error!(exporter = %self.shared.exporter, error = %e, "persistent queue: a thread panicked");
        }
        let state = lock(&self.shared.state);
        (state.live() as u64, state.pending_items())
    }
}

impl Drop for PersistentQueue {
    fn drop(&mut self) {
        // Not closed (never run): let the done-log thread finish on its own; the writer ends with
        // its appender. The directory lock goes with the last thread.
        let _ = self.acks.send(AckMsg::Stop);
    }
}

/// A request taken from the persistent queue by a consumer. It holds no segment file open, so a
/// segment evicted meanwhile gives its space back at once.
pub(crate) struct Lease {
    /// The request.
    pub(crate) request: Request,
    seq: u64,
}

/// One consumer's handle on the persistent queue.
pub(crate) struct DiskConsumer {
    queue: Arc<PersistentQueue>,
    /// Woken by the done-log thread once this consumer's finished request is recorded.
    done: Arc<Notify>,
}

impl DiskConsumer {
    /// The oldest pending request; `None` once the intake is done and nothing is pending.
    pub(crate) async fn pop(&self) -> Option<Lease> {
        let shared = &self.queue.shared;
        loop {
            let entry = loop {
                let mut ready = pin!(shared.ready.notified());
                ready.as_mut().enable();
                {
                    let mut state = lock(&shared.state);
                    if let Some(entry) = state.pending.pop_front() {
                        if entry.body.is_some() {
                            state.cached_bytes = state.cached_bytes.saturating_sub(entry.len as usize);
                        }
                        state.in_flight.push(InFlight { seq: entry.seq, evicted: false });
                        let more = !state.pending.is_empty();
                        drop(state);
                        if more {
                            shared.ready.notify_one();
                        }
                        break entry;
                    }
                    if state.input_done {
                        return None;
                    }
                }
                ready.await;
            };
            let Entry { seq, signal, items, file, offset, len, body } = entry;
            let body = match (body, file) {
                (Some(body), _) => Ok(body),
                (None, Some(file)) => tokio::task::spawn_blocking(move || disk::read_record(&file, offset, len, seq))
                    .await
                    .unwrap_or_else(|e| Err(format!("reader task failed: {e}"))),
                (None, None) => Err("neither in memory nor on disk".to_string()),
            };
            match body {
                Ok(body) => return Some(Lease { request: Request { signal, items, body }, seq }),
                Err(why) => {
                    error!(
                        exporter = %shared.exporter, directory = %shared.dir.display(), seq, offset, problem = %why,
                        "persistent queue: a stored request cannot be read back; dropping it"
                    );
                    shared.stats.add_dropped(signal, items);
                    self.finish(seq).await;
                }
            }
        }
    }

    /// True once the full queue has dropped this request (oldest first) while it was out.
    pub(crate) fn is_evicted(&self, lease: &Lease) -> bool {
        lock(&self.queue.shared.state).in_flight.iter().any(|f| f.seq == lease.seq && f.evicted)
    }

    /// The request is done (delivered, or refused for good): recorded before this returns, so that
    /// at most one finished request per consumer can be sent again after a crash.
    pub(crate) async fn complete(&self, lease: Lease) {
        self.finish(lease.seq).await;
    }

    async fn finish(&self, seq: u64) {
        if self.queue.acks.send(AckMsg::Done { seq, done: self.done.clone() }).is_ok() {
            self.done.notified().await;
            return;
        }
        // The done-log thread is gone (only during teardown): forget the request in memory.
        let shared = &self.queue.shared;
        let mut state = lock(&shared.state);
        if let Some(i) = state.in_flight.iter().position(|f| f.seq == seq) {
            state.in_flight.swap_remove(i);
        }
        shared.mirror(&state);
    }

    /// Puts a request that was not delivered back in the queue, in order. False if the full queue
    /// evicted it meanwhile (the caller counts it as dropped).
    pub(crate) fn release(&self, lease: Lease) -> bool {
        let shared = &self.queue.shared;
        let mut state = lock(&shared.state);
        let Some(i) = state.in_flight.iter().position(|f| f.seq == lease.seq) else { return false };
        let flight = state.in_flight.swap_remove(i);
        if flight.evicted {
            // Its segment, if now finished, is deleted by the queue's threads at their next pass
            // (or at the next start): files are never deleted on tokio workers.
            shared.mirror(&state);
            return false;
        }
        let len = lease.request.body.len();
        let at = state.pending.partition_point(|e| e.seq < lease.seq);
        state.cached_bytes += len;
        state.pending.insert(
            at,
            Entry {
                seq: lease.seq,
                signal: lease.request.signal,
                items: lease.request.items,
                file: None,
                offset: 0,
                len: len as u32,
                body: Some(lease.request.body),
            },
        );
        shared.mirror(&state);
        drop(state);
        shared.ready.notify_one();
        true
    }
}
