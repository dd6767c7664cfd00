//! The done-log thread: records finished requests as they finish, compacts the log, and deletes
//! segments with nothing left to send.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{error, warn};

use super::state::Segment;
use super::{Shared, lock};
use crate::delivery::disk::AckLog;

/// How often the done log is fdatasync'ed while it changes (the power-loss duplicate window).
const ACK_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The done log is compacted once it has this many entries more than twice the pending requests.
const COMPACT_MIN_ENTRIES: u64 = 4096;

/// A message for the done-log thread.
pub(super) enum AckMsg {
    /// A consumer finished request `seq`; wake `done` once it is recorded.
    Done { seq: u64, done: Arc<Notify> },
    /// Requests `first..end` are done (evicted, or lost by a failed write).
    Range { first: u64, end: u64 },
    /// Sync and stop.
    Stop,
}

/// The done-log thread: records finished requests, compacts the log, deletes finished segments.
pub(super) struct DoneLogger {
    shared: Arc<Shared>,
    log: AckLog,
    dirty: bool,
    last_sync: Instant,
    dead: Vec<Segment>,
    compact_at: u64,
    failing: bool,
}

impl DoneLogger {
    /// A logger appending to `log` (just written fresh); `pending` requests are queued at the start.
    pub(super) fn new(shared: Arc<Shared>, log: AckLog, pending: u64) -> Self {
        DoneLogger {
            shared,
            compact_at: log.entries() + COMPACT_MIN_ENTRIES + 2 * pending,
            log,
            dirty: false,
            last_sync: Instant::now(),
            dead: Vec::new(),
            failing: false,
        }
    }

    /// Records what arrives on `rx` until `Stop`, syncing at least every second while it changes.
    pub(super) fn run(mut self, rx: std_mpsc::Receiver<AckMsg>) {
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
