//! The `fovea` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use fovea::config::service::MetricsLevel;
use fovea::config::{self, Sources};
use fovea::model::Signal;
use fovea::pipeline::Services;
use fovea::telemetry::{self, ComponentKind, Health, ProcessCollector, StatsRegistry, TelemetryServer};
use tokio_util::sync::CancellationToken;

/// Kubernetes network observability: eBPF probes counted in the kernel, shipped like an
/// OpenTelemetry Collector.
#[derive(Parser)]
#[command(name = "fovea", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// Config file; repeat to merge several in order. Without it, the embedded default is used.
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Override one key after merging, e.g. `--set exporters.prometheus.endpoint=127.0.0.1:9100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ConfigArgs {
    fn sources(&self) -> Sources {
        Sources { files: self.config.clone(), sets: self.set.clone() }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run(ConfigArgs),
    /// Check a configuration: parse it and build the whole graph without starting anything.
    Validate(ConfigArgs),
    /// List the component types: kind, type, signals, description.
    Components,
    /// Print the effective configuration after merging and substitution, secrets redacted.
    PrintConfig(ConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tune_malloc();
    // One TLS crypto provider (ring) for the whole process, before any client or server exists.
    fovea::tls::install_default_provider();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Validate(args) => validate(args),
        Command::Components => {
            components();
            Ok(ExitCode::SUCCESS)
        }
        Command::PrintConfig(args) => print_config(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// One glibc malloc arena. By default glibc gives threads their own arenas (up to 8 per CPU);
/// memory freed on another thread than the one that allocated it (a flow batch made on a blocking
/// thread, dropped by an exporter task) then stays resident in that arena. With 50 000 flows per
/// drain written to Parquet that kept ~40 MiB of freed memory (benches/flows_scale.sh: RSS 103 MiB
/// with glibc's default, 80 MiB with two arenas, 60 MiB with one, at the same CPU cost). Small
/// allocations still go through each thread's own cache (tcache), so the one arena's lock is rarely
/// taken. The `MALLOC_ARENA_MAX` environment variable still overrides it.
///
/// And fixed mmap and trim thresholds (256 KiB, 1 MiB). glibc's default threshold grows each time
/// a large mmapped block is freed (up to 32 MiB, with a trim threshold twice that), after which the
/// per-drain buffers of 50 000 flows (megabytes each) come from the heap and their memory stays
/// resident between drains: RSS 70.8 MiB, 54.6 MiB of it anonymous, against 49.2 MiB (32.9
/// anonymous) and a 61.4 MiB peak with the thresholds fixed, at the same CPU per drain within the
/// noise. `GLIBC_TUNABLES` or `MALLOC_MMAP_THRESHOLD_` in the environment leave glibc's own choice.
fn tune_malloc() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
    if std::env::var_os("GLIBC_TUNABLES").is_none() && std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
        }
    }
}

/// The error and its causes, leaving out causes whose text the message already contains (most of
/// our errors embed their cause).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// Loads the configuration and builds its graph. On failure, prints the warnings (unset
/// variables ...) before the problems, so they are seen even when the config is invalid.
fn build(args: &ConfigArgs) -> Result<(config::Document, fovea::pipeline::Graph), config::ConfigError> {
    let doc = config::load(&args.sources())?;
    let graph = build_doc(&doc)?;
    Ok((doc, graph))
}

fn build_doc(doc: &config::Document) -> Result<fovea::pipeline::Graph, config::ConfigError> {
    let resource = Arc::new(telemetry::resource::detect(doc));
    fovea::pipeline::build(doc, &fovea::components::builtin(), resource).inspect_err(|_| {
        for w in &doc.warnings {
            eprintln!("warning: {w}");
        }
    })
}

fn validate(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match build(&args) {
        Ok((_, graph)) => {
            for w in &graph.warnings {
                eprintln!("warning: {w}");
            }
            let n = graph.sizes();
            let connectors = if n.connectors > 0 { format!(", {} connectors", n.connectors) } else { String::new() };
            println!(
                "configuration is valid: pipelines [{}], {} receivers, {} processor instances{connectors}, {} exporters",
                graph.pipeline_ids().join(", "),
                n.receivers,
                n.processors,
                n.exporters
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn components() {
    let registry = fovea::components::builtin();
    // (kind, type with aliases, signals, description, metrics)
    let mut rows = Vec::new();
    for kind in ComponentKind::ALL {
        let mut factories: Vec<_> = registry.factories().iter().filter(|f| f.kind == kind).collect();
        factories.sort_by_key(|f| f.type_name);
        for f in factories {
            let signals: Vec<String> = if kind == ComponentKind::Connector {
                f.connects.iter().map(|(a, b)| format!("{a}->{b}")).collect()
            } else {
                f.signals.iter().map(|s: &Signal| s.as_str().to_string()).collect()
            };
            let mut name = f.type_name.to_string();
            if !f.aliases.is_empty() {
                name = format!("{name} ({})", f.aliases.join(", "));
            }
            let metrics: Vec<_> = f.metrics.iter().map(|m| m.name).collect();
            rows.push((kind.as_str(), name, signals.join(","), f.description, metrics.join(", ")));
        }
    }
    let width = |pick: fn(&(&str, String, String, &str, String)) -> usize, title: &str| {
        rows.iter().map(pick).chain([title.len()]).max().unwrap_or(0)
    };
    let (k, t, s) = (width(|r| r.0.len(), "KIND"), width(|r| r.1.len(), "TYPE"), width(|r| r.2.len(), "SIGNALS"));
    println!("{:<k$} {:<t$} {:<s$} DESCRIPTION", "KIND", "TYPE", "SIGNALS");
    for (kind, name, signals, description, metrics) in &rows {
        println!("{kind:<k$} {name:<t$} {signals:<s$} {description}");
        if !metrics.is_empty() {
            println!("{:<indent$}metrics: {metrics}", "", indent = k + t + s + 3);
        }
    }
}

/// Prints the merged configuration (secrets redacted) even when it is invalid, so it can be
/// inspected; an invalid one then exits 1 with its problems on stderr, as `validate` would.
fn print_config(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let doc = match config::load(&args.sources()) {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    print!("{}", config::render_redacted(&doc.root));
    match build_doc(&doc) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let (doc, graph) = match build(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    telemetry::logs::init(&graph.service.telemetry.logs);
    for w in &graph.warnings {
        tracing::warn!("{w}");
    }
    // A server needs more than the soft default of 1024 descriptors; take what the hard limit
    // allows, as Go programs (otelcol among them) do.
    if let Some(limit) = fovea::server::raise_fd_limit() {
        tracing::debug!(limit, "file descriptor limit");
    }
    let resource = Arc::new(telemetry::resource::detect(&doc));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let registry = Arc::new(StatsRegistry::default());
        registry.set_level(graph.service.telemetry.metrics.level);
        let health = Arc::new(Health::default());
        let services = Arc::new(Services::default());
        services.insert(health.clone());
        let telemetry_stop = CancellationToken::new();
        let own = &graph.service.telemetry.metrics;
        let mut servers = Vec::new();
        let mut pushers = Vec::new();
        if own.level != MetricsLevel::None {
            registry.register(Arc::new(ProcessCollector));
            for (address, options) in own.pull_endpoints() {
                let render = telemetry::readers::pull_render(options);
                let server = TelemetryServer::bind(&address, registry.clone(), health.clone(), render).await?;
                tracing::info!(%address, "own telemetry on /metrics, /healthz, /readyz");
                servers.push(tokio::spawn(server.serve(telemetry_stop.clone())));
            }
            for (i, reader) in own.periodic().enumerate() {
                let (reader, registry, resource, stop) =
                    (reader.clone(), registry.clone(), resource.clone(), telemetry_stop.clone());
                pushers.push(tokio::spawn(async move {
                    if let Err(e) = telemetry::readers::push(reader, i, registry, resource, stop).await {
                        tracing::error!(reader = i, error = %e, "pushing own metrics failed");
                    }
                }));
            }
        }
        let ready = health.clone();
        let stopping = health.clone();
        let stop = async move {
            shutdown_signal().await;
            // Not ready while stopping, so no new traffic is routed here.
            stopping.set_ready(false);
        };
        let report = graph
            .run(registry, services, stop, move || {
                ready.set_ready(true);
                // Loading probes parses the kernel's BTF (megabytes, freed again); give that
                // memory back to the system instead of keeping it resident for the agent's life.
                telemetry::release_freed_memory();
                tracing::info!("fovea is ready");
            })
            .await;
        health.set_ready(false);
        telemetry_stop.cancel();
        for task in servers.into_iter().chain(pushers) {
            let _ = task.await;
        }
        let report = report?;
        if report.failed.is_empty() && report.dropped_at_shutdown == 0 {
            Ok(ExitCode::SUCCESS)
        } else {
            Ok(ExitCode::FAILURE)
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
