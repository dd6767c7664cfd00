//! Batch map operations (`BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_LOOKUP_AND_DELETE_BATCH`,
//! `BPF_MAP_DELETE_BATCH`, Linux 5.6+) through the raw `bpf()` syscall, which aya 0.14 does not
//! wrap (aya-rs/aya#1124).
//!
//! One syscall moves thousands of entries, where aya's iterator needs two per entry
//! (`GET_NEXT_KEY` + `LOOKUP_ELEM`) and a third to delete. Kernels without batch support for a
//! map type answer `EINVAL`/`ENOTSUPP`; then [`BatchBuffers`] falls back to walking the keys,
//! which is exact as long as nobody writes to the map meanwhile (the flow tables are drained only
//! after they were swapped out).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
const BPF_MAP_DELETE_BATCH: libc::c_long = 26;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 27;
/// `ENOTSUPP` (kernel-internal, but batch ops return it to user space for unsupported maps).
const ENOTSUPP: i32 = 524;
/// Entries per batch call: large enough that a 64k-entry table drains in 16 calls, small enough
/// that the buffers stay a few hundred KiB.
const CHUNK: u32 = 4096;

/// `union bpf_attr` for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `union bpf_attr` for the single-element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`, passed with its size;
    // every pointer in it refers to a buffer its caller keeps alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>() as u32) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | ENOTSUPP | libc::EOPNOTSUPP))
}

/// Reusable key and value buffers for reading maps in batches (no allocation per entry, and
/// none per drain once they have grown).
#[derive(Debug, Default)]
pub(crate) struct BatchBuffers {
    keys: Vec<u8>,
    values: Vec<u8>,
    /// Set once the kernel said it has no batch ops for this map: walk keys instead.
    walk: bool,
}

impl BatchBuffers {
    /// Visits every entry of the map behind `fd` (`key_size`-byte keys, `value_size`-byte values;
    /// for per-CPU maps `value_size` is `round_up(size, 8) * possible CPUs`), deleting each one
    /// when `delete` is set. Returns how many entries were visited.
    pub(crate) fn visit(
        &mut self,
        fd: BorrowedFd<'_>,
        key_size: usize,
        value_size: usize,
        delete: bool,
        mut each: impl FnMut(&[u8], &[u8]),
    ) -> io::Result<usize> {
        if !self.walk {
            match self.visit_batched(fd, key_size, value_size, delete, &mut each) {
                Ok(n) => return Ok(n),
                Err(e) if unsupported(&e) => self.walk = true,
                Err(e) => return Err(e),
            }
        }
        self.visit_walking(fd, key_size, value_size, delete, &mut each)
    }

    fn visit_batched(
        &mut self,
        fd: BorrowedFd<'_>,
        key_size: usize,
        value_size: usize,
        delete: bool,
        each: &mut impl FnMut(&[u8], &[u8]),
    ) -> io::Result<usize> {
        let cmd = if delete { BPF_MAP_LOOKUP_AND_DELETE_BATCH } else { BPF_MAP_LOOKUP_BATCH };
        let mut chunk = CHUNK as usize;
        let mut token = [0u64; 1];
        let mut first = true;
        let mut total = 0;
        loop {
            self.keys.resize(chunk * key_size, 0);
            self.values.resize(chunk * value_size, 0);
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { token.as_ptr() as u64 },
                out_batch: token.as_mut_ptr() as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: chunk as u32,
                map_fd: fd.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            let result = bpf(cmd, &mut attr);
            let got = attr.count as usize;
            let last = match result {
                Ok(()) => false,
                // the end of the map; `got` entries came with it
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                // one hash bucket holds more entries than fit: retry that bucket with more room
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && got == 0 => {
                    chunk *= 2;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for i in 0..got.min(chunk) {
                each(&self.keys[i * key_size..(i + 1) * key_size], &self.values[i * value_size..(i + 1) * value_size]);
            }
            total += got;
            if last {
                return Ok(total);
            }
            first = false;
        }
    }

    fn visit_walking(
        &mut self,
        fd: BorrowedFd<'_>,
        key_size: usize,
        value_size: usize,
        delete: bool,
        each: &mut impl FnMut(&[u8], &[u8]),
    ) -> io::Result<usize> {
        // Collect the keys first: deleting while walking makes GET_NEXT_KEY restart from the
        // first bucket.
        self.keys.clear();
        let mut next = vec![0u8; key_size];
        let mut have_prev = false;
        loop {
            let prev_at = self.keys.len().saturating_sub(key_size);
            let mut attr = ElemAttr {
                map_fd: fd.as_raw_fd() as u32,
                key: if have_prev { self.keys[prev_at..].as_ptr() as u64 } else { 0 },
                value_or_next_key: next.as_mut_ptr() as u64,
                ..ElemAttr::default()
            };
            match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
                Ok(()) => {
                    self.keys.extend_from_slice(&next);
                    have_prev = true;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) => return Err(e),
            }
        }
        self.values.resize(value_size, 0);
        let mut visited = 0;
        for key in self.keys.chunks_exact(key_size) {
            let mut attr = ElemAttr {
                map_fd: fd.as_raw_fd() as u32,
                key: key.as_ptr() as u64,
                value_or_next_key: self.values.as_mut_ptr() as u64,
                ..ElemAttr::default()
            };
            match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            }
            each(key, &self.values);
            visited += 1;
            if delete {
                delete_one(fd, key)?;
            }
        }
        Ok(visited)
    }

    /// Deletes `keys` (concatenated, `key_size` bytes each); keys already gone are not an error.
    pub(crate) fn delete(&mut self, fd: BorrowedFd<'_>, key_size: usize, keys: &[u8]) -> io::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        if !self.walk {
            let mut attr = BatchAttr {
                keys: keys.as_ptr() as u64,
                count: (keys.len() / key_size) as u32,
                map_fd: fd.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
                Ok(()) => return Ok(()),
                // stops at the first missing key; delete the rest one by one
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let done = attr.count as usize;
                    return keys[(done + 1) * key_size..].chunks_exact(key_size).try_for_each(|k| delete_one(fd, k));
                }
                Err(e) if unsupported(&e) => self.walk = true,
                Err(e) => return Err(e),
            }
        }
        keys.chunks_exact(key_size).try_for_each(|k| delete_one(fd, k))
    }
}

/// Reads (`write` false) or writes every element of an array map with `n` entries of
/// `value_size` bytes each (per-CPU arrays: `round_up(size, 8) * possible CPUs`) from or into
/// `values`, in one batch call where the kernel has it, else element by element.
pub(crate) fn array_all(
    fd: BorrowedFd<'_>,
    n: u32,
    value_size: usize,
    values: &mut [u8],
    write: bool,
) -> io::Result<()> {
    assert_eq!(values.len(), n as usize * value_size, "array buffer size");
    let keys: Vec<u32> = (0..n).collect();
    let mut token = 0u32;
    let mut attr = BatchAttr {
        out_batch: std::ptr::from_mut(&mut token) as u64,
        keys: keys.as_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: n,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    let cmd = if write { BPF_MAP_UPDATE_BATCH } else { BPF_MAP_LOOKUP_BATCH };
    match bpf(cmd, &mut attr) {
        Ok(()) if attr.count == n => return Ok(()),
        // a lookup batch may report the end of the array along with its last entries
        Err(e) if !write && e.raw_os_error() == Some(libc::ENOENT) && attr.count == n => return Ok(()),
        Ok(()) => {}
        Err(e) if unsupported(&e) => {}
        Err(e) => return Err(e),
    }
    for (key, value) in keys.iter().zip(values.chunks_exact_mut(value_size)) {
        let mut attr = ElemAttr {
            map_fd: fd.as_raw_fd() as u32,
            key: std::ptr::from_ref(key) as u64,
            value_or_next_key: value.as_mut_ptr() as u64,
            ..ElemAttr::default()
        };
        bpf(if write { BPF_MAP_UPDATE_ELEM } else { BPF_MAP_LOOKUP_ELEM }, &mut attr)?;
    }
    Ok(())
}

fn delete_one(fd: BorrowedFd<'_>, key: &[u8]) -> io::Result<()> {
    let mut attr = ElemAttr { map_fd: fd.as_raw_fd() as u32, key: key.as_ptr() as u64, ..ElemAttr::default() };
    match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
        _ => Ok(()),
    }
}
