//! What the connector reads from the Kubernetes metadata cache that a `k8sattributes` processor
//! runs (a shared service): the API server's addresses, Retina's `MetricsConfiguration`, and
//! the `retina.sh: observe` annotations of pods and namespaces. The connector starts before
//! processors, so it looks for the cache while it runs, not when it starts.

use std::net::IpAddr;
use std::sync::Arc;

use smol_str::SmolStr;

use crate::k8s::{Field, Found, K8sCache, KeyMatch, Kind, MetricsConfiguration, Reader, Rule, Source, ViewId};
use crate::pipeline::Services;

/// Retina's annotation (`retina.sh: observe` on a pod or a namespace).
pub const ANNOTATION: &str = "retina.sh";

/// The value that selects a pod.
pub const OBSERVE: &str = "observe";

/// What the connector wants from the cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// The API server's endpoints (the `kubernetes` Service's EndpointSlices).
    pub api_server: bool,
    /// Retina's MetricsConfiguration.
    pub metrics_configuration: bool,
    /// Pods' and namespaces' `retina.sh` annotations.
    pub annotations: bool,
}

/// The cache, once found.
#[derive(Default)]
pub struct Cluster {
    cache: Option<Arc<K8sCache>>,
    view: Option<ViewId>,
    changes: Option<u64>,
}

/// What changed in the cluster since the last look.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// The API server's addresses.
    pub api_server: Vec<IpAddr>,
    /// The MetricsConfiguration in force.
    pub metrics_configuration: Option<MetricsConfiguration>,
}

impl Cluster {
    /// Finds the cache and asks it for what `needs` wants; true once found.
    pub async fn connect(&mut self, services: &Services, needs: Needs) -> bool {
        if self.cache.is_some() {
            return true;
        }
        let Some(cache) = services.get::<K8sCache>() else { return false };
        if needs.api_server {
            cache.enable(Kind::EndpointSlice).await;
        }
        if needs.metrics_configuration {
            cache.enable(Kind::MetricsConfiguration).await;
        }
        if needs.annotations {
            let rule = |source| Rule {
                source,
                field: Field::Annotation,
                key: KeyMatch::Exact(SmolStr::new_static(ANNOTATION)),
                tag_name: None,
            };
            self.view = Some(cache.register_view(vec![rule(Source::Pod), rule(Source::Namespace)]).await);
        }
        self.cache = Some(cache);
        true
    }

    /// The API server's addresses and the MetricsConfiguration, when either changed since the
    /// last call (the first call after the cache is found always answers).
    pub fn changes(&mut self) -> Option<Changes> {
        let cache = self.cache.as_ref()?;
        let reader = cache.reader();
        let now = reader.changes();
        if self.changes == Some(now) {
            return None;
        }
        self.changes = Some(now);
        Some(Changes {
            api_server: reader.api_server_addresses(),
            metrics_configuration: reader.metrics_configuration().cloned(),
        })
    }

    /// A read view for one batch of annotation checks, when annotations are watched.
    pub fn annotations(&self) -> Option<(Reader<'_>, ViewId)> {
        Some((self.cache.as_ref()?.reader(), self.view?))
    }
}

/// Whether `address` is a pod annotated `retina.sh: observe`, or a pod of a namespace so
/// annotated.
pub fn observed(reader: &Reader<'_>, view: ViewId, address: IpAddr) -> bool {
    let Some(Found::Pod { pod, .. }) = reader.ip(address) else { return false };
    let says = |values: &[(u32, SmolStr)]| values.iter().any(|(_, v)| v == OBSERVE);
    says(pod.values(view)) || reader.namespace(&pod.namespace).is_some_and(|ns| says(ns.values(view)))
}
