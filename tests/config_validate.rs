//! `fovea validate` says no to everything `fovea run` would refuse (addresses, TLS files, queue
//! directories, unset variables), and `fovea print-config` shows a config without its secrets
//! and exits 1 when it is invalid.

#[path = "support/agent.rs"]
mod agent;

use std::process::Command;

use agent::{free_port, http_get};

const BASE: &str = "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n";

fn fovea(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fovea")).args(args).envs(env.iter().copied()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn telemetry_address_follows_the_listen_address_rules_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "a.yaml", BASE);
    for (address, why) in [
        ("notanaddr", "`notanaddr` is not host:port (no port)"),
        ("\"127.0.0.1:\"", "`127.0.0.1:` is not host:port (no port after `:`)"),
        ("127.0.0.1:99999", "the port must be a number from 0 to 65535"),
    ] {
        let (code, _, stderr) = fovea(
            &["validate", "--config", &file, "--set", &format!("service.telemetry.metrics.address={address}")],
            &[],
        );
        assert_eq!(code, Some(1), "{address}: {stderr}");
        assert!(
            stderr.contains("--set:1:1: service::telemetry::metrics::address: `") && stderr.contains(why),
            "{stderr}"
        );
    }
    // Host names are fine for every listener, as they are for exporter endpoints, and run agrees.
    let port = free_port();
    let set = format!("service.telemetry.metrics.address=localhost:{port}");
    let (code, _, stderr) = fovea(&["validate", "--config", &file, "--set", &set], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut run = Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["run", "--config", &file, "--set", &set])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http_get(([127, 0, 0, 1], port).into(), "/readyz").map(|r| r.0).ok() != Some(200) {
        if let Some(status) = run.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("run refused localhost:{port} ({status}): {err}");
        }
        assert!(std::time::Instant::now() < deadline, "not ready on localhost:{port}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run.kill().unwrap();
    run.wait().unwrap();
}

#[test]
fn missing_tls_files_and_unusable_queue_directories_are_found_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem").display().to_string();
    let not_pem = write(&dir, "garbage.pem", "not a certificate\n");
    let a_file = write(&dir, "plain-file", "x");
    let config = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: \"127.0.0.1:0\", tls: {{cert_file: {missing}, key_file: {missing}}}}}
exporters:
  otlp:
    endpoint: collector:4317
    tls: {{ca_file: {not_pem}}}
    sending_queue: {{storage: {{directory: {a_file}/queue}}}}
service:
  pipelines:
    metrics: {{receivers: [otlp], exporters: [otlp]}}
"
    );
    let file = write(&dir, "tls.yaml", &config);
    let (code, _, stderr) = fovea(&["validate", "--config", &file], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        format!(
            ":4:56: receivers::otlp::protocols::grpc::tls::cert_file: cannot read tls::cert_file file {missing}: No such file or directory"
        ),
        ":8:20: exporters::otlp::tls::ca_file: tls::ca_file holds no PEM CERTIFICATE".to_string(),
        format!(
            ":9:42: exporters::otlp::sending_queue::storage::directory: {a_file} is not a directory, so {a_file}/queue cannot be used"
        ),
    ] {
        assert!(stderr.contains(&expected), "missing `{expected}` in:\n{stderr}");
    }
    assert!(stderr.starts_with("invalid configuration: 3 problems"), "{stderr}");
}

#[test]
fn unset_variables_are_named_where_they_cause_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = BASE
        .replace("linuxutil: {}", "linuxutil: {collection_interval: \"${env:FOVEA_TEST_INTERVAL}\"}")
        .replace("debug: {}", "debug: {verbosity: loud}");
    let file = write(&dir, "env.yaml", &config);
    let (code, _, stderr) = fovea(&["validate", "--config", &file], &[]);
    assert_eq!(code, Some(1));
    let expected = format!(
        "{file}:2:36: receivers::linuxutil::collection_interval: invalid duration ``: it is empty; write a number with a unit, such as 200ms, 10s, 5m or 1h30m; `${{env:FOVEA_TEST_INTERVAL}}` at {file}:2:36 is not set and has no default, so the value is empty: set FOVEA_TEST_INTERVAL or write a default, `${{env:FOVEA_TEST_INTERVAL:-value}}`"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // The other problem is reported too, and the warning is printed although the config is invalid.
    assert!(stderr.contains("exporters::debug::verbosity: unknown value `loud`"), "{stderr}");
    assert!(
        stderr.starts_with("warning: receivers::linuxutil::collection_interval: `${env:FOVEA_TEST_INTERVAL}`"),
        "{stderr}"
    );
    let (code, _, _) = fovea(&["validate", "--config", &file], &[("FOVEA_TEST_INTERVAL", "2s")]);
    assert_eq!(code, Some(1), "only the verbosity is left");
}

#[test]
fn print_config_redacts_url_credentials_and_exits_1_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let config = BASE.replace(
        "debug: {}",
        "debug: {}\n  prometheusremotewrite:\n    endpoint: \"http://user:PASS@prom:9090/api/v1/write?token=T0K&tenant=a\"\n    headers: {authorization: Bearer B}\n",
    );
    let file = write(&dir, "p.yaml", &config);
    let (code, stdout, stderr) = fovea(&["print-config", "--config", &file], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("endpoint: http://user:[REDACTED]@prom:9090/api/v1/write?token=[REDACTED]&tenant=a"),
        "{stdout}"
    );
    for secret in ["PASS", "T0K", "Bearer"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }

    let bad = write(&dir, "bad.yaml", &config.replace("debug: {}", "debug: {verbosity: loud}"));
    let (code, stdout, stderr) = fovea(&["print-config", "--config", &bad], &[]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("verbosity: loud"), "still printed: {stdout}");
    assert!(stderr.contains("exporters::debug::verbosity: unknown value `loud`"), "{stderr}");
}

/// Every ready-made file under `config/` (the embedded default, Retina's three modes) is valid as
/// shipped; the local context's node filter reads K8S_NODE_NAME.
#[test]
fn every_shipped_config_file_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["basic.yaml", "default.yaml", "local-context.yaml", "remote-context.yaml"]);
    for file in &files {
        let (code, stdout, stderr) =
            fovea(&["validate", "--config", &file.display().to_string()], &[("K8S_NODE_NAME", "node-1")]);
        assert_eq!(code, Some(0), "{}: {stdout}{stderr}", file.display());
        assert!(!stderr.contains("warning"), "{}: {stderr}", file.display());
    }
}

/// packetforward's `exclude_pod_interfaces` without a flows receiver that reports those
/// interfaces' totals would count them nowhere: `validate` says so (a warning: the config runs).
#[test]
fn pod_interfaces_left_to_a_flows_receiver_that_is_not_there_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = |flows: &str, receivers: &str| {
        format!(
            "receivers:\n  packetforward: {{exclude_pod_interfaces: ['veth*']}}\n{flows}exporters:\n  debug: {{}}\nservice:\n  pipelines:\n    metrics: {{receivers: [{receivers}], exporters: [debug]}}\n"
        )
    };
    let warning = "receivers::packetforward::exclude_pod_interfaces leaves pod interfaces to the flows receiver, but no flows receiver in a metrics pipeline reports their totals";
    for (flows, receivers, warned) in [
        ("", "packetforward", true),
        ("  flows: {}\n", "packetforward, flows", true),
        ("  flows: {forward_metrics: pods}\n", "packetforward, flows", false),
        ("  flows: {forward_metrics: true}\n", "packetforward, flows", false),
    ] {
        let file = write(&dir, "a.yaml", &config(flows, receivers));
        let (code, stdout, stderr) = fovea(&["validate", "--config", &file], &[]);
        assert_eq!(code, Some(0), "{flows}: {stdout}{stderr}");
        assert_eq!(stderr.contains(warning), warned, "{flows}: {stderr}");
    }
}
