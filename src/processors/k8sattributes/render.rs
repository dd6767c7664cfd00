//! What an address (or an associated pod) becomes as attributes: the selected metadata names,
//! spelled for the end they describe (`source.k8s.pod.name`, or `k8s.pod.name` on a resource),
//! plus the extracted labels and annotations. Names are static or interned and values are
//! shared strings, so rendering copies no text.

use smol_str::SmolStr;

use crate::k8s::{Found, PodMeta, Reader, Rule, Source, ViewId};
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
    selection: Selection,
    view: ViewId,
    /// Whether some rule reads namespaces or nodes (else their lookups are skipped).
    from_namespace: bool,
    from_node: bool,
}

fn push(out: &mut Vec<KeyValue>, on: bool, name: EndAttribute, end: End, value: &SmolStr) {
    if on && !value.is_empty() {
        out.push(KeyValue { key: SmolStr::new_static(name.at(end)), value: AttrValue::Str(value.clone()) });
    }
}

impl Renderer {
    /// A renderer of `selection` and the values of `rules` (registered as `view`).
    pub fn new(selection: Selection, view: ViewId, rules: &[Rule]) -> Self {
        Renderer {
            selection,
            view,
            from_namespace: rules.iter().any(|r| r.source == Source::Namespace),
            from_node: rules.iter().any(|r| r.source == Source::Node),
        }
    }

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
                if self.from_namespace
                    && let Some(ns) = reader.namespace(&service.namespace)
                {
                    self.values(reader, ns.values(self.view), end, out);
                }
            }
            Found::Node(node) => {
                push(out, s.node, k8s::NODE_NAME, end, &node.name);
                self.values(reader, node.values(self.view), end, out);
            }
        }
    }

    /// A pod's attributes, pushed in key order (so a record whose only attributes these are
    /// needs no sort; extracted labels and annotations may follow out of order).
    fn pod(&self, reader: &Reader<'_>, pod: &PodMeta, address: Option<&SmolStr>, end: End, out: &mut Vec<KeyValue>) {
        let s = &self.selection;
        let owners = reader.owners(pod);
        let some = |name: Option<&SmolStr>| name.cloned().unwrap_or_default();
        push(out, s.cronjob, k8s::CRONJOB_NAME, end, &some(owners.cronjob));
        push(out, s.daemonset, k8s::DAEMONSET_NAME, end, &some(owners.daemonset));
        push(out, s.deployment, k8s::DEPLOYMENT_NAME, end, &some(owners.deployment));
        push(out, s.job, k8s::JOB_NAME, end, &some(owners.job));
        push(out, s.namespace, k8s::NAMESPACE_NAME, end, &pod.namespace);
        push(out, s.node, k8s::NODE_NAME, end, &pod.node);
        if let Some(address) = address {
            push(out, s.pod_ip, k8s::POD_IP, end, address);
        }
        push(out, s.pod_name, k8s::POD_NAME, end, &pod.name);
        push(out, s.pod_start_time, k8s::POD_START_TIME, end, &pod.start_time);
        push(out, s.pod_uid, k8s::POD_UID, end, &pod.uid);
        push(out, s.replicaset, k8s::REPLICASET_NAME, end, &some(owners.replicaset));
        push(out, s.statefulset, k8s::STATEFULSET_NAME, end, &some(owners.statefulset));
        if let Some((kind, name)) = owners.workload {
            push(out, s.workload_kind, k8s::WORKLOAD_KIND, end, kind);
            push(out, s.workload_name, k8s::WORKLOAD_NAME, end, name);
        }
        self.values(reader, pod.values(self.view), end, out);
        if self.from_namespace
            && let Some(ns) = reader.namespace(&pod.namespace)
        {
            self.values(reader, ns.values(self.view), end, out);
        }
        if self.from_node
            && let Some(node) = reader.node(&pod.node)
        {
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
