//! `connectors::forward` configuration: like otelcol's forwardconnector, it has no settings.

use serde::Deserialize;

use crate::config::ComponentConfig;

/// The `forward` connector takes no settings; any key is an error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

impl ComponentConfig for ForwardConfig {}
