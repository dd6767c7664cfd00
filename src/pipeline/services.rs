//! Shared services: one instance per process of something several components use (the
//! Kubernetes metadata cache, the agent's health state ...), found by type.
//!
//! The engine only carries the container; it knows none of the services. A component asks for
//! a service in `start` and creates it if it is the first to need it, so two `k8sattributes`
//! processors in two pipelines share one cache instead of watching the API server twice.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Services shared by the components of one agent, keyed by type.
#[derive(Default)]
pub struct Services {
    map: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Services({n})")
    }
}

impl Services {
    /// Registers `service` as the instance of its type, replacing any earlier one.
    pub fn insert<T: Any + Send + Sync>(&self, service: Arc<T>) {
        if let Ok(mut map) = self.map.lock() {
            map.insert(TypeId::of::<T>(), service);
        }
    }

    /// The instance of `T`, if some component or the agent registered one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let map = self.map.lock().ok()?;
        map.get(&TypeId::of::<T>()).cloned().and_then(|s| s.downcast::<T>().ok())
    }

    /// The instance of `T`, created by `init` if there is none yet. `init` runs under the
    /// container's lock, so two components starting at once still get one instance; it must
    /// not ask for other services.
    pub fn get_or_try_init<T: Any + Send + Sync, E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        // A poisoned lock only means another init panicked; the map itself is still consistent.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(&TypeId::of::<T>()).cloned().and_then(|s| s.downcast::<T>().ok()) {
            return Ok(existing);
        }
        let created = Arc::new(init()?);
        map.insert(TypeId::of::<T>(), created.clone());
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_per_type() {
        let services = Services::default();
        let a = services.get_or_try_init(|| Ok::<_, ()>(String::from("first"))).unwrap();
        let b = services.get_or_try_init(|| Ok::<_, ()>(String::from("second"))).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*services.get::<String>().unwrap(), "first");
        assert!(services.get::<u32>().is_none());
        assert!(services.get_or_try_init(|| Err::<u32, _>("refused")).is_err());
        assert!(services.get::<u32>().is_none());
    }
}
