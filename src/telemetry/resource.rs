//! The resource attributes of everything this agent produces: node, host and service identity.

use crate::config::{Document, Value};
use crate::model::semconv::attr;
use crate::model::{Attributes, Resource};

/// Detects `host.name`, `k8s.node.name` (from `K8S_NODE_NAME` or `NODE_NAME`, else the host
/// name), `service.name=fovea`, `service.version`, `service.instance.id`, plus the extra
/// attributes under `service::resource` (e.g. `k8s.cluster.name`).
pub fn detect(doc: &Document) -> Resource {
    let host = host_name();
    let node = std::env::var("K8S_NODE_NAME")
        .or_else(|_| std::env::var("NODE_NAME"))
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| host.clone());
    let mut attributes = Attributes::new();
    attributes.insert(attr::HOST_NAME, host);
    attributes.insert(attr::K8S_NODE_NAME, node.clone());
    attributes.insert(attr::SERVICE_NAME, "fovea");
    attributes.insert(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION"));
    attributes.insert(attr::SERVICE_INSTANCE_ID, node);
    if let Some(entries) = doc.root.get("service").and_then(|s| s.get("resource")).and_then(|r| r.as_map()) {
        for (key, value) in entries {
            if let Value::Scalar(s) = &value.value {
                attributes.insert(key.name.as_str(), s.text.as_str());
            }
        }
    }
    Resource { attributes }
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
