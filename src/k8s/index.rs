//! The cache's contents and indexes: pods by uid and by IP (with the IP reuse rule), services
//! and nodes by IP, namespaces by name, and the ReplicaSet and Job owners that name a pod's
//! Deployment or CronJob.
//!
//! Writers (the watch tasks) change it under a write lock, one event at a time; readers take a
//! read lock once per batch and look up every record under it, so no lookup allocates and no
//! lock is held across an await.
//!
//! **IP reuse.** Every pod holding an IP has a *claim* on it; a lookup answers with the best
//! claim: a live pod before an ended (Succeeded/Failed) one before a deleted one, and among
//! equals the one that claimed the address last. So when a deleted pod's IP is handed to a new
//! pod, the new pod wins from the moment its event is applied; a deleted pod still answers for
//! `delete_grace_period` (records observed just before the deletion are still named), unless its
//! IP was reused. Each answer is one pod's immutable snapshot, so a record never mixes two pods.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use regex::Regex;
use smol_str::SmolStr;

use super::Kind;
use super::extract::{Extracted, Source, Values, ViewId, Views};
use super::objects::{EndpointSliceObject, Meta, MetricsConfiguration, NodeObject, Owner, PodObject, ServiceObject};

/// A pod as the cache keeps it (immutable; a change replaces it).
#[derive(Debug)]
pub struct PodMeta {
    /// `metadata.uid`.
    pub uid: SmolStr,
    /// `metadata.name`.
    pub name: SmolStr,
    /// `metadata.namespace`.
    pub namespace: SmolStr,
    /// `spec.nodeName`.
    pub node: SmolStr,
    /// The controlling owner.
    pub owner: Option<Owner>,
    /// `status.startTime`.
    pub start_time: SmolStr,
    /// Its addresses (empty for hostNetwork pods, whose addresses name their node).
    pub ips: Box<[IpAddr]>,
    /// The pod has ended (Succeeded, Failed).
    pub terminal: bool,
    extracted: Extracted,
}

/// A Service as the cache keeps it.
#[derive(Debug)]
pub struct ServiceMeta {
    /// `metadata.name`.
    pub name: SmolStr,
    /// `metadata.namespace`.
    pub namespace: SmolStr,
    ips: Box<[IpAddr]>,
}

/// A Node as the cache keeps it.
#[derive(Debug)]
pub struct NodeMeta {
    /// `metadata.name`.
    pub name: SmolStr,
    ips: Box<[IpAddr]>,
    extracted: Extracted,
}

/// A Namespace as the cache keeps it.
#[derive(Debug)]
pub struct NamespaceMeta {
    /// `metadata.name`.
    pub name: SmolStr,
    extracted: Extracted,
}

/// What an address resolves to.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// A pod; `grace` when it was deleted less than `delete_grace_period` ago.
    Pod {
        /// The pod.
        pod: &'a PodMeta,
        /// Deleted, still answering.
        grace: bool,
    },
    /// A Service ClusterIP.
    Service(&'a ServiceMeta),
    /// A node address (also what a hostNetwork pod's address resolves to).
    Node(&'a NodeMeta),
}

static DEPLOYMENT: SmolStr = SmolStr::new_static("Deployment");
static CRONJOB: SmolStr = SmolStr::new_static("CronJob");

/// A pod's owners, resolved through the cached ReplicaSets and Jobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Owners<'a> {
    /// Kind and name of the top owner (`Deployment`/`cart`; the ReplicaSet when it has no Deployment).
    pub workload: Option<(&'a SmolStr, &'a SmolStr)>,
    /// The Deployment.
    pub deployment: Option<&'a SmolStr>,
    /// The ReplicaSet.
    pub replicaset: Option<&'a SmolStr>,
    /// The StatefulSet.
    pub statefulset: Option<&'a SmolStr>,
    /// The DaemonSet.
    pub daemonset: Option<&'a SmolStr>,
    /// The Job.
    pub job: Option<&'a SmolStr>,
    /// The CronJob.
    pub cronjob: Option<&'a SmolStr>,
}

impl PodMeta {
    /// The values of `view`'s rules for this pod.
    pub fn values(&self, view: ViewId) -> &[(u32, SmolStr)] {
        values(&self.extracted, view)
    }
}

impl NodeMeta {
    /// The values of `view`'s rules for this node.
    pub fn values(&self, view: ViewId) -> &[(u32, SmolStr)] {
        values(&self.extracted, view)
    }
}

impl NamespaceMeta {
    /// The values of `view`'s rules for this namespace.
    pub fn values(&self, view: ViewId) -> &[(u32, SmolStr)] {
        values(&self.extracted, view)
    }
}

fn values(extracted: &Extracted, view: ViewId) -> &[(u32, SmolStr)] {
    extracted.get(view.0).map_or(&[], |v: &Values| v)
}

/// A pod and the state the cache tracks about it.
#[derive(Debug)]
struct PodSlot {
    pod: Arc<PodMeta>,
    deleted_at: Option<Instant>,
    generation: u32,
}

/// One pod's claim on an address.
#[derive(Debug)]
struct Claim {
    pod: Arc<PodMeta>,
    deleted_at: Option<Instant>,
    /// When (in applied events) the pod started holding the address.
    since: u64,
}

impl Claim {
    /// Higher ranks first: live, then not ended, then the latest claimant.
    fn rank(&self) -> (bool, bool, u64) {
        (self.deleted_at.is_none(), !self.pod.terminal, self.since)
    }
}

/// An object and the list generation that last saw it.
#[derive(Debug)]
struct Stamped<T> {
    value: T,
    generation: u32,
}

/// Namespaced objects by namespace, then name (looked up with `&str`, no key is built).
type ByNamespace<T> = HashMap<SmolStr, HashMap<SmolStr, Stamped<T>>>;

/// The cache's contents.
#[derive(Debug)]
pub struct Index {
    pods: HashMap<SmolStr, PodSlot>,
    pod_ips: HashMap<IpAddr, Vec<Claim>>,
    deleted: VecDeque<(Instant, SmolStr)>,
    services: ByNamespace<Arc<ServiceMeta>>,
    service_ips: HashMap<IpAddr, Arc<ServiceMeta>>,
    nodes: HashMap<SmolStr, Stamped<Arc<NodeMeta>>>,
    node_ips: HashMap<IpAddr, Arc<NodeMeta>>,
    namespaces: HashMap<SmolStr, Stamped<Arc<NamespaceMeta>>>,
    replicasets: ByNamespace<Option<Owner>>,
    jobs: ByNamespace<Option<Owner>>,
    /// The API server's EndpointSlices (name -> addresses).
    endpoint_slices: HashMap<SmolStr, Stamped<Vec<IpAddr>>>,
    /// Retina MetricsConfigurations by name.
    metrics_configurations: HashMap<SmolStr, Stamped<MetricsConfiguration>>,
    /// Changes to the API server's addresses and the MetricsConfigurations.
    changes: u64,
    /// Extraction rules of every processor instance.
    pub views: Views,
    exclude: Vec<Regex>,
    generation: [u32; Kind::ALL.len()],
    claims: u64,
    grace: Duration,
}

impl Index {
    /// An empty index whose deleted pods answer for `grace`, storing no pod whose name matches
    /// one of `exclude`.
    pub fn new(grace: Duration, exclude: Vec<Regex>) -> Self {
        Index {
            pods: HashMap::new(),
            pod_ips: HashMap::new(),
            deleted: VecDeque::new(),
            services: HashMap::new(),
            service_ips: HashMap::new(),
            nodes: HashMap::new(),
            node_ips: HashMap::new(),
            namespaces: HashMap::new(),
            replicasets: HashMap::new(),
            jobs: HashMap::new(),
            endpoint_slices: HashMap::new(),
            metrics_configurations: HashMap::new(),
            changes: 0,
            views: Views::default(),
            exclude,
            generation: [0; Kind::ALL.len()],
            claims: 0,
            grace,
        }
    }

    /// A list of `kind` starts: what it does not mention is gone once it ends.
    pub fn begin_list(&mut self, kind: Kind) {
        self.generation[kind as usize] = self.generation[kind as usize].wrapping_add(1);
    }

    /// A list of `kind` ended: removes (at once, without grace: when they went is unknown) the
    /// objects it did not mention. Returns how many.
    pub fn end_list(&mut self, kind: Kind) -> usize {
        let current = self.generation[kind as usize];
        match kind {
            Kind::Pod => {
                let stale: Vec<SmolStr> =
                    self.pods.iter().filter(|(_, s)| s.generation != current).map(|(uid, _)| uid.clone()).collect();
                for uid in &stale {
                    self.remove_pod(uid);
                }
                stale.len()
            }
            Kind::Service => {
                let stale = stale_in(&self.services, current);
                for (ns, name) in &stale {
                    self.remove_service(ns, name);
                }
                stale.len()
            }
            Kind::Node => {
                let stale: Vec<SmolStr> =
                    self.nodes.iter().filter(|(_, s)| s.generation != current).map(|(n, _)| n.clone()).collect();
                for name in &stale {
                    self.remove_node(name);
                }
                stale.len()
            }
            Kind::Namespace => {
                let before = self.namespaces.len();
                self.namespaces.retain(|_, s| s.generation == current);
                before - self.namespaces.len()
            }
            Kind::ReplicaSet => retain_generation(&mut self.replicasets, current),
            Kind::Job => retain_generation(&mut self.jobs, current),
            Kind::EndpointSlice => {
                let before = self.endpoint_slices.len();
                self.endpoint_slices.retain(|_, s| s.generation == current);
                self.changes += 1;
                before - self.endpoint_slices.len()
            }
            Kind::MetricsConfiguration => {
                let before = self.metrics_configurations.len();
                self.metrics_configurations.retain(|_, s| s.generation == current);
                self.changes += 1;
                before - self.metrics_configurations.len()
            }
        }
    }

    /// Objects of `kind` held (pods: deleted ones in their grace period included).
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Pod => self.pods.len(),
            Kind::Service => self.services.values().map(HashMap::len).sum(),
            Kind::Node => self.nodes.len(),
            Kind::Namespace => self.namespaces.len(),
            Kind::ReplicaSet => self.replicasets.values().map(HashMap::len).sum(),
            Kind::Job => self.jobs.values().map(HashMap::len).sum(),
            Kind::EndpointSlice => self.endpoint_slices.len(),
            Kind::MetricsConfiguration => self.metrics_configurations.len(),
        }
    }

    // ---- pods ----

    /// Stores or replaces a pod; true when it is new.
    pub fn apply_pod(&mut self, object: PodObject) -> bool {
        let PodObject { mut meta, node_name, host_network, terminal, ips, start_time, .. } = object;
        if self.exclude.iter().any(|re| re.is_match(&meta.name)) {
            return false;
        }
        self.views.prune(Source::Pod, &mut meta);
        let extracted = self.views.extract(Source::Pod, &meta);
        let Meta { name, namespace, uid, owner, .. } = meta;
        // A hostNetwork pod's addresses are its node's: they name the node, not the pod.
        let ips: Box<[IpAddr]> = if host_network { Box::new([]) } else { ips.into_boxed_slice() };
        let pod = Arc::new(PodMeta {
            uid: uid.clone(),
            name,
            namespace,
            node: node_name,
            owner,
            start_time,
            ips,
            terminal,
            extracted,
        });
        let generation = self.generation[Kind::Pod as usize];
        let old = self.pods.insert(uid.clone(), PodSlot { pod: pod.clone(), deleted_at: None, generation });
        if let Some(old) = &old {
            for ip in old.pod.ips.iter().filter(|ip| !pod.ips.contains(ip)) {
                self.drop_claim(*ip, &uid);
            }
        }
        for ip in pod.ips.iter() {
            let claims = self.pod_ips.entry(*ip).or_default();
            match claims.iter_mut().find(|c| c.pod.uid == uid) {
                Some(claim) => {
                    claim.pod = pod.clone();
                    claim.deleted_at = None;
                }
                None => {
                    self.claims += 1;
                    claims.push(Claim { pod: pod.clone(), deleted_at: None, since: self.claims });
                }
            }
            claims.sort_by_key(|c| std::cmp::Reverse(c.rank()));
        }
        old.is_none()
    }

    /// A pod was deleted: it keeps answering for the grace period unless its IP is reused.
    pub fn delete_pod(&mut self, uid: &str, now: Instant) {
        if self.grace.is_zero() {
            self.remove_pod(uid);
            return;
        }
        let Some(slot) = self.pods.get_mut(uid) else { return };
        slot.deleted_at = Some(now);
        let pod = slot.pod.clone();
        for ip in pod.ips.iter() {
            if let Some(claims) = self.pod_ips.get_mut(ip) {
                for claim in claims.iter_mut().filter(|c| c.pod.uid == pod.uid) {
                    claim.deleted_at = Some(now);
                }
                claims.sort_by_key(|c| std::cmp::Reverse(c.rank()));
            }
        }
        self.deleted.push_back((now, pod.uid.clone()));
    }

    /// Forgets deleted pods whose grace period is over. Returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some((at, _)) = self.deleted.front() {
            if now.duration_since(*at) < self.grace {
                break;
            }
            let Some((at, uid)) = self.deleted.pop_front() else { break };
            // Only if it was not re-added (or deleted again later) meanwhile.
            if self.pods.get(&uid).is_some_and(|s| s.deleted_at == Some(at)) {
                self.remove_pod(&uid);
                removed += 1;
            }
        }
        removed
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some(slot) = self.pods.remove(uid) {
            for ip in slot.pod.ips.iter() {
                self.drop_claim(*ip, uid);
            }
        }
    }

    fn drop_claim(&mut self, ip: IpAddr, uid: &str) {
        if let Some(claims) = self.pod_ips.get_mut(&ip) {
            claims.retain(|c| c.pod.uid != uid);
            if claims.is_empty() {
                self.pod_ips.remove(&ip);
            }
        }
    }

    // ---- the API server, Retina's MetricsConfigurations ----

    /// Stores or replaces one of the API server's EndpointSlices; true when it is new.
    pub fn apply_endpoint_slice(&mut self, object: EndpointSliceObject) -> bool {
        let generation = self.generation[Kind::EndpointSlice as usize];
        self.changes += 1;
        let slot = Stamped { value: object.addresses, generation };
        self.endpoint_slices.insert(object.meta.name, slot).is_none()
    }

    /// Forgets an EndpointSlice.
    pub fn remove_endpoint_slice(&mut self, name: &str) {
        if self.endpoint_slices.remove(name).is_some() {
            self.changes += 1;
        }
    }

    /// The API server's addresses: the `kubernetes` Service's ClusterIPs, then its endpoints.
    pub fn api_server_addresses(&self) -> Vec<IpAddr> {
        let (namespace, name) = super::API_SERVER_SERVICE;
        let service = self.services.get(namespace).and_then(|s| s.get(name));
        let mut out: Vec<IpAddr> = service.map(|s| s.value.ips.to_vec()).unwrap_or_default();
        for slice in self.endpoint_slices.values() {
            for ip in &slice.value {
                if !out.contains(ip) {
                    out.push(*ip);
                }
            }
        }
        out
    }

    /// Stores or replaces a MetricsConfiguration; true when it is new.
    pub fn apply_metrics_configuration(&mut self, config: MetricsConfiguration) -> bool {
        let generation = self.generation[Kind::MetricsConfiguration as usize];
        self.changes += 1;
        self.metrics_configurations.insert(config.name.clone(), Stamped { value: config, generation }).is_none()
    }

    /// Forgets a MetricsConfiguration.
    pub fn remove_metrics_configuration(&mut self, name: &str) {
        if self.metrics_configurations.remove(name).is_some() {
            self.changes += 1;
        }
    }

    /// The oldest MetricsConfiguration (creation time, then name).
    pub fn metrics_configuration(&self) -> Option<&MetricsConfiguration> {
        self.metrics_configurations
            .values()
            .map(|s| &s.value)
            .min_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)))
    }

    /// Changes so far to the API server's addresses and the MetricsConfigurations (the
    /// `kubernetes` Service counts through [`Index::apply_service`]).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    // ---- services, nodes, namespaces, owners ----

    /// Stores or replaces a Service; true when it is new.
    pub fn apply_service(&mut self, object: ServiceObject) -> bool {
        let ServiceObject { meta, cluster_ips, .. } = object;
        let old = self.remove_service(&meta.namespace, &meta.name);
        let service = Arc::new(ServiceMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            ips: cluster_ips.into_boxed_slice(),
        });
        for ip in service.ips.iter() {
            self.service_ips.insert(*ip, service.clone());
        }
        if (meta.namespace.as_str(), meta.name.as_str()) == super::API_SERVER_SERVICE {
            self.changes += 1;
        }
        let generation = self.generation[Kind::Service as usize];
        self.services.entry(meta.namespace).or_default().insert(meta.name, Stamped { value: service, generation });
        old.is_none()
    }

    /// Forgets a Service.
    pub fn remove_service(&mut self, namespace: &str, name: &str) -> Option<Arc<ServiceMeta>> {
        let in_namespace = self.services.get_mut(namespace)?;
        let old = in_namespace.remove(name)?.value;
        if (namespace, name) == super::API_SERVER_SERVICE {
            self.changes += 1;
        }
        if in_namespace.is_empty() {
            self.services.remove(namespace);
        }
        for ip in old.ips.iter() {
            if self.service_ips.get(ip).is_some_and(|s| Arc::ptr_eq(s, &old)) {
                self.service_ips.remove(ip);
            }
        }
        Some(old)
    }

    /// Stores or replaces a Node; true when it is new.
    pub fn apply_node(&mut self, object: NodeObject) -> bool {
        let NodeObject { mut meta, internal_ips, .. } = object;
        self.views.prune(Source::Node, &mut meta);
        let extracted = self.views.extract(Source::Node, &meta);
        let old = self.remove_node(&meta.name);
        let node = Arc::new(NodeMeta { name: meta.name.clone(), ips: internal_ips.into_boxed_slice(), extracted });
        for ip in node.ips.iter() {
            self.node_ips.insert(*ip, node.clone());
        }
        let generation = self.generation[Kind::Node as usize];
        self.nodes.insert(meta.name, Stamped { value: node, generation });
        old.is_none()
    }

    /// Forgets a Node.
    pub fn remove_node(&mut self, name: &str) -> Option<Arc<NodeMeta>> {
        let old = self.nodes.remove(name)?.value;
        for ip in old.ips.iter() {
            if self.node_ips.get(ip).is_some_and(|n| Arc::ptr_eq(n, &old)) {
                self.node_ips.remove(ip);
            }
        }
        Some(old)
    }

    /// Stores or replaces a Namespace; true when it is new.
    pub fn apply_namespace(&mut self, mut meta: Meta) -> bool {
        self.views.prune(Source::Namespace, &mut meta);
        let extracted = self.views.extract(Source::Namespace, &meta);
        let namespace = Arc::new(NamespaceMeta { name: meta.name.clone(), extracted });
        let generation = self.generation[Kind::Namespace as usize];
        self.namespaces.insert(meta.name, Stamped { value: namespace, generation }).is_none()
    }

    /// Forgets a Namespace.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Stores a ReplicaSet's or a Job's owner; true when it is new.
    pub fn apply_owner(&mut self, kind: Kind, meta: Meta) -> bool {
        let generation = self.generation[kind as usize];
        let map = self.owners_mut(kind);
        map.entry(meta.namespace).or_default().insert(meta.name, Stamped { value: meta.owner, generation }).is_none()
    }

    /// Forgets a ReplicaSet or a Job.
    pub fn remove_owner(&mut self, kind: Kind, namespace: &str, name: &str) {
        let map = self.owners_mut(kind);
        if let Some(in_namespace) = map.get_mut(namespace) {
            in_namespace.remove(name);
            if in_namespace.is_empty() {
                map.remove(namespace);
            }
        }
    }

    fn owners_mut(&mut self, kind: Kind) -> &mut ByNamespace<Option<Owner>> {
        match kind {
            Kind::Job => &mut self.jobs,
            _ => &mut self.replicasets,
        }
    }

    // ---- lookups ----

    /// What `ip` resolves to at `now`: a pod (live, or deleted within its grace period), else a
    /// Service ClusterIP, else a node address.
    pub fn lookup_ip(&self, ip: IpAddr, now: Instant) -> Option<Found<'_>> {
        if let Some(claims) = self.pod_ips.get(&ip) {
            for claim in claims {
                match claim.deleted_at {
                    None => return Some(Found::Pod { pod: &claim.pod, grace: false }),
                    Some(at) if now.duration_since(at) < self.grace => {
                        return Some(Found::Pod { pod: &claim.pod, grace: true });
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(service) = self.service_ips.get(&ip) {
            return Some(Found::Service(service));
        }
        self.node_ips.get(&ip).map(|n| Found::Node(n))
    }

    /// The pod with `uid` (live, or deleted within its grace period).
    pub fn lookup_uid(&self, uid: &str, now: Instant) -> Option<Found<'_>> {
        let slot = self.pods.get(uid)?;
        match slot.deleted_at {
            None => Some(Found::Pod { pod: &slot.pod, grace: false }),
            Some(at) if now.duration_since(at) < self.grace => Some(Found::Pod { pod: &slot.pod, grace: true }),
            Some(_) => None,
        }
    }

    /// A namespace by name.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceMeta> {
        self.namespaces.get(name).map(|s| &*s.value)
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeMeta> {
        self.nodes.get(name).map(|s| &*s.value)
    }

    /// The pod's owners: a ReplicaSet's Deployment and a Job's CronJob come from the cached
    /// ReplicaSets and Jobs (a ReplicaSet not seen yet is its own workload).
    pub fn owners<'a>(&'a self, pod: &'a PodMeta) -> Owners<'a> {
        let mut owners = Owners::default();
        let Some(owner) = &pod.owner else { return owners };
        let parent = |map: &'a ByNamespace<Option<Owner>>, parent_kind: &str| {
            map.get(pod.namespace.as_str())
                .and_then(|m| m.get(owner.name.as_str()))
                .and_then(|s| s.value.as_ref())
                .filter(|o| o.kind == parent_kind)
                .map(|o| &o.name)
        };
        owners.workload = Some((&owner.kind, &owner.name));
        match owner.kind.as_str() {
            "ReplicaSet" => {
                owners.replicaset = Some(&owner.name);
                owners.deployment = parent(&self.replicasets, "Deployment");
                if let Some(d) = owners.deployment {
                    owners.workload = Some((&DEPLOYMENT, d));
                }
            }
            "Job" => {
                owners.job = Some(&owner.name);
                owners.cronjob = parent(&self.jobs, "CronJob");
                if let Some(c) = owners.cronjob {
                    owners.workload = Some((&CRONJOB, c));
                }
            }
            "StatefulSet" => owners.statefulset = Some(&owner.name),
            "DaemonSet" => owners.daemonset = Some(&owner.name),
            _ => {}
        }
        owners
    }

    /// A rough count of the heap bytes the cache holds (entries, index slots, strings).
    pub fn estimate_bytes(&self) -> usize {
        fn text(s: &SmolStr) -> usize {
            if s.is_heap_allocated() { s.len() + 16 } else { 0 }
        }
        const SLOT: usize = 16; // hash map overhead per entry, roughly
        let mut bytes = 0;
        for (uid, slot) in &self.pods {
            let p = &slot.pod;
            bytes += SLOT + size_of::<SmolStr>() + size_of::<PodSlot>() + text(uid);
            bytes += 16
                + size_of::<PodMeta>()
                + [&p.uid, &p.name, &p.namespace, &p.node, &p.start_time].map(text).iter().sum::<usize>();
            bytes += p.ips.len() * size_of::<IpAddr>() + extracted_bytes(&p.extracted);
            if let Some(o) = &p.owner {
                bytes += text(&o.kind) + text(&o.name);
            }
        }
        for claims in self.pod_ips.values() {
            bytes += SLOT + size_of::<IpAddr>() + size_of::<Vec<Claim>>() + claims.capacity() * size_of::<Claim>();
        }
        for s in self.services.values().flat_map(HashMap::values) {
            bytes += 2 * SLOT + 16 + size_of::<ServiceMeta>() + text(&s.value.name) + text(&s.value.namespace);
            bytes += s.value.ips.len() * (size_of::<IpAddr>() * 2 + SLOT + 8);
        }
        for n in self.nodes.values() {
            bytes += SLOT + 16 + size_of::<NodeMeta>() + text(&n.value.name) + extracted_bytes(&n.value.extracted);
            bytes += n.value.ips.len() * (size_of::<IpAddr>() * 2 + SLOT + 8);
        }
        for n in self.namespaces.values() {
            bytes += SLOT + 16 + size_of::<NamespaceMeta>() + text(&n.value.name) + extracted_bytes(&n.value.extracted);
        }
        for owners in [&self.replicasets, &self.jobs] {
            for (name, owner) in owners.values().flat_map(HashMap::iter) {
                bytes += SLOT + size_of::<SmolStr>() + size_of::<Stamped<Option<Owner>>>() + text(name);
                if let Some(o) = &owner.value {
                    bytes += text(&o.kind) + text(&o.name);
                }
            }
        }
        bytes
    }
}

fn extracted_bytes(extracted: &Extracted) -> usize {
    extracted.iter().map(|v| 16 + v.len() * size_of::<(u32, SmolStr)>()).sum::<usize>()
}

fn stale_in<T>(map: &ByNamespace<T>, current: u32) -> Vec<(SmolStr, SmolStr)> {
    map.iter()
        .flat_map(|(ns, m)| m.iter().filter(|(_, s)| s.generation != current).map(|(n, _)| (ns.clone(), n.clone())))
        .collect()
}

fn retain_generation<T>(map: &mut ByNamespace<T>, current: u32) -> usize {
    let mut removed = 0;
    map.retain(|_, m| {
        let before = m.len();
        m.retain(|_, s| s.generation == current);
        removed += before - m.len();
        !m.is_empty()
    });
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, ip: &str, owner: Option<(&str, &str)>) -> PodObject {
        let json = serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": "1",
                         "ownerReferences": owner.map(|(k, n)| vec![serde_json::json!({"kind": k, "name": n, "controller": true})])},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Running", "podIPs": [{"ip": ip}]}
        });
        serde_json::from_value(json).unwrap()
    }

    fn name_at(index: &Index, ip: &str, now: Instant) -> Option<(String, bool)> {
        match index.lookup_ip(ip.parse().unwrap(), now)? {
            Found::Pod { pod, grace } => Some((pod.name.to_string(), grace)),
            _ => None,
        }
    }

    #[test]
    fn a_reused_ip_names_the_new_pod_at_once_and_a_deleted_pod_answers_during_its_grace() {
        let t0 = Instant::now();
        let mut index = Index::new(Duration::from_secs(30), Vec::new());
        assert!(index.apply_pod(pod("u1", "old", "198.18.0.2", None)));
        assert!(index.apply_pod(pod("u3", "lonely", "198.18.0.3", None)));
        index.delete_pod("u1", t0);
        index.delete_pod("u3", t0);
        assert_eq!(name_at(&index, "198.18.0.2", t0), Some(("old".into(), true)), "in its grace period");
        index.apply_pod(pod("u2", "new", "198.18.0.2", None));
        assert_eq!(name_at(&index, "198.18.0.2", t0), Some(("new".into(), false)), "reuse wins at once");
        let later = t0 + Duration::from_secs(31);
        assert_eq!(name_at(&index, "198.18.0.3", later), None, "grace is over");
        assert_eq!(index.expire(later), 2);
        assert_eq!(index.count(Kind::Pod), 1);
        assert_eq!(name_at(&index, "198.18.0.2", later), Some(("new".into(), false)));
    }

    #[test]
    fn a_relist_removes_what_it_did_not_mention_without_grace() {
        let now = Instant::now();
        let mut index = Index::new(Duration::from_secs(30), Vec::new());
        index.begin_list(Kind::Pod);
        index.apply_pod(pod("u1", "a", "198.18.0.2", None));
        index.apply_pod(pod("u2", "b", "198.18.0.3", None));
        assert_eq!(index.end_list(Kind::Pod), 0);
        index.begin_list(Kind::Pod);
        index.apply_pod(pod("u2", "b", "198.18.0.3", None));
        assert_eq!(index.end_list(Kind::Pod), 1);
        assert_eq!(name_at(&index, "198.18.0.2", now), None);
        assert_eq!(name_at(&index, "198.18.0.3", now), Some(("b".into(), false)));
    }

    #[test]
    fn owners_resolve_through_replicasets_and_jobs() {
        let mut index = Index::new(Duration::ZERO, Vec::new());
        let owned = |name: &str, kind: &str, owner: &str| Meta {
            name: name.into(),
            namespace: "shop".into(),
            owner: Some(Owner { kind: kind.into(), name: owner.into() }),
            ..Meta::default()
        };
        index.apply_pod(pod("u1", "cart-1", "198.18.0.2", Some(("ReplicaSet", "cart-7d9"))));
        let now = Instant::now();
        let Some(Found::Pod { pod: p, .. }) = index.lookup_ip("198.18.0.2".parse().unwrap(), now) else { panic!() };
        assert_eq!(index.owners(p).workload, Some((&"ReplicaSet".into(), &"cart-7d9".into())), "before the RS arrives");
        index.apply_owner(Kind::ReplicaSet, owned("cart-7d9", "Deployment", "cart"));
        let Some(Found::Pod { pod: p, .. }) = index.lookup_ip("198.18.0.2".parse().unwrap(), now) else { panic!() };
        let o = index.owners(p);
        assert_eq!(o.workload, Some((&DEPLOYMENT, &"cart".into())));
        assert_eq!(
            (o.replicaset.map(|s| s.as_str()), o.deployment.map(|s| s.as_str())),
            (Some("cart-7d9"), Some("cart"))
        );
        index.apply_pod(pod("u2", "report-1-x", "198.18.0.4", Some(("Job", "report-1"))));
        index.apply_owner(Kind::Job, owned("report-1", "CronJob", "report"));
        let Some(Found::Pod { pod: p, .. }) = index.lookup_ip("198.18.0.4".parse().unwrap(), now) else { panic!() };
        assert_eq!(index.owners(p).workload, Some((&CRONJOB, &"report".into())));
        assert!(index.estimate_bytes() > 0);
    }
}
