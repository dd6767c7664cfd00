//! A TCP transfer between the two namespaces of an [`NsPair`], for tests that make the sender
//! retransmit (through a random drop the test installs) and then compare counts once every
//! retransmission is over.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::netns::{Netns, NsPair};

/// Bytes one [`transfer`] sends.
pub const BYTES: usize = 2 * 1024 * 1024;

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
