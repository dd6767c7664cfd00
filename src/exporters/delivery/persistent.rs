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

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tracing::{error, info, warn};

use super::disk::{self, AckLog, DirLock, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::telemetry::DropSummary;
use super::{DeliveryError, Request, lock};
use crate::model::{Payload, Signal};
use crate::telemetry::ComponentStats;

/// Most requests written by one group commit.
const MAX_GROUP_REQUESTS: usize = 1024;
/// Most body bytes written by one group commit.
const MAX_GROUP_BYTES: usize = 8 << 20;
/// Requests waiting for the writer before the intake waits (backpressure from a slow disk).
const WRITER_CHANNEL: usize = 1024;
/// How often the done log is fdatasync'ed while it changes (the power-loss duplicate window).
const ACK_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The done log is compacted once it has this many entries more than twice the pending requests.
const COMPACT_MIN_ENTRIES: u64 = 4096;

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

/// One segment file.
struct Segment {
    first_seq: u64,
    /// One past the last record written and published.
    end_seq: u64,
    bytes: u64,
    /// No longer written to (only the newest segment is open for writing).
    closed: bool,
}

/// A request waiting to be taken by a consumer.
struct Entry {
    seq: u64,
    signal: Signal,
    items: u64,
    /// Where to read the body back from when it is not in memory (none for a request put back by
    /// a consumer, whose body is in memory).
    file: Option<Arc<File>>,
    offset: u64,
    len: u32,
    /// The body, when kept in memory (counted in `State::cached_bytes`).
    body: Option<Bytes>,
}

/// A request taken by a consumer and not finished.
struct InFlight {
    seq: u64,
    /// The full queue dropped it meanwhile; its consumer counts the outcome.
    evicted: bool,
}

/// What one round of eviction dropped: every sequence number in `first..end` is now done.
#[derive(Default)]
struct Evicted {
    first: Option<u64>,
    end: u64,
    requests: u64,
    items: u64,
}

#[derive(Default)]
struct State {
    /// Sorted by sequence number.
    pending: VecDeque<Entry>,
    in_flight: Vec<InFlight>,
    /// Oldest first; the last one is the writer's.
    segments: VecDeque<Segment>,
    /// One past the last published sequence number.
    next_seq: u64,
    segment_bytes: u64,
    cached_bytes: usize,
    /// The intake has finished and everything it sent is written.
    input_done: bool,
}

impl State {
    /// Requests not done: pending or in flight (and not evicted).
    fn live(&self) -> usize {
        self.pending.len() + self.in_flight.iter().filter(|f| !f.evicted).count()
    }

    fn has_live_in(&self, first: u64, end: u64) -> bool {
        let i = self.pending.partition_point(|e| e.seq < first);
        self.pending.get(i).is_some_and(|e| e.seq < end)
            || self.in_flight.iter().any(|f| !f.evicted && f.seq >= first && f.seq < end)
    }

    /// Moves closed segments with nothing left to send into `dead`, for the caller to delete.
    fn take_dead_segments(&mut self, dead: &mut Vec<Segment>) {
        let mut i = 0;
        while i < self.segments.len() {
            let s = &self.segments[i];
            if s.closed && !self.has_live_in(s.first_seq, s.end_seq) {
                if let Some(s) = self.segments.remove(i) {
                    self.segment_bytes = self.segment_bytes.saturating_sub(s.bytes);
                    dead.push(s);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Drops the `count` oldest live requests, then every live request below `below`. Pending ones
    /// are counted as dropped here; in-flight ones are marked, and their consumer counts the outcome.
    fn evict(&mut self, mut count: usize, below: u64, stats: &ComponentStats, out: &mut Evicted) {
        loop {
            let pending = self.pending.front().map(|e| e.seq);
            let flying = self.in_flight.iter().filter(|f| !f.evicted).map(|f| f.seq).min();
            let oldest = match (pending, flying) {
                (Some(p), Some(f)) => p.min(f),
                (Some(p), None) => p,
                (None, Some(f)) => f,
                (None, None) => break,
            };
            if count == 0 && oldest >= below {
                break;
            }
            count = count.saturating_sub(1);
            if pending == Some(oldest) {
                if let Some(e) = self.pending.pop_front() {
                    if e.body.is_some() {
                        self.cached_bytes = self.cached_bytes.saturating_sub(e.len as usize);
                    }
                    stats.add_dropped(e.signal, e.items);
                    out.requests += 1;
                    out.items += e.items;
                }
            } else if let Some(f) = self.in_flight.iter_mut().find(|f| f.seq == oldest) {
                f.evicted = true;
            }
            out.first.get_or_insert(oldest);
            out.end = oldest + 1;
        }
    }

    /// Everything below `next_seq` that is not live, as ranges for a fresh done log.
    fn done_ranges(&self) -> Vec<(u64, u64)> {
        let mut flying: Vec<u64> = self.in_flight.iter().filter(|f| !f.evicted).map(|f| f.seq).collect();
        flying.sort_unstable();
        let mut ranges = Vec::new();
        let mut cursor = 0;
        let mut pending = self.pending.iter().map(|e| e.seq).peekable();
        let mut flying = flying.into_iter().peekable();
        loop {
            let next = match (pending.peek(), flying.peek()) {
                (Some(&p), Some(&f)) if p <= f => pending.next(),
                (Some(_), Some(_)) => flying.next(),
                (Some(_), None) => pending.next(),
                (None, Some(_)) => flying.next(),
                (None, None) => break,
            };
            let Some(seq) = next else { break };
            if seq > cursor {
                ranges.push((cursor, seq));
            }
            cursor = cursor.max(seq + 1);
        }
        if cursor < self.next_seq {
            ranges.push((cursor, self.next_seq));
        }
        ranges
    }

    fn pending_items(&self) -> u64 {
        self.pending.iter().map(|e| e.items).sum()
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

/// A request for the writer thread.
struct WriterMsg {
    request: Request,
    /// Accept (or fail) this batch's acknowledgements once the request is on disk: set on the
    /// last request of a batch.
    accept: Option<Payload>,
    failed: bool,
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

/// The writer thread: group commits, size bounds, segment rolling.
struct Writer {
    shared: Arc<Shared>,
    acks: std_mpsc::Sender<AckMsg>,
    /// The segment being written; none after a failed write until a new one is started (holding
    /// no handle lets the kernel free a deleted segment's space, which a full disk needs).
    active: Option<Arc<File>>,
    active_bytes: u64,
    /// Next sequence number to assign.
    next_seq: u64,
    /// The last write failed: start a fresh segment before writing again.
    broken: bool,
    buf: Vec<u8>,
    chunk: Vec<Written>,
    dead: Vec<Segment>,
    evictions: DropSummary,
    write_failures: DropSummary,
}

/// A record written to the active segment and not yet published.
struct Written {
    seq: u64,
    offset: u64,
    len: u32,
    items: u64,
    signal: Signal,
    body: Bytes,
    msg: usize,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        // A group never exceeds a segment or the queue, so making room for it before writing
        // keeps the queue within its bounds.
        let limits = self.shared.limits;
        let max_requests = MAX_GROUP_REQUESTS.min(limits.max_requests);
        let max_bytes = MAX_GROUP_BYTES.min(limits.segment_bytes as usize);
        let mut group: Vec<WriterMsg> = Vec::with_capacity(max_requests);
        let mut batch_failed = false;
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = RECORD_HEADER_LEN + first.request.body.len();
            group.push(first);
            while group.len() < max_requests && bytes < max_bytes {
                match rx.try_recv() {
                    Ok(msg) => {
                        bytes += RECORD_HEADER_LEN + msg.request.body.len();
                        group.push(msg);
                    }
                    Err(_) => break,
                }
            }
            // A segment may be started within the group.
            self.make_room(group.len(), bytes + SEGMENT_HEADER_LEN as usize);
            self.write(&mut group);
            // A batch's requests arrive one after another, its last one carrying the acknowledgements.
            for msg in group.drain(..) {
                batch_failed |= msg.failed;
                if let Some(payload) = msg.accept {
                    if batch_failed {
                        payload.acks().fail();
                    } else {
                        payload.acks().accept();
                    }
                    batch_failed = false;
                }
            }
        }
        if let Some(counts) = self.evictions.take() {
            self.log_evictions(counts);
        }
        if let Some((requests, items)) = self.write_failures.take() {
            error!(
                exporter = %self.shared.exporter, directory = %self.shared.dir.display(), requests, items,
                "persistent queue: more requests could not be written to disk; they were dropped and their batches refused"
            );
        }
        lock(&self.shared.state).input_done = true;
        self.shared.ready.notify_waiters();
    }

    /// Drops the oldest requests until `requests` more requests of `bytes` bytes fit the bounds.
    fn make_room(&mut self, requests: usize, bytes: usize) {
        let limits = self.shared.limits;
        let mut evicted = Evicted::default();
        loop {
            let mut roll = false;
            {
                let mut state = lock(&self.shared.state);
                let over = (state.live() + requests).saturating_sub(limits.max_requests);
                if over > 0 {
                    state.evict(over, 0, &self.shared.stats, &mut evicted);
                }
                while state.segment_bytes + bytes as u64 > limits.max_bytes {
                    if let Some(end) = state.segments.iter().find(|s| s.closed).map(|s| s.end_seq) {
                        state.evict(0, end, &self.shared.stats, &mut evicted);
                        let before = state.segments.len();
                        state.take_dead_segments(&mut self.dead);
                        if state.segments.len() == before {
                            break;
                        }
                    } else {
                        // Only the segment being written is left: close it so it can be given back.
                        roll = self.active_bytes > SEGMENT_HEADER_LEN;
                        break;
                    }
                }
                self.shared.mirror(&state);
            }
            self.shared.delete(&mut self.dead);
            if !roll {
                break;
            }
            if let Err(e) = self.roll() {
                error!(
                    exporter = %self.shared.exporter, directory = %self.shared.dir.display(), error = %e,
                    "persistent queue: cannot start a new segment; the size bound may be exceeded until this works"
                );
                self.broken = true;
                break;
            }
        }
        if let Some(first) = evicted.first {
            let _ = self.acks.send(AckMsg::Range { first, end: evicted.end });
            if let Some(counts) = self.evictions.add(evicted.requests, evicted.items) {
                self.log_evictions(counts);
            }
        }
    }

    fn log_evictions(&self, (requests, items): (u64, u64)) {
        warn!(
            exporter = %self.shared.exporter, directory = %self.shared.dir.display(), requests, items,
            queue_size = self.shared.limits.max_requests, max_size_mib = self.shared.limits.max_bytes >> 20,
            "persistent queue full: dropped the oldest requests to make room"
        );
    }

    /// Writes the group's requests (fsynced, published to consumers); marks those that failed.
    fn write(&mut self, group: &mut [WriterMsg]) {
        if self.broken {
            if let Err(e) = self.roll() {
                self.fail(group, 0, &e);
                return;
            }
            self.broken = false;
        }
        let limit = self.shared.limits.segment_bytes;
        for i in 0..group.len() {
            let len = group[i].request.body.len();
            let Ok(len32) = u32::try_from(len) else {
                error!(exporter = %self.shared.exporter, bytes = len, "persistent queue: request body over 4 GiB cannot be stored; dropping it");
                self.shared.stats.add_dropped(group[i].request.signal, group[i].request.items);
                group[i].failed = true;
                continue;
            };
            let record = (RECORD_HEADER_LEN + len) as u64;
            let used = self.active_bytes + self.buf.len() as u64;
            // The segment is full: publish what it holds, then start the next one.
            if used + record > limit
                && used > SEGMENT_HEADER_LEN
                && let Err(e) = self.flush_chunk().and_then(|()| self.roll())
            {
                self.fail(group, i, &e);
                return;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let offset = self.active_bytes + self.buf.len() as u64;
            disk::encode_record(&mut self.buf, seq, &group[i].request);
            let request = &mut group[i].request;
            self.chunk.push(Written {
                seq,
                offset,
                len: len32,
                items: request.items,
                signal: request.signal,
                body: std::mem::take(&mut request.body),
                msg: i,
            });
        }
        if let Err(e) = self.flush_chunk() {
            self.fail(group, group.len(), &e);
        }
    }

    /// Writing failed: the unpublished records and the group's requests from `from` on are lost.
    fn fail(&mut self, group: &mut [WriterMsg], from: usize, e: &std::io::Error) {
        let mut lost = (0u64, 0u64);
        let first_lost = self.chunk.first().map(|w| w.seq);
        for w in self.chunk.drain(..) {
            group[w.msg].failed = true;
            self.shared.stats.add_dropped(w.signal, w.items);
            lost = (lost.0 + 1, lost.1 + w.items);
        }
        for msg in group[from..].iter_mut().filter(|m| !m.failed) {
            msg.failed = true;
            self.shared.stats.add_dropped(msg.request.signal, msg.request.items);
            lost = (lost.0 + 1, lost.1 + msg.request.items);
        }
        self.buf.clear();
        // Records partly written stay out of any later replay.
        if let Some(first) = first_lost {
            let _ = self.acks.send(AckMsg::Range { first, end: self.next_seq });
        }
        {
            let mut state = lock(&self.shared.state);
            state.next_seq = self.next_seq;
            // Close a segment that holds published records, so that it can be deleted once they are
            // sent (on a full disk that is what frees space). An empty one is recreated in place.
            if let Some(active) = state.segments.back_mut()
                && active.end_seq > active.first_seq
            {
                active.closed = true;
            }
            self.shared.mirror(&state);
        }
        self.broken = true;
        self.active = None;
        if let Some((requests, items)) = self.write_failures.add(lost.0, lost.1) {
            error!(
                exporter = %self.shared.exporter, directory = %self.shared.dir.display(), error = %e, requests, items,
                "persistent queue: cannot write to disk; these requests are dropped and their batches refused"
            );
        }
    }

    /// Writes and fsyncs the buffered records, then hands them to the consumers.
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let active = self.active.clone().ok_or_else(|| std::io::Error::other("no segment open for writing"))?;
        active.write_all_at(&self.buf, self.active_bytes)?;
        active.sync_data()?;
        let written = self.buf.len() as u64;
        self.buf.clear();
        self.active_bytes += written;
        {
            let mut state = lock(&self.shared.state);
            let cache = self.shared.limits.cache_bytes;
            for w in self.chunk.drain(..) {
                let body = if state.cached_bytes + w.len as usize <= cache {
                    state.cached_bytes += w.len as usize;
                    Some(w.body)
                } else {
                    None
                };
                state.pending.push_back(Entry {
                    seq: w.seq,
                    signal: w.signal,
                    items: w.items,
                    file: Some(active.clone()),
                    offset: w.offset,
                    len: w.len,
                    body,
                });
            }
            state.next_seq = self.next_seq;
            if let Some(segment) = state.segments.back_mut() {
                segment.end_seq = self.next_seq;
                segment.bytes += written;
            }
            state.segment_bytes += written;
            self.shared.mirror(&state);
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Closes the active segment and starts a new one at the next sequence number.
    fn roll(&mut self) -> std::io::Result<()> {
        let file = Arc::new(disk::create_segment(&self.shared.dir, self.next_seq)?);
        {
            let mut guard = lock(&self.shared.state);
            let state = &mut *guard;
            let replace = state.segments.back().is_some_and(|s| s.first_seq == self.next_seq);
            if replace {
                // The active segment got no record (a failed first write): the file was recreated in place.
                if let Some(s) = state.segments.back_mut() {
                    state.segment_bytes = state.segment_bytes.saturating_sub(s.bytes);
                    s.bytes = SEGMENT_HEADER_LEN;
                    s.closed = false;
                }
                state.segment_bytes += SEGMENT_HEADER_LEN;
            } else {
                if let Some(s) = state.segments.back_mut() {
                    s.closed = true;
                }
                state.segments.push_back(Segment {
                    first_seq: self.next_seq,
                    end_seq: self.next_seq,
                    bytes: SEGMENT_HEADER_LEN,
                    closed: false,
                });
                state.segment_bytes += SEGMENT_HEADER_LEN;
            }
            state.take_dead_segments(&mut self.dead);
            self.shared.mirror(state);
        }
        self.active = Some(file);
        self.active_bytes = SEGMENT_HEADER_LEN;
        self.shared.delete(&mut self.dead);
        Ok(())
    }
}

/// A message for the done-log thread.
enum AckMsg {
    /// A consumer finished request `seq`; wake `done` once it is recorded.
    Done { seq: u64, done: Arc<Notify> },
    /// Requests `first..end` are done (evicted, or lost by a failed write).
    Range { first: u64, end: u64 },
    /// Sync and stop.
    Stop,
}

/// The done-log thread: records finished requests, compacts the log, deletes finished segments.
struct DoneLogger {
    shared: Arc<Shared>,
    log: AckLog,
    dirty: bool,
    last_sync: Instant,
    dead: Vec<Segment>,
    compact_at: u64,
    failing: bool,
}

impl DoneLogger {
    fn run(mut self, rx: std_mpsc::Receiver<AckMsg>) {
        loop {
            let wait = if self.dirty {
                ACK_SYNC_INTERVAL.saturating_sub(self.last_sync.elapsed())
            } else {
                ACK_SYNC_INTERVAL * 60
            };
            match rx.recv_timeout(wait) {
                Ok(AckMsg::Done { seq, done }) => {
                    self.append(seq, seq + 1);
                    {
                        let mut state = lock(&self.shared.state);
                        if let Some(i) = state.in_flight.iter().position(|f| f.seq == seq) {
                            state.in_flight.swap_remove(i);
                        }
                        state.take_dead_segments(&mut self.dead);
                        self.shared.mirror(&state);
                    }
                    done.notify_one();
                    self.shared.delete(&mut self.dead);
                }
                Ok(AckMsg::Range { first, end }) => self.append(first, end),
                Ok(AckMsg::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            }
            if self.log.entries() >= self.compact_at {
                self.compact();
            }
            if self.dirty && self.last_sync.elapsed() >= ACK_SYNC_INTERVAL {
                self.sync();
            }
        }
        self.sync();
    }

    fn append(&mut self, first: u64, end: u64) {
        let mut start = first;
        while start < end {
            let count = (end - start).min(u32::MAX as u64) as u32;
            match self.log.append(start, count) {
                Ok(()) => self.failing = false,
                Err(e) => {
                    if !self.failing {
                        error!(
                            exporter = %self.shared.exporter, directory = %self.shared.dir.display(), error = %e,
                            "persistent queue: cannot record delivered requests; they will be sent again after a restart"
                        );
                    }
                    self.failing = true;
                }
            }
            start += count as u64;
        }
        self.dirty = true;
        self.shared.ack_bytes.store(self.log.bytes(), Ordering::Relaxed);
    }

    fn compact(&mut self) {
        let (ranges, live) = {
            let state = lock(&self.shared.state);
            (state.done_ranges(), state.live() as u64)
        };
        match AckLog::create(&self.shared.dir, &ranges) {
            Ok(log) => {
                self.log = log;
                self.dirty = false;
                self.last_sync = Instant::now();
            }
            Err(e) => warn!(
                exporter = %self.shared.exporter, directory = %self.shared.dir.display(), error = %e,
                "persistent queue: cannot compact the done log; it keeps growing until this works"
            ),
        }
        self.compact_at = self.log.entries() + COMPACT_MIN_ENTRIES + 2 * live;
        self.shared.ack_bytes.store(self.log.bytes(), Ordering::Relaxed);
    }

    fn sync(&mut self) {
        if let Err(e) = self.log.sync() {
            warn!(exporter = %self.shared.exporter, error = %e, "persistent queue: cannot fsync the done log");
        }
        self.dirty = false;
        self.last_sync = Instant::now();
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
        let writer = Writer {
            shared: shared.clone(),
            acks: ack_tx.clone(),
            active: Some(active),
            active_bytes: SEGMENT_HEADER_LEN,
            next_seq,
            broken: false,
            buf: Vec::new(),
            chunk: Vec::new(),
            dead: Vec::new(),
            evictions: DropSummary::default(),
            write_failures: DropSummary::default(),
        };
        let logger = DoneLogger {
            shared: shared.clone(),
            compact_at: log.entries() + COMPACT_MIN_ENTRIES + 2 * backlog as u64,
            log,
            dirty: false,
            last_sync: Instant::now(),
            dead: Vec::new(),
            failing: false,
        };
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
