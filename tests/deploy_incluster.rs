//! The agent as the rendered DaemonSet runs it, without a cluster: the container's command line,
//! environment, mounts and security context are taken from `helm template` (local mode, values
//! `ci/local-values.yaml`) and reproduced for the real binary:
//!
//! * a mount namespace of its own where the ConfigMap, the service-account token, CA and
//!   namespace, and the hostPath volumes appear read-only at the DaemonSet's mount paths, and the
//!   root filesystem is read-only (`readOnlyRootFilesystem`);
//! * exactly the capabilities the DaemonSet adds (bounding set; everything else dropped) and
//!   no_new_privs (`allowPrivilegeEscalation: false`), uid 0;
//! * the environment the DaemonSet declares (`K8S_NODE_NAME` from `spec.nodeName`) plus what the
//!   kubelet injects (`KUBERNETES_SERVICE_HOST`/`PORT`) and nothing else;
//! * the fake API server over TLS, trusted through the mounted CA, accepting the mounted token.
//!
//! It must start while the API server is still down and say on the readiness probe that it is
//! not ready, then (the API server up) list and watch only what the rendered ClusterRole
//! grants, become ready on the readiness probe's port and path, serve the scrape port of the `prometheus.io/port`
//! annotation, and on SIGTERM exit 0 within `terminationGracePeriodSeconds`, leaving no program,
//! TC filter, TCX link, map or pinned object of its own in the kernel.
//!
//! Not reproduced: the runtime's seccomp profile (`RuntimeDefault`) and cgroup limits.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/deploy.rs"]
mod deploy;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use apiserver::objects::{PodSpec, namespace, node, pod};
use serde_json::Value;

const TOKEN: &str = "daemonset-token";
const NODE: &str = "node-1";

/// A minimal OTLP/HTTP endpoint that accepts everything (the collector of the local values).
struct OtlpSink {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    /// Paths and (gunzipped) bodies received.
    bodies: Arc<Mutex<Vec<Received>>>,
}

/// The path and the (gunzipped) body of one request.
type Received = (String, Vec<u8>);

impl OtlpSink {
    fn start() -> OtlpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (requests.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (count, seen) = (count.clone(), seen.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    loop {
                        let mut length = 0usize;
                        let mut gzip = false;
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((k, v)) = line.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    length = v.trim().parse().unwrap_or(0);
                                }
                                if k.eq_ignore_ascii_case("content-encoding") && v.trim() == "gzip" {
                                    gzip = true;
                                }
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        if gzip {
                            let mut plain = Vec::new();
                            let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain);
                            body = plain;
                        }
                        seen.lock().unwrap().push((path, body));
                        count.fetch_add(1, Ordering::SeqCst);
                        let reply =
                            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if writer.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        OtlpSink { addr, requests, bodies }
    }
}

/// The one container of the rendered DaemonSet and what surrounds it.
struct Rendered {
    objects: Vec<Value>,
    pod: Value,
    container: Value,
}

fn render(helm: &std::path::Path, sets: &[String]) -> Rendered {
    let chart = deploy::chart();
    let values = chart.join("ci/local-values.yaml");
    let mut args = vec![
        "template".to_string(),
        "fovea".into(),
        chart.display().to_string(),
        "--namespace".into(),
        "kube-system".into(),
        "-f".into(),
        values.display().to_string(),
    ];
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let objects = deploy::objects(&deploy::checked(helm, &args));
    let pod = deploy::one(&objects, "DaemonSet")["spec"]["template"]["spec"].clone();
    let container = pod["containers"][0].clone();
    Rendered { objects, pod, container }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    agent::http_get(addr, path).ok()
}

/// The ids of the BPF programs, links and maps a process holds, from its fds' fdinfo.
fn bpf_ids(pid: u32) -> BTreeMap<&'static str, BTreeSet<u64>> {
    let mut ids: BTreeMap<&'static str, BTreeSet<u64>> = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).into_iter().flatten().flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else { continue };
        for line in info.lines() {
            for key in ["prog_id", "link_id", "map_id"] {
                if let Some(v) = line.strip_prefix(&format!("{key}:")) {
                    ids.entry(key).or_default().insert(v.trim().parse().unwrap());
                }
            }
        }
    }
    ids
}

/// Whether the kernel still has the BPF object `kind` (`prog`, `link`, `map`) with `id`.
fn bpf_object_exists(kind: &str, id: u64) -> bool {
    Command::new("bpftool").args([kind, "show", "id", &id.to_string()]).output().unwrap().status.success()
}

fn bpffs_listing() -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out.insert(entry.path().display().to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(std::path::Path::new("/sys/fs/bpf"), &mut out);
    out
}

/// `(resource.group)` of an API path (`/api/v1/pods`, `/apis/apps/v1/namespaces/x/replicasets`).
fn resource_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a resource path: {path}"),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    format!("{}.{group}", rest[0])
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn the_rendered_daemonset_runs_syncs_is_ready_and_stops_cleanly() {
    let test = "the_rendered_daemonset_runs_syncs_is_ready_and_stops_cleanly";
    if !support::require_tools(test, &["unshare", "mount", "setpriv", "bpftool", "tc", "openssl"]) {
        return;
    }
    let Some(helm) = deploy::tool(test, "helm") else {
        return;
    };
    let _lock = support::kernel_lock();
    // The API server is down when the agent starts (a node booting before the control plane
    // answers): the agent must start, say it is not ready, and sync once it is up.
    let Some(server) = ApiServer::prepare(TOKEN, 0) else {
        return;
    };
    server.apply(&namespace("shop", &[]));
    server.apply(&node(NODE, "198.18.40.1".parse().unwrap(), &[]));
    server.apply(&node("node-2", "198.18.40.2".parse().unwrap(), &[]));
    server.apply(&pod(&PodSpec::new("shop", "cart-1", NODE, "198.18.41.1".parse().unwrap())));
    server.apply(&pod(&PodSpec::new("shop", "cart-2", "node-2", "198.18.41.2".parse().unwrap())));
    let sink = OtlpSink::start();

    // The values an operator would set on a node whose ports 10093/10094 are taken.
    let (scrape, telemetry) = (agent::free_port(), agent::free_port());
    let r = render(
        &helm,
        &[
            format!("exporters.prometheus.port={scrape}"),
            format!("telemetry.port={telemetry}"),
            "exporters.otlp.protocol=http".into(),
            format!("exporters.otlp.endpoint=http://{}", sink.addr),
            "collectionInterval=1s".into(),
        ],
    );
    let c = &r.container;
    let annotations = &deploy::one(&r.objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], scrape.to_string());
    assert_eq!(r.pod["automountServiceAccountToken"], true, "local mode reads the API server");

    // The image's /fovea is the binary built from this tree (deploy/Dockerfile copies it there).
    let dockerfile = std::fs::read_to_string(deploy::root().join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY --from=build /fovea /fovea"), "the image layout changed");
    assert_eq!(c["command"], serde_json::json!(["/fovea"]));
    let mut argv = vec![env!("CARGO_BIN_EXE_fovea").to_string()];
    argv.extend(deploy::strings_unsorted(&c["args"]));

    // The pod's files: the ConfigMap and the service account, as the kubelet writes them.
    let pod_dir = tempfile::tempdir().unwrap();
    let config_dir = pod_dir.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(config_dir.join("config.yaml"), deploy::config_text(&r.objects)).unwrap();
    let account = pod_dir.path().join("serviceaccount");
    std::fs::create_dir(&account).unwrap();
    std::fs::write(account.join("token"), TOKEN).unwrap();
    std::fs::copy(server.ca_path(), account.join("ca.crt")).unwrap();
    std::fs::write(account.join("namespace"), "kube-system").unwrap();

    // Mounts as the kubelet and the runtime make them, read-only as declared.
    let volumes: BTreeMap<String, Value> = r.pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    let mut script = vec![
        "set -e".to_string(),
        // /var/run is /run: a tmpfs of the namespace's own for the service-account mount.
        "mount -t tmpfs tmpfs /run".into(),
        // /etc/fovea/... must exist without touching the host's /etc: an overlay over it.
        "mkdir -p /run/.etc/upper /run/.etc/work".into(),
        "mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/.etc/upper,workdir=/run/.etc/work /etc".into(),
        "mkdir -p /run/secrets/kubernetes.io/serviceaccount".into(),
        format!(
            "mount --bind {} /run/secrets/kubernetes.io/serviceaccount",
            shell_quote(&account.display().to_string())
        ),
        "mount -o remount,bind,ro /run/secrets/kubernetes.io/serviceaccount".into(),
    ];
    for mount in c["volumeMounts"].as_array().unwrap() {
        let target = mount["mountPath"].as_str().unwrap();
        assert_eq!(mount["readOnly"], true, "{mount}");
        let volume = &volumes[mount["name"].as_str().unwrap()];
        let source = if volume.get("configMap").is_some() {
            config_dir.display().to_string()
        } else if let Some(host) = volume.get("hostPath") {
            host["path"].as_str().unwrap().to_string()
        } else {
            panic!("a volume the test does not know how to provide: {volume}");
        };
        script.push(format!("mkdir -p {}", shell_quote(target)));
        script.push(format!("mount --bind {} {}", shell_quote(&source), shell_quote(target)));
        script.push(format!("mount -o remount,bind,ro {}", shell_quote(target)));
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    script.push("mount -o remount,bind,ro /etc".into());
    script.push("mount -o remount,bind,ro /".into());

    // Exactly the added capabilities, no_new_privs, uid 0; the declared environment only.
    assert_eq!(deploy::strings(&sc["capabilities"]["drop"]), ["ALL"]);
    let caps: Vec<String> =
        deploy::strings(&sc["capabilities"]["add"]).iter().map(|c| format!("+{}", c.to_lowercase())).collect();
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsUser"], 0);
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "KUBERNETES_SERVICE_HOST=127.0.0.1".to_string(),
        format!("KUBERNETES_SERVICE_PORT={}", server.addr.port()),
    ];
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let value = match (e.get("value"), e["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
            (Some(v), _) => v.as_str().unwrap().to_string(),
            (None, Some("spec.nodeName")) => NODE.to_string(),
            _ => panic!("an environment variable the test cannot provide: {e}"),
        };
        env.push(format!("{name}={value}"));
    }
    script.push(format!(
        "exec setpriv --reuid=0 --regid=0 --clear-groups --bounding-set=-all,{} --inh-caps=-all --no-new-privs -- env -i {} {}",
        caps.join(","),
        env.iter().map(|e| shell_quote(e)).collect::<Vec<_>>().join(" "),
        argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
    ));

    let bpffs_before = bpffs_listing();
    let out_dir = tempfile::tempdir().unwrap();
    let mut child: Child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script.join("\n")])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out_dir.path().join("out")).unwrap())
        .stderr(std::fs::File::create(out_dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let output = || {
        std::fs::read_to_string(out_dir.path().join("out")).unwrap_or_default()
            + &std::fs::read_to_string(out_dir.path().join("err")).unwrap_or_default()
    };
    let pid = child.id();

    let telemetry_addr: SocketAddr = ([127, 0, 0, 1], telemetry).into();
    let probe = |path: &str| http_get(telemetry_addr, path);
    // Alive but not ready while the API server cannot be reached, saying why.
    let deadline = Instant::now() + Duration::from_secs(30);
    let unready = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("fovea exited {status} without an API server:\n{}", output());
        }
        match probe("/readyz") {
            Some((503, body)) if body.contains("kubernetes metadata cache") => break body,
            Some((200, body)) => panic!("ready before the API server answered: {body}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no readiness answer after 30 s: {:?}\n{}", probe("/readyz"), output());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(unready.contains("not listed yet"), "{unready}");
    assert_eq!(probe("/healthz").map(|(code, _)| code), Some(200), "the liveness probe passes meanwhile");
    server.listen();

    // Ready on the readiness probe's port and path: every kind listed through the token.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("fovea exited {status} before it was ready:\n{}", output());
        }
        if probe("/readyz").is_some_and(|(code, _)| code == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "not ready after 30 s: {:?}\n{}", probe("/readyz"), output());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(probe("/healthz").map(|(code, _)| code), Some(200));
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, std::path::Path::new(env!("CARGO_BIN_EXE_fovea")), "the agent is the process the probes reached");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39) and nothing else.
    assert_eq!(field("CapEff:"), "000000c000001000", "effective capabilities");
    assert_eq!(field("CapBnd:"), "000000c000001000", "bounding set");
    assert_eq!(field("NoNewPrivs:"), "1");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap();
    let root = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some("/")).unwrap();
    assert!(root.split_whitespace().nth(3).unwrap().split(',').any(|o| o == "ro"), "read-only root: {root}");

    // The scrape port of the annotation serves the node's traffic.
    let scrape_addr: SocketAddr = ([127, 0, 0, 1], scrape).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = http_get(scrape_addr, "/metrics").map(|(_, b)| b).unwrap_or_default();
        if body.contains("network_forward_packets_total{") {
            break;
        }
        assert!(Instant::now() < deadline, "no forward counters on the scrape port:\n{body}\n{}", output());
        std::thread::sleep(Duration::from_millis(200));
    }

    // Only what the ClusterRole grants, and pods of this node only (local mode).
    let role = deploy::one(&r.objects, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in deploy::strings(&rule["apiGroups"]) {
            for resource in deploy::strings(&rule["resources"]) {
                for verb in deploy::strings(&rule["verbs"]) {
                    granted.insert((format!("{resource}.{group}"), verb));
                }
            }
        }
    }
    let requests = server.requests();
    assert!(!requests.is_empty());
    let mut kinds = BTreeSet::new();
    for request in &requests {
        assert_eq!(request.status, 200, "{request:?}");
        let resource = resource_of(&request.path);
        let verb = if request.is_watch() { "watch" } else { "list" };
        assert!(
            granted.contains(&(resource.clone(), verb.to_string())),
            "{verb} {resource} is not granted: {request:?}"
        );
        if resource == "pods." {
            assert!(request.query.contains("fieldSelector=spec.nodeName=node-1"), "{request:?}");
        }
        kinds.insert(resource);
    }
    for kind in ["pods.", "services.", "nodes.", "namespaces.", "replicasets.apps", "jobs.batch"] {
        assert!(kinds.contains(kind), "{kind} never listed: {kinds:?}");
    }
    let readyz = probe("/readyz").unwrap().1;

    // What the agent holds in the kernel, to check after it stops.
    let held = bpf_ids(pid);
    assert!(held.get("prog_id").is_some_and(|p| !p.is_empty()), "no BPF program held: {held:?}");

    // SIGTERM, as the kubelet sends it; exit within the grace period.
    let grace = Duration::from_secs(r.pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    let stopped_at = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopped_at.elapsed() > grace {
            let _ = child.kill();
            panic!("still running {grace:?} after SIGTERM (the kubelet would kill it):\n{}", output());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}:\n{}", output());

    // The kernel frees a program after an RCU grace period and the maps it used after that, on
    // a workqueue: wait for that, not for ever.
    let remaining = || -> Vec<String> {
        held.iter()
            .flat_map(|(kind, ids)| ids.iter().map(move |id| (kind.trim_end_matches("_id"), *id)))
            .filter(|(kind, id)| bpf_object_exists(kind, *id))
            .map(|(kind, id)| format!("{kind} {id}"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !remaining().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(remaining(), Vec::<String>::new(), "outlived the agent:\n{}", output());
    let prog_ids = &held["prog_id"];
    for line in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        let iface = line.file_name().to_string_lossy().into_owned();
        for dir in ["ingress", "egress"] {
            let filters = Command::new("tc").args(["filter", "show", "dev", &iface, dir]).output().unwrap();
            let filters = String::from_utf8_lossy(&filters.stdout);
            for id in prog_ids {
                assert!(!filters.contains(&format!(" id {id} ")), "a filter of ours on {iface} {dir}: {filters}");
            }
        }
    }
    assert_eq!(bpffs_listing(), bpffs_before, "nothing pinned");
    assert!(readyz.contains("ready"), "{readyz}");
    // The collector of the values got the agent's data over OTLP/HTTP, and its own metrics
    // (telemetry.pushToOtlp: a periodic reader, whose last push is at stop).
    assert!(sink.requests.load(Ordering::SeqCst) > 0, "nothing reached the OTLP endpoint:\n{}", output());
    let bodies = sink.bodies.lock().unwrap();
    let own = |name: &str| {
        bodies.iter().any(|(path, b)| path == "/v1/metrics" && b.windows(name.len()).any(|w| w == name.as_bytes()))
    };
    assert!(own("fovea.process.memory.rss") && own("fovea.process.cpu.time"), "no own metrics pushed:\n{}", output());
    assert!(own("network.forward.packets"), "no node metrics pushed");
}
