//! The built-in component types: adding a component is one folder and one line here.

use crate::exporters;
use crate::pipeline::Registry;
use crate::processors;

/// Every component type fovea ships.
pub fn builtin() -> Registry {
    Registry::new(vec![
        // processors
        processors::batch::factory(),
        // exporters
        exporters::debug::factory(),
    ])
}
