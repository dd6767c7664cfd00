//! The Kubernetes objects the cache watches, as they come off the wire. Only the fields the
//! cache uses are deserialized (no managed fields, no container specs, no conditions, no node
//! images): an object is pruned while it is read, so nothing else is ever allocated for it.
//!
//! Each type implements kube's [`Resource`] with the URL of the real kind, so kube's watcher
//! lists and watches it like the k8s-openapi type. ReplicaSets, Jobs and Namespaces are watched
//! metadata-only (`PartialObjectMetadata`), which also spares the API server sending their specs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::Resource;
use serde::{Deserialize, Deserializer};
use smol_str::SmolStr;

/// Label or annotation pairs, sorted by key.
pub type Pairs = Vec<(SmolStr, SmolStr)>;

/// The owner that controls an object: its `ownerReferences` entry with `controller: true`, else
/// the first entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Owner kind (`ReplicaSet`, `Deployment`, `Job` ...).
    pub kind: SmolStr,
    /// Owner name.
    pub name: SmolStr,
}

/// What the cache keeps of an object's metadata.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// `metadata.name`.
    pub name: SmolStr,
    /// `metadata.namespace` (empty for cluster-scoped objects).
    pub namespace: SmolStr,
    /// `metadata.uid`.
    pub uid: SmolStr,
    /// `metadata.labels` (pruned to what some extraction rule wants before storing).
    pub labels: Pairs,
    /// `metadata.annotations` (pruned the same way).
    pub annotations: Pairs,
    /// The controlling owner.
    pub owner: Option<Owner>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MetaWire {
    name: SmolStr,
    namespace: SmolStr,
    uid: SmolStr,
    resource_version: Option<String>,
    creation_timestamp: Option<SmolStr>,
    #[serde(deserialize_with = "pairs")]
    labels: Pairs,
    #[serde(deserialize_with = "pairs")]
    annotations: Pairs,
    #[serde(deserialize_with = "null_default")]
    owner_references: Vec<OwnerWire>,
}

#[derive(Deserialize)]
struct OwnerWire {
    kind: SmolStr,
    name: SmolStr,
    #[serde(default)]
    controller: Option<bool>,
}

impl MetaWire {
    /// What kube needs (name, namespace, resourceVersion) and what the cache keeps.
    fn split(self) -> (ObjectMeta, Meta) {
        let object_meta = ObjectMeta {
            name: Some(self.name.to_string()),
            namespace: (!self.namespace.is_empty()).then(|| self.namespace.to_string()),
            resource_version: self.resource_version,
            ..ObjectMeta::default()
        };
        let controller = self.owner_references.iter().position(|o| o.controller == Some(true));
        let owner = controller
            .or((!self.owner_references.is_empty()).then_some(0))
            .and_then(|i| self.owner_references.into_iter().nth(i))
            .map(|o| Owner { kind: o.kind, name: o.name });
        let meta = Meta {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            labels: self.labels,
            annotations: self.annotations,
            owner,
        };
        (object_meta, meta)
    }
}

/// A JSON map (or null) of strings, as sorted pairs.
fn pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
    let map: Option<BTreeMap<SmolStr, SmolStr>> = Option::deserialize(d)?;
    Ok(map.map(|m| m.into_iter().collect()).unwrap_or_default())
}

/// A value that may be `null`, read as its default.
fn null_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Parses addresses, leaving out what is not one (`None` for a headless Service, empty strings).
fn addresses<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for text in texts {
        if let Ok(ip) = text.parse::<IpAddr>()
            && !out.contains(&ip)
        {
            out.push(ip.to_canonical());
        }
    }
    out
}

macro_rules! resource {
    ($ty:ty, $k8s:ty, $scope:ty) => {
        impl Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$k8s as k8s_openapi::Resource>::KIND.into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                <$k8s as k8s_openapi::Resource>::GROUP.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                <$k8s as k8s_openapi::Resource>::VERSION.into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$k8s as k8s_openapi::Resource>::URL_PATH_SEGMENT.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.object_meta
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.object_meta
            }
        }
    };
}

/// A Pod: identity, owner, node, addresses, phase, start time.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "PodWire")]
pub struct PodObject {
    object_meta: ObjectMeta,
    /// Metadata.
    pub meta: Meta,
    /// `spec.nodeName` (empty before scheduling).
    pub node_name: SmolStr,
    /// `spec.hostNetwork`: the pod uses its node's addresses.
    pub host_network: bool,
    /// `status.phase` is `Succeeded` or `Failed`: the pod has ended and no longer owns its IP.
    pub terminal: bool,
    /// `status.podIPs` (or `status.podIP`), IPv4 and IPv6.
    pub ips: Vec<IpAddr>,
    /// `status.startTime` (RFC 3339).
    pub start_time: SmolStr,
}

#[derive(Deserialize)]
struct PodWire {
    #[serde(default)]
    metadata: MetaWire,
    #[serde(default, deserialize_with = "null_default")]
    spec: PodSpecWire,
    #[serde(default, deserialize_with = "null_default")]
    status: PodStatusWire,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PodSpecWire {
    node_name: SmolStr,
    host_network: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodStatusWire {
    phase: SmolStr,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs", deserialize_with = "null_default")]
    pod_ips: Vec<PodIpWire>,
    #[serde(rename = "startTime")]
    start_time: SmolStr,
}

#[derive(Deserialize)]
struct PodIpWire {
    ip: String,
}

impl From<PodWire> for PodObject {
    fn from(w: PodWire) -> Self {
        let (object_meta, meta) = w.metadata.split();
        let mut texts: Vec<&str> = w.status.pod_ips.iter().map(|p| p.ip.as_str()).collect();
        if let Some(ip) = w.status.pod_ip.as_deref() {
            texts.push(ip);
        }
        PodObject {
            object_meta,
            meta,
            node_name: w.spec.node_name,
            host_network: w.spec.host_network,
            terminal: matches!(w.status.phase.as_str(), "Succeeded" | "Failed"),
            ips: addresses(texts),
            start_time: w.status.start_time,
        }
    }
}

resource!(PodObject, k8s_openapi::api::core::v1::Pod, NamespaceResourceScope);

/// A Service: its ClusterIPs.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "ServiceWire")]
pub struct ServiceObject {
    object_meta: ObjectMeta,
    /// Metadata.
    pub meta: Meta,
    /// `spec.clusterIPs` (or `spec.clusterIP`), without `None`.
    pub cluster_ips: Vec<IpAddr>,
}

#[derive(Deserialize)]
struct ServiceWire {
    #[serde(default)]
    metadata: MetaWire,
    #[serde(default, deserialize_with = "null_default")]
    spec: ServiceSpecWire,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceSpecWire {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs", deserialize_with = "null_default")]
    cluster_ips: Vec<String>,
}

impl From<ServiceWire> for ServiceObject {
    fn from(w: ServiceWire) -> Self {
        let (object_meta, meta) = w.metadata.split();
        let texts = w.spec.cluster_ips.iter().map(String::as_str).chain(w.spec.cluster_ip.as_deref());
        ServiceObject { object_meta, meta, cluster_ips: addresses(texts) }
    }
}

resource!(ServiceObject, k8s_openapi::api::core::v1::Service, NamespaceResourceScope);

/// A Node: its InternalIPs.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "NodeWire")]
pub struct NodeObject {
    object_meta: ObjectMeta,
    /// Metadata.
    pub meta: Meta,
    /// `status.addresses` of type `InternalIP`.
    pub internal_ips: Vec<IpAddr>,
}

#[derive(Deserialize)]
struct NodeWire {
    #[serde(default)]
    metadata: MetaWire,
    #[serde(default, deserialize_with = "null_default")]
    status: NodeStatusWire,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeStatusWire {
    #[serde(deserialize_with = "null_default")]
    addresses: Vec<NodeAddressWire>,
}

#[derive(Deserialize)]
struct NodeAddressWire {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

impl From<NodeWire> for NodeObject {
    fn from(w: NodeWire) -> Self {
        let (object_meta, meta) = w.metadata.split();
        let internal = w.status.addresses.iter().filter(|a| a.kind == "InternalIP").map(|a| a.address.as_str());
        NodeObject { object_meta, meta, internal_ips: addresses(internal) }
    }
}

resource!(NodeObject, k8s_openapi::api::core::v1::Node, ClusterResourceScope);

/// The metadata of an object of kind `K`, requested as `PartialObjectMetadata` (the API server
/// sends no spec or status).
#[derive(Clone, Deserialize)]
#[serde(from = "MetadataWire")]
pub struct MetadataObject<K> {
    object_meta: ObjectMeta,
    /// Metadata.
    pub meta: Meta,
    kind: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for MetadataObject<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataObject").field("meta", &self.meta).finish()
    }
}

#[derive(Deserialize)]
struct MetadataWire {
    #[serde(default)]
    metadata: MetaWire,
}

impl<K> From<MetadataWire> for MetadataObject<K> {
    fn from(w: MetadataWire) -> Self {
        let (object_meta, meta) = w.metadata.split();
        MetadataObject { object_meta, meta, kind: PhantomData }
    }
}

impl<K: k8s_openapi::Resource> Resource for MetadataObject<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        K::GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        K::VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        K::URL_PATH_SEGMENT.into()
    }
    fn metadata_api() -> bool {
        true
    }
    fn meta(&self) -> &ObjectMeta {
        &self.object_meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.object_meta
    }
}

/// A ReplicaSet's metadata (its owner names the Deployment).
pub type ReplicaSetObject = MetadataObject<k8s_openapi::api::apps::v1::ReplicaSet>;
/// A Job's metadata (its owner names the CronJob).
pub type JobObject = MetadataObject<k8s_openapi::api::batch::v1::Job>;
/// A Namespace's metadata (labels and annotations for extraction).
pub type NamespaceObject = MetadataObject<k8s_openapi::api::core::v1::Namespace>;

/// An EndpointSlice: the addresses of its endpoints (ready or not: the API server's endpoints
/// are what the node talks to, whatever their readiness).
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "EndpointSliceWire")]
pub struct EndpointSliceObject {
    object_meta: ObjectMeta,
    /// Metadata.
    pub meta: Meta,
    /// `endpoints[].addresses[]`.
    pub addresses: Vec<IpAddr>,
}

#[derive(Deserialize)]
struct EndpointSliceWire {
    #[serde(default)]
    metadata: MetaWire,
    #[serde(default, deserialize_with = "null_default")]
    endpoints: Vec<EndpointWire>,
}

#[derive(Deserialize)]
struct EndpointWire {
    #[serde(default, deserialize_with = "null_default")]
    addresses: Vec<String>,
}

impl From<EndpointSliceWire> for EndpointSliceObject {
    fn from(w: EndpointSliceWire) -> Self {
        let (object_meta, meta) = w.metadata.split();
        let texts = w.endpoints.iter().flat_map(|e| e.addresses.iter().map(String::as_str));
        EndpointSliceObject { object_meta, meta, addresses: addresses(texts) }
    }
}

resource!(EndpointSliceObject, k8s_openapi::api::discovery::v1::EndpointSlice, NamespaceResourceScope);

/// One `spec.contextOptions` entry of a `MetricsConfiguration`, as written (the component that
/// applies it decides what the strings mean).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContextOption {
    /// `metricName` (`forward_count` ...).
    pub metric_name: String,
    /// `sourceLabels` (`ip`, `podname` ...).
    #[serde(deserialize_with = "null_default")]
    pub source_labels: Vec<String>,
    /// `destinationLabels`.
    #[serde(deserialize_with = "null_default")]
    pub destination_labels: Vec<String>,
    /// `additionalLabels`.
    #[serde(deserialize_with = "null_default")]
    pub additional_labels: Vec<String>,
    /// `ttl` (a Go duration; empty: never).
    pub ttl: String,
}

/// Retina's `MetricsConfiguration` (`retina.sh/v1alpha1`): which pod-level metrics, with which
/// context labels, for which namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfiguration {
    /// `metadata.name`.
    pub name: SmolStr,
    /// `metadata.creationTimestamp` (RFC 3339; orders configurations).
    pub created: SmolStr,
    /// `spec.contextOptions`.
    pub context_options: Vec<ContextOption>,
    /// `spec.namespaces.include` (`None`: not given).
    pub include: Option<Vec<String>>,
    /// `spec.namespaces.exclude`.
    pub exclude: Option<Vec<String>>,
}

/// A `MetricsConfiguration` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "MetricsConfigurationWire")]
pub struct MetricsConfigurationObject {
    object_meta: ObjectMeta,
    /// What the cache keeps.
    pub config: MetricsConfiguration,
}

#[derive(Deserialize)]
struct MetricsConfigurationWire {
    #[serde(default)]
    metadata: MetaWire,
    #[serde(default, deserialize_with = "null_default")]
    spec: MetricsSpecWire,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MetricsSpecWire {
    #[serde(deserialize_with = "null_default")]
    context_options: Vec<ContextOption>,
    #[serde(deserialize_with = "null_default")]
    namespaces: NamespacesWire,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamespacesWire {
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
}

impl From<MetricsConfigurationWire> for MetricsConfigurationObject {
    fn from(w: MetricsConfigurationWire) -> Self {
        let created = w.metadata.creation_timestamp.clone().unwrap_or_default();
        let (object_meta, meta) = w.metadata.split();
        let config = MetricsConfiguration {
            name: meta.name,
            created,
            context_options: w.spec.context_options,
            include: w.spec.namespaces.include,
            exclude: w.spec.namespaces.exclude,
        };
        MetricsConfigurationObject { object_meta, config }
    }
}

impl Resource for MetricsConfigurationObject {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "MetricsConfiguration".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "retina.sh".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "metricsconfigurations".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.object_meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.object_meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_keeps_only_what_the_cache_uses() {
        let json = r#"{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "cart-7d9f8b6c5d-x2x9z", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "cart", "pod-template-hash": "7d9f8b6c5d"},
                "annotations": null,
                "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {"f:podIPs": {}}}}],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "o-0"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "cart-7d9f8b6c5d", "uid": "o-1", "controller": true}
                ]
            },
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "B"}]}]},
            "status": {"phase": "Running", "podIP": "198.18.0.2", "podIPs": [{"ip": "198.18.0.2"}, {"ip": "2001:db8::2"}],
                       "startTime": "2026-01-01T00:00:00Z", "conditions": [{"type": "Ready", "status": "True"}]}
        }"#;
        let pod: PodObject = serde_json::from_str(json).unwrap();
        assert_eq!(
            (pod.meta.name.as_str(), pod.meta.namespace.as_str(), pod.meta.uid.as_str()),
            ("cart-7d9f8b6c5d-x2x9z", "shop", "u-1")
        );
        assert_eq!(pod.meta().resource_version.as_deref(), Some("42"));
        assert_eq!(pod.meta.owner, Some(Owner { kind: "ReplicaSet".into(), name: "cart-7d9f8b6c5d".into() }));
        assert_eq!(pod.ips, vec!["198.18.0.2".parse::<IpAddr>().unwrap(), "2001:db8::2".parse().unwrap()]);
        assert_eq!((pod.node_name.as_str(), pod.host_network, pod.terminal), ("node-1", false, false));
        assert_eq!(pod.meta.labels.len(), 2);
        assert!(pod.meta.annotations.is_empty());
        assert_eq!(PodObject::plural(&()), "pods");
    }

    #[test]
    fn services_and_nodes_keep_their_addresses() {
        let svc: ServiceObject = serde_json::from_str(
            r#"{"metadata": {"name": "db", "namespace": "shop", "resourceVersion": "1"},
                "spec": {"clusterIP": "198.19.0.10", "clusterIPs": ["198.19.0.10", "2001:db8:1::10"]}}"#,
        )
        .unwrap();
        assert_eq!(svc.cluster_ips.len(), 2);
        let headless: ServiceObject =
            serde_json::from_str(r#"{"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}"#).unwrap();
        assert!(headless.cluster_ips.is_empty());
        let node: NodeObject = serde_json::from_str(
            r#"{"metadata": {"name": "node-1"}, "status": {"addresses": [
                {"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "198.18.0.1"},
                {"type": "ExternalIP", "address": "198.18.9.9"}], "images": [{"names": ["a"], "sizeBytes": 1}]}}"#,
        )
        .unwrap();
        assert_eq!(node.internal_ips, vec!["198.18.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(<NodeObject as Resource>::url_path(&(), None), "/api/v1/nodes");
        assert_eq!(<ReplicaSetObject as Resource>::url_path(&(), None), "/apis/apps/v1/replicasets");
        assert!(ReplicaSetObject::metadata_api());
    }
}
