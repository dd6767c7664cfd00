//! The `otlp` receiver: OTLP metrics in over gRPC (`:4317`) and HTTP (`:4318`, protobuf and
//! JSON), for agent -> gateway chains and for any OpenTelemetry SDK or collector.
//!
//! Each request is answered only after every exporter of its pipelines has taken the data
//! (acknowledgements); otherwise the client gets a retryable error (gRPC `Unavailable`, HTTP 503)
//! and sends again, so nothing is lost between an OTLP client and fovea's exporters.

mod config;
mod grpc;
mod http;
mod ingest;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpListener;

pub use config::{
    EnforcementPolicy, GrpcKeepalive, GrpcProtocol, HttpProtocol, KeepaliveServerParameters, OtlpReceiverConfig,
    Protocols,
};
pub use grpc::{MetricsGrpcService, grpc_timeout};
pub use http::{BodyRefusal, Format, decode_body, router};
pub use ingest::{ACK_TIMEOUT, Accepted, Ingest, IngestError};

use crate::config::parse_component;
use crate::model::Signal;
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext, StartContext};
use crate::server::{GuardedListener, Limits, ListenAddress, ServerStats, serve_http};
use crate::telemetry::ComponentKind;

/// Errors of starting the receiver.
#[derive(Debug, thiserror::Error)]
pub enum OtlpReceiverError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {endpoint} for OTLP/{protocol}: {source}; is the port in use or the address not local?")]
    Bind {
        /// `grpc` or `http`.
        protocol: &'static str,
        /// The configured endpoint.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error("OTLP/{protocol} TLS: {source}")]
    Tls {
        /// `grpc` or `http`.
        protocol: &'static str,
        /// Why.
        source: crate::tls::TlsError,
    },
    /// A server failed while running.
    #[error("OTLP/{protocol} server failed: {message}")]
    Serve {
        /// `grpc` or `http`.
        protocol: &'static str,
        /// Why.
        message: String,
    },
    /// `run` was called before a successful `start`.
    #[error("the OTLP receiver was not started")]
    NotStarted,
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "otlp",
        aliases: &[],
        signals: &[Signal::Metrics],
        connects: &[],
        description: "receives OTLP metrics over gRPC and HTTP (protobuf, JSON); answers after the exporters took them",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: OtlpReceiverConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(OtlpReceiver::new(ctx.id.to_string(), config))))
        },
    }
}

struct GrpcBound {
    listener: GuardedListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
}

struct HttpBound {
    listener: GuardedListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Guards a bound listener with `limits`, its counters reported as `protocol` of receiver `id`.
fn guard(
    listener: TcpListener,
    id: &str,
    protocol: &'static str,
    limits: Limits,
    ctx: &StartContext,
) -> GuardedListener {
    let name = match listener.local_addr() {
        Ok(a) => format!("OTLP/{} {a} ({id})", protocol.to_uppercase()),
        Err(_) => format!("OTLP/{} ({id})", protocol.to_uppercase()),
    };
    let stats = Arc::new(ServerStats::new(name, Some((id.to_string(), protocol))));
    ctx.telemetry.register(stats.clone());
    GuardedListener::new(listener, limits, stats)
}

/// The `otlp` receiver.
pub struct OtlpReceiver {
    id: String,
    config: OtlpReceiverConfig,
    grpc: Option<GrpcBound>,
    http: Option<HttpBound>,
}

async fn bind(protocol: &'static str, endpoint: &str) -> Result<TcpListener, OtlpReceiverError> {
    let target = ListenAddress::parse(endpoint).map(|a| a.bind_target()).unwrap_or_else(|_| endpoint.to_string());
    TcpListener::bind(target).await.map_err(|source| OtlpReceiverError::Bind {
        protocol,
        endpoint: endpoint.to_string(),
        source,
    })
}

impl OtlpReceiver {
    /// A receiver named `id` (nothing is bound until started).
    pub fn new(id: String, config: OtlpReceiverConfig) -> Self {
        OtlpReceiver { id, config, grpc: None, http: None }
    }

    /// The bound gRPC address, once started (useful with port 0).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|g| g.listener.local_addr().ok())
    }

    /// The bound HTTP address, once started (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|h| h.listener.local_addr().ok())
    }
}

#[async_trait]
impl Receiver for OtlpReceiver {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        if let Some(g) = &self.config.protocols.grpc {
            let tls = match &g.tls {
                Some(t) => {
                    Some(t.tonic_config().map_err(|source| OtlpReceiverError::Tls { protocol: "grpc", source })?)
                }
                None => None,
            };
            let listener = guard(bind("grpc", &g.endpoint).await?, &self.id, "grpc", g.limits(), ctx);
            self.grpc = Some(GrpcBound { listener, tls });
        }
        if let Some(h) = &self.config.protocols.http {
            let tls = match &h.tls {
                Some(t) => Some(Arc::new(
                    t.rustls_config(&[b"http/1.1"])
                        .map_err(|source| OtlpReceiverError::Tls { protocol: "http", source })?,
                )),
                None => None,
            };
            let listener = guard(bind("http", &h.endpoint).await?, &self.id, "http", h.limits(), ctx);
            self.http = Some(HttpBound { listener, tls });
        }
        if let Some(a) = self.grpc_addr() {
            tracing::info!(receiver = %self.id, address = %a, "OTLP/gRPC listening");
        }
        if let Some(a) = self.http_addr() {
            tracing::info!(receiver = %self.id, address = %a, "OTLP/HTTP listening");
        }
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let OtlpReceiver { id, config, grpc, http } = *self;
        if grpc.is_none() && http.is_none() {
            return Err(OtlpReceiverError::NotStarted.into());
        }
        let ingest = Arc::new(Ingest::new(id, ctx.output, ctx.start.stats.clone()));
        let shutdown = ctx.shutdown;

        let grpc_server = {
            let (ingest, shutdown) = (ingest.clone(), shutdown.clone());
            async move {
                let (Some(bound), Some(settings)) = (grpc, config.protocols.grpc.as_ref()) else { return Ok(()) };
                let max_recv = settings.max_recv_msg_size_mib as usize * 1024 * 1024;
                let serve_error =
                    |e: tonic::transport::Error| OtlpReceiverError::Serve { protocol: "grpc", message: e.to_string() };
                let keepalive = &settings.keepalive.server_parameters;
                let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
                let mut server = tonic::transport::Server::builder()
                    .http2_keepalive_interval(nonzero(keepalive.time))
                    .http2_keepalive_timeout(nonzero(keepalive.timeout));
                if settings.max_concurrent_streams > 0 {
                    server = server.max_concurrent_streams(settings.max_concurrent_streams);
                }
                if let Some(age) = nonzero(keepalive.max_connection_age) {
                    server =
                        server.max_connection_age(age).max_connection_age_grace(keepalive.max_connection_age_grace);
                }
                if let Some(tls) = bound.tls {
                    server = server.tls_config(tls).map_err(serve_error)?;
                }
                let stats = bound.listener.stats().clone();
                let incoming = futures::stream::unfold(bound.listener, |listener| async move {
                    let stream = listener.accept().await;
                    Some((Ok::<_, std::io::Error>(stream), listener))
                });
                server
                    .add_service(MetricsGrpcService::new(ingest, max_recv).with_stats(stats))
                    .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                    .await
                    .map_err(serve_error)
            }
        };
        let http_server = {
            let (ingest, shutdown) = (ingest.clone(), shutdown.clone());
            async move {
                let (Some(bound), Some(settings)) = (http, config.protocols.http.as_ref()) else { return Ok(()) };
                let app = router(ingest, settings, bound.listener.stats().clone());
                serve_http(bound.listener, app, bound.tls, shutdown).await;
                Ok::<(), OtlpReceiverError>(())
            }
        };
        drop(ingest);
        let (g, h) = tokio::join!(grpc_server, http_server);
        g?;
        h?;
        Ok(())
    }
}
