//! Shared helpers for integration tests that need the real kernel.
//!
//! * [`require_root`] / [`require_tools`]: skip with a printed reason on a developer machine,
//!   fail under `CI=true`.
//! * [`kernel_lock`]: serializes tests that count global kernel events (tracepoints fire for
//!   every namespace), across threads of one binary and across test binaries.
//! * [`dns`]: dnsmasq with known records, and `dig` batches.
//! * [`netns`]: network namespaces joined by veth pairs the way a CNI builds pods, with
//!   readers for the kernel's own counters (`ip -s link`, nft counters, nstat).
//! * [`node`]: a Kubernetes node in a network namespace: pods on veths, routing, an uplink.
//! * [`tc`]: another party's TC filter next to ours, and our filters and TCX programs.
//! * [`tcp`]: a TCP transfer between two namespaces that waits until retransmissions are over.
//! * [`wait_until`]: polls a condition with a deadline.
#![allow(dead_code)] // each test binary uses a different subset

pub mod dns;
pub mod netns;
pub mod node;
pub mod tc;
pub mod tcp;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// True in CI, where a missing prerequisite is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Returns false (after printing why) when the test must be skipped; panics in CI.
fn skip_or_fail(test: &str, reason: &str) -> bool {
    if in_ci() {
        panic!("{test}: {reason} (CI=true, so this is a failure, not a skip)");
    }
    skip_note(test, reason);
    false
}

/// Prints a skip reason where `cargo test` shows it: straight to the stderr fd, past the
/// test harness's output capture (which would hide it for a passing test).
pub fn skip_note(test: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}

/// True when running as root; otherwise skips (or fails in CI) with a clear reason.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        true
    } else {
        skip_or_fail(test, "needs root (loads eBPF programs, creates network namespaces)")
    }
}

/// True when root and every tool in `tools` is on PATH; otherwise skips or fails in CI.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    if !require_root(test) {
        return false;
    }
    for tool in tools {
        let found =
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success());
        if !found {
            return skip_or_fail(test, &format!("needs `{tool}` on PATH"));
        }
    }
    true
}

/// Holds the process-wide and machine-wide kernel-event lock.
pub struct KernelLock {
    _thread: MutexGuard<'static, ()>,
    _file: File,
}

/// Serializes tests that compare global kernel event counts. Also takes an flock on
/// `/run/lock/fovea-kernel-tests.lock`, so test binaries running at the same time (cargo runs
/// them one after another, but developers may not) do not disturb each other.
pub fn kernel_lock() -> KernelLock {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = std::fs::create_dir_all("/run/lock");
    let file = File::options()
        .create(true)
        .append(true)
        .open("/run/lock/fovea-kernel-tests.lock")
        .expect("open /run/lock/fovea-kernel-tests.lock");
    // SAFETY: valid fd; LOCK_EX blocks until acquired and is released when the file closes.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    KernelLock { _thread: guard, _file: file }
}

/// True when `python3` can import `module`; otherwise skips (or fails in CI) saying how to
/// install it (tests/support/requirements.txt).
pub fn require_python_module(test: &str, module: &str) -> bool {
    let found =
        Command::new("python3").args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success());
    found
        || skip_or_fail(
            test,
            &format!("needs the Python module {module}: python3 -m pip install -r tests/support/requirements.txt"),
        )
}

/// Flow-log files in `dir` read back by pyarrow (tests/support/flowlog_read.py), as JSON:
/// `{"files": [...], "schema": {...}, "metadata": {...}, "rows": [...]}`.
pub fn pyarrow_read(dir: &std::path::Path, format: &str) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/flowlog_read.py");
    let out = run("python3", &[script, &dir.display().to_string(), format]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("flowlog_read.py printed no JSON ({e}): {out}"))
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell snippet, panicking with its output when it fails.
pub fn sh(script: &str) -> String {
    run("sh", &["-c", script])
}

/// Polls `cond` every 50ms until it holds; panics naming `what` after 5s.
pub fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
