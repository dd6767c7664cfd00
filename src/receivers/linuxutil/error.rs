//! Errors of the `linuxutil` data sources: procfs/sysfs parsing, netlink dumps, namespaces.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading the kernel's network counters.
#[derive(Debug, thiserror::Error)]
pub enum LinuxutilError {
    /// A procfs or sysfs file could not be opened or read.
    #[error("cannot read {path}: {source}; {}", read_hint(source))]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },

    /// A procfs or sysfs file did not have the layout the kernel writes.
    #[error(
        "{path}:{line}: {reason}; this is not the layout the kernel writes, so the file was \
         not read: check that the path points at a procfs/sysfs directory, or report the \
         file's content as a bug"
    )]
    Malformed {
        /// The file that failed.
        path: PathBuf,
        /// 1-based line number of the offending line.
        line: usize,
        /// What was wrong with the line.
        reason: String,
    },

    /// A netlink socket could not be created, bound or configured.
    #[error(
        "cannot {action} a {protocol} netlink socket: {source}; the agent must be allowed to \
         create netlink sockets (seccomp profiles and LSMs sometimes forbid it), and \
         NETLINK_SOCK_DIAG needs a kernel with CONFIG_INET_DIAG"
    )]
    NetlinkSocket {
        /// `NETLINK_ROUTE` or `NETLINK_SOCK_DIAG`.
        protocol: &'static str,
        /// What was being done: `open`, `bind`, `connect`, `configure`.
        action: &'static str,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },

    /// Sending a netlink request or receiving its reply failed.
    #[error(
        "netlink {request} dump failed while {action}: {source}; the next collection retries \
         with the same socket"
    )]
    NetlinkIo {
        /// The request, e.g. `RTM_GETLINK` or `SOCK_DIAG_BY_FAMILY(AF_INET, TCP)`.
        request: &'static str,
        /// `sending` or `receiving`.
        action: &'static str,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },

    /// The kernel answered a netlink request with an error code.
    #[error("the kernel refused the netlink {request} dump: {source}; {hint}")]
    NetlinkRefused {
        /// The request, e.g. `RTM_GETLINK`.
        request: &'static str,
        /// The error the kernel returned (negated errno).
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },

    /// A netlink reply could not be decoded.
    #[error(
        "cannot decode the kernel's reply to the netlink {request} dump: {reason}; this is a \
         bug in fovea or in the netlink crates for this kernel, please report it with `uname -r`"
    )]
    NetlinkDecode {
        /// The request, e.g. `RTM_GETLINK`.
        request: &'static str,
        /// What could not be decoded.
        reason: String,
    },

    /// A dump kept being interrupted by concurrent changes (`NLM_F_DUMP_INTR`).
    #[error(
        "the netlink {request} dump was interrupted {attempts} times in a row by concurrent \
         changes (NLM_F_DUMP_INTR), so its result would be inconsistent; the next collection \
         tries again"
    )]
    DumpInterrupted {
        /// The request, e.g. `RTM_GETLINK`.
        request: &'static str,
        /// How many attempts were made.
        attempts: u32,
    },

    /// Neither netlink nor the sysfs fallback could provide interface statistics.
    #[error("cannot read interface statistics: netlink: {netlink}; sysfs fallback: {sysfs}")]
    InterfaceStats {
        /// Why the netlink dump failed.
        netlink: Box<LinuxutilError>,
        /// Why the sysfs fallback failed.
        sysfs: Box<LinuxutilError>,
    },

    /// Joining a network namespace failed.
    #[error(
        "cannot enter network namespace {path}: {step} failed: {source}; the path must be a \
         network namespace file such as /var/run/netns/NAME or /proc/PID/ns/net, and the agent \
         needs CAP_SYS_ADMIN"
    )]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// `open` or `setns`.
        step: &'static str,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },

    /// The thread that joins a network namespace could not be started.
    #[error(
        "cannot start a thread to enter network namespace {path}: {source}; the process may \
         have hit its thread or memory limit"
    )]
    NetnsThread {
        /// The namespace file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
}

/// What to do about a failed read: out of file descriptors is not a mount problem.
fn read_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            "the process is out of file descriptors: raise its limit (ulimit -n, LimitNOFILE) or lower the \
             otlp receiver's max_connections"
        }
        _ => {
            "check that procfs and sysfs are mounted and readable by the agent (in a container, mount the host's \
             /proc and /sys)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_not_called_a_mount_problem() {
        let read =
            |code| LinuxutilError::Read { path: "/proc/net/snmp".into(), source: io::Error::from_raw_os_error(code) };
        let emfile = read(libc::EMFILE).to_string();
        assert!(emfile.contains("out of file descriptors") && !emfile.contains("mounted"), "{emfile}");
        let missing = read(libc::ENOENT).to_string();
        assert!(missing.contains("check that procfs and sysfs are mounted"), "{missing}");
    }
}
