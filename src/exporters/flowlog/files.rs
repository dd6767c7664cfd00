//! Flow-log files on disk: one open file at a time, completed atomically, rotated by size and
//! age, and a disk budget enforced by deleting the oldest completed files.
//!
//! A file is written as `.flows-<ns>.<ext>.inprogress` (hidden, and not matching `*.<ext>`),
//! then finished (Parquet footer / Arrow end-of-stream), fsynced, and renamed to
//! `flows-<ns>.<ext>` (ns: when it was opened, nanoseconds since the epoch, 20 digits, so names
//! sort by age); the directory is fsynced after the rename. A reader that lists `*.parquet` or
//! `*.arrows` therefore only ever sees complete files. An in-progress file left behind by a
//! crash cannot be completed (a Parquet file without its footer is unreadable) and is deleted
//! at start, and counted.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use super::config::{Compression, FlowlogConfig, Format, mib_bytes};

const PREFIX: &str = "flows-";
/// Parquet: a row group is written out once its encoded columns reach this size (memory bound).
const MAX_ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;
const IN_PROGRESS: &str = ".inprogress";

/// Errors writing flow-log files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Encoding Arrow IPC failed.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// Encoding Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError::Io { action, path: path.to_path_buf(), source }
}

/// Counts bytes that went through to the file.
struct Counting {
    inner: BufWriter<File>,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder {
    Parquet(ArrowWriter<Counting>),
    Arrow(StreamWriter<Counting>),
}

/// The file being written.
struct OpenFile {
    temp: PathBuf,
    done: PathBuf,
    encoder: Encoder,
    written: Arc<std::sync::atomic::AtomicU64>,
    opened: Instant,
    schema: SchemaRef,
    rows: u64,
}

impl OpenFile {
    /// Bytes in the file plus what the encoder still buffers for it.
    fn size(&self) -> u64 {
        let on_disk = self.written.load(std::sync::atomic::Ordering::Relaxed);
        match &self.encoder {
            Encoder::Parquet(w) => on_disk + w.in_progress_size() as u64,
            Encoder::Arrow(_) => on_disk,
        }
    }
}

/// What the sink did, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Files completed (renamed to their final name).
    pub files_completed: u64,
    /// Completed files deleted to stay within the disk budget.
    pub files_deleted: u64,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// In-progress files of an earlier run deleted at start (unreadable without their end).
    pub files_abandoned: u64,
    /// Records written.
    pub records: u64,
    /// Bytes of completed files on disk now plus the open file.
    pub disk_bytes: u64,
}

/// Writes record batches into rotating files in one directory.
pub struct FileSink {
    dir: PathBuf,
    format: Format,
    compression: Compression,
    max_file_bytes: u64,
    max_age: Duration,
    max_total_bytes: u64,
    row_group_size: usize,
    open: Option<OpenFile>,
    /// Completed files we know of: (name, bytes), oldest first.
    completed: Vec<(PathBuf, u64)>,
    stats: SinkStats,
}

impl FileSink {
    /// Creates the directory if needed, deletes abandoned in-progress files, and applies the disk
    /// budget to the completed files already there.
    pub fn open(config: &FlowlogConfig) -> Result<Self, FileError> {
        let dir = config.directory.clone();
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        let mut sink = FileSink {
            dir,
            format: config.format,
            compression: config.compression,
            max_file_bytes: mib_bytes(config.rotation.max_megabytes),
            max_age: config.rotation.max_age,
            max_total_bytes: mib_bytes(config.max_total_megabytes),
            row_group_size: config.row_group_size,
            open: None,
            completed: Vec::new(),
            stats: SinkStats::default(),
        };
        sink.scan()?;
        sink.enforce_budget();
        Ok(sink)
    }

    fn scan(&mut self) -> Result<(), FileError> {
        let ext = format!(".{}", self.format.extension());
        for entry in fs::read_dir(&self.dir).map_err(io_err("cannot list", &self.dir))? {
            let entry = entry.map_err(io_err("cannot list", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(&format!(".{PREFIX}")) && name.ends_with(IN_PROGRESS) {
                tracing::warn!(file = %path.display(), "deleting a flow log file an earlier run left unfinished");
                fs::remove_file(&path).map_err(io_err("cannot delete", &path))?;
                self.stats.files_abandoned += 1;
            } else if name.starts_with(PREFIX) && name.ends_with(&ext) {
                let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
                self.completed.push((path, bytes));
            }
        }
        self.completed.sort();
        Ok(())
    }

    /// What the sink did so far.
    pub fn stats(&self) -> SinkStats {
        let mut s = self.stats;
        s.disk_bytes =
            self.completed.iter().map(|(_, b)| b).sum::<u64>() + self.open.as_ref().map_or(0, OpenFile::size);
        s
    }

    /// Appends a batch (written for `schema`: a batch of another schema, i.e. another resource,
    /// completes the open file first), then rotates if the file is now big enough.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), FileError> {
        let result = self.write_open(batch);
        if result.is_err() {
            // a file that failed mid-write (disk full ...) cannot be trusted: drop it, start anew
            if let Some(f) = self.open.take() {
                let _ = fs::remove_file(&f.temp);
            }
        }
        result
    }

    fn write_open(&mut self, batch: &RecordBatch) -> Result<(), FileError> {
        if self.open.as_ref().is_some_and(|f| f.schema != batch.schema()) {
            self.complete()?;
        }
        if self.open.is_none() {
            self.open = Some(self.create(batch.schema())?);
        }
        if let Some(f) = &mut self.open {
            match &mut f.encoder {
                Encoder::Parquet(w) => w.write(batch)?,
                Encoder::Arrow(w) => {
                    w.write(batch)?;
                    // the batch is in the file (the OS's cache), not in our buffer
                    w.flush()?;
                }
            }
            f.rows += batch.num_rows() as u64;
            self.stats.records += batch.num_rows() as u64;
        }
        if self.open.as_ref().is_some_and(|f| f.size() >= self.max_file_bytes) {
            self.complete()?;
        }
        self.enforce_budget();
        Ok(())
    }

    /// Completes the open file if it is older than `max_age`.
    pub fn rotate_if_old(&mut self) -> Result<(), FileError> {
        if self.open.as_ref().is_some_and(|f| f.opened.elapsed() >= self.max_age) {
            self.complete()?;
            self.enforce_budget();
        }
        Ok(())
    }

    fn create(&self, schema: SchemaRef) -> Result<OpenFile, FileError> {
        let mut ns = crate::model::now_unix_nano();
        let ext = self.format.extension();
        let (temp, done) = loop {
            let done = self.dir.join(format!("{PREFIX}{ns:020}.{ext}"));
            let temp = self.dir.join(format!(".{PREFIX}{ns:020}.{ext}{IN_PROGRESS}"));
            if !done.exists() && !temp.exists() {
                break (temp, done);
            }
            ns += 1;
        };
        let file = File::options().write(true).create_new(true).open(&temp).map_err(io_err("cannot create", &temp))?;
        let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let out = Counting { inner: BufWriter::with_capacity(256 * 1024, file), bytes: written.clone() };
        let encoder = match self.format {
            Format::Parquet => {
                let compression = match self.compression {
                    Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
                    Compression::None => ParquetCompression::UNCOMPRESSED,
                };
                let props = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(self.row_group_size))
                    // the open row group is held in memory: bound it in bytes too
                    .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
                    .build();
                Encoder::Parquet(ArrowWriter::try_new(out, schema.clone(), Some(props))?)
            }
            Format::Arrow => {
                let compression = match self.compression {
                    Compression::Zstd => Some(arrow_ipc::CompressionType::ZSTD),
                    Compression::None => None,
                };
                let options = IpcWriteOptions::default().try_with_compression(compression)?;
                Encoder::Arrow(StreamWriter::try_new_with_options(out, &schema, options)?)
            }
        };
        Ok(OpenFile { temp, done, encoder, written, opened: Instant::now(), schema, rows: 0 })
    }

    /// Finishes the open file, makes it durable and gives it its final name.
    pub fn complete(&mut self) -> Result<(), FileError> {
        let Some(f) = self.open.take() else { return Ok(()) };
        let out = match f.encoder {
            Encoder::Parquet(w) => w.into_inner()?,
            Encoder::Arrow(mut w) => {
                w.finish()?;
                w.into_inner()?
            }
        };
        let file = out.inner.into_inner().map_err(|e| FileError::Io {
            action: "cannot flush",
            path: f.temp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err("cannot fsync", &f.temp))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        drop(file);
        fs::rename(&f.temp, &f.done).map_err(io_err("cannot rename", &f.temp))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err("cannot fsync", &self.dir))?;
        tracing::debug!(file = %f.done.display(), rows = f.rows, bytes, "flow log file completed");
        self.completed.push((f.done, bytes));
        self.stats.files_completed += 1;
        Ok(())
    }

    /// Deletes the oldest completed files until completed + open fit in the budget.
    fn enforce_budget(&mut self) {
        let open = self.open.as_ref().map_or(0, OpenFile::size);
        let mut total: u64 = self.completed.iter().map(|(_, b)| b).sum::<u64>() + open;
        while total > self.max_total_bytes && !self.completed.is_empty() {
            let (path, bytes) = self.completed.remove(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), bytes, "deleted the oldest flow log file (max_total_megabytes)");
                    self.stats.files_deleted += 1;
                    self.stats.bytes_deleted += bytes;
                }
                // someone else removed it (a log shipper): it no longer takes space either
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot delete an old flow log file"),
            }
            total -= bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporters::flowlog::schema;
    use crate::model::{FlowKind, FlowRecord, Resource};

    fn batch(n: usize) -> RecordBatch {
        let records: Vec<FlowRecord> = (0..n)
            .map(|i| {
                let mut r =
                    FlowRecord::new(FlowKind::Forward, "198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
                r.source_port = i as u16;
                r.bytes = i as u64;
                r
            })
            .collect();
        schema::record_batch(&schema::schema(&Resource::default()), &records).expect("batch")
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn files_appear_only_when_complete_and_the_oldest_go_first() {
        for format in [Format::Parquet, Format::Arrow] {
            let dir = tempfile::tempdir().unwrap();
            let config = FlowlogConfig {
                directory: dir.path().to_path_buf(),
                format,
                rotation: super::super::config::RotationConfig {
                    max_megabytes: 0.1,
                    max_age: Duration::from_secs(3600),
                },
                max_total_megabytes: 0.2,
                ..FlowlogConfig::default()
            };
            let mut sink = FileSink::open(&config).unwrap();
            sink.write(&batch(10)).unwrap();
            let listed = names(dir.path());
            assert_eq!(listed.len(), 1);
            assert!(listed[0].starts_with(".flows-") && listed[0].ends_with(".inprogress"), "{listed:?}");
            for _ in 0..60 {
                sink.write(&batch(2000)).unwrap();
            }
            sink.complete().unwrap();
            let s = sink.stats();
            assert!(s.files_completed > 3 && s.files_deleted > 0, "{s:?}");
            assert!(s.disk_bytes <= mib_bytes(0.2), "{s:?}");
            let listed = names(dir.path());
            assert!(listed.iter().all(|n| n.starts_with("flows-") && n.ends_with(format.extension())), "{listed:?}");
            assert_eq!(listed.len() as u64, s.files_completed - s.files_deleted);
            // a leftover in-progress file is deleted at the next start
            fs::write(dir.path().join(".flows-00000000000000000001.parquet.inprogress"), b"junk").unwrap();
            let sink = FileSink::open(&config).unwrap();
            assert_eq!(sink.stats().files_abandoned, 1);
        }
    }
}
