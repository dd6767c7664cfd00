use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::config::{Document, load_str};
use crate::model::{Attributes, Metric, NumberPoint, Scope};

fn doc(body: &str) -> Document {
    let yaml = format!(
        "receivers: {{otlp: {{protocols: {{grpc: {{}}}}}}}}\nprocessors:\n  k8sattributes:\n{body}\nexporters: {{debug: {{}}}}\nservice: {{pipelines: {{metrics: {{receivers: [otlp], processors: [k8sattributes], exporters: [debug]}}}}}}\n"
    );
    load_str("test.yaml", &yaml).unwrap()
}

/// The problems (path, line, message) of building the k8sattributes instance with `body`.
fn problems(body: &str) -> Vec<(String, u32, String)> {
    let d = doc(body);
    match crate::pipeline::build(&d, &crate::components::builtin(), Arc::new(Resource::default())) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems()
            .iter()
            .map(|p| (p.path.clone(), p.origin.as_ref().map_or(0, |o| o.line), p.message.clone()))
            .collect(),
    }
}

#[test]
fn defaults_are_otelcols_plus_workloads() {
    let c = K8sAttributesConfig::default();
    assert_eq!(c.auth_type, AuthType::ServiceAccount);
    assert_eq!((c.wait_for_metadata, c.wait_for_metadata_timeout), (false, std::time::Duration::from_secs(10)));
    assert_eq!(c.delete_grace_period, std::time::Duration::from_secs(30));
    assert!(problems("    {}").is_empty(), "an empty body is valid");
    assert!(
        problems("    auth_type: kubeConfig\n    context: dev\n    filter: {node_from_env_var: K8S_NODE_NAME}")
            .is_empty()
    );
}

#[test]
fn unsupported_and_wrong_keys_are_named() {
    let p = problems("    extract:\n      otel_annotations: true\n      metadata: [k8s.pod.name, container.id]");
    let paths: Vec<&str> = p.iter().map(|(path, _, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        ["processors::k8sattributes::extract::otel_annotations", "processors::k8sattributes::extract::metadata::1"]
    );
    assert!(p[0].2.contains("not supported by fovea"), "{p:?}");
    assert!(p[1].2.contains("`container.id` is not supported; supported: k8s.namespace.name"), "{p:?}");
    assert_eq!(p[1].1, 6, "the line of the offending list item");

    let p = problems("    extract:\n      labels: [{key: app, from: deployment}, {key_regex: '(', tag_name: x}]");
    assert!(p.iter().any(|(path, _, m)| path.ends_with("extract::labels::0::from") && m.contains("valid: pod, namespace, node")), "{p:?}");
    assert!(
        p.iter()
            .any(|(path, _, m)| path.ends_with("extract::labels::1::key_regex") && m.contains("regular expression")),
        "{p:?}"
    );

    let p = problems("    pod_association:\n      - sources: [{from: resource_attribute, name: container.id}]");
    assert!(p[0].2.contains("needs name k8s.pod.ip or k8s.pod.uid"), "{p:?}");
    let p = problems("    filter: {node: a, node_from_env_var: B}\n    context: x");
    assert_eq!(p.len(), 2, "{p:?}");
    let p = problems("    auth_type: token");
    assert!(p[0].2.contains("serviceAccount"), "lists the valid auth types: {p:?}");
    let p = problems("    filter: {labels: [{key: app, op: exists, value: x}], fields: [{key: a, op: exists}]}");
    assert_eq!(p.len(), 2, "{p:?}");
}

#[test]
fn passthrough_is_for_metrics_only() {
    let yaml = "receivers: {dropreason: {}}\nprocessors:\n  k8s_attributes: {passthrough: true}\nexporters: {debug: {}}\nservice: {pipelines: {flows: {receivers: [dropreason], processors: [k8s_attributes], exporters: [debug]}}}\n";
    let err = crate::pipeline::build(
        &load_str("t.yaml", yaml).unwrap(),
        &crate::components::builtin(),
        Arc::new(Resource::default()),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("processors::k8s_attributes::passthrough") && err.contains("only applies to metrics pipelines"),
        "{err}"
    );
}

#[test]
fn passthrough_adds_the_client_address_and_keeps_an_existing_one() {
    let config = K8sAttributesConfig { passthrough: true, ..K8sAttributesConfig::default() };
    let d = doc("    {passthrough: true}");
    let id = crate::config::ComponentId::of_type("k8sattributes");
    let ctx = BuildContext {
        id: &id,
        path: "processors::k8sattributes",
        node: &d.root,
        pipeline: None,
        resource: Arc::default(),
    };
    let processor = K8sAttributesProcessor::new(&ctx, config).unwrap();
    let mut with_ip = Resource::default();
    with_ip.attributes.insert(attr::K8S_POD_IP, "198.18.0.9");
    let point = || vec![Metric::counter("c", "1", "", vec![NumberPoint::int(Attributes::new(), 0, 1, 1)])];
    let mut batch = MetricBatch::single(Arc::new(Resource::default()), Arc::new(Scope::default()), point());
    batch.append(MetricBatch::single(Arc::new(with_ip), Arc::new(Scope::default()), point()));
    batch.client = Some("198.18.0.2".parse::<IpAddr>().unwrap());
    let out = processor.label_metrics(batch, &mut Vec::new());
    let ips: Vec<&str> =
        out.resource_metrics.iter().map(|rm| rm.resource.attributes.get_str(attr::K8S_POD_IP).unwrap()).collect();
    assert_eq!(ips, ["198.18.0.2", "198.18.0.9"]);
}

#[test]
fn selector_terms_render_in_kubernetes_syntax() {
    let term = |key: &str, op, value: Option<&str>| SelectorTerm { key: key.into(), value: value.map(Into::into), op };
    assert_eq!(term("app", SelectorOp::Equals, Some("cart")).render(), "app=cart");
    assert_eq!(term("tier", SelectorOp::NotEquals, Some("db")).render(), "tier!=db");
    assert_eq!(term("canary", SelectorOp::Exists, None).render(), "canary");
    assert_eq!(term("canary", SelectorOp::DoesNotExist, None).render(), "!canary");
}
