//! A TCP transfer between the two namespaces of an [`NsPair`] through a random drop, for tests
//! that make the sender retransmit and then compare counts once every retransmission is over.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::netns::{Netns, NsPair};

/// Bytes one [`transfer`] sends.
pub const BYTES: usize = 2 * 1024 * 1024;

/// The client (in `pair.a`) and server (in `pair.b`) addresses, IPv6 or IPv4.
pub fn endpoints(pair: &NsPair, ipv6: bool) -> (IpAddr, IpAddr) {
    if ipv6 { (pair.addrs.a6.into(), pair.addrs.b6.into()) } else { (pair.addrs.a4.into(), pair.addrs.b4.into()) }
}

/// Drops one in five of `client`'s segments to `port` at random at `pair.b`'s input, so the
/// client retransmits; they are counted in nft counter `dropped` of table `inet fovea_t`.
pub fn drop_one_in_five(pair: &NsPair, client: IpAddr, port: u16) {
    let ipf = if client.is_ipv6() { "ip6" } else { "ip" };
    pair.b.nft(&format!(
        "table inet fovea_t {{
            counter dropped {{}}
            chain input {{
                type filter hook input priority 0; policy accept;
                {ipf} saddr {client} tcp dport {port} numgen random mod 100 < 20 counter name \"dropped\" drop
            }}
        }}"
    ));
}

/// True while any socket on `port` in `ns` may still retransmit (anything but TIME-WAIT).
pub fn busy(ns: &Netns, port: u16) -> bool {
    let out = ns.exec("ss", &["-Htan", &format!("( sport = :{port} or dport = :{port} )")]);
    out.lines().any(|l| !l.starts_with("TIME-WAIT") && !l.starts_with("LISTEN") && !l.trim().is_empty())
}

/// Sends [`BYTES`] from pair.a to a server on `server`:`port` in pair.b, then waits until no
/// side can retransmit any more. Returns the client's address.
pub fn transfer(pair: &NsPair, server: IpAddr, port: u16) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = pair.b.spawn_in(move || {
        let listener = TcpListener::bind(SocketAddr::new(server, port)).expect("bind");
        tx.send(()).expect("ready");
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read");
        got.len()
    });
    rx.recv().expect("server ready");
    let client = pair.a.run_in(move || {
        let mut conn =
            TcpStream::connect_timeout(&SocketAddr::new(server, port), Duration::from_secs(30)).expect("connect");
        let local = conn.local_addr().expect("local");
        conn.write_all(&vec![0xab; BYTES]).expect("write");
        conn.shutdown(Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).expect("wait for the server's close");
        local
    });
    assert_eq!(srv.join().expect("server"), BYTES, "all bytes arrived");
    let deadline = Instant::now() + Duration::from_secs(60);
    while busy(&pair.a, port) || busy(&pair.b, port) {
        assert!(Instant::now() < deadline, "connection never finished closing");
        std::thread::sleep(Duration::from_millis(100));
    }
    client
}
