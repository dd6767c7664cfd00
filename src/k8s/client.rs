//! The connection to the API server: kube's client built for the configured `auth_type`, with
//! one layer of our own on top that
//! * sets the service-account token, re-read as soon as the file changes (kubelet rotates it),
//! * spaces the watch requests of one kind at least [`MIN_WATCH_INTERVAL`] apart, so a watch the
//!   server ends at once is never retried in a busy loop,
//! * counts watch requests and notes when a list or watch last delivered data (bookmarks
//!   included, which kube's watcher consumes silently).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::{Body, Frame};
use kube::Client;
use kube::client::ClientBuilder;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use tower::{BoxError, Layer, Service, ServiceExt as _};

use super::settings::Auth;
use super::{K8sError, Kind, Shared};

/// Where Kubernetes mounts the service-account token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Where Kubernetes mounts the cluster CA.
pub const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// A client and the server it talks to (for messages).
pub(crate) struct Connection {
    pub client: Client,
    pub server: String,
}

/// Builds the client for `auth`. Fails on configuration problems (no in-cluster environment,
/// an unreadable kubeconfig), not on an unreachable server: that is retried while the agent runs.
pub(crate) async fn connect(auth: &Auth, shared: Arc<Shared>) -> Result<Connection, K8sError> {
    let (config, token) = match auth {
        Auth::ServiceAccount => {
            let mut config = Config::incluster_env().map_err(K8sError::InCluster)?;
            // Our layer sets the token and re-reads it when it changes; kube's would re-read it
            // only once a minute.
            config.auth_info = Default::default();
            let token = TokenFile::new(PathBuf::from(SERVICE_ACCOUNT_TOKEN)).map_err(K8sError::Token)?;
            (config, Some(token))
        }
        Auth::KubeConfig { path, context } => {
            let options = KubeConfigOptions { context: context.clone(), ..KubeConfigOptions::default() };
            let config = match path {
                Some(path) => {
                    let kubeconfig = Kubeconfig::read_from(path)
                        .map_err(|source| K8sError::KubeConfig { path: path.display().to_string(), source })?;
                    Config::from_custom_kubeconfig(kubeconfig, &options).await
                }
                None => Config::from_kubeconfig(&options).await,
            };
            let config = config.map_err(|source| K8sError::KubeConfig { path: kubeconfig_path(path), source })?;
            (config, None)
        }
        Auth::None => (in_cluster_without_credentials()?, None),
    };
    let server = config.cluster_url.to_string();
    let layer = ApiLayer { shared, token: token.map(Arc::new) };
    let client = ClientBuilder::try_from(config).map_err(K8sError::Client)?.with_layer(&layer).build();
    Ok(Connection { client, server })
}

fn kubeconfig_path(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".to_string()),
    }
}

/// `auth_type: none`: the in-cluster address, the cluster CA when mounted, no credentials.
fn in_cluster_without_credentials() -> Result<Config, K8sError> {
    let var = |name: &'static str| std::env::var(name).map_err(|_| K8sError::NoInClusterEnv { variable: name });
    let host = var("KUBERNETES_SERVICE_HOST")?;
    let port = var("KUBERNETES_SERVICE_PORT")?;
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let url = format!("https://{host}:{port}");
    let uri = url.parse().map_err(|_| K8sError::InvalidServer { url: url.clone() })?;
    let mut config = Config::new(uri);
    if let Ok(pem) = std::fs::read(SERVICE_ACCOUNT_CA) {
        let certs = pem_certificates(&pem);
        if !certs.is_empty() {
            config.root_cert = Some(certs);
        }
    }
    Ok(config)
}

/// The DER certificates in a PEM bundle.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).map(|c| c.to_vec()).collect()
}

/// The service-account token, re-read whenever the file's modification time or size changes.
#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    current: Mutex<(Option<(SystemTime, u64)>, HeaderValue)>,
}

impl TokenFile {
    fn new(path: PathBuf) -> Result<TokenFile, std::io::Error> {
        let (stamp, value) = read_token(&path)?;
        Ok(TokenFile { path, current: Mutex::new((stamp, value)) })
    }

    /// The `Authorization` value, from the file as it is now (the last good one if it cannot be read).
    fn header(&self) -> HeaderValue {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = std::fs::metadata(&self.path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some()
            && stamp != current.0
            && let Ok((stamp, value)) = read_token(&self.path)
        {
            tracing::info!(path = %self.path.display(), "service-account token changed; using the new one");
            *current = (stamp, value);
        }
        current.1.clone()
    }
}

fn read_token(path: &Path) -> Result<(Option<(SystemTime, u64)>, HeaderValue), std::io::Error> {
    let meta = std::fs::metadata(path)?;
    let text = std::fs::read_to_string(path)?;
    let mut value = HeaderValue::try_from(format!("Bearer {}", text.trim()))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    value.set_sensitive(true);
    Ok((meta.modified().ok().map(|m| (m, meta.len())), value))
}

/// Our layer over kube's client stack (see the module docs).
#[derive(Clone)]
struct ApiLayer {
    shared: Arc<Shared>,
    token: Option<Arc<TokenFile>>,
}

impl<S> Layer<S> for ApiLayer {
    type Service = ApiService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiService {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            shared: self.shared.clone(),
            token: self.token.clone(),
        }
    }
}

/// The service [`ApiLayer`] makes. kube's stack below is not `Clone`, so it is shared behind a
/// lock that is held only while a request is handed over, never while a response streams.
struct ApiService<S> {
    inner: Arc<tokio::sync::Mutex<S>>,
    shared: Arc<Shared>,
    token: Option<Arc<TokenFile>>,
}

type ApiFuture<B> = Pin<Box<dyn Future<Output = Result<Response<Activity<B>>, BoxError>> + Send>>;

impl<S, B> Service<Request<kube::client::Body>> for ApiService<S>
where
    S: Service<Request<kube::client::Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<Activity<B>>;
    type Error = BoxError;
    type Future = ApiFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness of the inner stack is awaited in `call`, under its lock.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<kube::client::Body>) -> Self::Future {
        let kind = Kind::from_path(request.uri().path());
        let watch = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        if let Some(token) = &self.token {
            request.headers_mut().insert(header::AUTHORIZATION, token.header());
        }
        let delay = match kind {
            Some(k) if watch => self.shared.stats.kind(k).watch_started(),
            _ => std::time::Duration::ZERO,
        };
        let (inner, shared) = (self.inner.clone(), self.shared.clone());
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let response = {
                let mut service = inner.lock().await;
                let ready = service.ready().await.map_err(Into::into)?;
                ready.call(request)
            };
            let response = response.await.map_err(Into::into)?;
            Ok(response.map(|body| Activity { body, shared, kind }))
        })
    }
}

/// A response body that notes, per kind, when data last arrived.
pub(crate) struct Activity<B> {
    body: B,
    shared: Arc<Shared>,
    kind: Option<Kind>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Activity<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(kind)) = (&polled, self.kind)
            && frame.is_data()
        {
            self.shared.stats.kind(kind).activity();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
