//! The datapath programs on pod interfaces and uplinks, shared by every receiver that needs pod
//! traffic (`flows`, `dns`: one program per hook whatever the number of receivers).
//!
//! [`Datapath`] is a process-wide service (in `pipeline::Services`). The first receiver that
//! subscribes loads [`DatapathProbe`] and starts following the interfaces through netlink link
//! and default-route events; later subscribers add their features (switched at run time in the
//! kernel: one program per hook, whatever the number of features) and their interface selection.
//! An interface is attached when any subscriber selects it and detached when none does or when it
//! goes away; each subscriber hears about the interfaces it selected as [`InterfaceEvent`]s. When
//! the last subscriber releases it, everything is detached and the programs are unloaded.
//!
//! Which interfaces: the host side of pod interfaces (names matching `interfaces`, not matching
//! `exclude`, and whose peer lives in another network namespace: a CNI's veth or netkit pair,
//! never a bridge or a host-internal veth), and with `include_uplink` the interfaces of the
//! default routes (IPv4 and IPv6, main table). Interfaces are attached as soon as they appear,
//! up or not: a CNI moves the peer into the pod's namespace before it brings the link up, so the
//! programs are in place before the pod's first packet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use smol_str::SmolStr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::links::{self, Link, LinkChange, LinkError, LinkWatcher};
use super::telemetry::ProbeHealth;
use crate::config::pattern::{Pattern, any_match};
use crate::ebpf::{DatapathError, DatapathOptions, DatapathProbe, Features, FlowMaps, LinkLayer, ProbeTelemetry};
use crate::model::{ObservationPoint, now_unix_nano};
use crate::pipeline::Services;

/// The initial link dump answers at once; this only guards against a silent socket.
const DUMP_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the shared datapath.
#[derive(Debug, thiserror::Error)]
pub enum DatapathServiceError {
    /// Loading, attaching or reading the probe failed (a missing capability is listed here).
    #[error(transparent)]
    Probe(#[from] DatapathError),
    /// Watching the interfaces failed.
    #[error(transparent)]
    Links(#[from] LinkError),
    /// The kernel did not finish listing the interfaces.
    #[error("the kernel did not list the interfaces within {0:?} (RTM_GETLINK dump)")]
    DumpTimeout(Duration),
    /// Two receivers want the same feature (e.g. two `flows` receivers: both would drain the
    /// same kernel tables).
    #[error("{receiver} cannot run next to {holder}: only one receiver per agent can own the datapath's {feature}")]
    FeatureTaken {
        /// The receiver asking.
        receiver: String,
        /// The receiver that has it.
        holder: String,
        /// The feature.
        feature: &'static str,
    },
    /// The programs were loaded with other map sizes than this receiver asks for.
    #[error(
        "{receiver} asks for datapath settings ({wanted}) other than those {holder} loaded ({loaded}); give them the same settings"
    )]
    Conflict {
        /// The receiver asking.
        receiver: String,
        /// The receiver that loaded the programs.
        holder: String,
        /// What it asks for.
        wanted: String,
        /// What is loaded.
        loaded: String,
    },
    /// A blocking eBPF call panicked or was cancelled.
    #[error("the datapath worker thread failed: {0}")]
    Worker(String),
}

/// Which interfaces a subscriber wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSelection {
    /// Pod interface names or globs (the host side; the peer must be in another namespace).
    pub interfaces: Vec<Pattern>,
    /// Names or globs never to attach to (applies to uplinks too).
    pub exclude: Vec<Pattern>,
    /// Also the interfaces of the default routes.
    pub include_uplink: bool,
}

impl InterfaceSelection {
    /// What `link` is to this subscriber, `None` when it does not want it.
    pub fn role(&self, link: &Link, uplinks: &BTreeSet<u32>) -> Option<ObservationPoint> {
        if link.loopback || any_match(&self.exclude, &link.name) {
            return None;
        }
        if self.include_uplink && uplinks.contains(&link.index) {
            return Some(ObservationPoint::Uplink);
        }
        (link.peer_in_other_netns && any_match(&self.interfaces, &link.name)).then_some(ObservationPoint::Pod)
    }
}

/// An interface the datapath programs are attached to, as one subscriber sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathInterface {
    /// Interface index.
    pub ifindex: u32,
    /// Name.
    pub name: SmolStr,
    /// Pod interface or uplink.
    pub role: ObservationPoint,
    /// Link-layer header of its packets.
    pub link: LinkLayer,
    /// When the programs were attached (ns since the epoch).
    pub since: u64,
}

/// What happened to a subscriber's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceEvent {
    /// The programs now see this interface (its packets are counted from here on).
    Attached(DatapathInterface),
    /// The programs no longer see it (it was deleted, renamed out of the selection, or stopped
    /// being an uplink); whatever the kernel still holds for it should be drained, then forgotten.
    Detached(DatapathInterface),
}

/// What a receiver asks of the datapath.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The receiver (its component id), for errors and logs.
    pub receiver: String,
    /// Features it runs in the kernel.
    pub features: Features,
    /// Interfaces it wants.
    pub selection: InterfaceSelection,
    /// How the programs must be loaded (map sizes ...); `None`: as loaded, or the defaults
    /// when this subscriber loads them (a feature without load-time settings, such as DNS).
    pub options: Option<DatapathOptions>,
}

struct Subscriber {
    id: u64,
    receiver: String,
    features: Features,
    selection: InterfaceSelection,
    events: mpsc::UnboundedSender<InterfaceEvent>,
    /// Its interfaces and what each is to it.
    interfaces: BTreeMap<u32, DatapathInterface>,
}

/// The probe and everything about where it is attached; only touched from blocking threads.
pub struct Core {
    probe: DatapathProbe,
    links: BTreeMap<u32, Link>,
    uplinks: BTreeSet<u32>,
    /// Attached interfaces: link layer and attach time.
    attached: BTreeMap<u32, (LinkLayer, u64)>,
    subscribers: Vec<Subscriber>,
    /// The receiver that loaded the probe, and its options.
    loaded_by: (String, DatapathOptions),
}

impl ProbeHealth for Core {
    fn probe_telemetry(&self) -> ProbeTelemetry {
        self.probe.telemetry()
    }
}

impl Core {
    /// The probe, for the subscribers' own reads (drains ...).
    pub fn probe(&mut self) -> &mut DatapathProbe {
        &mut self.probe
    }

    fn features(&self) -> Features {
        let mut f = Features::default();
        for s in &self.subscribers {
            f.flows |= s.features.flows;
            f.tcp_flags |= s.features.tcp_flags;
            f.handshake |= s.features.handshake;
            f.collapse_ports = f.collapse_ports.or(s.features.collapse_ports);
            f.dns = f.dns.or(s.features.dns);
        }
        f
    }

    fn apply(&mut self, changes: &[LinkChange]) {
        for change in changes {
            match change {
                LinkChange::Changed(link) => {
                    self.links.insert(link.index, link.clone());
                    self.reconcile(link.index);
                }
                LinkChange::Removed(index) => {
                    self.links.remove(index);
                    self.reconcile(*index);
                }
                LinkChange::DefaultRoutes => self.refresh_uplinks(),
            }
        }
    }

    fn refresh_uplinks(&mut self) {
        match links::default_route_interfaces() {
            Ok(uplinks) if uplinks != self.uplinks => {
                let changed: Vec<u32> = uplinks.symmetric_difference(&self.uplinks).copied().collect();
                self.uplinks = uplinks;
                for index in changed {
                    self.reconcile(index);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot list the default routes; uplinks stay as they were"),
        }
    }

    /// Brings interface `index` in line with what the subscribers want of it now.
    fn reconcile(&mut self, index: u32) {
        let link = self.links.get(&index).cloned();
        let roles: Vec<Option<ObservationPoint>> =
            self.subscribers.iter().map(|s| link.as_ref().and_then(|l| s.selection.role(l, &self.uplinks))).collect();
        let wanted = roles.iter().any(Option::is_some);
        let attached = self.attached.contains_key(&index);

        if wanted && !attached {
            let Some(link) = &link else { return };
            let layer = LinkLayer::from_arphrd(link.arphrd);
            match self.probe.attach(&link.name, layer) {
                Ok(_) => {
                    tracing::info!(interface = %link.name, ifindex = index, "datapath programs attached");
                    self.attached.insert(index, (layer, now_unix_nano()));
                }
                Err(e) => {
                    tracing::warn!(interface = %link.name, error = %e, "cannot attach the datapath programs");
                    return;
                }
            }
        } else if !wanted && attached {
            if let Err(e) = self.probe.detach(index) {
                tracing::warn!(ifindex = index, error = %e, "cannot detach the datapath programs");
            }
            self.attached.remove(&index);
            tracing::info!(ifindex = index, "datapath programs detached");
        }

        let state = self.attached.get(&index).copied();
        for (s, role) in self.subscribers.iter_mut().zip(roles) {
            let now = match (role, state, &link) {
                (Some(role), Some((layer, since)), Some(l)) => {
                    Some(DatapathInterface { ifindex: index, name: l.name.clone(), role, link: layer, since })
                }
                _ => None,
            };
            let before = s.interfaces.get(&index).cloned();
            if before == now {
                continue;
            }
            if let Some(old) = before {
                s.interfaces.remove(&index);
                let _ = s.events.send(InterfaceEvent::Detached(old));
            }
            if let Some(new) = now {
                s.interfaces.insert(index, new.clone());
                let _ = s.events.send(InterfaceEvent::Attached(new));
            }
        }
    }

    fn add(&mut self, subscriber: Subscriber) -> Result<(), DatapathServiceError> {
        self.subscribers.push(subscriber);
        self.probe.set_features(self.features())?;
        let indexes: Vec<u32> = self.links.keys().copied().collect();
        for index in indexes {
            self.reconcile(index);
        }
        Ok(())
    }

    fn remove(&mut self, id: u64) {
        self.subscribers.retain(|s| s.id != id);
        if let Err(e) = self.probe.set_features(self.features()) {
            tracing::warn!(error = %e, "cannot switch the datapath features");
        }
        let indexes: Vec<u32> = self.attached.keys().copied().collect();
        for index in indexes {
            self.reconcile(index);
        }
    }
}

/// Runs `f` on the core on a blocking thread.
async fn on_core<T: Send + 'static>(
    core: &Arc<Mutex<Core>>,
    f: impl FnOnce(&mut Core) -> T + Send + 'static,
) -> Result<T, DatapathServiceError> {
    let core = core.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard =
            core.lock().map_err(|_| DatapathServiceError::Worker("a previous datapath call panicked".into()))?;
        Ok(f(&mut guard))
    })
    .await
    .map_err(|e| DatapathServiceError::Worker(e.to_string()))?
}

struct Running {
    core: Arc<Mutex<Core>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    next_id: u64,
}

/// The shared datapath: register once per process (it is created on first use).
#[derive(Default)]
pub struct Datapath {
    running: tokio::sync::Mutex<Option<Running>>,
}

impl Datapath {
    /// The process's instance.
    pub fn shared(services: &Services) -> Arc<Datapath> {
        services
            .get_or_try_init(|| Ok::<_, std::convert::Infallible>(Datapath::default()))
            .unwrap_or_else(|e| match e {})
    }

    /// Adds a subscriber: loads and starts following interfaces if it is the first, switches
    /// its features on and attaches to what it selects. When this returns, the interfaces that
    /// exist now are attached and their `Attached` events are waiting in the handle.
    pub async fn subscribe(self: &Arc<Self>, sub: Subscription) -> Result<DatapathHandle, DatapathServiceError> {
        let mut running = self.running.lock().await;
        if running.is_none() {
            *running = Some(start(&sub).await?);
        }
        let Some(r) = running.as_mut() else {
            return Err(DatapathServiceError::Worker("the datapath did not start".into()));
        };
        let id = r.next_id;
        r.next_id += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let subscriber = Subscriber {
            id,
            receiver: sub.receiver.clone(),
            features: sub.features,
            selection: sub.selection.clone(),
            events: tx,
            interfaces: BTreeMap::new(),
        };
        let flows = on_core(&r.core, move |core| {
            let (holder, loaded) = &core.loaded_by;
            if let Some(wanted) = sub.options
                && *loaded != wanted
            {
                return Err(DatapathServiceError::Conflict {
                    receiver: sub.receiver,
                    holder: holder.clone(),
                    wanted: format!("{wanted:?}"),
                    loaded: format!("{loaded:?}"),
                });
            }
            // features whose kernel state one receiver drains
            let owned = |f: &Features| [(f.flows, "flow tables"), (f.dns.is_some(), "DNS record ring")];
            for (wanted, feature) in owned(&sub.features) {
                if wanted
                    && let Some(other) = core.subscribers.iter().find(|s| owned(&s.features).contains(&(true, feature)))
                {
                    return Err(DatapathServiceError::FeatureTaken {
                        receiver: sub.receiver,
                        holder: other.receiver.clone(),
                        feature,
                    });
                }
            }
            core.add(subscriber)?;
            Ok(core.probe.flows())
        })
        .await?;
        let flows = match flows {
            Ok(flows) => flows,
            Err(e) => {
                // nobody else subscribed: do not leave the programs loaded
                drop(running);
                self.unsubscribe(id).await;
                return Err(e);
            }
        };
        Ok(DatapathHandle { service: self.clone(), core: r.core.clone(), flows, id, events: rx, released: false })
    }

    async fn unsubscribe(&self, id: u64) {
        let mut running = self.running.lock().await;
        let Some(r) = running.as_ref() else { return };
        let last = on_core(&r.core, move |core| {
            core.remove(id);
            core.subscribers.is_empty()
        })
        .await
        .unwrap_or(true);
        if !last {
            return;
        }
        if let Some(r) = running.take() {
            r.stop.cancel();
            let _ = r.task.await;
            // the last reference: detaching and unloading are syscalls, keep them off the runtime
            let core = r.core;
            let _ = tokio::task::spawn_blocking(move || drop(core)).await;
        }
    }
}

/// Loads the probe, lists the interfaces and default routes, and starts following them.
async fn start(first: &Subscription) -> Result<Running, DatapathServiceError> {
    let options = first.options.unwrap_or_default();
    let probe = tokio::task::spawn_blocking(move || DatapathProbe::load(options))
        .await
        .map_err(|e| DatapathServiceError::Worker(e.to_string()))??;
    // Subscribe before listing, so an interface created meanwhile is not missed.
    let mut watcher = LinkWatcher::open_with_routes()?;
    let mut changes = Vec::new();
    while watcher.dumping() {
        tokio::time::timeout(DUMP_TIMEOUT, watcher.changes(&mut changes))
            .await
            .map_err(|_| DatapathServiceError::DumpTimeout(DUMP_TIMEOUT))??;
    }
    let uplinks = tokio::task::spawn_blocking(links::default_route_interfaces)
        .await
        .map_err(|e| DatapathServiceError::Worker(e.to_string()))??;
    let links = watcher.links().map(|l| (l.index, l.clone())).collect();
    let core = Arc::new(Mutex::new(Core {
        probe,
        links,
        uplinks,
        attached: BTreeMap::new(),
        subscribers: Vec::new(),
        loaded_by: (first.receiver.clone(), options),
    }));
    let stop = CancellationToken::new();
    let task = tokio::spawn(follow(Arc::downgrade(&core), watcher, stop.clone()));
    Ok(Running { core, stop, task, next_id: 0 })
}

/// Applies link and route changes until stopped.
async fn follow(core: Weak<Mutex<Core>>, mut watcher: LinkWatcher, stop: CancellationToken) {
    let mut changes = Vec::new();
    loop {
        tokio::select! {
            result = watcher.changes(&mut changes) => match result {
                Ok(0) => {}
                Ok(_) => {
                    let Some(core) = core.upgrade() else { return };
                    let batch = std::mem::take(&mut changes);
                    if let Err(e) = on_core(&core, move |c| c.apply(&batch)).await {
                        tracing::warn!(error = %e, "applying interface changes failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watching interfaces failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = stop.cancelled() => return,
        }
    }
}

/// One subscriber's hold on the datapath.
pub struct DatapathHandle {
    service: Arc<Datapath>,
    core: Arc<Mutex<Core>>,
    flows: Arc<Mutex<FlowMaps>>,
    id: u64,
    events: mpsc::UnboundedReceiver<InterfaceEvent>,
    released: bool,
}

impl DatapathHandle {
    /// Runs `f` on the probe on a blocking thread (eBPF calls block).
    pub async fn with_probe<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DatapathProbe) -> T + Send + 'static,
    ) -> Result<T, DatapathServiceError> {
        on_core(&self.core, move |core| f(core.probe())).await
    }

    /// Runs `f` on the flows maps on a blocking thread. They have their own lock: draining them
    /// never delays attaching to a new interface.
    pub async fn with_flows<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut FlowMaps) -> T + Send + 'static,
    ) -> Result<T, DatapathServiceError> {
        let flows = self.flows.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard =
                flows.lock().map_err(|_| DatapathServiceError::Worker("a previous flows call panicked".into()))?;
            Ok(f(&mut guard))
        })
        .await
        .map_err(|e| DatapathServiceError::Worker(e.to_string()))?
    }

    /// The next change to this subscriber's interfaces.
    pub async fn next_event(&mut self) -> Option<InterfaceEvent> {
        self.events.recv().await
    }

    /// Changes already waiting, without waiting for more.
    pub fn pending_events(&mut self, out: &mut Vec<InterfaceEvent>) {
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
    }

    /// The receiver that loaded the programs (it reports their run time and maps; the others
    /// only what is theirs).
    pub fn loaded_by(&self) -> Option<String> {
        self.core.lock().ok().map(|c| c.loaded_by.0.clone())
    }

    /// For the own-metrics collector: the core, weakly (reports nothing once unloaded).
    pub fn health(&self) -> Weak<Mutex<Core>> {
        Arc::downgrade(&self.core)
    }

    /// Switches this subscriber's features off and detaches what only it wanted; the last
    /// subscriber's release unloads the programs.
    pub async fn release(mut self) {
        self.released = true;
        self.service.unsubscribe(self.id).await;
    }
}

impl Drop for DatapathHandle {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Not released (a receiver that failed midway): release in the background.
        let (service, id) = (self.service.clone(), self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { service.unsubscribe(id).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, peer_in_other_netns: bool) -> Link {
        Link::test_veth(index, name, peer_in_other_netns)
    }

    #[test]
    fn pods_are_veths_with_their_peer_elsewhere_and_uplinks_are_default_route_interfaces() {
        let s = InterfaceSelection {
            interfaces: vec![Pattern::new("veth*"), Pattern::new("lxc*")],
            exclude: vec![Pattern::new("veth-skip")],
            include_uplink: true,
        };
        let uplinks = BTreeSet::from([2]);
        assert_eq!(s.role(&link(5, "veth12", true), &uplinks), Some(ObservationPoint::Pod));
        assert_eq!(s.role(&link(5, "veth12", false), &uplinks), None, "both ends on the host: not a pod");
        assert_eq!(s.role(&link(6, "cali1", true), &uplinks), None, "not selected");
        assert_eq!(s.role(&link(7, "veth-skip", true), &uplinks), None, "excluded");
        assert_eq!(s.role(&link(2, "eth0", false), &uplinks), Some(ObservationPoint::Uplink));
        let no_uplink = InterfaceSelection { include_uplink: false, ..s };
        assert_eq!(no_uplink.role(&link(2, "eth0", false), &uplinks), None);
    }
}
