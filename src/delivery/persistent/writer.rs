//! The writer thread: group commits (every request waiting is written, then one fdatasync),
//! size bounds (the oldest requests make room), segment rolling, and write failures.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::done_log::AckMsg;
use super::state::{Entry, Evicted, Segment};
use super::{Shared, lock};
use crate::delivery::Request;
use crate::delivery::disk::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::delivery::telemetry::DropSummary;
use crate::model::{Payload, Signal};

/// Most requests written by one group commit.
const MAX_GROUP_REQUESTS: usize = 1024;
/// Most body bytes written by one group commit.
const MAX_GROUP_BYTES: usize = 8 << 20;

/// A request for the writer thread.
pub(super) struct WriterMsg {
    pub(super) request: Request,
    /// Accept (or fail) this batch's acknowledgements once the request is on disk: set on the
    /// last request of a batch.
    pub(super) accept: Option<Payload>,
    pub(super) failed: bool,
}

/// The writer thread: group commits, size bounds, segment rolling.
pub(super) struct Writer {
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
    /// A writer appending to `active` (a fresh segment) from sequence number `next_seq` on.
    pub(super) fn new(shared: Arc<Shared>, acks: std_mpsc::Sender<AckMsg>, active: Arc<File>, next_seq: u64) -> Self {
        Writer {
            shared,
            acks,
            active: Some(active),
            active_bytes: SEGMENT_HEADER_LEN,
            next_seq,
            broken: false,
            buf: Vec::new(),
            chunk: Vec::new(),
            dead: Vec::new(),
            evictions: DropSummary::default(),
            write_failures: DropSummary::default(),
        }
    }

    /// Writes what arrives on `rx` until every appender is gone, then marks the intake done.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
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
