//! Network namespaces joined by veth pairs, built the way a CNI builds pods, and readers for
//! the kernel's own counters.
//!
//! Addresses come only from 198.18.0.0/15 and 2001:db8::/32. Names are unique per process and
//! call, so tests can run in parallel. Everything is removed on drop, also when a test panics.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::run;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short unique suffix (interface names are limited to 15 bytes).
pub fn unique() -> (u32, u32) {
    (std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates a fresh namespace with `lo` up.
    pub fn new() -> Self {
        let (pid, n) = unique();
        let name = format!("fovea-t{pid}-{n}");
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str(), cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs a shell snippet inside the namespace.
    pub fn sh(&self, script: &str) -> String {
        self.exec("sh", &["-c", script])
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it creates live there.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn_in(f).join().expect("thread in netns panicked")
    }

    /// Spawns a thread inside this namespace.
    pub fn spawn_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: a valid netns fd; setns affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// A TCP/IP MIB counter inside the namespace via `nstat -asz` (e.g. `TcpRetransSegs`).
    pub fn nstat(&self, counter: &str) -> u64 {
        let out = self.exec("nstat", &["-asz", counter]);
        out.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(counter)).then(|| f.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("nstat has no {counter}: {out}"))
    }

    /// Loads an nft ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        let path = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&path, ruleset).expect("write nft ruleset");
        let p = path.to_string_lossy().into_owned();
        self.exec("nft", &["-f", &p]);
        let _ = std::fs::remove_file(path);
    }

    /// Packets and bytes of a named nft counter (`nft list counter <family> <table> <name>`).
    pub fn nft_counter(&self, family: &str, table: &str, name: &str) -> (u64, u64) {
        let out = self.exec("nft", &["list", "counter", family, table, name]);
        let words: Vec<&str> = out.split_whitespace().collect();
        let after = |w: &str| -> u64 {
            let i = words.iter().position(|x| *x == w).unwrap_or_else(|| panic!("no {w} in {out}"));
            words[i + 1].parse().expect("counter value")
        };
        (after("packets"), after("bytes"))
    }

    /// Interface statistics inside the namespace, as `ip -s link` reports them.
    pub fn link_stats(&self, iface: &str) -> LinkStats {
        LinkStats::parse(&self.ip(&["-s", "-j", "link", "show", "dev", iface]))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// IFLA_STATS64 counters of an interface (what `ip -s link` prints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Received packets.
    pub rx_packets: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Sent packets.
    pub tx_packets: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
}

impl LinkStats {
    /// Reads them for an interface in this process's namespace.
    pub fn host(iface: &str) -> Self {
        Self::parse(&run("ip", &["-s", "-j", "link", "show", "dev", iface]))
    }

    fn parse(json: &str) -> Self {
        let v: serde_json::Value = serde_json::from_str(json).expect("ip -j output");
        let s = &v[0]["stats64"];
        let get = |dir: &str, k: &str| s[dir][k].as_u64().unwrap_or_else(|| panic!("no {dir}.{k} in {json}"));
        Self {
            rx_packets: get("rx", "packets"),
            rx_bytes: get("rx", "bytes"),
            tx_packets: get("tx", "packets"),
            tx_bytes: get("tx", "bytes"),
        }
    }

    /// Counter growth from `earlier` to `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            rx_packets: self.rx_packets - earlier.rx_packets,
            rx_bytes: self.rx_bytes - earlier.rx_bytes,
            tx_packets: self.tx_packets - earlier.tx_packets,
            tx_bytes: self.tx_bytes - earlier.tx_bytes,
        }
    }

    /// Reads until two reads 100 ms apart agree (no packet in flight), at most 5 s.
    pub fn settled(read: impl Fn() -> Self) -> Self {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = read();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }
}

/// Address plan for one veth link: a /30 and a /64 from the test ranges.
#[derive(Debug, Clone, Copy)]
pub struct LinkAddrs {
    /// The "host"/"a" side IPv4.
    pub a4: Ipv4Addr,
    /// The "pod"/"b" side IPv4.
    pub b4: Ipv4Addr,
    /// The "host"/"a" side IPv6.
    pub a6: Ipv6Addr,
    /// The "pod"/"b" side IPv6.
    pub b6: Ipv6Addr,
}

impl LinkAddrs {
    /// The plan for (pid, n), moved on past blocks another process already uses on this host.
    pub fn allocate(pid: u32, n: u32) -> Self {
        let mut n = n;
        loop {
            let plan = Self::plan(pid, n);
            let used = run("ip", &["-o", "addr", "show", "to", &format!("{}/30", plan.a4)]);
            if used.trim().is_empty() {
                return plan;
            }
            n = n.wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed) + 1);
        }
    }

    fn plan(pid: u32, n: u32) -> Self {
        // 198.18.0.0/15 holds 32768 /30 blocks
        let block = (pid.wrapping_mul(64).wrapping_add(n)) % 32768;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block * 4;
        let seg = |x: u32| (x & 0xffff) as u16;
        Self {
            a4: Ipv4Addr::from(base + 1),
            b4: Ipv4Addr::from(base + 2),
            a6: Ipv6Addr::new(0x2001, 0x0db8, seg(pid), seg(n), 0, 0, 0, 1),
            b6: Ipv6Addr::new(0x2001, 0x0db8, seg(pid), seg(n), 0, 0, 0, 2),
        }
    }
}

/// How to build a link.
#[derive(Debug, Clone, Copy)]
pub struct LinkOptions {
    /// Configure IPv6 addresses; when false IPv6 is disabled on both ends, so no
    /// autoconfiguration, DAD, router or MLD traffic appears on the link.
    pub ipv6: bool,
    /// Install permanent neighbour entries on both ends, so no ARP/ND appears on the link.
    pub static_neighbours: bool,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self { ipv6: true, static_neighbours: false }
    }
}

/// A pod: a namespace whose `eth0` is one end of a veth pair; the other end stays in the
/// host namespace, as CNIs do. Routes: the pod's default route points at the host side.
pub struct Pod {
    /// The pod's namespace (dropped after the host-side link is removed).
    pub ns: Netns,
    /// Host-side interface name.
    pub host_if: String,
    /// Addresses: `a*` on the host side, `b*` in the pod.
    pub addrs: LinkAddrs,
}

impl Pod {
    /// Builds a pod with `opts`.
    pub fn new(opts: LinkOptions) -> Self {
        let (pid, n) = unique();
        let ns = Netns::new();
        let host_if = format!("fvh{pid}x{n}");
        let peer = format!("fvp{pid}x{n}");
        let addrs = LinkAddrs::allocate(pid, n);
        run("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", &peer]);
        let pod = Self { ns, host_if, addrs };
        run("ip", &["link", "set", &peer, "netns", &pod.ns.name]);
        pod.ns.ip(&["link", "set", &peer, "name", "eth0"]);
        if !opts.ipv6 {
            disable_ipv6_host(&pod.host_if);
            pod.ns.sh("sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1");
        }
        run("ip", &["addr", "add", &format!("{}/30", addrs.a4), "dev", &pod.host_if]);
        pod.ns.ip(&["addr", "add", &format!("{}/30", addrs.b4), "dev", "eth0"]);
        if opts.ipv6 {
            run("ip", &["-6", "addr", "add", &format!("{}/64", addrs.a6), "dev", &pod.host_if, "nodad"]);
            pod.ns.ip(&["-6", "addr", "add", &format!("{}/64", addrs.b6), "dev", "eth0", "nodad"]);
        }
        run("ip", &["link", "set", &pod.host_if, "up"]);
        pod.ns.ip(&["link", "set", "eth0", "up"]);
        pod.ns.ip(&["route", "add", "default", "via", &addrs.a4.to_string()]);
        if opts.static_neighbours {
            let host_mac = mac_of(&run("ip", &["-j", "link", "show", "dev", &pod.host_if]));
            let pod_mac = mac_of(&pod.ns.ip(&["-j", "link", "show", "dev", "eth0"]));
            let mut families = vec![("-4", addrs.a4.to_string(), addrs.b4.to_string())];
            if opts.ipv6 {
                families.push(("-6", addrs.a6.to_string(), addrs.b6.to_string()));
            }
            for (family, host_addr, pod_addr) in &families {
                run("ip", &permanent_neighbour(family, pod_addr, &pod_mac, &pod.host_if));
                pod.ns.ip(&permanent_neighbour(family, host_addr, &host_mac, "eth0"));
            }
        }
        pod
    }

    /// ifindex of the host-side interface.
    pub fn host_ifindex(&self) -> u32 {
        std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", self.host_if))
            .expect("ifindex")
            .trim()
            .parse()
            .expect("ifindex number")
    }
}

/// Arguments of `ip` for a permanent neighbour entry: `addr` is at `mac`, reached over `dev`.
fn permanent_neighbour<'a>(family: &'a str, addr: &'a str, mac: &'a str, dev: &'a str) -> [&'a str; 10] {
    [family, "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud", "permanent"]
}

impl Drop for Pod {
    fn drop(&mut self) {
        // deleting one end deletes the pair; the namespace goes when `ns` drops
        let _ = std::process::Command::new("ip").args(["link", "del", &self.host_if]).output();
    }
}

/// Two namespaces joined directly by a veth pair (`eth0` in both), e.g. client and server.
pub struct NsPair {
    /// Side A (addresses `a4`/`a6`).
    pub a: Netns,
    /// Side B (addresses `b4`/`b6`).
    pub b: Netns,
    /// Addresses.
    pub addrs: LinkAddrs,
}

impl NsPair {
    /// Builds the pair with IPv4 and IPv6 addresses.
    pub fn new() -> Self {
        let (pid, n) = unique();
        let a = Netns::new();
        let b = Netns::new();
        let addrs = LinkAddrs::allocate(pid, n);
        let ia = format!("fva{pid}x{n}");
        let ib = format!("fvb{pid}x{n}");
        run("ip", &["link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns", &b.name]);
        a.ip(&["link", "set", &ia, "name", "eth0"]);
        b.ip(&["link", "set", &ib, "name", "eth0"]);
        a.ip(&["addr", "add", &format!("{}/30", addrs.a4), "dev", "eth0"]);
        b.ip(&["addr", "add", &format!("{}/30", addrs.b4), "dev", "eth0"]);
        a.ip(&["-6", "addr", "add", &format!("{}/64", addrs.a6), "dev", "eth0", "nodad"]);
        b.ip(&["-6", "addr", "add", &format!("{}/64", addrs.b6), "dev", "eth0", "nodad"]);
        a.ip(&["link", "set", "eth0", "up"]);
        b.ip(&["link", "set", "eth0", "up"]);
        Self { a, b, addrs }
    }
}

fn disable_ipv6_host(iface: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1");
}

fn mac_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("ip -j link");
    v[0]["address"].as_str().expect("address").to_owned()
}

/// Sends each of `packets` (whole IP packets, our own headers) `n` times to `dst` through a raw
/// socket of the calling thread's network namespace (the kernel fills in an IPv4 header's
/// checksum and id when they are zero).
pub fn raw_send(packets: &[Vec<u8>], dst: std::net::IpAddr, n: u64) {
    use std::net::IpAddr;
    // SAFETY: plain socket syscalls on a descriptor we own and close; the address structs are
    // zeroed and filled for their family.
    unsafe {
        let family = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        let fd = libc::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut v4: libc::sockaddr_in = std::mem::zeroed();
        let mut v6: libc::sockaddr_in6 = std::mem::zeroed();
        let (address, len): (*const libc::sockaddr, usize) = match dst {
            IpAddr::V4(ip) => {
                v4.sin_family = libc::AF_INET as u16;
                v4.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
                (std::ptr::from_ref(&v4).cast(), size_of::<libc::sockaddr_in>())
            }
            IpAddr::V6(ip) => {
                v6.sin6_family = libc::AF_INET6 as u16;
                v6.sin6_addr.s6_addr = ip.octets();
                (std::ptr::from_ref(&v6).cast(), size_of::<libc::sockaddr_in6>())
            }
        };
        for packet in packets {
            for _ in 0..n {
                let rc = libc::sendto(fd, packet.as_ptr().cast(), packet.len(), 0, address, len as u32);
                assert_eq!(rc, packet.len() as isize, "sendto: {}", std::io::Error::last_os_error());
            }
        }
        libc::close(fd);
    }
}
