//! The deployment files (`deploy/`) as the real tools see them: `helm` (4 and 3), `kubectl
//! kustomize`, `kubernetes-validate` and `hadolint`, installed by `scripts/install-test-deps`
//! (helm and kubectl under `/opt/fovea-test-tools/bin`, or `$FOVEA_TEST_TOOLS`).
//!
//! Rendered YAML is read through Python's PyYAML into `serde_json::Value`s, one per object.
//! Include it with `#[path = "support/deploy.rs"] mod deploy;`. A missing tool skips the test
//! with the reason, and fails it under `CI=true`.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Helm chart.
pub fn chart() -> PathBuf {
    root().join("deploy/helm/fovea")
}

/// The chart's test values files (`ci/*-values.yaml`), by file name, sorted.
pub fn values_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(chart().join("ci"))
        .expect("deploy/helm/fovea/ci")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-values.yaml"))
        .collect();
    names.sort();
    names
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn missing(test: &str, what: &str) -> Option<PathBuf> {
    let msg = format!("{test}: {what} is not installed; run scripts/install-test-deps as root");
    if in_ci() {
        panic!("{msg} (CI=true, so this is a failure, not a skip)");
    }
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {msg}");
    None
}

/// `helm`, `helm3` or `kubectl` from the test tools directory.
pub fn tool(test: &str, name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FOVEA_TEST_TOOLS").map(PathBuf::from).unwrap_or("/opt/fovea-test-tools/bin".into());
    let path = dir.join(name);
    if path.is_file() { Some(path) } else { missing(test, &format!("`{}`", path.display())) }
}

/// A command on PATH (`hadolint`, `kubernetes-validate`, `python3`).
pub fn on_path(test: &str, name: &str) -> Option<PathBuf> {
    let found =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()));
    match found {
        Some(p) => Some(p),
        None => missing(test, &format!("`{name}` (on PATH)")),
    }
}

/// Output of a command: `(success, stdout, stderr)`.
pub fn output(cmd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stdout of a command that must succeed.
pub fn checked(cmd: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = output(cmd, args);
    assert!(ok, "{} {} failed:\n{stdout}\n{stderr}", cmd.display(), args.join(" "));
    stdout
}

/// `helm template fovea <chart> -n kube-system --include-crds [-f ci/<values>]`: the YAML text.
pub fn helm_template(helm: &Path, values: Option<&str>) -> String {
    let chart = chart();
    let values_path = values.map(|v| chart.join("ci").join(v));
    let mut args =
        vec!["template", "fovea", chart.to_str().expect("utf-8 path"), "--namespace", "kube-system", "--include-crds"];
    if let Some(v) = &values_path {
        args.extend(["-f", v.to_str().expect("utf-8 path")]);
    }
    checked(helm, &args)
}

/// Every object of a multi-document YAML text, parsed by PyYAML (empty documents left out).
pub fn objects(yaml: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (python3-yaml)");
    child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write YAML");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "YAML does not parse: {}\n{yaml}", String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout).expect("JSON from python3") {
        Value::Array(items) => items,
        other => panic!("expected a list of objects, got {other}"),
    }
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The single object of `kind`.
pub fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "exactly one {kind} expected, found {}", found.len());
    found[0]
}

/// The fovea configuration in the rendered ConfigMap, as text.
pub fn config_text(objects: &[Value]) -> String {
    one(objects, "ConfigMap")["data"]["config.yaml"].as_str().expect("data.config.yaml").to_string()
}

/// The fovea configuration in the rendered ConfigMap, parsed.
pub fn config(objects: &[Value]) -> Value {
    objects_single(&config_text(objects))
}

fn objects_single(yaml: &str) -> Value {
    let mut docs = objects(yaml);
    assert_eq!(docs.len(), 1, "one YAML document expected");
    docs.remove(0)
}

/// The port of a `host:port` listen address.
pub fn port_of(address: &str) -> u16 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("no port in {address}"))
}

/// Strings of a JSON array, sorted.
pub fn strings(value: &Value) -> Vec<String> {
    let mut out: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_string())
        .collect();
    out.sort();
    out
}

/// Strings of a JSON array, in order.
pub fn strings_unsorted(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_string())
        .collect()
}
