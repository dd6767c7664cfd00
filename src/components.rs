//! The built-in component types: adding a component is one folder and one line here.

use crate::config::parse_component;
use crate::connectors;
use crate::exporters;
use crate::extensions;
use crate::model::Signal;
use crate::pipeline::{ReceiverUse, Registry};
use crate::processors;
use crate::receivers;

/// Every component type fovea ships.
pub fn builtin() -> Registry {
    Registry::new(vec![
        // receivers
        receivers::linuxutil::factory(),
        receivers::packetforward::factory(),
        receivers::dropreason::factory(),
        receivers::tcpretrans::factory(),
        receivers::flows::factory(),
        receivers::dns::factory(),
        receivers::otlp::factory(),
        // processors
        processors::batch::factory(),
        processors::k8sattributes::factory(),
        // exporters
        exporters::debug::factory(),
        exporters::flowlog::factory(),
        exporters::otlp::factory(),
        exporters::otlphttp::factory(),
        exporters::prometheus::factory(),
        exporters::prometheusremotewrite::factory(),
        // connectors
        connectors::flowmetrics::factory(),
        connectors::forward::factory(),
        // extensions
        extensions::health_check::factory(),
        extensions::pprof::factory(),
        extensions::zpages::factory(),
    ])
    .with_receiver_check(pod_interface_handover)
}

/// packetforward's `exclude_pod_interfaces` hands the pods' veths to a flows receiver that
/// reports their totals (`forward_metrics`); without one in a metrics pipeline those interfaces'
/// `network.forward.*` would silently be counted by nobody.
fn pod_interface_handover(receivers: &[ReceiverUse<'_>]) -> Vec<String> {
    use receivers::flows::{FlowsConfig, ForwardMetrics};
    use receivers::packetforward::PacketforwardConfig;
    let in_metrics = |t: &'static str| {
        receivers.iter().filter(move |r| r.entry.id.kind_type == t && r.signals.contains(&Signal::Metrics))
    };
    let reported = in_metrics("flows").any(|r| {
        parse_component::<FlowsConfig>(&r.entry.body, "").is_ok_and(|c| c.forward_metrics != ForwardMetrics::Off)
    });
    if reported {
        return Vec::new();
    }
    in_metrics("packetforward")
        .filter(|r| {
            parse_component::<PacketforwardConfig>(&r.entry.body, "").is_ok_and(|c| !c.exclude_pod_interfaces.is_empty())
        })
        .map(|r| format!(
            "receivers::{}::exclude_pod_interfaces leaves pod interfaces to the flows receiver, but no flows receiver in a metrics pipeline reports their totals: add one with forward_metrics: pods, or their network.forward.* are counted by nobody",
            r.entry.id
        ))
        .collect()
}
