//! The `health_check` extension: otelcol's health endpoint. `GET <path>` answers 200 while the
//! agent is ready (every component started, not stopping) and 503 otherwise, with otelcol's
//! JSON body (`{"status":"Server available","upSince":...,"uptime":...}`) or the configured
//! `response_body`. Use it as the liveness and readiness probe as with otelcol.

mod config;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

pub use config::{CheckCollectorPipeline, HealthCheckConfig, ResponseBody};

use super::ExtensionError;
use crate::config::{duration, parse_component};
use crate::pipeline::{BuildContext, Built, ComponentError, Extension, ExtensionContext, Factory};
use crate::server::{GuardedListener, serve_http};
use crate::telemetry::{ComponentKind, Health};

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Extension,
        type_name: "health_check",
        aliases: &[],
        signals: &[],
        connects: &[],
        description: "answers 200 while the agent is ready and 503 otherwise (otelcol's health endpoint)",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: HealthCheckConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Extension(Box::new(HealthCheck { config, listener: None, tls: None })))
        },
    }
}

/// The `health_check` extension.
pub struct HealthCheck {
    config: HealthCheckConfig,
    listener: Option<GuardedListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Clone)]
struct Answer {
    health: Arc<Health>,
    body: Option<ResponseBody>,
}

#[async_trait]
impl Extension for HealthCheck {
    async fn start(&mut self, ctx: &ExtensionContext) -> Result<(), ComponentError> {
        if let Some(tls) = &self.config.tls {
            let config = tls.rustls_config(&[b"http/1.1"]).map_err(|e| ExtensionError::Tls(e.to_string()))?;
            self.tls = Some(Arc::new(config));
        }
        self.listener =
            Some(super::bind(&self.config.endpoint, ctx, &format!("health check on {}", self.config.path)).await?);
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ExtensionContext, shutdown: CancellationToken) -> Result<(), ComponentError> {
        let HealthCheck { config, listener, tls } = *self;
        let listener = listener.ok_or(ExtensionError::NotStarted)?;
        // The agent registers its health; without it (an embedding that has none) the answer
        // is "not ready", never a false "healthy".
        let health = ctx.services.get::<Health>().unwrap_or_default();
        let answer = Answer { health, body: config.response_body };
        let app = Router::new().route(&config.path, get(status)).with_state(answer);
        serve_http(listener, app, tls, shutdown).await;
        Ok(())
    }
}

async fn status(State(answer): State<Answer>) -> Response {
    let since = answer.health.ready_since().filter(|_| answer.health.is_ready());
    let code = if since.is_some() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if let Some(body) = &answer.body {
        let text = if since.is_some() { body.healthy.clone() } else { body.unhealthy.clone() };
        return (code, text).into_response();
    }
    let json = match since {
        Some(since) => {
            let uptime = SystemTime::now().duration_since(since).unwrap_or_default();
            serde_json::json!({
                "status": "Server available",
                "upSince": humantime::format_rfc3339_nanos(since).to_string(),
                "uptime": duration::format_go(uptime),
            })
        }
        None => serde_json::json!({"status": "Server not available", "upSince": "0001-01-01T00:00:00Z", "uptime": ""}),
    };
    (code, [(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(health: &Arc<Health>, body: Option<ResponseBody>) -> (StatusCode, String) {
        let response = status(State(Answer { health: health.clone(), body })).await;
        let code = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (code, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn answers_as_otelcol_while_starting_ready_and_stopping() {
        let health = Arc::new(Health::default());
        let not_ready = (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"Server not available","upSince":"0001-01-01T00:00:00Z","uptime":""}"#.to_string(),
        );
        assert_eq!(answer(&health, None).await, not_ready);
        health.set_ready(true);
        let (code, body) = answer(&health, None).await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.starts_with(r#"{"status":"Server available","upSince":""#), "{body}");
        health.set_ready(false);
        assert_eq!(answer(&health, None).await, not_ready);
        let custom = ResponseBody { healthy: "up".into(), unhealthy: "down".into() };
        assert_eq!(answer(&health, Some(custom.clone())).await, (StatusCode::SERVICE_UNAVAILABLE, "down".into()));
        health.set_ready(true);
        assert_eq!(answer(&health, Some(custom)).await, (StatusCode::OK, "up".into()));
    }
}
