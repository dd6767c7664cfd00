//! Attaching without harming others: another TC filter on the same interface keeps working
//! across our attach, our detach, and a `kill -9` of a process holding our attachment followed
//! by a re-attach; and without privileges every probe fails with the complete, clear list of
//! what is missing instead of a panic.
//!
//! Child processes are this test binary re-executed on one of the `child_*` tests, which do
//! nothing unless their environment variable is set.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fovea::ebpf::preflight::{self, Needs};
use fovea::ebpf::{AttachMode, DropConfig, DropProbe, ForwardOptions, ForwardProbe, RetransConfig, TcpRetransProbe};
use support::netns::{LinkOptions, Pod};
use support::tc::{OtherFilter, our_filters, our_tcx_programs};
use support::wait_until;

const CHILD_IFACE: &str = "FOVEA_TEST_CHILD_IFACE";
const CHILD_MODE: &str = "FOVEA_TEST_CHILD_MODE";
const CHILD_NOCAPS: &str = "FOVEA_TEST_CHILD_NOCAPS";

/// Child: attach the forward probe to $FOVEA_TEST_CHILD_IFACE, say so, and wait to be killed.
#[test]
fn child_holds_attachment() {
    let Ok(iface) = std::env::var(CHILD_IFACE) else {
        return;
    };
    let mode = match std::env::var(CHILD_MODE).as_deref() {
        Ok("clsact") => AttachMode::Clsact,
        _ => AttachMode::Auto,
    };
    let mut probe = ForwardProbe::load_with(ForwardOptions { mode, ..ForwardOptions::default() }).expect("child load");
    probe.attach(&iface).expect("child attach");
    println!("ATTACHED");
    std::thread::sleep(Duration::from_secs(120));
}

/// Child: try everything without capabilities and print each error.
#[test]
fn child_load_without_caps() {
    if std::env::var(CHILD_NOCAPS).is_err() {
        return;
    }
    match preflight::check(Needs::ALL) {
        Ok(p) => println!("UNEXPECTED OK preflight {p:?}"),
        Err(e) => println!("preflight: {e}"),
    }
    match ForwardProbe::load() {
        Ok(_) => println!("UNEXPECTED OK forward"),
        Err(e) => println!("forward: {e}"),
    }
    match DropProbe::load(DropConfig::default()) {
        Ok(_) => println!("UNEXPECTED OK drop"),
        Err(e) => println!("drop: {e}"),
    }
    match TcpRetransProbe::load(RetransConfig::default()) {
        Ok(_) => println!("UNEXPECTED OK tcpretrans"),
        Err(e) => println!("tcpretrans: {e}"),
    }
}

/// Re-executes this binary on one child test.
fn child(test: &str, envs: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads", "1"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// A child holding our attachment on `iface`, started and confirmed attached.
fn spawn_holder(iface: &str, mode: &str) -> Child {
    let mut c = child("child_holds_attachment", &[(CHILD_IFACE, iface), (CHILD_MODE, mode)])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let out = c.stdout.take().expect("stdout");
    for line in BufReader::new(out).lines() {
        if line.expect("child output").contains("ATTACHED") {
            return c;
        }
    }
    panic!("child exited without attaching: {:?}", c.wait());
}

fn coexistence(mode: AttachMode, test: &str) {
    if !support::require_tools(test, &["ip", "tc"]) {
        return;
    }
    let clsact = mode == AttachMode::Clsact;
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let iface = pod.host_if.clone();
    let other = OtherFilter::install(&iface);
    other.assert_working(&pod, "before fovea");

    // attach: the other filter keeps working and we see its packets too
    let mut probe = ForwardProbe::load_with(ForwardOptions { mode, ..ForwardOptions::default() }).expect("load");
    let ifindex = probe.attach(&iface).expect("attach");
    if clsact {
        assert_eq!(our_filters(&iface).len(), 2);
    } else {
        assert_eq!(our_tcx_programs(&iface), 2);
    }
    other.assert_working(&pod, "attached");
    let seen = probe.counters().expect("counters");
    assert!(
        seen.iter().any(|c| c.ifindex == ifindex && c.packets >= 5),
        "we counted the redirected packets first: {seen:?}"
    );

    // clean detach: only ours goes
    probe.detach(ifindex).expect("detach");
    drop(probe);
    assert!(other.still_installed(), "qdisc and other filter survive our detach");
    assert!(our_filters(&iface).is_empty());
    // a child forked by a parallel test may hold a copy of the link fd until its exec
    wait_until("our TCX links are gone", || our_tcx_programs(&iface) == 0);
    other.assert_working(&pod, "after detach");

    // kill -9 of a holder, then re-attach
    let mut holder = spawn_holder(&iface, if clsact { "clsact" } else { "auto" });
    other.assert_working(&pod, "held by another process");
    holder.kill().expect("kill -9");
    holder.wait().expect("reap");
    if clsact {
        // a dead process's netlink filters stay: that is what re-attach must clean up
        assert_eq!(our_filters(&iface).len(), 2, "stale filters after kill -9");
    } else {
        wait_until("TCX links die with the process", || our_tcx_programs(&iface) == 0);
    }
    assert!(other.still_installed());
    other.assert_working(&pod, "after kill -9");

    let mut probe = ForwardProbe::load_with(ForwardOptions { mode, ..ForwardOptions::default() }).expect("reload");
    probe.attach(&iface).expect("re-attach");
    if clsact {
        assert_eq!(our_filters(&iface).len(), 2, "stale ones replaced, not doubled");
    } else {
        assert_eq!(our_tcx_programs(&iface), 2);
        assert!(our_filters(&iface).is_empty());
    }
    other.assert_working(&pod, "re-attached");
    probe.detach(ifindex).expect("detach");
    assert!(other.still_installed());
    assert!(our_filters(&iface).is_empty());
    // a child forked by a parallel test may hold a copy of the link fd until its exec
    wait_until("our TCX links are gone", || our_tcx_programs(&iface) == 0);
}

#[test]
fn other_filter_survives_attach_detach_and_kill_tcx() {
    let test = "other_filter_survives_attach_detach_and_kill_tcx";
    if !support::require_root(test) {
        return;
    }
    if !preflight::tcx_supported() {
        support::skip_note(test, "this kernel has no TCX (Linux 6.6+)");
        return;
    }
    coexistence(AttachMode::Auto, test);
}

#[test]
fn other_filter_survives_attach_detach_and_kill_clsact() {
    coexistence(AttachMode::Clsact, "other_filter_survives_attach_detach_and_kill_clsact");
}

/// A stale clsact filter from a dead clsact-mode fovea is removed even when the new process
/// attaches with TCX (it would otherwise count every packet twice).
#[test]
fn stale_clsact_filter_removed_by_tcx_attach() {
    let test = "stale_clsact_filter_removed_by_tcx_attach";
    if !support::require_tools(test, &["ip", "tc"]) {
        return;
    }
    if !preflight::tcx_supported() {
        support::skip_note(test, "this kernel has no TCX (Linux 6.6+)");
        return;
    }
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let other = OtherFilter::install(&pod.host_if);
    let mut holder = spawn_holder(&pod.host_if, "clsact");
    holder.kill().expect("kill -9");
    holder.wait().expect("reap");
    assert_eq!(our_filters(&pod.host_if).len(), 2);
    let mut probe = ForwardProbe::load().expect("load");
    probe.attach(&pod.host_if).expect("attach");
    assert!(our_filters(&pod.host_if).is_empty());
    assert_eq!(our_tcx_programs(&pod.host_if), 2);
    assert!(other.still_installed());
    other.assert_working(&pod, "tcx after stale clsact");
}

/// Without CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and CAP_NET_ADMIN, every probe fails with one
/// message naming each missing capability and what to do; nothing panics.
#[test]
fn missing_capabilities_are_all_reported() {
    let test = "missing_capabilities_are_all_reported";
    if !support::require_tools(test, &["capsh"]) {
        return;
    }
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new("capsh")
        .args([
            "--drop=cap_bpf,cap_sys_admin,cap_perfmon,cap_net_admin",
            "--",
            "-c",
            "exec \"$0\" --exact child_load_without_caps --nocapture --test-threads 1",
        ])
        .arg(exe)
        .env(CHILD_NOCAPS, "1")
        .output()
        .expect("capsh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stdout}{stderr}");
    assert!(!stdout.contains("UNEXPECTED OK"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // a message: its first line (from `prefix`) and the "  - " lines after it
    let line = |prefix: &str| -> String {
        let start = stdout.find(prefix).unwrap_or(stdout.len());
        let mut lines = stdout[start..].lines();
        let first = lines.next().unwrap_or_default().to_owned();
        lines.take_while(|l| l.starts_with("  - ")).fold(first, |acc, l| acc + "\n" + l)
    };
    let all = line("preflight:");
    for cap in ["CAP_BPF missing", "CAP_PERFMON missing", "CAP_NET_ADMIN missing"] {
        assert!(all.contains(cap), "preflight lists {cap}: {all}");
    }
    assert!(all.contains("run as root or grant CAP_BPF (CAP_SYS_ADMIN also works)"), "{all}");
    let fwd = line("forward:");
    assert!(fwd.contains("CAP_BPF missing") && fwd.contains("CAP_NET_ADMIN missing"), "{fwd}");
    assert!(!fwd.contains("CAP_PERFMON"), "TC needs no CAP_PERFMON: {fwd}");
    for probe in ["drop:", "tcpretrans:"] {
        let msg = line(probe);
        assert!(msg.contains("CAP_BPF missing") && msg.contains("CAP_PERFMON missing"), "{msg}");
    }
}

/// Pods come and go: detaching from an interface that was already deleted succeeds in both
/// modes (the kernel removed our filter or link with the device).
#[test]
fn detach_after_interface_deleted_is_ok() {
    let test = "detach_after_interface_deleted_is_ok";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    for mode in [AttachMode::Auto, AttachMode::Clsact] {
        let pod = Pod::new(LinkOptions::default());
        let mut probe = ForwardProbe::load_with(ForwardOptions { mode, ..ForwardOptions::default() }).expect("load");
        let ifindex = probe.attach(&pod.host_if).expect("attach");
        drop(pod);
        probe.detach(ifindex).expect("detach after delete");
        assert!(probe.attached().is_empty());
    }
}

#[test]
fn probes_and_streams_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<ForwardProbe>();
    send::<DropProbe>();
    send::<TcpRetransProbe>();
    send::<fovea::ebpf::RecordStream<fovea::ebpf::DropRecord>>();
    send::<fovea::ebpf::RecordStream<fovea::ebpf::RetransRecord>>();
}

const CHILD_MOUNTS: &str = "FOVEA_TEST_CHILD_MOUNTS";

/// Child: run the preflight and print what it mounted.
#[test]
fn child_preflight_mounts() {
    if std::env::var(CHILD_MOUNTS).is_err() {
        return;
    }
    match preflight::check(Needs::ALL) {
        Ok(p) => println!("MOUNTED {:?}", p.mounted),
        Err(e) => println!("FAILED {e}"),
    }
    match DropProbe::load(DropConfig { force_tracepoint: true, ..DropConfig::default() }) {
        Ok(_) => println!("TRACEPOINT LOADED"),
        Err(e) => println!("FAILED {e}"),
    }
}

/// In a mount namespace without tracefs and bpffs, the preflight mounts both, and the plain
/// tracepoint (which needs tracefs) then attaches.
#[test]
fn preflight_mounts_missing_tracefs_and_bpffs() {
    let test = "preflight_mounts_missing_tracefs_and_bpffs";
    if !support::require_tools(test, &["unshare", "umount"]) {
        return;
    }
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "umount /sys/kernel/tracing 2>/dev/null; umount /sys/fs/bpf 2>/dev/null; \
             exec \"$0\" --exact child_preflight_mounts --nocapture --test-threads 1",
        ])
        .arg(exe)
        .env(CHILD_MOUNTS, "1")
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(r#"MOUNTED ["/sys/fs/bpf", "/sys/kernel/tracing"]"#), "{stdout}");
    assert!(stdout.contains("TRACEPOINT LOADED"), "{stdout}");
}
