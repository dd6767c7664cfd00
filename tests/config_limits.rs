//! Hostile and clumsy config files through the real `fovea validate`: each is refused quickly,
//! in bounded memory, with a message that names the file, the position and what to do.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const VALID: &str = "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n";

/// Runs `fovea <args>`; kills it (and fails) if it has not finished after `limit`: a hang or a
/// runaway allocation must fail the test rather than the machine.
fn fovea(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fovea"));
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Bound the address space, so a regression aborts instead of swapping the machine.
    // SAFETY: setrlimit in the child before exec touches no state shared with the parent.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn fovea");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("fovea {args:?} did not finish within {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn validate(path: &Path) -> (Option<i32>, String) {
    let out = fovea(&["validate", "--config", &path.display().to_string()], &[], Duration::from_secs(60));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn alias_bomb_is_refused_at_its_alias() {
    let dir = tempfile::tempdir().unwrap();
    // The 472-byte "billion laughs" of the issue: nine levels of nine aliases.
    let mut text = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    let path = dir.path().join("bomb.yaml");
    std::fs::write(&path, &text).unwrap();
    let (code, stderr) = validate(&path);
    assert_eq!(code, Some(1), "{stderr}");
    let at = format!("{}:6:8: f::0: aliases expand this document past 100000 copied nodes", path.display());
    assert!(stderr.contains(&at), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "one problem: {stderr}");
}

#[test]
fn large_mappings_parse_in_linear_time_and_oversized_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 400k keys (6 MiB, under the 8 MiB cap): with a quadratic duplicate-key check this took
    // hours; linear, it takes seconds even in a debug build.
    let mut text = String::from(VALID);
    text.push_str("  resource:\n");
    for i in 0..400_000 {
        text.push_str(&format!("    k{i:06}: v\n"));
    }
    assert!(text.len() < 8 << 20);
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, &text).unwrap();
    let (code, stderr) = validate(&path);
    assert_eq!(code, Some(0), "{stderr}");

    let huge = dir.path().join("huge.yaml");
    let mut padded = String::from(VALID);
    padded.push_str(&"#".repeat(8 << 20));
    std::fs::write(&huge, padded).unwrap();
    let (code, stderr) = validate(&huge);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "{}:1:1: the file is larger than 8 MiB, the most a config file may be; check that --config names the right file",
            huge.display()
        )),
        "{stderr}"
    );
}

#[test]
fn long_values_are_cut_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(5 << 20);
    let path = dir.path().join("long.yaml");
    std::fs::write(&path, VALID.replace("linuxutil: {}", &format!("linuxutil: {{collection_interval: \"{long}\"}}")))
        .unwrap();
    let (code, stderr) = validate(&path);
    assert_eq!(code, Some(1));
    assert!(stderr.len() < 1000, "{} bytes of stderr", stderr.len());
    assert!(
        stderr.contains("receivers::linuxutil::collection_interval: invalid duration `xxxx")
            && stderr.contains("… (5242880 bytes)`"),
        "{stderr}"
    );

    // The same through an environment variable, which no file-size cap bounds (Linux allows
    // 128 KiB per variable).
    std::fs::write(&path, VALID.replace("debug: {}", "debug: {verbosity: \"${env:HUGE}\"}")).unwrap();
    let out = fovea(
        &["validate", "--config", &path.display().to_string()],
        &[("HUGE", &"y".repeat(100_000))],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.len() < 1000, "{} bytes of stderr", stderr.len());
    assert!(stderr.contains("unknown value `yyyy") && stderr.contains("… (100000 bytes)`"), "{stderr}");
}

#[test]
fn non_utf8_files_name_the_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    let mut bytes = b"receivers:\n  linuxutil: {}\n# caf".to_vec();
    bytes.push(0xe9); // é in Latin-1
    bytes.extend_from_slice(b"\n");
    std::fs::write(&path, bytes).unwrap();
    let (code, stderr) = validate(&path);
    assert_eq!(code, Some(1));
    let expected = format!(
        "{}:3:6: not valid UTF-8 at byte offset 32 (byte 0xe9); config files must be UTF-8: convert the file, e.g. with `iconv -t UTF-8`",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("check that the path exists"), "{stderr}");
}

#[test]
fn set_takes_yaml_flow_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, VALID.replace("exporters: [debug]", "exporters: [nope]")).unwrap();
    let file = path.display().to_string();
    let out = fovea(
        &["validate", "--config", &file, "--set", "service.pipelines.metrics.exporters=[debug]"],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
