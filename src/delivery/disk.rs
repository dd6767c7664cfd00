//! The persistent queue's files: segments of checksummed records, the log of sequence numbers that
//! are done, and the lock that keeps a directory to one process.
//!
//! ```text
//! <directory>/lock                          flock()ed by the process using the queue; holds its pid
//! <directory>/acks                          done log: sequence numbers that need no sending
//! <directory>/acks.tmp                      only while the done log is being compacted
//! <directory>/<first seq, 20 digits>.seg    segment: records in sequence order
//!
//! segment = header record*
//!   header (16 bytes) = "FOVEAQ" | version u16 LE (= 1) | first seq u64 LE
//!   record = 28-byte header + body:
//!     len     u32 LE   body length
//!     crc     u32 LE   CRC-32 (IEEE) of the 20 header bytes after it and of the body
//!     seq     u64 LE   sequence number; +1 per request, across segments
//!     items   u64 LE   items in the request (for accounting)
//!     signal  u8       0 metrics, 1 flows
//!     -       [u8; 3]  zero
//!     body    [u8; len] the request body exactly as the encoder made it
//!
//! acks = header entry*
//!   header (8 bytes) = "FOVEAAK1"
//!   entry (16 bytes) = first seq u64 LE | count u32 LE | crc u32 LE (CRC-32 of the 12 bytes before)
//!   meaning: requests first .. first+count are done (delivered, refused for good, or evicted).
//! ```
//!
//! A request is pending when its record is valid and no entry covers its sequence number. A record
//! that fails its checksum or is cut short (a crash mid-write) ends the scan of its segment: the
//! lengths after it cannot be trusted, so the segment is truncated there.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{DeliveryError, Request};
use crate::model::Signal;

/// Bytes of a segment file's header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
/// Bytes of a record's header (the overhead per request in a segment).
pub(crate) const RECORD_HEADER_LEN: usize = 28;
/// Bytes of one done-log entry.
pub(crate) const ACK_ENTRY_LEN: u64 = 16;

const SEGMENT_MAGIC: &[u8; 6] = b"FOVEAQ";
const FORMAT_VERSION: u16 = 1;
const ACK_MAGIC: &[u8; 8] = b"FOVEAAK1";
const ACK_FILE: &str = "acks";
const ACK_TMP_FILE: &str = "acks.tmp";
const LOCK_FILE: &str = "lock";
const SEGMENT_SUFFIX: &str = ".seg";

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DeliveryError + 'a {
    move |source| DeliveryError::Io { action, path: path.to_path_buf(), source }
}

/// The file name of the segment whose first record has sequence number `first_seq`.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// Segment files in `dir` with their first sequence numbers, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, DeliveryError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(first) =
            name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)).and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort_unstable_by_key(|(first, _)| *first);
    Ok(found)
}

/// Makes a directory entry change (create, rename, remove) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates an empty segment starting at `first_seq`, durably (header and directory entry synced).
pub(crate) fn create_segment(dir: &Path, first_seq: u64) -> io::Result<File> {
    let path = segment_path(dir, first_seq);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..6].copy_from_slice(SEGMENT_MAGIC);
    header[6..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[8..16].copy_from_slice(&first_seq.to_le_bytes());
    let written = file.write_all_at(&header, 0).and_then(|()| file.sync_all()).and_then(|()| sync_dir(dir));
    if let Err(e) = written {
        // Leave no headerless file behind (a full disk): the next attempt recreates it.
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(file)
}

fn signal_code(signal: Signal) -> u8 {
    match signal {
        Signal::Metrics => 0,
        Signal::Flows => 1,
    }
}

fn signal_from_code(code: u8) -> Option<Signal> {
    match code {
        0 => Some(Signal::Metrics),
        1 => Some(Signal::Flows),
        _ => None,
    }
}

/// Appends the record of `request` with sequence number `seq` to `buf`. The body must fit a u32.
pub(crate) fn encode_record(buf: &mut Vec<u8>, seq: u64, request: &Request) {
    let start = buf.len();
    buf.extend_from_slice(&(request.body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&request.items.to_le_bytes());
    buf.extend_from_slice(&[signal_code(request.signal), 0, 0, 0]);
    buf.extend_from_slice(&request.body);
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    /// Sequence number.
    pub(crate) seq: u64,
    /// Offset of the record (its header) in the segment.
    pub(crate) offset: u64,
    /// Body length.
    pub(crate) len: u32,
    /// Items in the request.
    pub(crate) items: u64,
    /// Signal of the request.
    pub(crate) signal: Signal,
}

/// Checks a record (`header` + `body`) and returns its fields, or what is wrong with it.
fn check_record(header: &[u8; RECORD_HEADER_LEN], body: &[u8], offset: u64) -> Result<RecordMeta, String> {
    let le32 = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let le64 = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[8..]);
    crc.update(body);
    if crc.finalize() != le32(4) {
        return Err("checksum mismatch".to_string());
    }
    let signal = signal_from_code(header[24]).ok_or_else(|| format!("unknown signal code {}", header[24]))?;
    Ok(RecordMeta { seq: le64(8), offset, len: le32(0), items: le64(16), signal })
}

/// Reads back the body of the record at `offset` with body length `len`, checking it.
pub(crate) fn read_record(file: &File, offset: u64, len: u32, seq: u64) -> Result<Bytes, String> {
    let mut buf = vec![0u8; RECORD_HEADER_LEN + len as usize];
    file.read_exact_at(&mut buf, offset).map_err(|e| format!("cannot read: {e}"))?;
    let mut header = [0u8; RECORD_HEADER_LEN];
    header.copy_from_slice(&buf[..RECORD_HEADER_LEN]);
    let meta = check_record(&header, &buf[RECORD_HEADER_LEN..], offset)?;
    if meta.seq != seq || meta.len != len {
        return Err(format!("expected record {seq} of {len} bytes, found record {} of {} bytes", meta.seq, meta.len));
    }
    Ok(Bytes::from(buf).slice(RECORD_HEADER_LEN..))
}

/// What a segment scan found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Bytes of the valid prefix (header and whole, checked records).
    pub(crate) valid_len: u64,
    /// One past the last valid record's sequence number (the first sequence number if none).
    pub(crate) end_seq: u64,
    /// The first damaged or cut-short record, if any: its offset and what is wrong.
    pub(crate) damage: Option<(u64, String)>,
}

/// Reads the segment `file` (first record `first_seq`), calling `visit` with every valid record
/// and its body, in order; stops at the first damaged record. `Err` when the header is not a
/// segment header of this version (the file is not ours or was never completely created).
pub(crate) fn scan_segment(
    file: &File,
    first_seq: u64,
    mut visit: impl FnMut(RecordMeta, &[u8]),
) -> io::Result<Result<Scan, String>> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    if file_len < SEGMENT_HEADER_LEN {
        return Ok(Err(format!("file of {file_len} bytes has no complete header")));
    }
    reader.read_exact(&mut header)?;
    if &header[..6] != SEGMENT_MAGIC {
        return Ok(Err("not a fovea queue segment (bad magic)".to_string()));
    }
    let version = u16::from_le_bytes([header[6], header[7]]);
    if version != FORMAT_VERSION {
        return Ok(Err(format!("segment format version {version}, this fovea reads version {FORMAT_VERSION}")));
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&header[8..16]);
    if u64::from_le_bytes(first) != first_seq {
        return Ok(Err(format!("header says first record {}, file name says {first_seq}", u64::from_le_bytes(first))));
    }
    let mut offset = SEGMENT_HEADER_LEN;
    let mut expected = first_seq;
    let mut body = Vec::new();
    let damage = loop {
        if offset == file_len {
            break None;
        }
        let mut rh = [0u8; RECORD_HEADER_LEN];
        if file_len - offset < RECORD_HEADER_LEN as u64 {
            break Some((
                offset,
                format!("record header cut short ({} of {RECORD_HEADER_LEN} bytes)", file_len - offset),
            ));
        }
        reader.read_exact(&mut rh)?;
        let len = u32::from_le_bytes([rh[0], rh[1], rh[2], rh[3]]) as u64;
        if file_len - offset - (RECORD_HEADER_LEN as u64) < len {
            break Some((offset, format!("record of {len} bytes cut short at the end of the file")));
        }
        body.resize(len as usize, 0);
        reader.read_exact(&mut body)?;
        let meta = match check_record(&rh, &body, offset) {
            Ok(meta) => meta,
            Err(why) => break Some((offset, why)),
        };
        if meta.seq != expected {
            break Some((offset, format!("sequence number {} where {expected} was expected", meta.seq)));
        }
        visit(meta, &body);
        offset += RECORD_HEADER_LEN as u64 + len;
        expected += 1;
    };
    Ok(Ok(Scan { valid_len: offset, end_seq: expected, damage }))
}

/// Sequence numbers that are done, as sorted, disjoint, non-adjacent `[start, end)` ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DoneSet(Vec<(u64, u64)>);

impl DoneSet {
    /// The union of `ranges` (any order, overlaps allowed).
    pub(crate) fn new(mut ranges: Vec<(u64, u64)>) -> Self {
        ranges.retain(|(s, e)| s < e);
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        DoneSet(merged)
    }

    /// True if `seq` is done.
    pub(crate) fn contains(&self, seq: u64) -> bool {
        let i = self.0.partition_point(|(s, _)| *s <= seq);
        i > 0 && seq < self.0[i - 1].1
    }

    /// One past the highest done sequence number (0 if none).
    pub(crate) fn end(&self) -> u64 {
        self.0.last().map_or(0, |r| r.1)
    }
}

/// The done log, open for appending.
pub(crate) struct AckLog {
    file: File,
    entries: u64,
}

impl AckLog {
    /// Reads `<dir>/acks`: the done ranges, and a note about damage found (entries after it are ignored).
    pub(crate) fn read(dir: &Path) -> io::Result<(DoneSet, Option<String>)> {
        let path = dir.join(ACK_FILE);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((DoneSet::default(), None)),
            Err(e) => return Err(e),
        };
        if data.len() < ACK_MAGIC.len() || &data[..ACK_MAGIC.len()] != ACK_MAGIC {
            return Ok((DoneSet::default(), Some("no valid header; ignoring the whole file".to_string())));
        }
        let mut ranges = Vec::new();
        let mut damage = None;
        for (i, entry) in data[ACK_MAGIC.len()..].chunks(ACK_ENTRY_LEN as usize).enumerate() {
            if entry.len() < ACK_ENTRY_LEN as usize {
                damage = Some(format!("last entry cut short ({} of {ACK_ENTRY_LEN} bytes)", entry.len()));
                break;
            }
            let mut first = [0u8; 8];
            first.copy_from_slice(&entry[..8]);
            let count = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
            let crc = u32::from_le_bytes([entry[12], entry[13], entry[14], entry[15]]);
            if crc32fast::hash(&entry[..12]) != crc {
                damage = Some(format!("entry {i} fails its checksum; ignoring it and the rest"));
                break;
            }
            let first = u64::from_le_bytes(first);
            ranges.push((first, first.saturating_add(count as u64)));
        }
        Ok((DoneSet::new(ranges), damage))
    }

    /// Replaces `<dir>/acks` with a log holding exactly `done` (written aside, synced, renamed
    /// over, directory synced: a crash leaves either the old or the new log), open for appending.
    pub(crate) fn create(dir: &Path, done: &[(u64, u64)]) -> io::Result<AckLog> {
        let tmp = dir.join(ACK_TMP_FILE);
        let mut data = Vec::with_capacity(ACK_MAGIC.len() + done.len() * ACK_ENTRY_LEN as usize);
        data.extend_from_slice(ACK_MAGIC);
        let mut entries = 0;
        for &(start, end) in done {
            let mut s = start;
            while s < end {
                let count = (end - s).min(u32::MAX as u64);
                push_entry(&mut data, s, count as u32);
                entries += 1;
                s += count;
            }
        }
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        file.write_all(&data)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, dir.join(ACK_FILE))?;
        sync_dir(dir)?;
        let file = OpenOptions::new().append(true).open(dir.join(ACK_FILE))?;
        Ok(AckLog { file, entries })
    }

    /// Removes a compaction left half done by a crash.
    pub(crate) fn remove_leftovers(dir: &Path) -> io::Result<()> {
        match fs::remove_file(dir.join(ACK_TMP_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Records that `first .. first + count` are done: one write, durable against a process crash
    /// at once (page cache), against power loss after the next [`AckLog::sync`].
    pub(crate) fn append(&mut self, first: u64, count: u32) -> io::Result<()> {
        let mut buf = [0u8; ACK_ENTRY_LEN as usize];
        buf[..8].copy_from_slice(&first.to_le_bytes());
        buf[8..12].copy_from_slice(&count.to_le_bytes());
        let crc = crc32fast::hash(&buf[..12]);
        buf[12..].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all(&buf)?;
        self.entries += 1;
        Ok(())
    }

    /// Flushes appended entries to the disk.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Entries in the log.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    /// Size of the log file.
    pub(crate) fn bytes(&self) -> u64 {
        ACK_MAGIC.len() as u64 + self.entries * ACK_ENTRY_LEN
    }
}

fn push_entry(data: &mut Vec<u8>, first: u64, count: u32) {
    let start = data.len();
    data.extend_from_slice(&first.to_le_bytes());
    data.extend_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&data[start..]);
    data.extend_from_slice(&crc.to_le_bytes());
}

/// Holds `<dir>/lock` (an exclusive `flock`, released by the kernel when the process dies, even by
/// SIGKILL) so that no other process or exporter uses the same directory.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Takes the lock of `dir`, or says who holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock, DeliveryError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error("open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => {
            // The pid is only for the error message another process shows.
            let pid = std::process::id().to_string();
            file.set_len(0).and_then(|_| file.write_all_at(pid.as_bytes(), 0)).map_err(io_error("write", &path))?;
            let _ = file.flush();
            Ok(DirLock { _file: file })
        }
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim().parse::<u32>() {
                Ok(pid) if pid == std::process::id() => "another exporter of this process".to_string(),
                Ok(pid) => format!("process {pid}"),
                Err(_) => "another process".to_string(),
            };
            Err(DeliveryError::Locked { directory: dir.to_path_buf(), holder })
        }
        Err(fs::TryLockError::Error(e)) => Err(io_error("lock", &path)(e)),
    }
}
