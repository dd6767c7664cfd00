//! Running code inside another network namespace.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling thread only, so the closure runs on
//! a dedicated thread that exits afterwards: no other thread of the agent changes namespace.
//! Sockets keep the namespace they were created in, so a netlink socket opened by the closure
//! (e.g. [`SocketStatsReader::new`](super::sockets::SocketStatsReader::new)) can be returned and
//! used from any thread afterwards. Inside the closure, `/proc/thread-self/net` shows the
//! namespace's `/proc/net` files; `/proc/self/net` does not (it follows the main thread).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread;

use super::error::LinuxutilError;

/// The `/proc/net` view of the calling thread's network namespace (use inside [`run_in_netns`]).
pub const THREAD_PROC_NET: &str = "/proc/thread-self/net";

/// Runs `f` on a new thread that first joins the network namespace at `path`
/// (`/var/run/netns/NAME`, `/proc/PID/ns/net`, ...), and returns its result.
///
/// Needs CAP_SYS_ADMIN. A panic in `f` is resumed on the calling thread.
pub fn run_in_netns<F, T>(path: &Path, f: F) -> Result<T, LinuxutilError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    thread::scope(|scope| {
        let worker = thread::Builder::new()
            .name("fovea-netns".into())
            .spawn_scoped(scope, move || {
                enter(path)?;
                Ok(f())
            })
            .map_err(|source| LinuxutilError::NetnsThread { path: path.to_owned(), source })?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn enter(path: &Path) -> Result<(), LinuxutilError> {
    let fail = |step| move |source| LinuxutilError::Netns { path: path.to_owned(), step, source };
    let file = File::open(path).map_err(fail("open"))?;
    // SAFETY: `file` is an open descriptor for the duration of the call; setns reads nothing else.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(fail("setns")(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_is_not_a_namespace_is_a_clear_error() {
        let err = run_in_netns(Path::new("/nonexistent/netns"), || ()).expect_err("no such file");
        assert!(
            err.to_string().starts_with("cannot enter network namespace /nonexistent/netns: open failed: No such file"),
            "{err}"
        );
        // A regular file opens but is no namespace: setns says EINVAL.
        let err = run_in_netns(Path::new("/proc/self/status"), || ()).expect_err("not a netns");
        assert!(matches!(err, LinuxutilError::Netns { step: "setns", .. }), "{err}");
    }

    /// setns needs CAP_SYS_ADMIN: skip on a developer's laptop, fail in CI.
    fn root_or_skip(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{test} needs root (setns) and CI=true forbids skipping");
        eprintln!("SKIPPED {test}: needs root for setns");
        false
    }

    #[test]
    fn the_closure_can_borrow_and_return() {
        if !root_or_skip("the_closure_can_borrow_and_return") {
            return;
        }
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        let data = [1, 2, 3];
        let (sum, inside) = run_in_netns(Path::new("/proc/self/ns/net"), || {
            (data.iter().sum::<i32>(), std::fs::read_link("/proc/thread-self/ns/net").ok())
        })
        .expect("joining our own namespace works wherever setns is allowed");
        assert_eq!(sum, 6);
        assert_eq!(inside, own);
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panic_inside_reaches_the_caller() {
        if !root_or_skip("a_panic_inside_reaches_the_caller") {
            panic!("boom (skipped: not root)");
        }
        let _ = run_in_netns(Path::new("/proc/self/ns/net"), || panic!("boom"));
    }
}
