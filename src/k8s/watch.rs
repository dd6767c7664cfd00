//! One task per watched kind: kube's watcher (list with pages, then watch from the list's
//! resourceVersion with bookmarks; on 410 Gone it lists again; a watch that ends is resumed from
//! the last resourceVersion seen) behind kube's default backoff (0.8 s doubling to 30 s, with
//! jitter, reset after 2 minutes without errors), feeding the index one event at a time.
//!
//! Adding a kind: an object type in `objects.rs`, its maps in `index.rs`, an impl of
//! [`Watched`] here, and one `spawner` line in `K8sCache::start`.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::index::Index;
use super::objects::{
    EndpointSliceObject, JobObject, MetricsConfigurationObject, NamespaceObject, NodeObject, PodObject,
    ReplicaSetObject, ServiceObject,
};
use super::telemetry::EventKind;
use super::{Kind, Shared};

/// An object type the cache watches and how it changes the index.
pub(crate) trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Which kind it is.
    const KIND: Kind;
    /// Stores or replaces the object; true when it was not there.
    fn apply(self, index: &mut Index) -> bool;
    /// Removes the object (a pod stays for its grace period).
    fn delete(self, index: &mut Index, now: Instant);
}

impl Watched for PodObject {
    const KIND: Kind = Kind::Pod;
    fn apply(self, index: &mut Index) -> bool {
        index.apply_pod(self)
    }
    fn delete(self, index: &mut Index, now: Instant) {
        index.delete_pod(&self.meta.uid, now);
    }
}

impl Watched for ServiceObject {
    const KIND: Kind = Kind::Service;
    fn apply(self, index: &mut Index) -> bool {
        index.apply_service(self)
    }
    fn delete(self, index: &mut Index, _: Instant) {
        index.remove_service(&self.meta.namespace, &self.meta.name);
    }
}

impl Watched for NodeObject {
    const KIND: Kind = Kind::Node;
    fn apply(self, index: &mut Index) -> bool {
        index.apply_node(self)
    }
    fn delete(self, index: &mut Index, _: Instant) {
        index.remove_node(&self.meta.name);
    }
}

impl Watched for NamespaceObject {
    const KIND: Kind = Kind::Namespace;
    fn apply(self, index: &mut Index) -> bool {
        index.apply_namespace(self.meta)
    }
    fn delete(self, index: &mut Index, _: Instant) {
        index.remove_namespace(&self.meta.name);
    }
}

impl Watched for ReplicaSetObject {
    const KIND: Kind = Kind::ReplicaSet;
    fn apply(self, index: &mut Index) -> bool {
        index.apply_owner(Kind::ReplicaSet, self.meta)
    }
    fn delete(self, index: &mut Index, _: Instant) {
        index.remove_owner(Kind::ReplicaSet, &self.meta.namespace, &self.meta.name);
    }
}

impl Watched for JobObject {
    const KIND: Kind = Kind::Job;
    fn apply(self, index: &mut Index) -> bool {
        index.apply_owner(Kind::Job, self.meta)
    }
    fn delete(self, index: &mut Index, _: Instant) {
        index.remove_owner(Kind::Job, &self.meta.namespace, &self.meta.name);
    }
}

impl Watched for EndpointSliceObject {
    const KIND: Kind = Kind::EndpointSlice;
    fn apply(self, index: &mut Index) -> bool {
        index.apply_endpoint_slice(self)
    }
    fn delete(self, index: &mut Index, _: Instant) {
        index.remove_endpoint_slice(&self.meta.name);
    }
}

impl Watched for MetricsConfigurationObject {
    const KIND: Kind = Kind::MetricsConfiguration;
    fn apply(self, index: &mut Index) -> bool {
        index.apply_metrics_configuration(self.config)
    }
    fn delete(self, index: &mut Index, _: Instant) {
        index.remove_metrics_configuration(&self.config.name);
    }
}

/// Starts watching `api` with `config` until `stop`; `server` names the API server in messages.
pub(crate) fn spawn<K: Watched>(
    shared: Arc<Shared>,
    api: Api<K>,
    config: watcher::Config,
    server: Arc<str>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stream = watcher::watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(event)) => apply(&shared, event),
                Some(Err(e)) => report(&shared, K::KIND, &server, &e),
                None => return,
            }
        }
    })
}

fn apply<K: Watched>(shared: &Shared, event: Event<K>) {
    let stats = shared.stats.kind(K::KIND);
    stats.activity();
    let mut index = shared.index.write().unwrap_or_else(|p| p.into_inner());
    match event {
        Event::Init => {
            stats.list_started();
            index.begin_list(K::KIND);
        }
        Event::InitApply(object) => {
            object.apply(&mut index);
            stats.event(EventKind::Listed);
        }
        Event::InitDone => {
            let removed = index.end_list(K::KIND);
            let count = index.count(K::KIND);
            drop(index);
            let recovered = stats.last_error().is_some();
            let first = !stats.synced();
            stats.set_synced();
            if first || recovered || removed > 0 {
                tracing::info!(
                    kind = K::KIND.name(),
                    objects = count,
                    removed,
                    "Kubernetes {} listed",
                    K::KIND.plural()
                );
            }
            if first
                && K::KIND != Kind::EndpointSlice
                && K::KIND != Kind::MetricsConfiguration
                && Kind::REQUIRED.iter().all(|k| shared.stats.kind(*k).synced())
            {
                // The first lists' pages (JSON parsed and dropped) are garbage now.
                crate::telemetry::release_freed_memory();
            }
        }
        Event::Apply(object) => {
            let new = object.apply(&mut index);
            stats.event(if new { EventKind::Added } else { EventKind::Modified });
        }
        Event::Delete(object) => {
            object.delete(&mut index, Instant::now());
            stats.event(EventKind::Deleted);
        }
    }
}

/// Logs a list or watch error (a warning when it differs from the kind's previous one, so a
/// retry loop does not flood the log) and remembers it for `/readyz`.
fn report(shared: &Shared, kind: Kind, server: &str, error: &watcher::Error) {
    let message = describe(kind, server, error);
    if shared.stats.kind(kind).error(message.clone()) {
        tracing::warn!(kind = kind.name(), "{message}; retrying with backoff");
    } else {
        tracing::debug!(kind = kind.name(), "{message}; retrying with backoff");
    }
}

/// What went wrong, and what to do about it, in words.
pub(crate) fn describe(kind: Kind, server: &str, error: &watcher::Error) -> String {
    let plural = kind.plural();
    let client = match error {
        watcher::Error::InitialListFailed(e) => ("list", e),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => ("watch", e),
        watcher::Error::WatchError(status) if status.code == 410 => {
            return format!("the watch of {plural} expired (410 Gone: {}); listing them again", status.message);
        }
        watcher::Error::WatchError(status) => return status_text("watch", plural, server, status),
        watcher::Error::NoResourceVersion => {
            return format!("the API server at {server} sent {plural} without a resourceVersion; cannot watch them");
        }
    };
    match client {
        (verb, kube::Error::Api(status)) => status_text(verb, plural, server, status),
        (verb, e) => format!("cannot {verb} {plural} at {server}: {}", chain(e)),
    }
}

fn status_text(verb: &str, plural: &str, server: &str, status: &kube::core::Status) -> String {
    match status.code {
        401 => format!(
            "the API server at {server} refused our credentials to {verb} {plural} (401 Unauthorized): the token is \
             wrong or expired; check the service-account token (auth_type: serviceAccount) or the kubeconfig user"
        ),
        403 => format!(
            "the API server at {server} forbids us to {verb} {plural} (403 Forbidden: {}); grant list and watch \
             on {plural} to fovea's service account (docs/kubernetes.md, RBAC)",
            status.message
        ),
        404 if plural == Kind::MetricsConfiguration.plural() => format!(
            "the API server at {server} has no {plural} (404): Retina's MetricsConfiguration CRD is not installed; \
             install deploy/helm/fovea/crds/metricsconfigurations.retina.sh.yaml, or set the flowmetrics connector's \
             selection to config"
        ),
        code => format!("the API server at {server} answered {code} to {verb} {plural}: {}", status.message),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
