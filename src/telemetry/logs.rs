//! Structured logs through `tracing`, console or JSON, level from config (overridable by `RUST_LOG`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::service::{LogEncoding, LogsConfig};

/// Installs the global log subscriber; later calls are ignored.
pub fn init(config: &LogsConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.level.as_str()));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match config.encoding {
        LogEncoding::Json => builder.json().flatten_event(true).try_init(),
        LogEncoding::Console => builder.try_init(),
    };
}
