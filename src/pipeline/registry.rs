//! The registry of component factories.

use super::component::Factory;
use crate::config::Entry;
use crate::model::Signal;
use crate::telemetry::ComponentKind;

/// A configured receiver as a [`ReceiverCheck`] sees it.
pub struct ReceiverUse<'a> {
    /// Its entry in `receivers:`.
    pub entry: &'a Entry,
    /// The signals of the pipelines that list it (empty: unused).
    pub signals: Vec<Signal>,
}

/// A check across several receivers' configs (each valid on its own) that returns warnings;
/// registered by the composition root (src/components.rs), which knows the component types.
pub type ReceiverCheck = fn(&[ReceiverUse<'_>]) -> Vec<String>;

/// All known component types.
pub struct Registry {
    factories: Vec<Factory>,
    receiver_checks: Vec<ReceiverCheck>,
}

impl Registry {
    /// A registry of the given factories.
    pub fn new(factories: Vec<Factory>) -> Self {
        Registry { factories, receiver_checks: Vec::new() }
    }

    /// Adds a check across receivers, run on every config the graph is built from.
    pub fn with_receiver_check(mut self, check: ReceiverCheck) -> Self {
        self.receiver_checks.push(check);
        self
    }

    /// The checks across receivers.
    pub fn receiver_checks(&self) -> &[ReceiverCheck] {
        &self.receiver_checks
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
