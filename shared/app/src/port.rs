//! Ports built on first use.
//!
//! One [`App`](crate::App) serves every function, but a function uses only some of its ports: the
//! webhook function verifies, claims and enqueues, and never touches the ledger, the push gate or the
//! bus. A cold start should pay only for what the function runs, so each port is a [`Port`]: it holds
//! how to build the client or store, and builds it the first time a handler dereferences it (once,
//! even under concurrent invocations). Call sites read as if the port were the value itself
//! (`app.ledger.position(..)`), and [`Registry::built`] tells which ports a run actually built, which
//! is how the tests prove that a function builds only what it uses.

use std::{
    collections::BTreeSet,
    fmt,
    ops::Deref,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

type Init<T> = Box<dyn FnOnce() -> T + Send>;

/// The names of the ports built so far, shared by every port of one application context.
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Mutex<BTreeSet<&'static str>>>);

impl Registry {
    /// A port named `name`, built by `init` on first use.
    pub fn lazy<T>(&self, name: &'static str, init: impl FnOnce() -> T + Send + 'static) -> Port<T> {
        Port(Arc::new(Inner {
            name,
            cell: OnceLock::new(),
            init: Mutex::new(Some(Box::new(init))),
            registry: self.clone(),
        }))
    }

    /// A port that is already built (a test replacing one of the context's ports).
    pub fn ready<T>(&self, name: &'static str, value: T) -> Port<T> {
        self.mark(name);
        Port(Arc::new(Inner { name, cell: OnceLock::from(value), init: Mutex::new(None), registry: self.clone() }))
    }

    /// The ports built so far, by name.
    pub fn built(&self) -> BTreeSet<&'static str> {
        self.lock().clone()
    }

    fn mark(&self, name: &'static str) {
        self.lock().insert(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<&'static str>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A client or store of the application context, built the first time it is used. Clones share it.
pub struct Port<T>(Arc<Inner<T>>);

struct Inner<T> {
    name: &'static str,
    cell: OnceLock<T>,
    init: Mutex<Option<Init<T>>>,
    registry: Registry,
}

impl<T> Port<T> {
    /// The port's value, built now if this is its first use.
    pub fn get(&self) -> &T {
        self.0.cell.get_or_init(|| {
            // `get_or_init` runs one initialiser at a time and never again once one has returned, so
            // the builder is always still there; it is only gone if a previous build panicked.
            let init = self.0.init.lock().unwrap_or_else(PoisonError::into_inner).take();
            let init = init.unwrap_or_else(|| panic!("port {} panicked while it was being built", self.0.name));
            let value = init();
            self.0.registry.mark(self.0.name);
            value
        })
    }

    /// Whether the port has been built.
    pub fn is_built(&self) -> bool {
        self.0.cell.get().is_some()
    }
}

impl<T> Clone for Port<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Deref for Port<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.get()
    }
}

impl<T> fmt::Debug for Port<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port").field("name", &self.0.name).field("built", &self.is_built()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_port_is_built_on_first_use_only_once_and_recorded() {
        let registry = Registry::default();
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let port = registry.lazy("ledger", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            vec![1, 2, 3]
        });
        let unused = registry.lazy("push_gate", || 0_u8);
        assert!(!port.is_built());
        assert!(registry.built().is_empty(), "nothing is built before it is used");

        let clone = port.clone();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let p = clone.clone();
                s.spawn(move || assert_eq!(p.len(), 3));
            }
        });
        assert_eq!(port[2], 3);
        assert_eq!(builds.load(Ordering::SeqCst), 1, "concurrent first uses build once");
        assert!(port.is_built() && !unused.is_built());
        assert_eq!(registry.built(), BTreeSet::from(["ledger"]));
    }

    #[test]
    fn a_ready_port_counts_as_built() {
        let registry = Registry::default();
        let port = registry.ready("queue", "q".to_owned());
        assert!(port.is_built());
        assert_eq!(port.as_str(), "q");
        assert_eq!(registry.built(), BTreeSet::from(["queue"]));
    }
}
