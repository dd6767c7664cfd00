//! Checks, before anything is loaded, that the process can load and attach fovea's probes,
//! and reports every missing piece at once (capabilities, kernel BTF, ring buffers, tracefs).
//!
//! It also fixes what it can: mounts bpffs at `/sys/fs/bpf` and tracefs at
//! `/sys/kernel/tracing` when they are absent, and raises `RLIMIT_MEMLOCK` (only kernels before
//! 5.11 charge BPF memory to it). It never panics: without privileges the result is a
//! [`PreflightError`] whose message lists each missing thing and what to do about it.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aya::maps::MapType;
use aya::programs::{SchedClassifier, TcAttachType};

/// Where the kernel publishes its own BTF (needed for CO-RE and tp_btf).
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Where bpffs is expected.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Where tracefs is expected (tracepoint ids are read from it).
pub const TRACEFS: &str = "/sys/kernel/tracing";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What a caller is about to do, so only the relevant things are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Attaching TC/TCX programs to interfaces (CAP_NET_ADMIN).
    pub tc: bool,
    /// Attaching tracing programs (tracepoints, tp_btf: CAP_PERFMON and tracefs).
    pub tracing: bool,
    /// Reading flow records through ring buffers (kernel 5.8+).
    pub ring_buffers: bool,
}

impl Needs {
    /// Everything fovea's probes use.
    pub const ALL: Self = Self { tc: true, tracing: true, ring_buffers: true };
    /// What [`crate::ebpf::ForwardProbe`] needs.
    pub const TC: Self = Self { tc: true, tracing: false, ring_buffers: false };
    /// What the tracepoint probes with flow records need.
    pub const TRACING: Self = Self { tc: false, tracing: true, ring_buffers: true };
}

/// One thing that prevents loading, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// A capability is not in the effective set.
    Capability {
        /// Name, e.g. `CAP_BPF`.
        name: &'static str,
        /// Why fovea needs it.
        purpose: &'static str,
        /// Another capability that would also do, if any.
        alternative: Option<&'static str>,
    },
    /// `/sys/kernel/btf/vmlinux` is absent or unreadable.
    KernelBtf {
        /// The error from opening it.
        error: String,
    },
    /// The kernel cannot create BPF ring buffers.
    RingBuffer {
        /// What the probe returned.
        detail: String,
    },
    /// A filesystem the probes need is not mounted and could not be mounted.
    Mount {
        /// Mount point.
        path: &'static str,
        /// Filesystem type.
        fstype: &'static str,
        /// Why mounting failed.
        error: String,
    },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Capability { name, purpose, alternative } => {
                write!(f, "{name} missing ({purpose}); run as root or grant {name}")?;
                if let Some(alt) = alternative {
                    write!(f, " ({alt} also works)")?;
                }
                Ok(())
            }
            Self::KernelBtf { error } => write!(
                f,
                "kernel BTF {KERNEL_BTF} unavailable ({error}); fovea needs a kernel built with \
                 CONFIG_DEBUG_INFO_BTF=y (all major distributions since 2020)"
            ),
            Self::RingBuffer { detail } => {
                write!(f, "BPF ring buffers unsupported ({detail}); flow records need Linux 5.8 or newer")
            }
            Self::Mount { path, fstype, error } => write!(
                f,
                "{fstype} is not mounted at {path} and mounting it failed ({error}); mount it \
                 (`mount -t {fstype} {fstype} {path}`) or run with CAP_SYS_ADMIN"
            ),
        }
    }
}

/// Everything that is missing, reported together.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PreflightError {
    /// One or more requirements are not met.
    #[error("cannot load eBPF probes:{}", render(.0))]
    Missing(Vec<Missing>),
    /// One or more requirements of these receivers are not met; each missing thing names the
    /// receivers that need it.
    #[error("cannot load the eBPF probes of receivers {}:{}", .receivers.join(", "), render_for(.missing))]
    MissingFor {
        /// Every receiver checked.
        receivers: Vec<String>,
        /// What is missing, and which receivers need it.
        missing: Vec<(Missing, Vec<String>)>,
    },
}

fn render(missing: &[Missing]) -> String {
    missing.iter().map(|m| format!("\n  - {m}")).collect()
}

fn render_for(missing: &[(Missing, Vec<String>)]) -> String {
    missing.iter().map(|(m, who)| format!("\n  - {m} [needed by {}]", who.join(", "))).collect()
}

impl Needs {
    /// What both need.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            tc: self.tc || other.tc,
            tracing: self.tracing || other.tracing,
            ring_buffers: self.ring_buffers || other.ring_buffers,
        }
    }

    /// True when something that needs `self` needs what `missing` is about.
    fn affected_by(self, missing: &Missing) -> bool {
        match missing {
            Missing::Capability { name: "CAP_NET_ADMIN", .. } => self.tc,
            Missing::Capability { name: "CAP_PERFMON", .. } | Missing::Mount { .. } => self.tracing,
            Missing::RingBuffer { .. } => self.ring_buffers,
            Missing::Capability { .. } | Missing::KernelBtf { .. } => true,
        }
    }
}

/// Checks what every receiver in `needs` (`(receiver id, needs)`) requires, once, and reports
/// every missing thing with the receivers that need it.
pub fn check_all(needs: &[(String, Needs)]) -> Result<Preflight, PreflightError> {
    let all = needs.iter().fold(Needs { tc: false, tracing: false, ring_buffers: false }, |a, (_, n)| a.union(*n));
    match check(all) {
        Ok(report) => Ok(report),
        Err(PreflightError::Missing(missing)) => Err(PreflightError::MissingFor {
            receivers: needs.iter().map(|(id, _)| id.clone()).collect(),
            missing: missing
                .into_iter()
                .map(|m| {
                    let who = needs.iter().filter(|(_, n)| n.affected_by(&m)).map(|(id, _)| id.clone()).collect();
                    (m, who)
                })
                .collect(),
        }),
        Err(other) => Err(other),
    }
}

/// What the preflight found and did, for logging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preflight {
    /// The kernel supports TCX links (6.6+); otherwise TC attaches through clsact.
    pub tcx: bool,
    /// Filesystems this call mounted.
    pub mounted: Vec<PathBuf>,
    /// Non-fatal observations (e.g. RLIMIT_MEMLOCK could not be raised on a 5.11+ kernel).
    pub warnings: Vec<String>,
}

/// Checks everything `needs` requires and returns every problem at once.
pub fn check(needs: Needs) -> Result<Preflight, PreflightError> {
    let mut missing = Vec::new();
    let mut report = Preflight::default();

    let caps = effective_capabilities();
    let has = |cap: u32| caps.is_some_and(|c| c & (1u64 << cap) != 0);
    let sys_admin = has(CAP_SYS_ADMIN);
    let bpf = has(CAP_BPF) || sys_admin;
    if !bpf {
        missing.push(Missing::Capability {
            name: "CAP_BPF",
            purpose: "to load programs and create maps",
            alternative: Some("CAP_SYS_ADMIN"),
        });
    }
    if needs.tracing && !(has(CAP_PERFMON) || sys_admin) {
        missing.push(Missing::Capability {
            name: "CAP_PERFMON",
            purpose: "to load tracing programs and read kernel memory from them",
            alternative: Some("CAP_SYS_ADMIN"),
        });
    }
    let net_admin = has(CAP_NET_ADMIN);
    if needs.tc && !net_admin {
        missing.push(Missing::Capability {
            name: "CAP_NET_ADMIN",
            purpose: "to attach TC programs to interfaces",
            alternative: None,
        });
    }

    if let Err(e) = fs::File::open(KERNEL_BTF) {
        missing.push(Missing::KernelBtf { error: e.to_string() });
    }

    match ensure_mounted(BPFFS, "bpf") {
        Ok(true) => report.mounted.push(BPFFS.into()),
        Ok(false) => {}
        // fovea pins nothing today, so a missing bpffs is worth a warning only
        Err(e) => report.warnings.push(format!("bpffs not mounted at {BPFFS}: {e}")),
    }
    if needs.tracing {
        match ensure_mounted(TRACEFS, "tracefs") {
            Ok(true) => report.mounted.push(TRACEFS.into()),
            Ok(false) => {}
            Err(e) => missing.push(Missing::Mount { path: TRACEFS, fstype: "tracefs", error: e }),
        }
    }

    if let Some(w) = raise_memlock() {
        report.warnings.push(w);
    }

    // Feature probes need CAP_BPF themselves; without it the capability is what to report.
    if bpf && needs.ring_buffers {
        match aya::sys::is_map_supported(MapType::RingBuf) {
            Ok(true) => {}
            Ok(false) => missing.push(Missing::RingBuffer { detail: "BPF_MAP_TYPE_RINGBUF rejected".into() }),
            Err(e) => missing.push(Missing::RingBuffer { detail: e.to_string() }),
        }
    }
    if bpf && net_admin {
        report.tcx = tcx_supported();
    }

    if missing.is_empty() { Ok(report) } else { Err(PreflightError::Missing(missing)) }
}

/// True when the kernel supports TCX links (probed once per process on `lo`).
pub fn tcx_supported() -> bool {
    static TCX: OnceLock<bool> = OnceLock::new();
    *TCX.get_or_init(|| SchedClassifier::query_tcx("lo", TcAttachType::Ingress).is_ok())
}

/// The effective capability set of this thread, `None` if /proc cannot tell.
fn effective_capabilities() -> Option<u64> {
    let status =
        fs::read_to_string("/proc/thread-self/status").or_else(|_| fs::read_to_string("/proc/self/status")).ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Mounts `fstype` at `path` unless something of that type is mounted there already.
/// Returns whether it mounted.
fn ensure_mounted(path: &'static str, fstype: &'static str) -> Result<bool, String> {
    if is_mounted(path, fstype) {
        return Ok(false);
    }
    if !Path::new(path).is_dir() {
        return Err(format!("{path} does not exist"));
    }
    let (Ok(src), Ok(target), Ok(ty)) = (CString::new(fstype), CString::new(path), CString::new(fstype)) else {
        return Err("invalid mount arguments".into());
    };
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(true) } else { Err(std::io::Error::last_os_error().to_string()) }
}

fn is_mounted(path: &str, fstype: &str) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, mp, ty) = (f.next(), f.next(), f.next());
        mp == Some(path) && ty == Some(fstype)
    })
}

/// Raises RLIMIT_MEMLOCK to infinity when it is lower. Returns a warning when that fails on a
/// kernel that still charges BPF memory to the limit.
fn raise_memlock() -> Option<String> {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `cur` is a valid rlimit out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut cur) } != 0 {
        return None;
    }
    if cur.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    let want = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: `want` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) } == 0 {
        return None;
    }
    let memcg =
        aya::util::KernelVersion::current().map(|v| v >= aya::util::KernelVersion::new(5, 11, 0)).unwrap_or(false);
    if memcg {
        None // memcg accounting: the limit no longer applies to BPF
    } else {
        Some(format!(
            "RLIMIT_MEMLOCK is {} bytes and could not be raised (grant CAP_SYS_RESOURCE or raise \
             it); map creation may fail on this pre-5.11 kernel",
            cur.rlim_cur
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_things_render_one_per_line() {
        let err = PreflightError::Missing(vec![
            Missing::Capability {
                name: "CAP_BPF",
                purpose: "to load programs and create maps",
                alternative: Some("CAP_SYS_ADMIN"),
            },
            Missing::KernelBtf { error: "No such file or directory (os error 2)".into() },
        ]);
        let text = err.to_string();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("CAP_BPF missing (to load programs and create maps); run as root or grant CAP_BPF (CAP_SYS_ADMIN also works)"));
        assert!(text.contains("CONFIG_DEBUG_INFO_BTF"));
    }

    #[test]
    fn each_missing_thing_names_the_receivers_that_need_it() {
        let needs = [
            ("packetforward".to_string(), Needs::TC),
            ("dropreason".to_string(), Needs::TRACING),
            ("tcpretrans/a".to_string(), Needs::TRACING),
        ];
        let cap = |name| Missing::Capability { name, purpose: "p", alternative: None };
        let who = |m: &Missing| -> Vec<&str> {
            needs.iter().filter(|(_, n)| n.affected_by(m)).map(|(id, _)| id.as_str()).collect()
        };
        assert_eq!(who(&cap("CAP_BPF")), ["packetforward", "dropreason", "tcpretrans/a"]);
        assert_eq!(who(&cap("CAP_PERFMON")), ["dropreason", "tcpretrans/a"]);
        assert_eq!(who(&cap("CAP_NET_ADMIN")), ["packetforward"]);
        let err = PreflightError::MissingFor {
            receivers: vec!["packetforward".into(), "dropreason".into()],
            missing: vec![(cap("CAP_NET_ADMIN"), vec!["packetforward".into()])],
        };
        assert_eq!(
            err.to_string(),
            "cannot load the eBPF probes of receivers packetforward, dropreason:\n  - CAP_NET_ADMIN missing (p); run as root or grant CAP_NET_ADMIN [needed by packetforward]"
        );
    }
}
