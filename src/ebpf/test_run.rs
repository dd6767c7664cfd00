//! Running a loaded TC program on a packet with `BPF_PROG_TEST_RUN` (the raw `bpf()` syscall; aya
//! 0.14 does not wrap it): how the tick program samples the kernel's clocks on demand, and how
//! benches/flows_kernel.rs measures the datapath's ns per packet without traffic noise.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `union bpf_attr` for BPF_PROG_TEST_RUN (up to `duration`; the kernel zero-extends the rest).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// Runs the program behind `prog` on `packet` (an Ethernet frame) `repeat` times; returns the
/// kernel's mean ns per run.
pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> io::Result<u32> {
    let mut out = vec![0u8; packet.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: attr is the BPF_PROG_TEST_RUN prefix of union bpf_attr, passed with its size; the
    // packet and output buffers outlive the call.
    let rc =
        unsafe { libc::syscall(libc::SYS_bpf, 10, std::ptr::from_mut(&mut attr), size_of::<TestRunAttr>() as u32) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(attr.duration) }
}
