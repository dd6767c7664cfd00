//! The built-in component types: adding a component is one folder and one line here.

use crate::connectors;
use crate::exporters;
use crate::extensions;
use crate::pipeline::Registry;
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
}
