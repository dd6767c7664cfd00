//! What an address (or an associated pod) becomes as attributes: the selected metadata names,
//! spelled for the end they describe (`source.k8s.pod.name`, or `k8s.pod.name` on a resource),
//! plus the extracted labels and annotations. Names are static or interned and values are
//! shared strings, so rendering copies no text.

use smol_str::SmolStr;

use crate::k8s::{Found, PodMeta, Reader, ViewId};
use crate::model::semconv::{End, EndAttribute, k8s};
use crate::model::{AttrValue, KeyValue};

/// The metadata names one instance adds (`extract.metadata`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selection {
    namespace: bool,
    pod_name: bool,
    pod_uid: bool,
    pod_ip: bool,
    pod_start_time: bool,
    node: bool,
    workload_kind: bool,
    workload_name: bool,
    deployment: bool,
    replicaset: bool,
    statefulset: bool,
    daemonset: bool,
    job: bool,
    cronjob: bool,
    service: bool,
}

impl Selection {
    /// The selection of `names` (validated names; others are ignored).
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Selection {
        let mut s = Selection::default();
        for name in names {
            let flag = match name {
                n if n == k8s::NAMESPACE_NAME.plain => &mut s.namespace,
                n if n == k8s::POD_NAME.plain => &mut s.pod_name,
                n if n == k8s::POD_UID.plain => &mut s.pod_uid,
                n if n == k8s::POD_IP.plain => &mut s.pod_ip,
                n if n == k8s::POD_START_TIME.plain => &mut s.pod_start_time,
                n if n == k8s::NODE_NAME.plain => &mut s.node,
                n if n == k8s::WORKLOAD_KIND.plain => &mut s.workload_kind,
                n if n == k8s::WORKLOAD_NAME.plain => &mut s.workload_name,
                n if n == k8s::DEPLOYMENT_NAME.plain => &mut s.deployment,
                n if n == k8s::REPLICASET_NAME.plain => &mut s.replicaset,
                n if n == k8s::STATEFULSET_NAME.plain => &mut s.statefulset,
                n if n == k8s::DAEMONSET_NAME.plain => &mut s.daemonset,
                n if n == k8s::JOB_NAME.plain => &mut s.job,
                n if n == k8s::CRONJOB_NAME.plain => &mut s.cronjob,
                n if n == k8s::SERVICE_NAME.plain => &mut s.service,
                _ => continue,
            };
            *flag = true;
        }
        s
    }

    /// True when `k8s.pod.ip` is selected.
    pub fn pod_ip(&self) -> bool {
        self.pod_ip
    }
}

/// Renders lookups for one instance.
#[derive(Debug, Clone, Copy)]
pub struct Renderer {
    /// Metadata names to add.
    pub selection: Selection,
    /// The instance's extraction view.
    pub view: ViewId,
}

fn push(out: &mut Vec<KeyValue>, on: bool, name: EndAttribute, end: End, value: &SmolStr) {
    if on && !value.is_empty() {
        out.push(KeyValue { key: SmolStr::new_static(name.at(end)), value: AttrValue::Str(value.clone()) });
    }
}

impl Renderer {
    /// Appends what `found` is, spelled for `end`; `address` is the address looked up (the
    /// value of `k8s.pod.ip` when selected).
    pub fn render(
        &self,
        reader: &Reader<'_>,
        found: Found<'_>,
        address: Option<&SmolStr>,
        end: End,
        out: &mut Vec<KeyValue>,
    ) {
        let s = &self.selection;
        match found {
            Found::Pod { pod, .. } => self.pod(reader, pod, address, end, out),
            Found::Service(service) => {
                push(out, s.namespace, k8s::NAMESPACE_NAME, end, &service.namespace);
                push(out, s.service, k8s::SERVICE_NAME, end, &service.name);
                if let Some(ns) = reader.namespace(&service.namespace) {
                    self.values(reader, ns.values(self.view), end, out);
                }
            }
            Found::Node(node) => {
                push(out, s.node, k8s::NODE_NAME, end, &node.name);
                self.values(reader, node.values(self.view), end, out);
            }
        }
    }

    fn pod(&self, reader: &Reader<'_>, pod: &PodMeta, address: Option<&SmolStr>, end: End, out: &mut Vec<KeyValue>) {
        let s = &self.selection;
        push(out, s.namespace, k8s::NAMESPACE_NAME, end, &pod.namespace);
        push(out, s.pod_name, k8s::POD_NAME, end, &pod.name);
        push(out, s.pod_uid, k8s::POD_UID, end, &pod.uid);
        if let Some(address) = address {
            push(out, s.pod_ip, k8s::POD_IP, end, address);
        }
        push(out, s.pod_start_time, k8s::POD_START_TIME, end, &pod.start_time);
        push(out, s.node, k8s::NODE_NAME, end, &pod.node);
        let owners = reader.owners(pod);
        if let Some((kind, name)) = owners.workload {
            push(out, s.workload_kind, k8s::WORKLOAD_KIND, end, kind);
            push(out, s.workload_name, k8s::WORKLOAD_NAME, end, name);
        }
        for (on, name, value) in [
            (s.deployment, k8s::DEPLOYMENT_NAME, owners.deployment),
            (s.replicaset, k8s::REPLICASET_NAME, owners.replicaset),
            (s.statefulset, k8s::STATEFULSET_NAME, owners.statefulset),
            (s.daemonset, k8s::DAEMONSET_NAME, owners.daemonset),
            (s.job, k8s::JOB_NAME, owners.job),
            (s.cronjob, k8s::CRONJOB_NAME, owners.cronjob),
        ] {
            if let Some(value) = value {
                push(out, on, name, end, value);
            }
        }
        self.values(reader, pod.values(self.view), end, out);
        if let Some(ns) = reader.namespace(&pod.namespace) {
            self.values(reader, ns.values(self.view), end, out);
        }
        if let Some(node) = reader.node(&pod.node) {
            self.values(reader, node.values(self.view), end, out);
        }
    }

    fn values(&self, reader: &Reader<'_>, values: &[(u32, SmolStr)], end: End, out: &mut Vec<KeyValue>) {
        for (id, value) in values {
            if let Some(tag) = reader.tag(self.view, *id) {
                out.push(KeyValue { key: tag.at(end).clone(), value: AttrValue::Str(value.clone()) });
            }
        }
    }
}
