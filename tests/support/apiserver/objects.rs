//! Realistic Kubernetes objects for the fake API server, typed with k8s-openapi: what a kubelet,
//! a scheduler and the controllers would have written (managed fields, container specs,
//! conditions, the service-account volume), so sizes on the wire are those of a real cluster.
//! Each builder writes the JSON a real API server would return and parses it into the
//! k8s-openapi type, which checks the shape.

use std::net::IpAddr;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use serde_json::{Value, json};

/// When every test object was created.
const CREATED: &str = "2026-11-20T08:00:00Z";

fn labels(pairs: &[(&str, &str)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect())
}

fn managed(manager: &str, operation: &str, subresource: Option<&str>, fields: Value) -> Value {
    let mut entry = json!({
        "manager": manager, "operation": operation, "apiVersion": "v1", "time": CREATED,
        "fieldsType": "FieldsV1", "fieldsV1": fields
    });
    if let Some(s) = subresource {
        entry["subresource"] = s.into();
    }
    entry
}

/// What a pod is: its place, addresses, owner, labels and phase.
#[derive(Debug, Clone)]
pub struct PodSpec<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// `spec.nodeName`.
    pub node: &'a str,
    /// `status.podIPs` (for a hostNetwork pod: its node's addresses).
    pub ips: Vec<IpAddr>,
    /// The controlling owner (kind, name).
    pub owner: Option<(&'a str, &'a str)>,
    /// Labels.
    pub labels: Vec<(&'a str, &'a str)>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `status.phase`.
    pub phase: &'a str,
}

impl<'a> PodSpec<'a> {
    /// A running pod with one address and no owner.
    pub fn new(namespace: &'a str, name: &'a str, node: &'a str, ip: IpAddr) -> Self {
        PodSpec {
            namespace,
            name,
            node,
            ips: vec![ip],
            owner: None,
            labels: Vec::new(),
            host_network: false,
            phase: "Running",
        }
    }

    /// The same pod owned by `kind`/`name`.
    pub fn owned_by(mut self, kind: &'a str, name: &'a str) -> Self {
        self.owner = Some((kind, name));
        self
    }

    /// The same pod with these labels.
    pub fn labelled(mut self, labels: &[(&'a str, &'a str)]) -> Self {
        self.labels = labels.to_vec();
        self
    }
}

/// A Pod as the API server returns it.
pub fn pod(p: &PodSpec<'_>) -> Pod {
    let owner = p.owner.map(|(kind, name)| {
        let api_version = match kind {
            "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
            "Job" => "batch/v1",
            _ => "v1",
        };
        json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": format!("{name}-uid"),
                "controller": true, "blockOwnerDeletion": true}])
    });
    let ips: Vec<Value> = p.ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let first_ip = p.ips.first().map(|ip| ip.to_string()).unwrap_or_default();
    let container = p.name.split('-').next().unwrap_or("app");
    let mut metadata = json!({
        "name": p.name, "namespace": p.namespace, "creationTimestamp": CREATED,
        "labels": labels(&p.labels),
        "annotations": {"kubectl.kubernetes.io/restartedAt": CREATED},
        "managedFields": [
            managed("kube-controller-manager", "Update", None, json!({
                "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}},
                               "f:ownerReferences": {".": {}, "k:{\"uid\":\"x\"}": {}}},
                "f:spec": {"f:containers": {format!("k:{{\"name\":\"{container}\"}}"): {
                    ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {},
                    "f:resources": {}, "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                    "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                    "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}
            })),
            managed("kubelet", "Update", Some("status"), json!({
                "f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {},
                    "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}, "k:{\"type\":\"Ready\"}": {".": {},
                    "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
                    "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {},
                    "f:podIPs": {".": {}, "k:{\"ip\":\"x\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}
            })),
        ],
    });
    if let Some(owner) = owner {
        metadata["ownerReferences"] = owner;
        metadata["generateName"] = format!("{}-", p.name.rsplit_once('-').map_or(p.name, |(base, _)| base)).into();
    }
    let json = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [{
                "name": container, "image": format!("registry.example/{container}:1.4.2"), "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-x7k2p", "readOnly": true}]
            }],
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "hostNetwork": p.host_network,
            "nodeName": p.node, "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
            "restartPolicy": "Always", "schedulerName": "default-scheduler", "securityContext": {},
            "serviceAccount": "default", "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
            ],
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}
            ]}}]
        },
        "status": {
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": CREATED},
                {"type": "Initialized", "status": "True", "lastTransitionTime": CREATED},
                {"type": "Ready", "status": "True", "lastTransitionTime": CREATED},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": CREATED},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": CREATED}
            ],
            "containerStatuses": [{
                "containerID": "containerd://8c3b0f6e1a4d2c7b9e5f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d",
                "image": format!("registry.example/{container}:1.4.2"),
                "imageID": "registry.example/app@sha256:4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c",
                "lastState": {}, "name": container, "ready": true, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": CREATED}}
            }],
            "hostIP": "198.18.255.1", "hostIPs": [{"ip": "198.18.255.1"}],
            "phase": p.phase, "podIP": first_ip, "podIPs": ips, "qosClass": "Burstable", "startTime": CREATED
        }
    });
    serde_json::from_value(json).expect("a valid Pod")
}

/// A ReplicaSet owned by Deployment `deployment` (if any).
pub fn replicaset(namespace: &str, name: &str, deployment: Option<&str>) -> ReplicaSet {
    let mut metadata = json!({
        "name": name, "namespace": namespace, "creationTimestamp": CREATED, "generation": 1,
        "labels": {"app": name, "pod-template-hash": name.rsplit('-').next().unwrap_or("0")},
        "annotations": {"deployment.kubernetes.io/desired-replicas": "2", "deployment.kubernetes.io/max-replicas": "3",
                        "deployment.kubernetes.io/revision": "1"},
        "managedFields": [managed("kube-controller-manager", "Update", None, json!({
            "f:metadata": {"f:annotations": {}, "f:labels": {}, "f:ownerReferences": {}},
            "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {}}}))]
    });
    if let Some(d) = deployment {
        metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": d,
            "uid": format!("{d}-uid"), "controller": true, "blockOwnerDeletion": true}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata,
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}},
        "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "fullyLabeledReplicas": 2, "observedGeneration": 1}
    }))
    .expect("a valid ReplicaSet")
}

/// A Job owned by CronJob `cronjob` (if any).
pub fn job(namespace: &str, name: &str, cronjob: Option<&str>) -> Job {
    let mut metadata =
        json!({"name": name, "namespace": namespace, "creationTimestamp": CREATED, "labels": {"job-name": name}});
    if let Some(c) = cronjob {
        metadata["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": c,
            "uid": format!("{c}-uid"), "controller": true, "blockOwnerDeletion": true}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
        "spec": {"backoffLimit": 6, "completions": 1, "parallelism": 1,
                 "template": {"spec": {"containers": [{"name": "job", "image": "registry.example/job:1"}], "restartPolicy": "Never"}}},
        "status": {"active": 1, "startTime": CREATED}
    }))
    .expect("a valid Job")
}

/// A ClusterIP Service.
pub fn service(namespace: &str, name: &str, cluster_ips: &[IpAddr]) -> Service {
    let ips: Vec<String> = cluster_ips.iter().map(IpAddr::to_string).collect();
    let families: Vec<&str> = cluster_ips.iter().map(|ip| if ip.is_ipv4() { "IPv4" } else { "IPv6" }).collect();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": CREATED, "labels": {"app": name}},
        "spec": {"clusterIP": ips.first(), "clusterIPs": ips, "ipFamilies": families,
                 "ipFamilyPolicy": if ips.len() > 1 { "PreferDualStack" } else { "SingleStack" },
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
                 "selector": {"app": name}, "sessionAffinity": "None", "type": "ClusterIP",
                 "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}
    }))
    .expect("a valid Service")
}

/// A Node whose InternalIP is `ip`.
pub fn node(name: &str, ip: IpAddr, labels_: &[(&str, &str)]) -> Node {
    let mut all =
        vec![("kubernetes.io/hostname", name), ("kubernetes.io/os", "linux"), ("kubernetes.io/arch", "amd64")];
    all.extend_from_slice(labels_);
    let images: Vec<Value> = (0..12)
        .map(|i| json!({"names": [format!("registry.example/image-{i}@sha256:{i:064x}"), format!("registry.example/image-{i}:1.{i}")], "sizeBytes": 12_000_000 + i}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "creationTimestamp": CREATED, "labels": labels(&all),
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": "198.19.0.0/24", "podCIDRs": ["198.19.0.0/24"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": name}],
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"}, "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": CREATED, "lastTransitionTime": CREATED}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": images,
            "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://2.1.0",
                         "kernelVersion": "6.18.0", "kubeProxyVersion": "", "kubeletVersion": "v1.33.2",
                         "machineID": "m", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12", "systemUUID": "s"}
        }
    }))
    .expect("a valid Node")
}

/// A Namespace with labels.
pub fn namespace(name: &str, labels_: &[(&str, &str)]) -> Namespace {
    let mut all = vec![("kubernetes.io/metadata.name", name)];
    all.extend_from_slice(labels_);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "creationTimestamp": CREATED, "labels": labels(&all)},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}
    }))
    .expect("a valid Namespace")
}
