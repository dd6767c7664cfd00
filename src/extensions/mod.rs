//! Extensions (otelcol's `extensions:` section, enabled by `service::extensions`): services
//! next to the pipelines. `health_check` answers whether the agent is ready, `pprof` takes CPU
//! profiles on demand, `zpages` shows what the agent runs. They start before every component
//! and stop after all of them.

pub mod health_check;
pub mod pprof;
pub mod zpages;

/// Errors of starting an extension.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    /// Its endpoint could not be bound.
    #[error("cannot listen on {endpoint}: {source}; is the port in use or the address not local?")]
    Bind {
        /// The configured endpoint.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// `run` was called before a successful `start`.
    #[error("the extension was not started")]
    NotStarted,
    /// The TLS settings could not be loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// The profiler could not be started or its profile written.
    #[error("pprof: {0}")]
    Profiler(String),
}

/// Binds an extension's endpoint with the internal servers' limits and logs where it serves
/// `what`.
async fn bind(
    endpoint: &str,
    ctx: &crate::pipeline::ExtensionContext,
    what: &str,
) -> Result<crate::server::GuardedListener, ExtensionError> {
    let listener = crate::server::bind_internal(endpoint, &format!("{} extension", ctx.id))
        .await
        .map_err(|source| ExtensionError::Bind { endpoint: endpoint.to_string(), source })?;
    if let Ok(a) = listener.local_addr() {
        tracing::info!(extension = %ctx.id, address = %a, "{what}");
    }
    Ok(listener)
}
