//! The deployment files checked by the real tools: `helm lint` and `helm template` (Helm 4 and 3)
//! with every values file of `deploy/helm/fovea/ci/`, `kubectl kustomize` of the Kustomize base
//! and example (the same objects as the chart), `kubernetes-validate --strict` for Kubernetes
//! 1.29 to 1.37, `fovea validate` on every rendered configuration, `hadolint` on the
//! Dockerfile, and the security properties of the rendered objects (no privileged container,
//! the exact capability list, read-only root, only the host mounts the probes need, RBAC verbs
//! only list/watch on exactly the watched kinds, probes and scrape annotations on the ports the
//! configuration really listens on).

#[path = "support/certs.rs"]
mod certs;
#[path = "support/deploy.rs"]
mod deploy;

use std::collections::{BTreeMap, BTreeSet};

use deploy::{chart, checked, config, helm_template, objects, of_kind, one, output, port_of, strings, values_files};
use serde_json::Value;

/// Kubernetes versions the chart is checked against.
const KUBERNETES: [&str; 9] =
    ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"];

/// What the probes need, and nothing else.
const CAPABILITIES: [&str; 3] = ["BPF", "NET_ADMIN", "PERFMON"];

/// `None` for the default values, then every ci values file.
fn every_values() -> Vec<Option<String>> {
    std::iter::once(None).chain(values_files().into_iter().map(Some)).collect()
}

fn label(values: &Option<String>) -> &str {
    values.as_deref().unwrap_or("default values")
}

#[test]
fn helm_lint_is_clean_with_helm_4_and_helm_3_for_every_values_file() {
    let test = "helm_lint_is_clean_with_helm_4_and_helm_3_for_every_values_file";
    let (Some(helm), Some(helm3)) = (deploy::tool(test, "helm"), deploy::tool(test, "helm3")) else {
        return;
    };
    assert!(values_files().len() >= 5, "basic, local, remote, OTLP only, remote-write only: {:?}", values_files());
    let chart = chart();
    for values in every_values() {
        for h in [&helm, &helm3] {
            let file = values.as_ref().map(|v| chart.join("ci").join(v));
            let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
            if let Some(f) = &file {
                args.extend(["-f", f.to_str().unwrap()]);
            }
            let (ok, stdout, stderr) = output(h, &args);
            assert!(ok, "{} lint with {}:\n{stdout}\n{stderr}", h.display(), label(&values));
            assert!(stdout.contains("1 chart(s) linted, 0 chart(s) failed"), "{stdout}");
            assert!(!stdout.contains("[WARNING]"), "{} lint with {}: {stdout}", h.display(), label(&values));
        }
    }
}

#[test]
fn helm_3_and_helm_4_render_the_same_objects() {
    let test = "helm_3_and_helm_4_render_the_same_objects";
    let (Some(helm), Some(helm3)) = (deploy::tool(test, "helm"), deploy::tool(test, "helm3")) else {
        return;
    };
    for values in every_values() {
        let four = objects(&helm_template(&helm, values.as_deref()));
        let three = objects(&helm_template(&helm3, values.as_deref()));
        assert_eq!(four, three, "{}", label(&values));
    }
}

#[test]
fn rendered_objects_pass_kubernetes_validate_strict_for_1_29_to_1_37() {
    let test = "rendered_objects_pass_kubernetes_validate_strict_for_1_29_to_1_37";
    let (Some(helm), Some(validate), Some(kubectl)) =
        (deploy::tool(test, "helm"), deploy::on_path(test, "kubernetes-validate"), deploy::tool(test, "kubectl"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for values in every_values() {
        let path = dir.path().join(format!("helm-{}.yaml", label(&values).replace(' ', "-")));
        std::fs::write(&path, helm_template(&helm, values.as_deref())).unwrap();
        files.push(path);
    }
    for overlay in ["base", "examples/local"] {
        let path = dir.path().join(format!("kustomize-{}.yaml", overlay.replace('/', "-")));
        let dir = deploy::root().join("deploy/kustomize").join(overlay);
        std::fs::write(&path, checked(&kubectl, &["kustomize", dir.to_str().unwrap()])).unwrap();
        files.push(path);
    }
    for version in KUBERNETES {
        let mut args = vec!["--strict", "--no-warn", "-k", version];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        let (ok, stdout, stderr) = output(&validate, &args);
        assert!(ok, "kubernetes-validate {version}:\n{stdout}\n{stderr}");
        // Every object was checked against a schema (none skipped as unknown).
        let checked_objects = stdout.lines().filter(|l| l.starts_with("INFO") && l.contains("passed")).count();
        let expected: usize = files.iter().map(|f| objects(&std::fs::read_to_string(f).unwrap()).len()).sum();
        assert_eq!(checked_objects, expected, "kubernetes-validate {version}:\n{stdout}");
    }
}

#[test]
fn every_rendered_configuration_is_valid_for_fovea() {
    let test = "every_rendered_configuration_is_valid_for_fovea";
    let Some(helm) = deploy::tool(test, "helm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pems = dir.path().join("pems");
    std::fs::create_dir(&pems).unwrap();
    if certs::make(&pems, &["DNS:collector"]).is_none() {
        return;
    }
    let read = |name: &str| std::fs::read(pems.join(name)).unwrap();
    let (ca, cert, key) = (read("ca.pem"), read("server.pem"), read("server.key"));
    for values in every_values() {
        let objects = objects(&helm_template(&helm, values.as_deref()));
        let path = dir.path().join("config.yaml");
        // The TLS Secrets the values name, where the DaemonSet mounts them: validate reads them.
        let tls = dir.path().join("tls");
        let text = deploy::config_text(&objects).replace("/etc/fovea/tls/", &format!("{}/", tls.display()));
        for exporter in ["otlp", "remoteWrite"] {
            std::fs::create_dir_all(tls.join(exporter)).unwrap();
            for (file, pem) in [("ca.crt", &ca), ("tls.crt", &cert), ("tls.key", &key)] {
                std::fs::write(tls.join(exporter).join(file), pem).unwrap();
            }
        }
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
            .args(["validate", "--config", path.to_str().unwrap()])
            // What the DaemonSet and the values' extraEnv provide.
            .env("K8S_NODE_NAME", "node-1")
            .env("OTLP_TOKEN", "t0ken")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fovea validate of the config rendered with {}:\n{}{}\n{}",
            label(&values),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&path).unwrap()
        );
    }
}

fn mode_of(values: &Option<String>) -> &'static str {
    match values.as_deref() {
        Some("local-values.yaml") => "local",
        Some("remote-values.yaml") => "remote",
        _ => "basic",
    }
}

#[test]
fn rendered_objects_have_the_documented_security_properties() {
    let test = "rendered_objects_have_the_documented_security_properties";
    let Some(helm) = deploy::tool(test, "helm") else {
        return;
    };
    for values in every_values() {
        let what = label(&values);
        let objects = objects(&helm_template(&helm, values.as_deref()));
        let config = config(&objects);
        let mode = mode_of(&values);
        let api = mode != "basic";

        // Exactly these kinds: no Service, no Role, no operator, no sidecar Deployment.
        let mut kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        kinds.sort();
        let mut expected = vec!["ConfigMap", "CustomResourceDefinition", "DaemonSet", "ServiceAccount"];
        if api {
            expected.extend(["ClusterRole", "ClusterRoleBinding"]);
        }
        expected.sort();
        assert_eq!(kinds, expected, "{what}");

        let ds = one(&objects, "DaemonSet");
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true, "{what}");
        for key in ["hostPID", "hostIPC", "initContainers", "ephemeralContainers", "shareProcessNamespace"] {
            assert!(pod.get(key).is_none(), "{what}: {key} must not be set");
        }
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{what}: one container, no sidecars");
        let c = &containers[0];
        let sc = &c["securityContext"];
        assert_eq!(sc["privileged"], false, "{what}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{what}");
        let mut caps: Vec<&str> = CAPABILITIES.to_vec();
        if values.as_deref() == Some("remote-values.yaml") {
            caps.push("SYS_RESOURCE"); // legacyKernelMemlock: true in that file
        }
        caps.sort();
        assert_eq!(strings(&sc["capabilities"]["add"]), caps, "{what}");
        assert!(pod.get("securityContext").is_none_or(|p| p.get("sysctls").is_none()), "{what}");

        // Host mounts: tracefs and bpffs only, both read-only; the token only with the API.
        let host_paths: BTreeMap<&str, &str> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| Some((v["name"].as_str()?, v.get("hostPath")?["path"].as_str()?)))
            .collect();
        assert_eq!(
            host_paths.values().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from(["/sys/fs/bpf", "/sys/kernel/tracing"]),
            "{what}"
        );
        for mount in c["volumeMounts"].as_array().unwrap() {
            assert_eq!(mount["readOnly"], true, "{what}: every mount is read-only: {mount}");
            if let Some(path) = host_paths.get(mount["name"].as_str().unwrap()) {
                assert_eq!(mount["mountPath"], *path, "{what}");
            }
        }
        assert_eq!(pod["automountServiceAccountToken"], api, "{what}");
        assert_eq!(one(&objects, "ServiceAccount")["automountServiceAccountToken"], api, "{what}");

        // RBAC: list and watch on exactly what the metadata cache watches.
        if api {
            let role = one(&objects, "ClusterRole");
            let mut granted = BTreeSet::new();
            for rule in role["rules"].as_array().unwrap() {
                assert_eq!(strings(&rule["verbs"]), ["list", "watch"], "{what}: {rule}");
                assert!(rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none(), "{rule}");
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        granted.insert(format!("{resource}.{group}"));
                    }
                }
            }
            let watched = [
                "pods.",
                "services.",
                "nodes.",
                "namespaces.",
                "replicasets.apps",
                "jobs.batch",
                "endpointslices.discovery.k8s.io",
                "metricsconfigurations.retina.sh",
            ];
            assert_eq!(granted, watched.iter().map(|s| s.to_string()).collect(), "{what}");
            let binding = one(&objects, "ClusterRoleBinding");
            assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
            assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
        }

        // Probes and annotations on the ports the configuration listens on.
        let ports: BTreeMap<&str, u64> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_u64().unwrap()))
            .collect();
        let own = &config["service"]["telemetry"]["metrics"];
        let telemetry = match own.get("readers") {
            // otelcol's readers: the pull reader serves the probes (and no `address` beside it).
            Some(readers) => {
                assert!(own.get("address").is_none(), "{what}");
                let pull = readers.as_array().unwrap().iter().find_map(|r| r.get("pull")).expect("a pull reader");
                u16::try_from(pull["exporter"]["prometheus"]["port"].as_u64().unwrap()).unwrap()
            }
            None => port_of(own["address"].as_str().unwrap()),
        };
        assert_eq!(ports["telemetry"], u64::from(telemetry), "{what}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{what}");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "telemetry", "{what}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what}");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "telemetry", "{what}");
        let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
        match config["exporters"].get("prometheus") {
            Some(prometheus) => {
                let port = port_of(prometheus["endpoint"].as_str().unwrap());
                assert_eq!(annotations["prometheus.io/scrape"], "true", "{what}");
                assert_eq!(annotations["prometheus.io/port"], port.to_string(), "{what}");
                assert_eq!(ports["metrics"], u64::from(port), "{what}");
            }
            None => {
                assert!(annotations.get("prometheus.io/scrape").is_none(), "{what}: nothing to scrape");
                assert!(!ports.contains_key("metrics"), "{what}");
            }
        }

        // The rest of the DaemonSet contract.
        let shutdown = config["service"]["shutdown_timeout"].as_str().unwrap();
        let shutdown: u64 = shutdown.trim_end_matches('s').parse().unwrap();
        assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > shutdown, "{what}");
        assert_eq!(pod["priorityClassName"], "system-node-critical", "{what}");
        let tolerations = pod["tolerations"].as_array().unwrap();
        if values.as_deref() != Some("remote-write-only-values.yaml") {
            assert_eq!(tolerations, &[serde_json::json!({"operator": "Exists"})], "{what}: every node");
        }
        let env = c["env"].as_array().unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "K8S_NODE_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"),
            "{what}"
        );
        for key in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(c["resources"][key][resource].is_string(), "{what}: resources.{key}.{resource}");
            }
        }
        assert_eq!(c["command"], serde_json::json!(["/fovea"]), "{what}");
    }
}

/// An object with what only Helm or only Kustomize adds taken out: Helm's bookkeeping labels and
/// checksum annotation, Kustomize's ConfigMap name hash; the configuration parsed.
fn comparable(mut object: Value) -> Value {
    fn strip_hash(name: &mut Value) {
        if let Some(text) = name.as_str()
            && let Some((base, hash)) = text.rsplit_once('-')
            && hash.len() == 10
            && hash.chars().all(|c| c.is_ascii_alphanumeric())
        {
            *name = Value::String(base.to_string());
        }
    }
    if let Some(labels) = object["metadata"].get_mut("labels").and_then(Value::as_object_mut) {
        labels.remove("helm.sh/chart");
        labels.remove("app.kubernetes.io/managed-by");
    }
    if object["kind"] == "ConfigMap" {
        strip_hash(&mut object["metadata"]["name"]);
        let text = object["data"]["config.yaml"].as_str().unwrap().to_string();
        object["data"]["config.yaml"] = objects(&text).remove(0);
    }
    if object["kind"] == "DaemonSet" {
        let template = &mut object["spec"]["template"];
        if let Some(annotations) = template["metadata"].get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("checksum/config");
        }
        for volume in template["spec"]["volumes"].as_array_mut().unwrap() {
            if let Some(cm) = volume.get_mut("configMap") {
                strip_hash(&mut cm["name"]);
            }
        }
    }
    object
}

fn keyed(objects: Vec<Value>) -> BTreeMap<(String, String), Value> {
    objects
        .into_iter()
        .map(|o| {
            let key = (o["kind"].as_str().unwrap().to_string(), o["metadata"]["name"].as_str().unwrap().to_string());
            let o = comparable(o);
            let key = (key.0, o["metadata"]["name"].as_str().unwrap().to_string());
            (key, o)
        })
        .collect()
}

#[test]
fn kustomize_renders_the_same_objects_as_the_chart() {
    let test = "kustomize_renders_the_same_objects_as_the_chart";
    let (Some(helm), Some(kubectl)) = (deploy::tool(test, "helm"), deploy::tool(test, "kubectl")) else {
        return;
    };
    for (overlay, values) in [("base", None), ("examples/local", Some("local-values.yaml"))] {
        let dir = deploy::root().join("deploy/kustomize").join(overlay);
        let kustomized = keyed(objects(&checked(&kubectl, &["kustomize", dir.to_str().unwrap()])));
        let helmed = keyed(objects(&helm_template(&helm, values)));
        assert_eq!(
            kustomized.keys().collect::<Vec<_>>(),
            helmed.keys().collect::<Vec<_>>(),
            "{overlay}: run deploy/kustomize/generate after changing the chart"
        );
        for (key, object) in &helmed {
            assert_eq!(&kustomized[key], object, "{overlay}: {key:?} differs; run deploy/kustomize/generate");
        }
    }
}

#[test]
fn the_chart_refuses_bad_values_naming_the_key_and_the_fix() {
    let test = "the_chart_refuses_bad_values_naming_the_key_and_the_fix";
    let Some(helm) = deploy::tool(test, "helm") else {
        return;
    };
    let chart = chart();
    let cases: [(&[&str], &str); 5] = [
        (&["--set", "mode=pod"], "mode: \"pod\" is not a mode; use basic, local or remote"),
        (
            &["--set", "exporters.otlp.enabled=true"],
            "exporters.otlp.endpoint is required when exporters.otlp.enabled is true",
        ),
        (
            &["--set", "exporters.prometheus.enabled=false"],
            "every exporter is disabled; enable prometheus, otlp or remoteWrite",
        ),
        (
            &["--set", "mode=local,podLevel.selection=crd"],
            "podLevel.selection: \"crd\" is not a selection; use config, annotations or metrics_configuration",
        ),
        (
            &["--set", "exporters.otlp.enabled=true,exporters.otlp.endpoint=c:4317,exporters.otlp.tls.caFile=ca.crt"],
            "exporters.otlp.tls: caFile, certFile and keyFile are keys of tls.secretName; set tls.secretName",
        ),
    ];
    for (set, message) in cases {
        let mut args = vec!["template", "fovea", chart.to_str().unwrap()];
        args.extend(set);
        let (ok, stdout, stderr) = output(&helm, &args);
        assert!(!ok, "{set:?} must fail: {stdout}");
        assert!(stderr.contains(message), "{set:?}: {stderr}");
    }
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let test = "the_dockerfile_passes_hadolint";
    let Some(hadolint) = deploy::on_path(test, "hadolint") else {
        return;
    };
    let dockerfile = deploy::root().join("deploy/Dockerfile");
    let (ok, stdout, stderr) = output(&hadolint, &["--failure-threshold", "info", dockerfile.to_str().unwrap()]);
    assert!(ok && stdout.is_empty(), "hadolint:\n{stdout}{stderr}");
    // The lint is real: a root-running image without the documented reason is reported.
    let bare = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bare.path(), "FROM debian:12\nUSER root\n").unwrap();
    let (ok, stdout, _) = output(&hadolint, &["--failure-threshold", "info", bare.path().to_str().unwrap()]);
    assert!(!ok && stdout.contains("DL3002"), "{stdout}");
}

#[test]
fn the_crd_in_the_chart_and_in_the_kustomize_base_is_retinas_metricsconfiguration() {
    let test = "the_crd_in_the_chart_and_in_the_kustomize_base_is_retinas_metricsconfiguration";
    let Some(helm) = deploy::tool(test, "helm") else {
        return;
    };
    let objects = objects(&helm_template(&helm, None));
    let crd = one(&objects, "CustomResourceDefinition");
    assert_eq!(crd["metadata"]["name"], "metricsconfigurations.retina.sh");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["kind"], "MetricsConfiguration");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(strings(&spec["required"]), ["contextOptions", "namespaces"]);
    let option = &spec["properties"]["contextOptions"]["items"]["properties"];
    let mut keys: Vec<&String> = option.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["additionalLabels", "destinationLabels", "metricName", "sourceLabels", "ttl"]);
    assert_eq!(of_kind(&objects, "CustomResourceDefinition").len(), 1);
}
