//! A real Prometheus server for integration tests, and the small HTTP client the tests use.
//!
//! [`Prometheus::start`] runs Debian's `/usr/bin/prometheus` on 127.0.0.1 on a free port with a
//! temporary storage directory and kills it on drop. Scrape targets are optional, so the same
//! server can act as a remote-write receiver (`Options::remote_write_receiver`). [`Prometheus::query`]
//! runs PromQL through the HTTP API and returns `(labels, value)` pairs; [`Prometheus::raw_samples`]
//! returns every stored sample of a selector. [`Prometheus::stop`] and [`Prometheus::restart`]
//! take the server down and bring it back on the same address with the same data (outage tests).
//!
//! Include it from a test file with `#[path = "support/prometheus.rs"] mod prometheus_server;`.
//! When a binary is missing the test is skipped with a message, except with `CI=true`, where it
//! fails: CI must have every tool.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when running in CI (`CI=true`), where missing tools fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The path of tool `name` (PATH, then /usr/bin, /usr/local/bin). When missing: prints why the
/// test is skipped and returns `None`, or panics under `CI=true`.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = from_path
        .into_iter()
        .chain([Path::new("/usr/bin").join(name), Path::new("/usr/local/bin").join(name)])
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = format!("`{name}` is not installed (Debian package `prometheus`: apt-get install prometheus)");
        if in_ci() {
            panic!("{msg}; CI=true, so this test fails instead of skipping");
        }
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// A free TCP port on 127.0.0.1 (released before returning; a tiny race is accepted).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// One scrape job.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// `job_name`.
    pub job: String,
    /// `host:port` to scrape.
    pub address: SocketAddr,
    /// `metrics_path`.
    pub path: String,
    /// Keep the target's own `job` / `instance` labels.
    pub honor_labels: bool,
}

impl ScrapeTarget {
    /// Scrapes `address` at `/metrics` under `job`, not honoring the target's labels.
    pub fn new(job: &str, address: SocketAddr) -> Self {
        ScrapeTarget { job: job.to_string(), address, path: "/metrics".to_string(), honor_labels: false }
    }
}

/// How to start Prometheus.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scrape jobs (may be empty).
    pub targets: Vec<ScrapeTarget>,
    /// Global scrape interval (default 1s).
    pub scrape_interval: Duration,
    /// Pass `--web.enable-remote-write-receiver`.
    pub remote_write_receiver: bool,
    /// More command-line flags.
    pub extra_args: Vec<String>,
    /// A `scrape_configs:` section of its own, used instead of `targets`.
    pub scrape_configs: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            targets: Vec::new(),
            scrape_interval: Duration::from_secs(1),
            remote_write_receiver: false,
            extra_args: Vec::new(),
            scrape_configs: None,
        }
    }
}

/// A running Prometheus; killed on drop.
pub struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    /// Where its HTTP API listens.
    pub address: SocketAddr,
    /// The binary and its arguments, to start it again after [`Prometheus::stop`].
    command: (PathBuf, Vec<String>),
    stopped: bool,
}

/// Stored samples of one series: `(labels including __name__, [(timestamp ms, value)])`.
pub type Series = Vec<(BTreeMap<String, String>, Vec<(i64, f64)>)>;

/// PromQL results: `(labels including __name__, value)`.
pub type Samples = Vec<(BTreeMap<String, String>, f64)>;

fn config_yaml(opts: &Options) -> String {
    let secs = opts.scrape_interval.as_secs_f64();
    let mut y = format!("global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n");
    if let Some(section) = &opts.scrape_configs {
        y.push_str(section);
    } else if opts.targets.is_empty() {
        y.push_str("scrape_configs: []\n");
    } else {
        y.push_str("scrape_configs:\n");
        for t in &opts.targets {
            y.push_str(&format!(
                "  - job_name: '{}'\n    honor_labels: {}\n    metrics_path: '{}'\n    static_configs:\n      - targets: ['{}']\n",
                t.job, t.honor_labels, t.path, t.address
            ));
        }
    }
    y
}

impl Prometheus {
    /// Starts Prometheus and waits until it is ready; `None` when the binary is missing (skip).
    pub fn start(opts: Options) -> Option<Self> {
        let binary = require_tool("prometheus")?;
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir for prometheus");
            let config = dir.path().join("prometheus.yml");
            std::fs::write(&config, config_yaml(&opts)).expect("write prometheus.yml");
            let address: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut args = vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address={address}"),
                "--log.level=warn".to_string(),
            ];
            args.extend(opts.extra_args.iter().cloned());
            if opts.remote_write_receiver {
                args.push("--web.enable-remote-write-receiver".to_string());
            }
            let child = spawn(&binary, &args, &dir.path().join("prometheus.log"));
            let mut p = Prometheus { child, dir, address, command: (binary.clone(), args), stopped: false };
            if p.wait_ready(Duration::from_secs(30)) {
                return Some(p);
            }
            last_log = p.log();
        }
        panic!("prometheus did not become ready (3 attempts); last log:\n{last_log}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if get(self.address, "/-/ready", &[]).is_ok_and(|r| r.status == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10s), keeping its data for [`Prometheus::restart`].
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; it has not been reaped yet, so the pid is still ours.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stopped = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stopped = true;
    }

    /// Starts the server again after [`Prometheus::stop`]: same address, same data directory.
    pub fn restart(&mut self) {
        assert!(self.stopped, "restart() needs a stopped server");
        let (binary, args) = self.command.clone();
        let log = self.dir.path().join("prometheus.log");
        for _ in 0..50 {
            self.child = spawn(&binary, &args, &log);
            self.stopped = false;
            if self.wait_ready(Duration::from_secs(60)) {
                return;
            }
            // The port may still be held briefly by the old process's sockets: try again.
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.stopped = true;
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus did not come back on {}; log:\n{}", self.address, self.log());
    }

    /// Every sample stored for `selector` in the `range` (e.g. `10m`) before `at` (Unix seconds),
    /// per series, in timestamp order.
    pub fn raw_samples(&self, selector: &str, range: &str, at: f64) -> Series {
        let promql = format!("{selector}[{range}]");
        let path = format!("/api/v1/query?query={}&time={at:.3}", percent_encode(&promql));
        let r = get(self.address, &path, &[]).unwrap_or_else(|e| panic!("query {promql}: {e}"));
        let body: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("query {promql}: bad JSON ({e}): {}", String::from_utf8_lossy(&r.body)));
        if body["status"] != "success" || body["data"]["resultType"] != "matrix" {
            panic!("query {promql} failed: {body}");
        }
        let series = body["data"]["result"].as_array().cloned().unwrap_or_default();
        series
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                    .unwrap_or_default();
                let values = r["values"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .map(|v| {
                                let ts = v[0].as_f64().unwrap_or_else(|| panic!("timestamp in {v}"));
                                let value = v[1].as_str().and_then(|t| t.parse().ok()).unwrap_or(f64::NAN);
                                ((ts * 1000.0).round() as i64, value)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (labels, values)
            })
            .collect()
    }

    /// Prometheus's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:port<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The remote-write receiver URL (needs `Options::remote_write_receiver`).
    pub fn remote_write_url(&self) -> String {
        self.url("/api/v1/write")
    }

    /// Runs an instant PromQL query; panics with the API's error on failure.
    pub fn query(&self, promql: &str) -> Samples {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let r = get(self.address, &path, &[]).unwrap_or_else(|e| panic!("query {promql}: {e}"));
        let body: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("query {promql}: bad JSON ({e}): {}", String::from_utf8_lossy(&r.body)));
        if body["status"] != "success" {
            panic!("query {promql} failed: {body}");
        }
        let data = &body["data"];
        let parse = |v: &serde_json::Value| -> f64 {
            let text = v[1].as_str().unwrap_or_else(|| panic!("query {promql}: value without text: {v}"));
            text.parse().unwrap_or_else(|_| panic!("query {promql}: value {text} is not a number"))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            let labels = r["metric"]
                                .as_object()
                                .map(|m| {
                                    m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect()
                                })
                                .unwrap_or_default();
                            (labels, parse(&r["value"]))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Some("scalar") => vec![(BTreeMap::new(), parse(&data["result"]))],
            other => panic!("query {promql}: unsupported result type {other:?}: {body}"),
        }
    }

    /// The types Prometheus recorded for metric family `name` (`/api/v1/metadata`).
    pub fn metadata_types(&self, name: &str) -> Vec<String> {
        let path = format!("/api/v1/metadata?metric={}", percent_encode(name));
        let r = get(self.address, &path, &[]).unwrap_or_else(|e| panic!("metadata {name}: {e}"));
        let body: serde_json::Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("metadata {name}: {e}"));
        body["data"][name]
            .as_array()
            .map(|entries| entries.iter().filter_map(|e| e["type"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// Repeats `query` until `done` accepts the result or `timeout` passes; returns the last
    /// result either way (assert on it to get a useful message).
    pub fn wait_for(&self, promql: &str, timeout: Duration, done: impl Fn(&Samples) -> bool) -> Samples {
        let end = Instant::now() + timeout;
        loop {
            let r = self.query(promql);
            if done(&r) || Instant::now() >= end {
                return r;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every scrape target is up (`up == 1`), panicking with the log otherwise.
    pub fn wait_targets_up(&self, count: usize, timeout: Duration) {
        let r = self.wait_for("up == 1", timeout, |r| r.len() >= count);
        assert!(r.len() >= count, "only {} of {count} targets up: {r:?}\nprometheus log:\n{}", r.len(), self.log());
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &Path, args: &[String], log_path: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", log_path.display()));
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()))
}

/// Labels from `[("k", "v"), ...]`, for comparing with query results.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` (with query) on `address`, HTTP/1.1 with `Connection: close`.
pub fn get(address: impl ToSocketAddrs, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    request(address, "GET", path, headers, &[])
}

/// `POST path` with `body`.
pub fn post(
    address: impl ToSocketAddrs,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    request(address, "POST", path, headers, body)
}

/// One HTTP/1.1 request on a fresh connection.
pub fn request(
    address: impl ToSocketAddrs,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let addr = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status =
        status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Response { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
