//! The real `fovea` binary, run by whole-agent tests: started with a config on free ports,
//! scraped like Prometheus would, stopped with SIGTERM or `kill -9`.
//!
//! Include it with `#[path = "support/agent.rs"] mod agent;` next to `mod support;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (released before returning; a tiny race is accepted).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A running `fovea run`; killed on drop.
pub struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The network namespace it runs in (`None`: this process's); its endpoints are there.
    netns: Option<String>,
    /// The prometheus exporter's endpoint (`exporters.prometheus`).
    pub metrics: SocketAddr,
    /// The agent's own telemetry endpoint.
    pub telemetry: SocketAddr,
}

/// How to start the agent.
pub struct Launch<'a> {
    /// Config file body; `None` runs the embedded default.
    pub config: Option<&'a str>,
    /// Extra `--set` overrides.
    pub sets: Vec<String>,
    /// Run under this wrapper (e.g. `capsh ... --`), as `sh -c`.
    pub wrapper: Option<&'a str>,
}

impl Agent {
    /// Starts `fovea run --config <yaml>` with `exporters.prometheus` and the own telemetry on
    /// free ports, and waits until it is ready.
    pub fn start(config: &str) -> Agent {
        Self::launch(Launch { config: Some(config), sets: Vec::new(), wrapper: None }).expect("fovea became ready")
    }

    /// Starts `fovea run --config <yaml>` inside the named network namespace (`ip netns exec`, as
    /// a node's agent runs in the node's namespace); its endpoints are reached from there.
    pub fn start_in(netns: &str, config: &str) -> Agent {
        Self::launch_netns(Launch { config: Some(config), sets: Vec::new(), wrapper: None }, Some(netns), &|code, _| {
            code == 200
        })
        .expect("fovea became ready")
    }

    /// Starts the agent; `Err((status, stdout+stderr))` when it exits before becoming ready.
    pub fn launch(l: Launch<'_>) -> Result<Agent, (ExitStatus, String)> {
        Self::launch_netns(l, None, &|code, _| code == 200)
    }

    /// Starts `fovea run --config <yaml>` and waits only until every component has started:
    /// `/readyz` may still say what it waits for (the Kubernetes cache not synced ...).
    pub fn start_unready(config: &str) -> Agent {
        let started = |code: u16, body: &str| code == 200 || body.starts_with("started");
        Self::launch_until(Launch { config: Some(config), sets: Vec::new(), wrapper: None }, started)
            .expect("fovea started")
    }

    /// Starts the agent and waits until `/readyz` answers what `ready(status, body)` accepts.
    pub fn launch_until(l: Launch<'_>, ready: impl Fn(u16, &str) -> bool) -> Result<Agent, (ExitStatus, String)> {
        Self::launch_netns(l, None, &ready)
    }

    fn launch_netns(
        l: Launch<'_>,
        netns: Option<&str>,
        ready: &dyn Fn(u16, &str) -> bool,
    ) -> Result<Agent, (ExitStatus, String)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let telemetry: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut args: Vec<String> = vec!["run".into()];
        if let Some(body) = l.config {
            let path = dir.path().join("fovea.yaml");
            std::fs::write(&path, body).expect("write config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        let has_prometheus = l.config.is_none_or(|c| c.contains("prometheus:"));
        if has_prometheus {
            args.push("--set".into());
            args.push(format!("exporters.prometheus.endpoint={metrics}"));
        }
        args.push("--set".into());
        args.push(format!("service.telemetry.metrics.address={telemetry}"));
        for s in &l.sets {
            args.push("--set".into());
            args.push(s.clone());
        }
        let exe = env!("CARGO_BIN_EXE_fovea");
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let mut cmd = match (l.wrapper, netns) {
            (None, Some(ns)) => {
                // `ip netns exec` execs fovea: the child's pid is fovea's
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, exe]).args(&args);
                c
            }
            (Some(wrapper), _) => {
                let quoted: Vec<String> =
                    std::iter::once(exe.to_string()).chain(args).map(|a| format!("'{a}'")).collect();
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("{wrapper} \"exec {}\"", quoted.join(" ")));
                c
            }
            (None, None) => {
                let mut c = Command::new(exe);
                c.args(&args);
                c
            }
        };
        cmd.env("RUST_LOG", "info").stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd.spawn().expect("spawn fovea");
        let mut agent = Agent { child: Some(child), dir, netns: netns.map(str::to_string), metrics, telemetry };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent.child_mut().try_wait().expect("try_wait") {
                let out = agent.output();
                agent.child = None;
                return Err((status, out));
            }
            if agent.get(telemetry, "/readyz").is_ok_and(|(code, body)| ready(code, &body)) {
                return Ok(agent);
            }
            assert!(Instant::now() < deadline, "fovea not ready after 30 s:\n{}", agent.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the agent is running")
    }

    /// `GET path` from the agent's network namespace.
    pub fn get(&self, address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
        let Some(ns) = &self.netns else { return http_get(address, path) };
        let (file, path) = (format!("/run/netns/{ns}"), path.to_string());
        std::thread::spawn(move || {
            let f = std::fs::File::open(&file)?;
            // SAFETY: a valid netns fd; setns affects only this thread.
            if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            http_get(address, &path)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the agent printed so far: stdout (debug exporter) then stderr (logs).
    pub fn output(&self) -> String {
        self.stdout() + &self.stderr()
    }

    /// Standard output so far (the debug exporter writes here).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Standard error so far (logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The exporter's `/metrics` text.
    pub fn scrape(&self) -> Exposition {
        self.scrape_at(self.metrics)
    }

    /// `/metrics` text of another endpoint (a second exporter, the own telemetry).
    pub fn scrape_at(&self, address: SocketAddr) -> Exposition {
        let (code, body) = self.get(address, "/metrics").unwrap_or_else(|e| panic!("scrape {address}: {e}"));
        assert_eq!(code, 200, "scrape {address}: {body}");
        Exposition(body)
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit status.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.pid() as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.wait(Duration::from_secs(30));
        (status, self.output())
    }

    /// `kill -9`, then reaps it.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "fovea did not exit:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Path of a file in the agent's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Exposition(pub String);

impl Exposition {
    /// Every sample of `name`: (labels, value).
    pub fn samples(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut out = Vec::new();
        for line in self.0.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            if metric == name {
                out.push((labels, value.parse().unwrap_or(f64::NAN)));
            }
        }
        out
    }

    /// The one sample of `name` whose labels include `labels`; `None` when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples(name)
            .into_iter()
            .filter(|(l, _)| labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, v)| v)
            .collect();
        assert!(matching.len() <= 1, "{name}{labels:?} matches {} series:\n{}", matching.len(), self.0);
        matching.first().copied()
    }

    /// Sum of `name` over every series whose labels include all of `labels`, as an integer
    /// count (0 when none matches).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.samples(name)
            .into_iter()
            .filter(|(l, _)| labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, v)| v as u64)
            .sum()
    }

    /// `value` as an integer count, 0 when the series does not exist (yet).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(name, labels).map_or(0, |v| v as u64)
    }

    /// The `# TYPE` of `name`.
    pub fn type_of(&self, name: &str) -> Option<String> {
        let prefix = format!("# TYPE {name} ");
        self.0.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').unwrap_or(after.len());
        out.insert(key.trim_start_matches(',').trim().to_string(), after[..end].to_string());
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out
}

/// `GET path` over HTTP/1.1 with `Connection: close`: (status, body). Bodies are small here
/// and not chunked by the agent's servers... but de-chunk anyway when asked.
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    Ok((code, body))
}

/// `POST path` with a body over HTTP/1.1 with `Connection: close`: (status, body bytes).
pub fn http_post(address: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, raw.get(split + 4..).unwrap_or_default().to_vec()))
}

fn dechunk(mut data: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = data.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        data = rest.get(n + 2..).unwrap_or_default();
    }
    out
}

/// Waits `n` collection intervals of `interval` plus a margin, so the next scrape reflects
/// everything the kernel counted before the call.
pub fn wait_collections(interval: Duration, n: u32) {
    std::thread::sleep(interval * n + Duration::from_millis(300));
}
