//! DNS for tests: dnsmasq serving known records in a namespace, and `dig` batches that report
//! what the client saw.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};

use super::netns::Netns;

/// dnsmasq in a pod: `web.test` A 198.18.250.1 and AAAA 2001:db8:250::1, `info.test` TXT,
/// NXDOMAIN for any other name under `test`. Killed on drop.
pub struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    /// Serves on `addresses` in `ns`.
    pub fn start(ns: &Netns, addresses: &[IpAddr]) -> Self {
        Self::start_with(ns, addresses, &[])
    }

    /// Serves on `addresses` in `ns`, with more dnsmasq options (records).
    pub fn start_with(ns: &Netns, addresses: &[IpAddr], extra: &[String]) -> Self {
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            ns.name.clone(),
            "dnsmasq".into(),
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--no-poll".into(),
            "--pid-file=".into(),
            "--bind-interfaces".into(),
            "--user=root".into(),
            "--local=/test/".into(),
            "--host-record=web.test,198.18.250.1,2001:db8:250::1".into(),
            "--txt-record=info.test,fovea".into(),
        ];
        args.extend(addresses.iter().map(|a| format!("--listen-address={a}")));
        args.extend(extra.iter().cloned());
        let child =
            Command::new("ip").args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("dnsmasq");
        let d = Dnsmasq { child };
        super::wait_until("dnsmasq listens", || ns.exec("ss", &["-lnu"]).contains(":53 "));
        d
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What dig saw: answers by status, and queries that timed out.
#[derive(Debug, Default)]
pub struct Dig {
    /// Answers per status (`NOERROR`, `NXDOMAIN` ...).
    pub statuses: BTreeMap<String, u64>,
    /// Queries that got no answer.
    pub timeouts: u64,
}

/// Runs one `dig` in `ns` (`None`: this process's namespace) with a batch of `name type` lines
/// against `server`, one try each.
pub fn dig(ns: Option<&Netns>, server: &str, lines: &[&str], flags: &[&str]) -> Dig {
    let file = tempfile::NamedTempFile::new().expect("batch file");
    std::fs::write(file.path(), lines.join("\n") + "\n").expect("write batch");
    let path = file.path().display().to_string();
    let server = format!("@{server}");
    let mut args = match ns {
        Some(ns) => vec!["netns", "exec", ns.name.as_str(), "dig"],
        None => vec!["dig"],
    };
    let program = if ns.is_some() { "ip" } else { args.remove(0) };
    args.extend_from_slice(&[server.as_str(), "-f", &path]);
    args.extend_from_slice(&["+tries=1", "+time=1", "+noall", "+comments"]);
    args.extend_from_slice(flags);
    let out = Command::new(program).args(&args).output().expect("dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut d = Dig::default();
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            let status = rest.split(',').next().unwrap_or("").to_string();
            *d.statuses.entry(status).or_default() += 1;
        }
        if line.contains("timed out") {
            d.timeouts += 1;
        }
    }
    d
}

/// `n` copies of a batch line.
pub fn repeat(line: &'static str, n: usize) -> Vec<&'static str> {
    vec![line; n]
}
