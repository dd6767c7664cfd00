//! The persistent queue's bookkeeping: segments, pending and in-flight requests, eviction of the
//! oldest when full, and the done ranges a fresh done log holds.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

use crate::model::Signal;
use crate::telemetry::ComponentStats;

/// One segment file.
pub(super) struct Segment {
    pub(super) first_seq: u64,
    /// One past the last record written and published.
    pub(super) end_seq: u64,
    pub(super) bytes: u64,
    /// No longer written to (only the newest segment is open for writing).
    pub(super) closed: bool,
}

/// A request waiting to be taken by a consumer.
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) signal: Signal,
    pub(super) items: u64,
    /// Where to read the body back from when it is not in memory (none for a request put back by
    /// a consumer, whose body is in memory).
    pub(super) file: Option<Arc<File>>,
    pub(super) offset: u64,
    pub(super) len: u32,
    /// The body, when kept in memory (counted in `State::cached_bytes`).
    pub(super) body: Option<Bytes>,
}

/// A request taken by a consumer and not finished.
pub(super) struct InFlight {
    pub(super) seq: u64,
    /// The full queue dropped it meanwhile; its consumer counts the outcome.
    pub(super) evicted: bool,
}

/// What one round of eviction dropped: every sequence number in `first..end` is now done.
#[derive(Default)]
pub(super) struct Evicted {
    pub(super) first: Option<u64>,
    pub(super) end: u64,
    pub(super) requests: u64,
    pub(super) items: u64,
}

#[derive(Default)]
pub(super) struct State {
    /// Sorted by sequence number.
    pub(super) pending: VecDeque<Entry>,
    pub(super) in_flight: Vec<InFlight>,
    /// Oldest first; the last one is the writer's.
    pub(super) segments: VecDeque<Segment>,
    /// One past the last published sequence number.
    pub(super) next_seq: u64,
    pub(super) segment_bytes: u64,
    pub(super) cached_bytes: usize,
    /// The intake has finished and everything it sent is written.
    pub(super) input_done: bool,
}

impl State {
    /// Requests not done: pending or in flight (and not evicted).
    pub(super) fn live(&self) -> usize {
        self.pending.len() + self.in_flight.iter().filter(|f| !f.evicted).count()
    }

    pub(super) fn has_live_in(&self, first: u64, end: u64) -> bool {
        let i = self.pending.partition_point(|e| e.seq < first);
        self.pending.get(i).is_some_and(|e| e.seq < end)
            || self.in_flight.iter().any(|f| !f.evicted && f.seq >= first && f.seq < end)
    }

    /// Moves closed segments with nothing left to send into `dead`, for the caller to delete.
    pub(super) fn take_dead_segments(&mut self, dead: &mut Vec<Segment>) {
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
    pub(super) fn evict(&mut self, mut count: usize, below: u64, stats: &ComponentStats, out: &mut Evicted) {
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
    pub(super) fn done_ranges(&self) -> Vec<(u64, u64)> {
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

    pub(super) fn pending_items(&self) -> u64 {
        self.pending.iter().map(|e| e.items).sum()
    }
}
