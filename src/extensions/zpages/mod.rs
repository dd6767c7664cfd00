//! The `zpages` extension: otelcol's in-process pages, the ones that make sense without traces:
//! `/debug/servicez` (version, compiler, start time, uptime), `/debug/pipelinez` (every
//! pipeline with its receivers, processors and exporters) and `/debug/extensionz`. Loopback
//! only by default.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::ExtensionError;
use crate::config::{Checks, ComponentConfig, duration, parse_component};
use crate::pipeline::{BuildContext, Built, ComponentError, Extension, ExtensionContext, Factory, GraphSummary};
use crate::server::{GuardedListener, ListenAddress, serve_http};
use crate::telemetry::ComponentKind;

/// `zpages:` (otelcol's key and default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZpagesConfig {
    /// `host:port` to serve on.
    pub endpoint: String,
}

impl Default for ZpagesConfig {
    fn default() -> Self {
        ZpagesConfig { endpoint: "localhost:55679".into() }
    }
}

impl ComponentConfig for ZpagesConfig {
    fn validate(&self, checks: &mut Checks) {
        if let Err(e) = ListenAddress::parse(&self.endpoint) {
            checks.fail("endpoint", e);
        }
    }
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Extension,
        type_name: "zpages",
        aliases: &[],
        signals: &[],
        connects: &[],
        description: "pages showing the agent's version, uptime, pipelines and extensions (/debug/servicez ...)",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: ZpagesConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Extension(Box::new(Zpages { config, listener: None })))
        },
    }
}

/// The `zpages` extension.
pub struct Zpages {
    config: ZpagesConfig,
    listener: Option<GuardedListener>,
}

#[derive(Clone)]
struct Pages {
    summary: Arc<GraphSummary>,
    started: SystemTime,
}

#[async_trait]
impl Extension for Zpages {
    async fn start(&mut self, ctx: &ExtensionContext) -> Result<(), ComponentError> {
        self.listener = Some(
            super::bind(&self.config.endpoint, ctx, "zpages on /debug/servicez, /debug/pipelinez, /debug/extensionz")
                .await?,
        );
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ExtensionContext, shutdown: CancellationToken) -> Result<(), ComponentError> {
        let listener = self.listener.ok_or(ExtensionError::NotStarted)?;
        let pages = Pages { summary: ctx.summary.clone(), started: SystemTime::now() };
        let app = Router::new()
            .route("/debug/servicez", get(servicez))
            .route("/debug/pipelinez", get(pipelinez))
            .route("/debug/extensionz", get(extensionz))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    "fovea serves /debug/servicez, /debug/pipelinez and /debug/extensionz (it records no traces)\n",
                )
            })
            .with_state(pages);
        serve_http(listener, app, None, shutdown).await;
        Ok(())
    }
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>fovea {title}</title></head><body>\n<h1>{title}</h1>\n{body}<p><a href=\"/debug/servicez\">servicez</a> <a href=\"/debug/pipelinez\">pipelinez</a> <a href=\"/debug/extensionz\">extensionz</a></p>\n</body></html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn servicez(State(pages): State<Pages>) -> Response {
    let uptime = SystemTime::now().duration_since(pages.started).unwrap_or_default();
    let rows = [
        ("Version", env!("CARGO_PKG_VERSION").to_string()),
        ("Rust compiler", env!("FOVEA_RUSTC_VERSION").to_string()),
        ("Started", humantime::format_rfc3339_seconds(pages.started).to_string()),
        ("Uptime", duration::format_go(Duration::from_secs(uptime.as_secs()))),
        ("Pipelines", pages.summary.pipelines.len().to_string()),
        ("Extensions", pages.summary.extensions.len().to_string()),
    ];
    let mut body = String::from("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(body, "<tr><th align=\"left\">{k}</th><td>{}</td></tr>", escape(&v));
    }
    body.push_str("</table>\n");
    page("servicez", &body)
}

async fn pipelinez(State(pages): State<Pages>) -> Response {
    let mut body = String::from(
        "<table border=\"1\">\n<tr><th>pipeline</th><th>receivers</th><th>processors</th><th>exporters</th></tr>\n",
    );
    for p in &pages.summary.pipelines {
        let list = |ids: &[String]| escape(&ids.join(", "));
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.id),
            list(&p.receivers),
            list(&p.processors),
            list(&p.exporters)
        );
    }
    body.push_str("</table>\n");
    page("pipelinez", &body)
}

async fn extensionz(State(pages): State<Pages>) -> Response {
    let mut body = String::from("<ul>\n");
    for e in &pages.summary.extensions {
        let _ = writeln!(body, "<li>{}</li>", escape(e));
    }
    body.push_str("</ul>\n");
    page("extensionz", &body)
}
