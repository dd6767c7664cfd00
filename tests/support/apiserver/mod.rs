//! A Kubernetes API server on 127.0.0.1 for tests: the one stand-in fovea's tests allow. It
//! speaks the real protocol to kube's client over TLS (a test CA) with bearer tokens:
//! * `GET` lists of pods, services, nodes, namespaces, replicasets and jobs, cluster-wide or in
//!   a namespace, paginated with `limit`/`continue`, each at a `resourceVersion`;
//! * `?watch=true` chunked event streams (ADDED, MODIFIED, DELETED, BOOKMARK every
//!   `bookmark_interval`) resumed from a `resourceVersion`, ended after `timeoutSeconds`;
//! * `fieldSelector` (`spec.nodeName=...`) and `labelSelector`, with objects entering or leaving
//!   a selection sent as ADDED or DELETED;
//! * 410 Gone for a resourceVersion older than the last compaction (an ERROR event in a watch,
//!   a Status for a list `continue`);
//! * `PartialObjectMetadata` answers for metadata-only requests, gzip for large lists;
//! * 401 for a missing or wrong token.
//!
//! Objects are k8s-openapi types serialized as JSON. Tests add, change and delete objects, drop
//! every connection (as a restarted API server would), stop and start listening, rotate the
//! accepted tokens, and read the requests and bytes served.
//!
//! Include it with `#[path = "support/apiserver/mod.rs"] mod apiserver;` (it includes certs.rs).

#![allow(dead_code)]

#[path = "../certs.rs"]
mod certs;
pub mod objects;
pub mod store;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use store::{Query, RESOURCES, Resource, Selector, Store, Watch, event_line, gone, metadata_only};

/// A request the server answered.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Path.
    pub path: String,
    /// Query string, percent-decoded.
    pub query: String,
    /// Answer status.
    pub status: u16,
}

impl Logged {
    /// True for a watch request.
    pub fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true" || p == "watch=1")
    }
}

struct Shared {
    store: Mutex<Store>,
    tokens: Mutex<Vec<String>>,
    bookmark_interval: Mutex<Duration>,
    bytes: AtomicU64,
    uncompressed: AtomicU64,
    requests: Mutex<Vec<Logged>>,
    connections: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    next_connection: AtomicU64,
    tls: Arc<rustls::ServerConfig>,
    /// Resources answered with 404, as a cluster without their CRD answers.
    unserved: Mutex<Vec<String>>,
}

/// The fake API server (see the module docs). Stops when dropped.
pub struct ApiServer {
    /// The server's own runtime, on its own thread, so tests may be async or not.
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    dir: tempfile::TempDir,
    /// Where it listens (or will).
    pub addr: SocketAddr,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ApiServer {
    /// A server listening on a free port that accepts `token`; `None` (a skip) without openssl.
    pub fn start(token: &str) -> Option<ApiServer> {
        let server = Self::prepare(token, 0)?;
        server.listen();
        Some(server)
    }

    /// A server for 127.0.0.1:`port` (0: a free one) that does not listen yet.
    pub fn prepare(token: &str, port: u16) -> Option<ApiServer> {
        let dir = tempfile::tempdir().expect("temp dir");
        certs::make(dir.path(), &["DNS:localhost", "DNS:kubernetes.default.svc", "IP:127.0.0.1"])?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .thread_name("fake-apiserver")
                .build()
                .expect("runtime");
            handle_tx.send(runtime.handle().clone()).expect("handle");
            let _ = runtime.block_on(stopped);
            runtime.shutdown_background();
        });
        let runtime = handle_rx.recv().expect("the server's runtime started");
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        } else {
            port
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            tokens: Mutex::new(vec![token.to_string()]),
            bookmark_interval: Mutex::new(Duration::from_secs(1)),
            bytes: AtomicU64::new(0),
            uncompressed: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            unserved: Mutex::new(Vec::new()),
            tls: Arc::new(tls_config(&dir.path().join("server.pem"), &dir.path().join("server.key"))),
        });
        runtime.spawn(housekeeping(shared.clone()));
        Some(ApiServer {
            runtime,
            stop: Some(stop),
            thread: Some(thread),
            shared,
            dir,
            addr: ([127, 0, 0, 1], port).into(),
            accept: Mutex::new(None),
        })
    }

    /// Starts accepting connections.
    pub fn listen(&self) {
        let listener = std::net::TcpListener::bind(self.addr).expect("bind the API server port");
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = self.shared.clone();
        let task = self.runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.clone());
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, conn_shared) = (acceptor.clone(), shared.clone());
                let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
                let handle = tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service_shared = conn_shared.clone();
                    let service = hyper::service::service_fn(move |req| handle(service_shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                    conn_shared.connections.lock().unwrap().remove(&id);
                });
                shared.connections.lock().unwrap().insert(id, handle.abort_handle());
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// Stops accepting and drops every connection: the API server is down.
    pub fn stop_listening(&self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
            // The port is free once the task (and its listener) is gone.
            while !task.is_finished() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.drop_connections();
    }

    /// Cuts every open connection (watches included) without a word, as a crashed API server or
    /// a restarted load balancer would.
    pub fn drop_connections(&self) {
        for (_, c) in self.shared.connections.lock().unwrap().drain() {
            c.abort();
        }
        self.shared.store.lock().unwrap().watches.clear();
    }

    /// Tokens accepted from now on (the others get 401).
    pub fn set_tokens(&self, tokens: &[&str]) {
        *self.shared.tokens.lock().unwrap() = tokens.iter().map(|t| t.to_string()).collect();
    }

    /// How often open watches get a BOOKMARK.
    pub fn set_bookmark_interval(&self, every: Duration) {
        *self.shared.bookmark_interval.lock().unwrap() = every;
    }

    /// Adds or replaces an object (ADDED or MODIFIED to the watches that select it).
    pub fn apply<T>(&self, object: &T)
    where
        T: Serialize + k8s_openapi::Resource,
    {
        let resource = resource_of::<T>();
        let json = serde_json::to_value(object).expect("serialize");
        self.shared.store.lock().unwrap().upsert(resource, json);
    }

    /// Answers 404 for `plural` from now on, as a cluster without that resource's CRD does.
    pub fn unserve(&self, plural: &str) {
        self.shared.unserved.lock().unwrap().push(plural.to_string());
    }

    /// Adds or replaces an object of a resource k8s-openapi has no type for (a custom
    /// resource such as Retina's `metricsconfigurations`), given as JSON.
    pub fn apply_json(&self, plural: &str, object: Value) {
        let resource =
            *RESOURCES.iter().find(|r| r.plural == plural).unwrap_or_else(|| panic!("{plural} is not served"));
        self.shared.store.lock().unwrap().upsert(resource, object);
    }

    /// Deletes an object of a resource given by its plural; false if it did not exist.
    pub fn delete_json(&self, plural: &str, namespace: &str, name: &str) -> bool {
        let resource =
            *RESOURCES.iter().find(|r| r.plural == plural).unwrap_or_else(|| panic!("{plural} is not served"));
        self.shared.store.lock().unwrap().delete(resource, namespace, name)
    }

    /// Deletes an object (DELETED to the watches that selected it); false if it did not exist.
    pub fn delete<T: k8s_openapi::Resource>(&self, namespace: &str, name: &str) -> bool {
        self.shared.store.lock().unwrap().delete(resource_of::<T>(), namespace, name)
    }

    /// The stored object (with the uid and resourceVersion the server gave it).
    pub fn get<T: k8s_openapi::Resource>(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared.store.lock().unwrap().get(resource_of::<T>(), namespace, name)
    }

    /// The uid the server gave an object.
    pub fn uid<T: k8s_openapi::Resource>(&self, namespace: &str, name: &str) -> String {
        let object = self.get::<T>(namespace, name).unwrap_or_else(|| panic!("no {} {namespace}/{name}", T::KIND));
        object["metadata"]["uid"].as_str().expect("uid").to_string()
    }

    /// Forgets the history: watches resuming from before now get 410 Gone.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv
    }

    /// Open watches.
    pub fn open_watches(&self) -> usize {
        self.shared.store.lock().unwrap().watches.len()
    }

    /// Bytes of response bodies served so far (compressed when gzipped).
    pub fn bytes_served(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Bytes of response bodies served so far, counted before gzip.
    pub fn bytes_uncompressed(&self) -> u64 {
        self.shared.uncompressed.load(Ordering::Relaxed)
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The test CA's certificate (PEM file).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes a kubeconfig for this server with `token`, returning its path.
    pub fn kubeconfig(&self, token: &str) -> PathBuf {
        let path =
            self.dir.path().join(format!("kubeconfig-{}", self.shared.next_connection.fetch_add(1, Ordering::Relaxed)));
        let mut f = std::fs::File::create(&path).expect("kubeconfig");
        write!(
            f,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: fovea\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: fovea\n\
             current-context: test\n",
            self.url(),
            self.ca_path().display()
        )
        .expect("write kubeconfig");
        path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop_listening();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn resource_of<T: k8s_openapi::Resource>() -> Resource {
    *RESOURCES.iter().find(|r| r.plural == T::URL_PATH_SEGMENT).unwrap_or_else(|| panic!("{} is not served", T::KIND))
}

fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).expect("cert").collect::<Result<_, _>>().expect("certs");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config")
}

/// Ends watches past their `timeoutSeconds`, sends bookmarks, forgets closed watches.
async fn housekeeping(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let every = *shared.bookmark_interval.lock().unwrap();
        let now = Instant::now();
        let mut store = shared.store.lock().unwrap();
        let rv = store.rv;
        store.watches.retain_mut(|w| {
            if w.tx.is_closed() || now >= w.deadline {
                return false;
            }
            if w.bookmarks && now.duration_since(w.last_bookmark) >= every {
                w.last_bookmark = now;
                let kind = if w.metadata_only { "PartialObjectMetadata" } else { w.resource.kind };
                let api_version = if w.metadata_only { "meta.k8s.io/v1".to_string() } else { w.resource.api_version() };
                let object =
                    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}});
                return w.tx.send(event_line("BOOKMARK", &object)).is_ok();
            }
            true
        });
    }
}

/// A response body: all at once, or the lines of a watch; counts what it sends.
enum Out {
    Full(Option<Bytes>),
    Stream(UnboundedReceiver<Bytes>),
}

struct Counted {
    out: Out,
    shared: Arc<Shared>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = match &mut self.out {
            Out::Full(bytes) => Poll::Ready(bytes.take()),
            Out::Stream(rx) => rx.poll_recv(cx),
        };
        if let Poll::Ready(Some(bytes)) = &polled {
            self.shared.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if matches!(self.out, Out::Stream(_)) {
                self.shared.uncompressed.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
        }
        polled.map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

type Answer = Response<Counted>;

fn answer(shared: &Arc<Shared>, status: StatusCode, body: Vec<u8>, gzip: bool) -> Answer {
    let mut builder = Response::builder().status(status).header(header::CONTENT_TYPE, "application/json");
    shared.uncompressed.fetch_add(body.len() as u64, Ordering::Relaxed);
    // The API server compresses large non-watch answers when the client accepts gzip.
    let body = if gzip && body.len() > 128 * 1024 {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&body).expect("gzip");
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
        encoder.finish().expect("gzip")
    } else {
        body
    };
    builder.body(Counted { out: Out::Full(Some(Bytes::from(body))), shared: shared.clone() }).expect("response")
}

fn status(shared: &Arc<Shared>, code: StatusCode, reason: &str, message: &str) -> Answer {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code.as_u16()});
    answer(shared, code, body.to_string().into_bytes(), false)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/api/v1/pods`, `/api/v1/namespaces/ns/pods`, `/apis/apps/v1/replicasets` ... -> resource, namespace.
fn route(path: &str) -> Option<(Resource, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (("", "v1"), rest),
        ["apis", group, version, rest @ ..] => ((*group, *version), rest),
        _ => return None,
    };
    let (group, version) = group;
    let (namespace, plural) = match rest {
        [plural] => (None, *plural),
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural),
        _ => return None,
    };
    let resource = *RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)?;
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    Some((resource, namespace))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let path = req.uri().path().to_string();
    let query_text = percent_decode(req.uri().query().unwrap_or(""));
    let reply = serve(&shared, &req, &path, req.uri().query().unwrap_or(""));
    shared.requests.lock().unwrap().push(Logged { path, query: query_text, status: reply.status().as_u16() });
    Ok(reply)
}

fn serve(shared: &Arc<Shared>, req: &Request<Incoming>, path: &str, raw_query: &str) -> Answer {
    let token_ok = {
        let tokens = shared.tokens.lock().unwrap();
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        given.is_some_and(|g| tokens.iter().any(|t| t == g))
    };
    if !token_ok {
        return status(shared, StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if req.method() != http::Method::GET {
        return status(
            shared,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake API server only serves GET",
        );
    }
    let served = |(resource, _): &(Resource, Option<String>)| {
        !shared.unserved.lock().unwrap().iter().any(|plural| plural == resource.plural)
    };
    let Some((resource, namespace)) = route(path).filter(served) else {
        return status(
            shared,
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        );
    };
    let params: HashMap<String, String> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let param = |k: &str| params.get(k).map(String::as_str);
    let selector = |k: &str| Selector::parse(param(k).unwrap_or(""));
    let (labels, fields) = match (selector("labelSelector"), selector("fieldSelector")) {
        (Ok(l), Ok(f)) => (l, f),
        (Err(e), _) | (_, Err(e)) => return status(shared, StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let query = Query { namespace, labels, fields };
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let partial = accept.contains("as=PartialObjectMetadata");
    let gzip =
        req.headers().get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("gzip"));
    if matches!(param("watch"), Some("true" | "1")) {
        return watch(shared, resource, query, partial, &params);
    }
    let limit = param("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let store = shared.store.lock().unwrap();
    let (rv, after) = match param("continue").filter(|c| !c.is_empty()) {
        Some(token) => match decode_continue(token) {
            Some((rv, _)) if rv < store.compacted() => {
                drop(store);
                let message = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";
                return answer(shared, StatusCode::GONE, gone(message.into()).to_string().into_bytes(), false);
            }
            Some((rv, key)) => (rv, Some(key)),
            None => {
                drop(store);
                return status(shared, StatusCode::BAD_REQUEST, "BadRequest", "invalid continue token");
            }
        },
        None => (store.rv, None),
    };
    let (items, more) = store.list(resource, &query, after.as_ref(), limit);
    drop(store);
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut o| {
            if partial {
                metadata_only(&o)
            } else {
                // List items carry no kind or apiVersion; the list does.
                if let Value::Object(m) = &mut o {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                o
            }
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(key) = more {
        meta["continue"] = encode_continue(rv, &key).into();
    }
    let list = if partial {
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items})
    } else {
        json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": meta, "items": items})
    };
    answer(shared, StatusCode::OK, serde_json::to_vec(&list).expect("json"), gzip)
}

fn encode_continue(rv: u64, key: &(String, String)) -> String {
    use base64::Engine as _;
    let text = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn decode_continue(token: &str) -> Option<(u64, (String, String))> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.decode(token).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    Some((v["rv"].as_u64()?, (v["ns"].as_str()?.to_string(), v["name"].as_str()?.to_string())))
}

fn watch(
    shared: &Arc<Shared>,
    resource: Resource,
    query: Query,
    metadata_only_: bool,
    params: &HashMap<String, String>,
) -> Answer {
    let (tx, rx) = unbounded_channel::<Bytes>();
    let timeout = params.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800);
    let bookmarks = params.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let from = params.get("resourceVersion").map(String::as_str).unwrap_or("");
    let mut store = shared.store.lock().unwrap();
    let initial = if from.is_empty() || from == "0" {
        Some(store.current(resource, &query))
    } else {
        match from.parse::<u64>() {
            Ok(rv) => store.since(resource, &query, rv),
            Err(_) => {
                drop(store);
                return status(shared, StatusCode::BAD_REQUEST, "BadRequest", "invalid resourceVersion");
            }
        }
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Counted { out: Out::Stream(rx), shared: shared.clone() })
        .expect("response");
    match initial {
        None => {
            // The real API server answers 200 and sends the error as the stream's only event.
            let message = format!("too old resource version: {from} ({})", store.compacted());
            let _ = tx.send(event_line("ERROR", &gone(message)));
        }
        Some(events) => {
            for (kind, object) in events {
                let object = if metadata_only_ { metadata_only(&object) } else { object };
                let _ = tx.send(event_line(kind, &object));
            }
            let now = Instant::now();
            store.watches.push(Watch {
                resource,
                query,
                metadata_only: metadata_only_,
                bookmarks,
                deadline: now + Duration::from_secs(timeout),
                last_bookmark: now,
                tx,
            });
        }
    }
    response
}
