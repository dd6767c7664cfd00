//! Kernel cost of the flows datapath program per packet, without traffic noise: the real program
//! run by the kernel on real packets with `BPF_PROG_TEST_RUN` (repeat N; the kernel reports the
//! mean ns per run). Compared with packetforward's program (the counting floor: one per-CPU hash
//! update per packet) and with variants of the same source: every packet missing the per-CPU
//! cache (`-DDP_CACHE_ALWAYS_MISS`: the cost when flows interleave beyond the cache), no cache at
//! all (`-DDP_NO_FLOW_CACHE`: every packet in the shared hash with atomic adds) and a per-CPU
//! hash without the cache (`-DDP_FLOWS_PERCPU`), so the design is measured, not assumed. Also
//! prints the memory each variant needs per flow, and what the DNS feature (ebpf/dns.bpf.h, the
//! dns receiver) adds on the same programs: on packets that are not DNS (the port check), and per
//! DNS message copied to the record ring.
//!
//! Run: `cargo bench --bench flows_kernel` (root; clang + libbpf-dev for the variants).
//! BPF statistics need not be on: the test run times itself.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::process::Command;

use aya::maps::{Array, ArrayOfMaps, Map, MapData, RingBuf};
use aya::programs::SchedClassifier;
use aya::{Ebpf, EbpfLoader, Pod};
use fovea::ebpf::test_run::test_run;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const REPEAT: u32 = 2_000_000;
const NEW_FLOWS: u16 = 20_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct Settings {
    features: u32,
    ephemeral_lo: u16,
    ephemeral_hi: u16,
    dns_rate_per_sec: u32,
    pad: u32,
}
// SAFETY: #[repr(C)] integers without padding.
unsafe impl Pod for Settings {}

fn csum(header: &[u8]) -> u16 {
    let mut sum: u32 = header.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame with an IPv4 (or IPv6) header and a UDP or TCP header, `payload` bytes.
fn frame(v6: bool, tcp: bool, sport: u16, payload: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l4_len = if tcp { 20 } else { 8 } + payload;
    let proto = if tcp { 6 } else { 17 };
    if v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().expect("ip").octets());
        f.extend_from_slice(&"2001:db8::2".parse::<std::net::Ipv6Addr>().expect("ip").octets());
    } else {
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
        let c = csum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
    }
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    if tcp {
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]); // ACK|PSH
    } else {
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend(std::iter::repeat_n(0u8, payload));
    f
}

/// Builds a variant of the datapath object with these `-D` defines; `None` (with a note) without
/// clang.
fn build_variant(file: &str, defines: &[&str]) -> Option<PathBuf> {
    let out = PathBuf::from(ROOT).join("target/flows-bench");
    std::fs::create_dir_all(&out).ok()?;
    let obj = out.join(file);
    let multiarch = Command::new("gcc").arg("-print-multiarch").output().ok()?;
    let multiarch = String::from_utf8_lossy(&multiarch.stdout).trim().to_string();
    let status = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-fno-stack-protector"])
        .args(defines.iter().map(|d| format!("-D{d}")))
        .args(["-I", "ebpf", "-I", "/usr/include/bpf", "-I", &format!("/usr/include/{multiarch}")])
        .args(["-c", "ebpf/datapath.bpf.c", "-o"])
        .arg(&obj)
        .current_dir(ROOT)
        .status();
    match status {
        Ok(s) if s.success() => Some(obj),
        _ => {
            eprintln!("(no clang: skipping the {defines:?} variant; apt-get install clang llvm libbpf-dev)");
            None
        }
    }
}

/// Every flows feature (flows, TCP flags, handshakes, port collapsing).
const FLOWS: u32 = 0xf;
/// The DNS feature's bit.
const DNS: u32 = 0x10;

/// Loads a datapath object with `features` on and the first table active.
fn load_datapath(bytes: &[u8], max_flows: u32, features: u32) -> Ebpf {
    let mut loader = EbpfLoader::new();
    loader.map_max_entries("flows_a", max_flows).map_max_entries("flows_b", max_flows);
    let mut ebpf = loader.load(bytes).expect("load datapath");
    let prog: &mut SchedClassifier =
        ebpf.program_mut("fovea_dp_ingress").expect("program").try_into().expect("classifier");
    prog.load().expect("verifier");
    let a = match ebpf.take_map("flows_a").expect("flows_a") {
        Map::HashMap(d) | Map::PerCpuHashMap(d) => d,
        _ => panic!("flows_a is a hash"),
    };
    let mut outer: ArrayOfMaps<MapData, MapData> =
        ebpf.take_map("flow_tables").expect("flow_tables").try_into().expect("outer");
    outer.set(0, &a, 0).expect("slot 0");
    let cache = match ebpf.take_map("flow_cache_a").expect("flow_cache_a") {
        Map::PerCpuArray(d) => d,
        _ => panic!("flow_cache_a is a per-CPU array"),
    };
    let mut caches: ArrayOfMaps<MapData, MapData> =
        ebpf.take_map("flow_caches").expect("flow_caches").try_into().expect("outer");
    caches.set(0, &cache, 0).expect("slot 0");
    let mut settings = Array::<_, Settings>::try_from(ebpf.map_mut(".bss").expect(".bss")).expect("settings");
    settings
        .set(0, Settings { features, ephemeral_lo: 32768, ephemeral_hi: 60999, dns_rate_per_sec: u32::MAX, pad: 0 }, 0)
        .expect("features");
    // the tables must outlive the runs: leak them into the process (a benchmark)
    std::mem::forget((a, outer, cache, caches));
    ebpf
}

/// A DNS query for `web.test` type A in an Ethernet/IPv4/UDP frame to port 53.
fn dns_query_frame() -> Vec<u8> {
    let mut f = frame(false, false, 40000, 26);
    let udp = 14 + 20;
    f[udp + 2..udp + 4].copy_from_slice(&53u16.to_be_bytes());
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'e', b'b', 4, b't', b'e', b's', b't', 0];
    m.extend_from_slice(&[0, 1, 0, 1]);
    f[udp + 8..].copy_from_slice(&m);
    f
}

/// ns per DNS query copied to the record ring (draining the ring between rounds so every run
/// copies), with flows off and on.
fn dns_copies(object: &[u8]) {
    const ROUNDS: u32 = 200;
    const PER_ROUND: u32 = 1000; // < the ring's ~1800 records
    println!();
    println!("| DNS query (UDP/IPv4 to port 53) copied to the ring | ns per packet |");
    println!("|---|---|");
    let packet = dns_query_frame();
    for (name, features) in [("DNS alone", DNS), ("flows + DNS", FLOWS | DNS)] {
        let mut ebpf = load_datapath(object, 65536, features);
        let mut ring = RingBuf::try_from(ebpf.take_map("records").expect("records")).expect("ring");
        let fd = prog_fd(&ebpf, "fovea_dp_ingress");
        let (mut total, mut copied) = (0u64, 0u64);
        for _ in 0..ROUNDS {
            total += u64::from(test_run(fd, &packet, PER_ROUND).expect("test run"));
            while ring.next().is_some() {
                copied += 1;
            }
        }
        assert_eq!(copied, u64::from(ROUNDS * PER_ROUND), "every run copied its message");
        println!("| {name} | {:.0} ns |", total as f64 / f64::from(ROUNDS));
    }
}

/// What BPF run-time statistics (`kernel.bpf_stats_enabled`, how overhead.sh and fovea's own
/// `fovea_ebpf_program_run_*` metrics measure programs on real traffic) cost: each program test-run
/// with statistics off and on (the difference is what they add to every invocation), and the
/// mean they record, `run_time_ns / run_cnt`, which includes part of their own cost (the clock
/// read after the program).
fn stats_cost(variants: &[(&str, Ebpf, &str)], packet: &[u8]) {
    const RUNS: u32 = 1_000_000;
    println!();
    if std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() != "0") {
        println!("(kernel.bpf_stats_enabled is already 1: the stats-off column includes the statistics)");
    }
    println!(
        "| program, UDP/IPv4 64 B | test run, stats off | test run, stats on | what stats add per run | bpf_stats ns per run |"
    );
    println!("|---|---|---|---|---|");
    for (name, ebpf, prog) in variants {
        let fd = prog_fd(ebpf, prog);
        let off = test_run(fd, packet, RUNS).expect("test run");
        let before = run_stats(ebpf, prog);
        let guard = fovea::ebpf::enable_run_time_stats().expect("BPF_ENABLE_STATS");
        let on = test_run(fd, packet, RUNS).expect("test run");
        drop(guard);
        let after = run_stats(ebpf, prog);
        let per_run = (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64;
        let added = i64::from(on) - i64::from(off);
        println!("| {name} | {off} ns | {on} ns | {added} ns | {per_run:.1} ns |");
    }
}

/// (run time ns, run count) of a loaded program, from the kernel's program info.
fn run_stats(ebpf: &Ebpf, name: &str) -> (u64, u64) {
    let prog: &SchedClassifier = ebpf.program(name).expect("program").try_into().expect("classifier");
    let info = prog.info().expect("program info");
    (info.run_time().as_nanos() as u64, info.run_count())
}

fn prog_fd<'a>(ebpf: &'a Ebpf, name: &str) -> BorrowedFd<'a> {
    let prog: &SchedClassifier = ebpf.program(name).expect("program").try_into().expect("classifier");
    prog.fd().expect("fd").as_fd()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("flows_kernel: needs root (loads eBPF programs); skipped");
        return;
    }
    let shared = std::fs::read(format!("{ROOT}/ebpf/datapath.bpf.o")).expect("ebpf/datapath.bpf.o");
    let mut variants: Vec<(&str, Ebpf, &str)> = vec![(
        "flows, per-CPU cache + shared hash (shipped)",
        load_datapath(&shared, 65536, FLOWS),
        "fovea_dp_ingress",
    )];
    for (name, file, defines) in [
        ("flows, every packet missing the cache", "datapath_miss.bpf.o", &["DP_CACHE_ALWAYS_MISS"][..]),
        ("flows, shared hash + atomics, no cache", "datapath_nocache.bpf.o", &["DP_NO_FLOW_CACHE"][..]),
        ("flows, per-CPU hash, no cache", "datapath_percpu.bpf.o", &["DP_NO_FLOW_CACHE", "DP_FLOWS_PERCPU"][..]),
    ] {
        if let Some(obj) = build_variant(file, defines) {
            let bytes = std::fs::read(obj).expect("variant object");
            variants.push((name, load_datapath(&bytes, 65536, FLOWS), "fovea_dp_ingress"));
        }
    }
    variants.push(("flows + DNS (both receivers)", load_datapath(&shared, 65536, FLOWS | DNS), "fovea_dp_ingress"));
    variants.push(("DNS alone", load_datapath(&shared, 65536, DNS), "fovea_dp_ingress"));
    let mut fwd = EbpfLoader::new()
        .load(&std::fs::read(format!("{ROOT}/ebpf/packetforward.bpf.o")).expect("packetforward"))
        .expect("load packetforward");
    let p: &mut SchedClassifier =
        fwd.program_mut("fovea_fwd_ingress").expect("program").try_into().expect("classifier");
    p.load().expect("verifier");
    variants.push(("packetforward (floor: one per-CPU counter)", fwd, "fovea_fwd_ingress"));
    // Every feature off: the program reads one setting and returns, so what it measures is the
    // test run's own cost per run (the kernel's loop, context set-up, the timing), which TCX does
    // not add; subtracted below.
    variants.push((
        "datapath, every feature off (the test run's own cost)",
        load_datapath(&shared, 1024, 0),
        "fovea_dp_ingress",
    ));

    let cases: [(&str, Vec<u8>); 4] = [
        ("UDP/IPv4 64 B, known flow", frame(false, false, 40000, 64)),
        ("TCP/IPv4 ACK+PSH 1448 B, known flow", frame(false, true, 40000, 1448)),
        ("UDP/IPv6 64 B, known flow", frame(true, false, 40000, 64)),
        ("UDP/IPv4 64 B, ports kept (5201 -> 5201)", frame(false, false, 5201, 64)),
    ];
    let header =
        format!("| program | {} | a new flow each packet |", cases.iter().map(|c| c.0).collect::<Vec<_>>().join(" | "));
    println!("{header}");
    println!("|---|{}---|", "---|".repeat(cases.len()));
    let mut measured: Vec<(&str, Vec<f64>)> = Vec::new();
    for (name, ebpf, prog) in &variants {
        let fd = prog_fd(ebpf, prog);
        let mut row = format!("| {name} |");
        let mut cells = Vec::new();
        for (_, packet) in &cases {
            let ns = test_run(fd, packet, REPEAT).expect("test run");
            row.push_str(&format!(" {ns} ns |"));
            cells.push(f64::from(ns));
        }
        // a flow not seen before on every packet (distinct server ports: never collapsed): the
        // insert path (with the cache: a miss, and the previous flow moved into the table)
        let mut total = 0u64;
        for i in 0..NEW_FLOWS {
            let mut packet = frame(false, false, 40000, 64);
            let off = 14 + 20 + 2;
            packet[off..off + 2].copy_from_slice(&(1000 + i).to_be_bytes());
            total += u64::from(test_run(fd, &packet, 1).expect("test run"));
        }
        row.push_str(&format!(" {:.0} ns |", total as f64 / f64::from(NEW_FLOWS)));
        cells.push(total as f64 / f64::from(NEW_FLOWS));
        println!("{row}");
        measured.push((name, cells));
    }
    // the same, less the test run's own cost (the features-off row, column by column)
    let (_, harness) = measured.last().cloned().expect("rows");
    println!();
    println!("Net of the test run's own cost (what the program adds to a packet's path):");
    println!();
    println!("{header}");
    println!("|---|{}---|", "---|".repeat(cases.len()));
    for (name, cells) in &measured[..measured.len() - 1] {
        let net: Vec<String> = cells.iter().zip(&harness).map(|(c, h)| format!(" {:.0} ns |", c - h)).collect();
        println!("| {name} |{}", net.concat());
    }

    stats_cost(&variants, &cases[0].1);

    dns_copies(&shared);

    // memory per flow entry: key 44 + value 88 (+ hash element overhead ~56 B), per half of the
    // double buffer; the per-CPU variant keeps one value per possible CPU; the caches are two
    // arrays of 256 136-byte entries per possible CPU
    let cpus = aya::util::nr_cpus().expect("cpus");
    println!();
    println!(
        "| flow table memory for 65 536 flows x 2 tables | shared hash | + per-CPU caches (shipped) | per-CPU hash |"
    );
    println!("|---|---|---|---|");
    for n in [cpus, 16, 64, 256] {
        let shared = 2 * 65536 * (56 + 48 + 88);
        let caches = 2 * 256 * 136 * n;
        let per_cpu = 2 * 65536 * (56 + 48 + 8) + 2 * 65536 * n * 88;
        println!(
            "| {n} CPUs{} | {:.0} MiB | {:.1} MiB | {:.0} MiB |",
            if n == cpus { " (this machine)" } else { "" },
            shared as f64 / 1048576.0,
            (shared + caches) as f64 / 1048576.0,
            per_cpu as f64 / 1048576.0
        );
    }
}
