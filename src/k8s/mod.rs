//! The Kubernetes metadata cache: pods, ReplicaSets, Jobs, Services, Nodes and Namespaces,
//! listed and watched through kube, pruned on arrival to what labelling uses, and indexed by IP
//! (IPv4 and IPv6) so the `k8sattributes` processor can name both ends of a flow.
//!
//! One cache per process, a shared service (`pipeline::Services`): every processor instance
//! that needs it gets the same one, so the API server is watched once whatever the number of
//! pipelines. The engine never imports this module.
//!
//! The agent does not wait for the API server: until the cache has synced, records go out with
//! their addresses only (unless `wait_for_metadata`), and `/readyz` says what is missing.
//! See docs/kubernetes.md.

mod client;
mod extract;
mod index;
mod objects;
mod settings;
mod telemetry;
mod watch;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use kube::Api;
use kube::runtime::watcher;
use regex::Regex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use client::{SERVICE_ACCOUNT_CA, SERVICE_ACCOUNT_TOKEN};
pub use extract::{Field, KeyMatch, Rule, Source, Tag, ViewId};
pub use index::{Found, NamespaceMeta, NodeMeta, Owners, PodMeta, ServiceMeta};
pub use objects::{ContextOption, MetricsConfiguration, Owner};
pub use settings::{Auth, CacheSettings};
pub use telemetry::{CacheStats, EventKind, KindStats, LookupResult, MIN_WATCH_INTERVAL};

use index::Index;
use objects::{
    EndpointSliceObject, JobObject, MetricsConfigurationObject, NamespaceObject, NodeObject, PodObject,
    ReplicaSetObject, ServiceObject,
};
use watch::Watched;

/// Errors of the Kubernetes metadata cache.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// `auth_type: serviceAccount` outside a pod, or the service account is not mounted.
    #[error(
        "auth_type serviceAccount: cannot load the in-cluster configuration ({0}); fovea must run in a pod with \
         KUBERNETES_SERVICE_HOST/PORT set and its service account mounted at /var/run/secrets/kubernetes.io/serviceaccount, \
         or use auth_type: kubeConfig"
    )]
    InCluster(#[source] kube::config::InClusterError),
    /// The service-account token cannot be read.
    #[error(
        "cannot read the service-account token {SERVICE_ACCOUNT_TOKEN}: {0}; mount the service account \
         (automountServiceAccountToken) or use auth_type: kubeConfig"
    )]
    Token(#[source] std::io::Error),
    /// A variable the in-cluster address comes from is missing.
    #[error("{variable} is not set; auth_type none needs fovea to run in a pod (or set the variable)")]
    NoInClusterEnv {
        /// The variable.
        variable: &'static str,
    },
    /// The in-cluster address is not a URL.
    #[error("the in-cluster API server address {url} is not a valid URL; check KUBERNETES_SERVICE_HOST/PORT")]
    InvalidServer {
        /// What was built.
        url: String,
    },
    /// The kubeconfig cannot be read or has no usable context.
    #[error(
        "auth_type kubeConfig: cannot use the kubeconfig {path}: {source}; check kube_config_path, KUBECONFIG or context"
    )]
    KubeConfig {
        /// The file.
        path: String,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// kube could not build a client from the configuration (TLS material ...).
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// An `exclude.pods` expression does not compile.
    #[error("exclude pod name `{pattern}` is not a valid regular expression: {source}")]
    ExcludePattern {
        /// The expression.
        pattern: String,
        /// Why.
        source: regex::Error,
    },
    /// `wait_for_metadata` waited longer than `wait_for_metadata_timeout`.
    #[error("the Kubernetes metadata cache did not sync within {timeout:?} (wait_for_metadata_timeout): {pending}")]
    NotSynced {
        /// How long it waited.
        timeout: Duration,
        /// What was missing.
        pending: String,
    },
}

/// A kind of object the cache watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Pods: names, owners, nodes, addresses.
    Pod,
    /// ReplicaSets (metadata only): a pod's Deployment.
    ReplicaSet,
    /// Jobs (metadata only): a pod's CronJob.
    Job,
    /// Services: ClusterIPs.
    Service,
    /// Nodes: InternalIPs.
    Node,
    /// Namespaces (metadata only): labels and annotations.
    Namespace,
    /// EndpointSlices of the `kubernetes` Service (namespace `default`): the API server's
    /// addresses. Watched only when a component asks ([`K8sCache::enable`]).
    EndpointSlice,
    /// Retina's `MetricsConfiguration` custom resources (`retina.sh/v1alpha1`, cluster-scoped).
    /// Watched only when a component asks; the CRD may not be installed.
    MetricsConfiguration,
}

impl Kind {
    /// Every kind, in the order they are reported.
    pub const ALL: [Kind; 8] = [
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::Job,
        Kind::Service,
        Kind::Node,
        Kind::Namespace,
        Kind::EndpointSlice,
        Kind::MetricsConfiguration,
    ];

    /// The kinds always watched; readiness waits for them (and for no other).
    pub const REQUIRED: [Kind; 6] =
        [Kind::Pod, Kind::ReplicaSet, Kind::Job, Kind::Service, Kind::Node, Kind::Namespace];

    /// The Kubernetes kind (`Pod`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Job => "Job",
            Kind::Service => "Service",
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::MetricsConfiguration => "MetricsConfiguration",
        }
    }

    /// The resource (`pods`), as in URLs and RBAC rules.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::ReplicaSet => "replicasets",
            Kind::Job => "jobs",
            Kind::Service => "services",
            Kind::Node => "nodes",
            Kind::Namespace => "namespaces",
            Kind::EndpointSlice => "endpointslices",
            Kind::MetricsConfiguration => "metricsconfigurations",
        }
    }

    /// The kind a list or watch URL path serves (`/api/v1/namespaces/shop/pods` -> Pod).
    pub fn from_path(path: &str) -> Option<Kind> {
        let last = path.trim_end_matches('/').rsplit('/').next()?;
        Kind::ALL.into_iter().find(|k| k.plural() == last)
    }
}

/// Objects per list page of pods and nodes (a few KB each as JSON): smaller than kube's 500, as
/// a page is held whole while it is parsed and the agent's peak memory is what a DaemonSet's
/// limit must cover. Measured with 10 000 pods: peak RSS 27 MiB with 100, 33 MiB with 500.
pub const LARGE_OBJECT_PAGE_SIZE: u32 = 100;

/// Objects per list page of the other kinds (metadata only, or small): kube's default, so pages
/// stay above the 128 KiB the API server gzips from.
pub const LIST_PAGE_SIZE: u32 = 500;

/// What the watch tasks, the client layer and the collector share.
#[derive(Debug)]
pub(crate) struct Shared {
    index: RwLock<Index>,
    stats: CacheStats,
}

type Spawner = Box<dyn Fn() -> JoinHandle<()> + Send + Sync>;

/// The namespace and Service whose addresses are the API server's.
pub const API_SERVER_SERVICE: (&str, &str) = ("default", "kubernetes");

/// The label an EndpointSlice names its Service with.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The running watches.
struct Running {
    spawners: HashMap<Kind, Spawner>,
    tasks: HashMap<Kind, JoinHandle<()>>,
}

impl Running {
    /// Stops `kind`'s watch and starts a new one, which lists again.
    fn restart(&mut self, kind: Kind) {
        if let Some(task) = self.tasks.remove(&kind) {
            task.abort();
        }
        if let Some(spawn) = self.spawners.get(&kind) {
            self.tasks.insert(kind, spawn());
        }
    }
}

/// The Kubernetes metadata cache (see the module docs).
pub struct K8sCache {
    shared: Arc<Shared>,
    settings: CacheSettings,
    running: tokio::sync::Mutex<Option<Running>>,
    /// Optional kinds some component asked for ([`K8sCache::enable`]).
    enabled: tokio::sync::Mutex<Vec<Kind>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for K8sCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sCache").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Drop for K8sCache {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl K8sCache {
    /// A cache for `settings`; nothing is watched until [`K8sCache::start`].
    pub fn new(settings: CacheSettings) -> Result<Self, K8sError> {
        let exclude = settings
            .exclude_pods
            .iter()
            .map(|p| {
                Regex::new(&format!("^(?:{p})$"))
                    .map_err(|source| K8sError::ExcludePattern { pattern: p.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index = Index::new(settings.delete_grace_period, exclude);
        Ok(K8sCache {
            shared: Arc::new(Shared { index: RwLock::new(index), stats: CacheStats::default() }),
            settings,
            running: tokio::sync::Mutex::new(None),
            enabled: tokio::sync::Mutex::new(Vec::new()),
            stop: CancellationToken::new(),
        })
    }

    /// Watches an optional kind too ([`Kind::EndpointSlice`], [`Kind::MetricsConfiguration`]),
    /// from now if the cache runs, else from [`K8sCache::start`]. Readiness never waits for it.
    pub async fn enable(&self, kind: Kind) {
        let mut enabled = self.enabled.lock().await;
        if Kind::REQUIRED.contains(&kind) || enabled.contains(&kind) {
            return;
        }
        enabled.push(kind);
        if let Some(running) = self.running.lock().await.as_mut() {
            running.restart(kind);
        }
    }

    /// The settings the cache was made with.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Registers a processor's extraction rules. Instances with the same rules share a view;
    /// rules no earlier instance had make the pods, namespaces and nodes be listed again (what
    /// arrived before was pruned without them).
    pub async fn register_view(&self, rules: Vec<Rule>) -> ViewId {
        let (view, new_rules) = self.write().views.register(rules);
        if new_rules && let Some(running) = self.running.lock().await.as_mut() {
            for kind in [Kind::Pod, Kind::Namespace, Kind::Node] {
                running.restart(kind);
            }
        }
        view
    }

    /// Connects and starts the watches (once; later calls return at once). Fails only on
    /// configuration problems; an unreachable API server is retried in the background.
    pub async fn start(&self) -> Result<(), K8sError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let connection = client::connect(&self.settings.auth, self.shared.clone()).await?;
        let server: Arc<str> = connection.server.into();
        let client = connection.client;
        let s = &self.settings;
        let base = watcher::Config::default().page_size(LIST_PAGE_SIZE);
        let large = base.clone().page_size(LARGE_OBJECT_PAGE_SIZE);
        let mut pods = large.clone();
        if let Some(fields) = s.pod_fields() {
            pods = pods.fields(&fields);
        }
        if let Some(labels) = &s.pod_label_selector {
            pods = pods.labels(labels);
        }
        let mut spawners: HashMap<Kind, Spawner> = HashMap::new();
        let ns = s.namespace.as_deref();
        spawners.insert(Kind::Pod, self.spawner(scoped::<PodObject>(&client, ns), pods, &server));
        spawners.insert(Kind::ReplicaSet, self.spawner(scoped::<ReplicaSetObject>(&client, ns), base.clone(), &server));
        spawners.insert(Kind::Job, self.spawner(scoped::<JobObject>(&client, ns), base.clone(), &server));
        spawners.insert(Kind::Service, self.spawner(scoped::<ServiceObject>(&client, ns), base.clone(), &server));
        spawners.insert(Kind::Node, self.spawner(Api::<NodeObject>::all(client.clone()), large, &server));
        spawners
            .insert(Kind::Namespace, self.spawner(Api::<NamespaceObject>::all(client.clone()), base.clone(), &server));
        let (api_ns, api_service) = API_SERVER_SERVICE;
        let slices = base.clone().labels(&format!("{SERVICE_NAME_LABEL}={api_service}"));
        let slices_api = Api::<EndpointSliceObject>::namespaced(client.clone(), api_ns);
        spawners.insert(Kind::EndpointSlice, self.spawner(slices_api, slices, &server));
        let configs = Api::<MetricsConfigurationObject>::all(client.clone());
        spawners.insert(Kind::MetricsConfiguration, self.spawner(configs, base, &server));
        let mut started = Running { spawners, tasks: HashMap::new() };
        for kind in Kind::REQUIRED.iter().chain(self.enabled.lock().await.iter()) {
            started.restart(*kind);
        }
        tokio::spawn(expire_deleted(self.shared.clone(), self.settings.delete_grace_period, self.stop.clone()));
        tracing::info!(
            server = %server,
            node = s.node.as_deref().unwrap_or("(all nodes)"),
            namespace = s.namespace.as_deref().unwrap_or("(all namespaces)"),
            "watching Kubernetes pods, replicasets, jobs, services, nodes and namespaces"
        );
        *running = Some(started);
        Ok(())
    }

    fn spawner<K: Watched>(&self, api: Api<K>, config: watcher::Config, server: &Arc<str>) -> Spawner {
        let (shared, server, stop) = (self.shared.clone(), server.clone(), self.stop.clone());
        Box::new(move || watch::spawn(shared.clone(), api.clone(), config.clone(), server.clone(), stop.clone()))
    }

    /// True once every required kind has been listed.
    pub fn synced(&self) -> bool {
        Kind::REQUIRED.iter().all(|k| self.shared.stats.kind(*k).synced())
    }

    /// `Ok` when synced, else which kinds are not and why (for `/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        let pending: Vec<String> = Kind::REQUIRED
            .iter()
            .filter(|k| !self.shared.stats.kind(**k).synced())
            .map(|k| match self.shared.stats.kind(*k).last_error() {
                Some(e) => format!("{} not listed yet ({e})", k.plural()),
                None => format!("{} not listed yet", k.plural()),
            })
            .collect();
        if pending.is_empty() { Ok(()) } else { Err(pending.join("; ")) }
    }

    /// Waits until every kind has been listed, at most `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), K8sError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.synced() {
            if tokio::time::Instant::now() >= deadline {
                let pending = self.readiness().err().unwrap_or_default();
                return Err(K8sError::NotSynced { timeout, pending });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// A read view for one batch: every lookup under one read lock, at one instant.
    pub fn reader(&self) -> Reader<'_> {
        Reader { index: self.shared.index.read().unwrap_or_else(|p| p.into_inner()), now: Instant::now() }
    }

    /// The cache's counters.
    pub fn stats(&self) -> &CacheStats {
        &self.shared.stats
    }

    /// The collector of the `fovea.k8s.*` own metrics.
    pub fn collector(&self) -> Arc<dyn crate::telemetry::Collector> {
        Arc::new(telemetry::CacheCollector(self.shared.clone()))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.shared.index.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The Api of `K` in `namespace`, or in all namespaces.
fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Forgets deleted pods once their grace period is over (lookups already ignore them then;
/// this frees the memory).
async fn expire_deleted(shared: Arc<Shared>, grace: Duration, stop: CancellationToken) {
    let period = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        shared.index.write().unwrap_or_else(|p| p.into_inner()).expire(Instant::now());
    }
}

/// Lookups for one batch, under one read lock.
pub struct Reader<'a> {
    index: RwLockReadGuard<'a, Index>,
    now: Instant,
}

impl Reader<'_> {
    /// What `ip` names: a pod (live or within its grace period), a Service, a node.
    pub fn ip(&self, ip: IpAddr) -> Option<Found<'_>> {
        self.index.lookup_ip(ip.to_canonical(), self.now)
    }

    /// The pod with `uid`.
    pub fn uid(&self, uid: &str) -> Option<Found<'_>> {
        self.index.lookup_uid(uid, self.now)
    }

    /// A pod's owners (Deployment through its ReplicaSet, CronJob through its Job).
    pub fn owners<'b>(&'b self, pod: &'b PodMeta) -> Owners<'b> {
        self.index.owners(pod)
    }

    /// A namespace.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceMeta> {
        self.index.namespace(name)
    }

    /// A node.
    pub fn node(&self, name: &str) -> Option<&NodeMeta> {
        self.index.node(name)
    }

    /// The API server's addresses: the `kubernetes` Service's ClusterIPs and, when
    /// [`Kind::EndpointSlice`] is watched, its endpoints.
    pub fn api_server_addresses(&self) -> Vec<IpAddr> {
        self.index.api_server_addresses()
    }

    /// The `MetricsConfiguration` in force: the oldest one (by creation time, then name), as
    /// Retina honours only one per cluster. `None` when there is none (or it is not watched).
    pub fn metrics_configuration(&self) -> Option<&MetricsConfiguration> {
        self.index.metrics_configuration()
    }

    /// Changes so far to what [`Reader::api_server_addresses`] and
    /// [`Reader::metrics_configuration`] return: compare to notice a change without reading.
    pub fn changes(&self) -> u64 {
        self.index.changes()
    }

    /// The attribute name of tag `id` of `view`.
    pub fn tag(&self, view: ViewId, id: u32) -> Option<&Tag> {
        self.index.views.tag(view, id)
    }
}
