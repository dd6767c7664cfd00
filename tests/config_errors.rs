//! Bad configurations: each one must produce a problem naming the file, the line, the full key
//! path and what to do, and all problems of a file must come in one report.

use std::sync::Arc;

use fovea::config::{self, ConfigError};
use fovea::model::Resource;

struct Case {
    name: &'static str,
    yaml: &'static str,
    /// Expected (path, line, message fragment) of every problem, in report order.
    problems: &'static [(&'static str, u32, &'static str)],
}

const PIPELINE: &str = "service:\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n";

fn check(yaml: &str) -> Result<(), ConfigError> {
    let doc = config::load_str("agent.yaml", yaml)?;
    fovea::pipeline::build(&doc, &fovea::components::builtin(), Arc::new(Resource::default())).map(|_| ())
}

fn run(case: &Case) {
    let full = if case.yaml.contains("service:") { case.yaml.to_string() } else { format!("{}{PIPELINE}", case.yaml) };
    let err = check(&full).expect_err(case.name);
    let got: Vec<_> =
        err.problems().iter().map(|p| (p.path.clone(), p.origin.as_ref().map(|o| o.line), p.message.clone())).collect();
    assert_eq!(got.len(), case.problems.len(), "{}: {got:#?}", case.name);
    for ((path, line, fragment), (gpath, gline, gmsg)) in case.problems.iter().zip(&got) {
        assert_eq!(gpath, path, "{}: path ({gmsg})", case.name);
        assert_eq!(*gline, Some(*line), "{}: line of {path} ({gmsg})", case.name);
        assert!(gmsg.contains(fragment), "{}: message `{gmsg}` should contain `{fragment}`", case.name);
    }
    for p in err.problems() {
        let origin = p.origin.as_ref().unwrap();
        assert!(origin.file.ends_with("agent.yaml"), "{}: file named in {p}", case.name);
    }
}

const BASE: &str = "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\n";

#[test]
fn bad_configs_name_file_line_path_and_fix() {
    let cases = [
        Case {
            name: "unknown section",
            yaml: "recievers:\n  linuxutil: {}\nexporters:\n  debug: {}\n",
            problems: &[
                ("recievers", 1, "unknown section; valid sections: receivers, processors, exporters"),
                (
                    "service::pipelines::metrics::receivers",
                    7,
                    "references receiver `linuxutil` which is not configured",
                ),
            ],
        },
        Case {
            name: "unknown receiver type",
            yaml: "receivers:\n  linuxutill: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutill], exporters: [debug]}\n",
            problems: &[(
                "receivers::linuxutill",
                2,
                "unknown receiver type `linuxutill`; valid types: dns, dropreason, flows, linuxutil, otlp, packetforward, tcpretrans",
            )],
        },
        Case {
            name: "unknown receiver key",
            yaml: "receivers:\n  linuxutil:\n    colection_interval: 1s\nexporters:\n  debug: {}\n",
            problems: &[(
                "receivers::linuxutil::colection_interval",
                3,
                "unknown field `colection_interval`; valid fields: collection_interval",
            )],
        },
        Case {
            name: "duration without unit",
            yaml: "receivers:\n  linuxutil:\n    collection_interval: 10\nexporters:\n  debug: {}\n",
            problems: &[("receivers::linuxutil::collection_interval", 3, "a duration needs a unit: write `10s`")],
        },
        Case {
            name: "unknown nested key",
            yaml: "receivers:\n  linuxutil:\n    interfaces:\n      includ: [eth0]\nexporters:\n  debug: {}\n",
            problems: &[(
                "receivers::linuxutil::interfaces::includ",
                4,
                "valid fields: enabled, include, exclude, statistics",
            )],
        },
        Case {
            name: "unknown interface statistic",
            yaml: "receivers:\n  linuxutil:\n    interfaces:\n      statistics:\n        - rx_packets\n        - rx_pakets\nexporters:\n  debug: {}\n",
            problems: &[(
                "receivers::linuxutil::interfaces::statistics::1",
                6,
                "unknown statistic `rx_pakets`; valid statistics: rx_packets",
            )],
        },
        Case {
            name: "batch max below size",
            yaml: "receivers:\n  linuxutil: {}\nprocessors:\n  batch:\n    send_batch_size: 100\n    send_batch_max_size: 10\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], processors: [batch], exporters: [debug]}\n",
            problems: &[("processors::batch::send_batch_max_size", 6, "at least send_batch_size (100)")],
        },
        Case {
            name: "integer expected",
            yaml: "receivers:\n  linuxutil: {}\nprocessors:\n  batch:\n    send_batch_size: many\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], processors: [batch], exporters: [debug]}\n",
            problems: &[("processors::batch::send_batch_size", 5, "expected an integer, found a string")],
        },
        Case {
            name: "bad enum value lists choices",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug:\n    verbosity: loud\n",
            problems: &[(
                "exporters::debug::verbosity",
                5,
                "unknown value `loud`; valid values: basic, normal, detailed",
            )],
        },
        Case {
            name: "reference to an undefined exporter",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    metrics:\n      receivers: [linuxutil]\n      exporters:\n        - debug\n        - prometheus\n",
            problems: &[(
                "service::pipelines::metrics::exporters",
                11,
                "references exporter `prometheus` which is not configured under `exporters:`; configured: [debug]",
            )],
        },
        Case {
            name: "pipeline without receivers or exporters",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    metrics:\n      processors: []\n",
            problems: &[
                ("service::pipelines::metrics::receivers", 8, "a pipeline needs at least one receiver"),
                ("service::pipelines::metrics::exporters", 8, "a pipeline needs at least one exporter"),
            ],
        },
        Case {
            name: "unknown pipeline signal",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    traces: {receivers: [linuxutil], exporters: [debug]}\n",
            problems: &[(
                "service::pipelines::traces",
                7,
                "fovea carries no traces; valid pipeline signals: metrics, flows",
            )],
        },
        Case {
            name: "component on a pipeline of a signal it cannot handle",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    flows:\n      receivers: [linuxutil]\n      exporters: [debug]\n",
            problems: &[(
                "service::pipelines::flows::receivers",
                8,
                "receiver `linuxutil` cannot handle flows (it supports: metrics)",
            )],
        },
        Case {
            name: "duplicate yaml key",
            yaml: "receivers:\n  linuxutil: {}\n  linuxutil: {collection_interval: 1s}\nexporters:\n  debug: {}\n",
            problems: &[("receivers::linuxutil", 3, "duplicate key (first defined at ")],
        },
        Case {
            name: "yaml syntax error",
            yaml: "receivers:\n  linuxutil: {collection_interval: 1s\nexporters:\n  debug: {}\n",
            problems: &[("", 3, "YAML syntax error")],
        },
        Case {
            name: "invalid environment variable name",
            yaml: "receivers:\n  linuxutil:\n    collection_interval: ${env:1BAD}\nexporters:\n  debug: {}\n",
            problems: &[("receivers::linuxutil::collection_interval", 3, "invalid environment variable name `1BAD`")],
        },
        Case {
            name: "removed logging exporter",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  logging: {}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [logging]}\n",
            problems: &[("exporters::logging", 4, "the logging exporter was replaced by `debug`")],
        },
        Case {
            name: "unknown service key",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  pipeline:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n",
            problems: &[
                ("service::pipeline", 6, "unknown field `pipeline`; valid fields: extensions, pipelines, telemetry"),
                ("service::pipelines", 6, "at least one pipeline is required"),
            ],
        },
        Case {
            name: "bad telemetry level",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  telemetry:\n    logs:\n      level: verbose\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n",
            problems: &[("service::telemetry::logs::level", 8, "valid values: debug, info, warn, error")],
        },
        Case {
            name: "invalid component id",
            yaml: "receivers:\n  linuxutil/: {}\nexporters:\n  debug: {}\n",
            problems: &[
                ("receivers::linuxutil/", 2, "the part after / must not be empty"),
                (
                    "service::pipelines::metrics::receivers",
                    7,
                    "references receiver `linuxutil` which is not configured",
                ),
            ],
        },
        Case {
            name: "unsupported extension type and references to unconfigured extensions",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nextensions:\n  health_check: {}\n  file_storage: {directory: /var/lib/otelcol}\nservice:\n  extensions: [health_check, pprof, health_check]\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n",
            problems: &[
                (
                    "extensions::file_storage",
                    7,
                    "the `file_storage` extension is not supported by fovea; fovea keeps persistent queues itself: set sending_queue::storage::directory on the exporter; supported extensions: health_check, pprof, zpages",
                ),
                (
                    "service::extensions::1",
                    9,
                    "references extension `pprof` which is not configured under `extensions:`; configured: [health_check, file_storage]",
                ),
                ("service::extensions::2", 9, "`health_check` is listed twice"),
            ],
        },
        Case {
            name: "sending_queue sizers fovea does not count by",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  otlp:\n    endpoint: c:4317\n    sending_queue:\n      sizer: items\n      batch: {sizer: bytes, min_size: 100, max_size: 10}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [otlp]}\n",
            problems: &[
                ("exporters::otlp::sending_queue::sizer", 7, "only `requests` is supported"),
                ("exporters::otlp::sending_queue::batch::sizer", 8, "only `items` is supported"),
                (
                    "exporters::otlp::sending_queue::batch::max_size",
                    8,
                    "must be 0 (no limit) or at least min_size (100)",
                ),
            ],
        },
        Case {
            name: "extension settings are checked like any component's",
            yaml: "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nextensions:\n  health_check: {endpoint: \"localhost:\", check_collector_pipeline: {enabled: true}, cors: {allowed_origins: [\"*\"]}, auth: {authenticator: basicauth}}\n  pprof: {block_profile_fraction: 3}\nservice:\n  extensions: [health_check, pprof]\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n",
            problems: &[
                ("extensions::health_check::endpoint", 6, "is not host:port (no port after `:`)"),
                (
                    "extensions::health_check::check_collector_pipeline::enabled",
                    6,
                    "not supported (deprecated in otelcol too)",
                ),
                ("extensions::health_check::cors", 6, "not supported: the health endpoint is for probes"),
                ("extensions::health_check::auth", 6, "not supported: fovea has no authenticator extensions"),
                ("extensions::pprof::block_profile_fraction", 7, "a Go runtime setting with no equivalent in fovea"),
            ],
        },
        Case {
            name: "netstat include needs group and name",
            yaml: "receivers:\n  linuxutil:\n    netstat:\n      include: [TCPTimeouts]\nexporters:\n  debug: {}\n",
            problems: &[("receivers::linuxutil::netstat::include::0", 4, "must be Group:Name")],
        },
    ];
    for case in &cases {
        run(case);
    }
    assert!(cases.len() >= 15);
}

#[test]
fn all_problems_come_in_one_report_in_reading_order() {
    let yaml = "receivers:\n  linuxutil:\n    collection_interval: 1x\nprocessors:\n  batch: {timeout: 5}\nexporters:\n  debug: {verbosity: loud}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil, nope], processors: [batch], exporters: [debug]}\n";
    let err = check(yaml).unwrap_err();
    let lines: Vec<u32> = err.problems().iter().map(|p| p.origin.as_ref().unwrap().line).collect();
    assert_eq!(lines, vec![3, 5, 7, 10]);
    let text = err.to_string();
    assert!(text.starts_with("invalid configuration: 4 problems\n"), "{text}");
}

#[test]
fn valid_config_with_env_and_set_builds() {
    let yaml = format!("{BASE}{PIPELINE}");
    assert!(check(&yaml).is_ok());
    let with_env = "receivers:\n  linuxutil:\n    collection_interval: ${env:INTERVAL:-2s}\nexporters:\n  debug: {}\n";
    assert!(check(&format!("{with_env}{PIPELINE}")).is_ok());
}

#[test]
fn validate_command_exits_1_and_prints_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "receivers:\n  linuxutil: {colection_interval: 1s}\nexporters:\n  debug: {verbosity: loud}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:2:15: receivers::linuxutil::colection_interval: unknown field")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{file}:4:22: exporters::debug::verbosity: unknown value `loud`")), "{stderr}");

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, format!("{BASE}{PIPELINE}")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["validate", "--config"])
        .arg(&good)
        .args(["--set", "receivers.linuxutil.collection_interval=3s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["validate", "--config"])
        .arg(&good)
        .args(["--set", "receivers.linuxutil.collection_interval=3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--set:1:1: receivers::linuxutil::collection_interval: a duration needs a unit")
    );
}

#[test]
fn every_problem_of_a_component_and_of_service_comes_in_one_pass() {
    let yaml = "receivers:
  linuxutil:
    colection_interval: 1s
    collection_interval: 5 s
    netstat: {enabld: true}
    interfaces:
      statistics: [rx_packets, rx_pakets, tx_bytes, tx_bites]
    sockets: {enabled: maybe}
exporters:
  debug: {verbosity: loud, sampling_initial: -1}
service:
  telemetry:
    logs: {level: verbose, encoding: xml}
    metrics: {level: everything, adress: x}
  pipelines:
    metrics: {receivers: [linuxutil], exporters: [debug]}
";
    let err = check(yaml).unwrap_err();
    let got: Vec<(String, u32)> =
        err.problems().iter().map(|p| (p.path.clone(), p.origin.as_ref().map_or(0, |o| o.line))).collect();
    let expected = [
        ("receivers::linuxutil::colection_interval", 3),
        ("receivers::linuxutil::collection_interval", 4),
        ("receivers::linuxutil::netstat::enabld", 5),
        ("receivers::linuxutil::interfaces::statistics::1", 7),
        ("receivers::linuxutil::interfaces::statistics::3", 7),
        ("receivers::linuxutil::sockets::enabled", 8),
        ("exporters::debug::verbosity", 10),
        ("exporters::debug::sampling_initial", 10),
        ("service::telemetry::logs::level", 13),
        ("service::telemetry::logs::encoding", 13),
        ("service::telemetry::metrics::adress", 14),
        ("service::telemetry::metrics::level", 14),
    ];
    let expected: Vec<(String, u32)> = expected.iter().map(|(p, l)| (p.to_string(), *l)).collect();
    let mut sorted = got.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want, "{err}");
    assert!(err.to_string().starts_with("invalid configuration: 12 problems\n"), "{err}");
    let stat = err.problems().iter().find(|p| p.path.ends_with("statistics::3")).unwrap();
    assert!(stat.message.contains("unknown statistic `tx_bites`"), "{}", stat.message);
}
