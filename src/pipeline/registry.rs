//! The registry of component factories.

use super::component::Factory;
use crate::telemetry::ComponentKind;

/// All known component types.
pub struct Registry {
    factories: Vec<Factory>,
}

impl Registry {
    /// A registry of the given factories.
    pub fn new(factories: Vec<Factory>) -> Self {
        Registry { factories }
    }

    /// The factory of `kind` answering to `name` (type or alias).
    pub fn find(&self, kind: ComponentKind, name: &str) -> Option<&Factory> {
        self.factories.iter().find(|f| f.kind == kind && f.answers_to(name))
    }

    /// Type names of `kind`, sorted, for "valid choices" messages.
    pub fn type_names(&self, kind: ComponentKind) -> Vec<&'static str> {
        let mut names: Vec<_> = self.factories.iter().filter(|f| f.kind == kind).map(|f| f.type_name).collect();
        names.sort_unstable();
        names
    }

    /// Every factory.
    pub fn factories(&self) -> &[Factory] {
        &self.factories
    }
}
