//! The `pprof` extension: CPU profiles of the agent on demand, in the format `go tool pprof`
//! reads, as otelcol's pprof extension serves them: `GET /debug/pprof/profile?seconds=N`
//! samples every thread 99 times a second for N seconds (default 30) and answers the
//! gzip-compressed profile. With `save_to_file`, the agent is profiled from start to stop and
//! the profile written there. Loopback only by default: a profile reveals the agent's internals.

mod config;
pub mod profile;

use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

pub use config::PprofConfig;

use super::ExtensionError;
use crate::config::parse_component;
use crate::pipeline::{BuildContext, Built, ComponentError, Extension, ExtensionContext, Factory};
use crate::server::{GuardedListener, serve_http};
use crate::telemetry::ComponentKind;

/// Samples per second, as Go's CPU profiler takes them (a prime, so sampling does not beat
/// with periodic work).
const FREQUENCY: i32 = 99;
/// Longest profile served on demand.
const MAX_SECONDS: u64 = 300;
/// Frames of these libraries are left out of stacks (the signal handler's own frames).
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Extension,
        type_name: "pprof",
        aliases: &[],
        signals: &[],
        connects: &[],
        description: "serves CPU profiles of the agent on /debug/pprof/profile (go tool pprof format)",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: PprofConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Extension(Box::new(Pprof { config, listener: None, whole_run: None })))
        },
    }
}

/// The `pprof` extension.
pub struct Pprof {
    config: PprofConfig,
    listener: Option<GuardedListener>,
    /// `save_to_file`: the thread holding the profiler until told to stop.
    whole_run: Option<WholeRun>,
}

/// The `save_to_file` profile: the sender that stops it and the thread that writes it.
type WholeRun = (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<Result<(), String>>);

/// Takes a CPU profile of `duration` (blocking the calling thread) and encodes it; `Err` when
/// another profile is being taken (the profiler is one per process).
fn take_profile(duration: Duration) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&BLOCKLIST)
        .build()
        .map_err(|e| format!("cannot start CPU profiling: {e}"))?;
    std::thread::sleep(duration);
    finish(&guard)
}

fn finish(guard: &pprof::ProfilerGuard<'_>) -> Result<Vec<u8>, String> {
    let report = guard.report().build().map_err(|e| format!("cannot build the profile: {e}"))?;
    profile::encode(&profile::from_report(&report)).map_err(|e| format!("cannot encode the profile: {e}"))
}

#[async_trait]
impl Extension for Pprof {
    async fn start(&mut self, ctx: &ExtensionContext) -> Result<(), ComponentError> {
        self.listener =
            Some(super::bind(&self.config.endpoint, ctx, "CPU profiles on /debug/pprof/profile?seconds=30").await?);
        if let Some(file) = self.config.save_to_file.clone() {
            let guard = pprof::ProfilerGuardBuilder::default()
                .frequency(FREQUENCY)
                .blocklist(&BLOCKLIST)
                .build()
                .map_err(|e| ExtensionError::Profiler(format!("cannot start CPU profiling: {e}")))?;
            let (stop, stopped) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::Builder::new()
                .name("fovea-pprof".into())
                .spawn(move || {
                    let _ = stopped.recv();
                    let bytes = finish(&guard)?;
                    std::fs::write(&file, bytes).map_err(|e| format!("cannot write {}: {e}", file.display()))
                })
                .map_err(|e| ExtensionError::Profiler(format!("cannot start the profile thread: {e}")))?;
            self.whole_run = Some((stop, thread));
        }
        Ok(())
    }

    async fn run(self: Box<Self>, _ctx: ExtensionContext, shutdown: CancellationToken) -> Result<(), ComponentError> {
        let Pprof { listener, whole_run, .. } = *self;
        let listener = listener.ok_or(ExtensionError::NotStarted)?;
        let app = Router::new()
            .route("/debug/pprof/", get(index))
            .route("/debug/pprof/profile", get(cpu_profile))
            .fallback(other_profile);
        serve_http(listener, app, None, shutdown).await;
        if let Some((stop, thread)) = whole_run {
            let _ = stop.send(());
            let written = tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| ExtensionError::Profiler(e.to_string()))?;
            match written {
                Ok(result) => result.map_err(ExtensionError::Profiler)?,
                Err(_) => return Err(ExtensionError::Profiler("the profile thread panicked".into()).into()),
            }
        }
        Ok(())
    }
}

async fn index() -> &'static str {
    "fovea profiles\n\nprofile: CPU profile, GET /debug/pprof/profile?seconds=30 (go tool pprof http://<endpoint>/debug/pprof/profile)\n"
}

async fn other_profile() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "fovea serves CPU profiles only: /debug/pprof/profile?seconds=30\n")
}

async fn cpu_profile(uri: Uri) -> Response {
    let seconds = uri.query().unwrap_or("").split('&').find_map(|pair| pair.strip_prefix("seconds="));
    let seconds = match seconds.map(|s| s.parse::<u64>()) {
        None => 30,
        Some(Ok(s)) if (1..=MAX_SECONDS).contains(&s) => s,
        Some(_) => {
            let message = format!("seconds must be a whole number from 1 to {MAX_SECONDS}\n");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    match tokio::task::spawn_blocking(move || take_profile(Duration::from_secs(seconds))).await {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"profile\""),
            ],
            bytes,
        )
            .into_response(),
        // The profiler is one per process: another profile (or save_to_file) holds it.
        Ok(Err(message)) => (StatusCode::CONFLICT, format!("{message}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
