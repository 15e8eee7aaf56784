//! The reference registry: descriptor → component, with typed trait handles ("facets").
//!
//! Rust cannot ask a `dyn Any` whether it implements a trait, so a factory, while it still knows
//! the concrete type, registers each component with the typed handles it exports
//! (`Arc<dyn SessionsPersistence>`, `Arc<dyn Commandable>`, …) via [`Registration::provide`].
//! Lookups match descriptors with wildcards, scan newest first (as Pip does), and return the typed
//! handle; an entry whose locator matches but which does not export the asked trait counts as
//! absent. A required miss is a `REF_ERROR` naming the locator.

use super::component::Component;
use super::descriptor::Descriptor;
use super::errors::ApplicationError;
use parking_lot::RwLock;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// One registered component with its locator and exported typed handles.
pub struct Registration {
    locator: Descriptor,
    component: Arc<dyn Component>,
    facets: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("locator", &self.locator.to_string()).finish()
    }
}

impl Registration {
    /// Registers `component` under `locator` (its lifecycle handle is exported automatically).
    pub fn new<T: Component>(locator: Descriptor, component: Arc<T>) -> Self {
        let mut r = Self { locator, component: component.clone(), facets: HashMap::new() };
        r.facets.insert(TypeId::of::<Arc<T>>(), Box::new(component));
        r
    }

    /// Exports one more typed handle, e.g. `.provide::<dyn Commandable>(c.clone())`.
    #[must_use]
    pub fn provide<D: ?Sized + Send + Sync + 'static>(mut self, handle: Arc<D>) -> Self {
        self.facets.insert(TypeId::of::<Arc<D>>(), Box::new(handle));
        self
    }

    /// The locator the component is registered under.
    pub fn locator(&self) -> &Descriptor {
        &self.locator
    }

    /// The lifecycle handle.
    pub fn component(&self) -> &Arc<dyn Component> {
        &self.component
    }

    /// Replaces the locator (the container clarifies wildcards from the factory's registration).
    #[must_use]
    pub fn with_locator(mut self, locator: Descriptor) -> Self {
        self.locator = locator;
        self
    }

    /// The typed handle `D` if the component exports it.
    pub fn facet<D: ?Sized + Send + Sync + 'static>(&self) -> Option<Arc<D>> {
        self.facets.get(&TypeId::of::<Arc<D>>()).and_then(|b| b.downcast_ref::<Arc<D>>()).cloned()
    }
}

/// The registry shared by a container's components.
#[derive(Debug, Default)]
pub struct References {
    entries: RwLock<Vec<Arc<Registration>>>,
}

impl References {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a registration (newest last; lookups scan newest first).
    pub fn put(&self, registration: Registration) -> Arc<Registration> {
        let r = Arc::new(registration);
        self.entries.write().push(r.clone());
        r
    }

    /// Removes every registration whose locator matches; returns them.
    pub fn remove_all(&self, locator: &Descriptor) -> Vec<Arc<Registration>> {
        let mut entries = self.entries.write();
        let (gone, kept): (Vec<_>, Vec<_>) = entries.drain(..).partition(|r| r.locator.matches(locator));
        *entries = kept;
        gone
    }

    /// All registrations in insertion order.
    pub fn all(&self) -> Vec<Arc<Registration>> {
        self.entries.read().clone()
    }

    /// Every locator in insertion order.
    pub fn locators(&self) -> Vec<Descriptor> {
        self.entries.read().iter().map(|r| r.locator.clone()).collect()
    }

    /// Every matching handle of type `D`, newest first.
    pub fn get_optional<D: ?Sized + Send + Sync + 'static>(&self, locator: &Descriptor) -> Vec<Arc<D>> {
        self.entries.read().iter().rev().filter(|r| r.locator.matches(locator)).filter_map(|r| r.facet::<D>()).collect()
    }

    /// The newest matching handle of type `D`, if any.
    pub fn get_one_optional<D: ?Sized + Send + Sync + 'static>(&self, locator: &Descriptor) -> Option<Arc<D>> {
        self.entries.read().iter().rev().filter(|r| r.locator.matches(locator)).find_map(|r| r.facet::<D>())
    }

    /// The newest matching handle of type `D`.
    ///
    /// # Errors
    /// `Internal` / `REF_ERROR` "Failed to obtain reference to <locator>".
    pub fn get_one_required<D: ?Sized + Send + Sync + 'static>(
        &self,
        locator: &Descriptor,
    ) -> Result<Arc<D>, ApplicationError> {
        self.get_one_optional(locator).ok_or_else(|| reference_error(locator))
    }

    /// Every matching handle of type `D`, newest first; at least one.
    ///
    /// # Errors
    /// `REF_ERROR` when nothing matches.
    pub fn get_required<D: ?Sized + Send + Sync + 'static>(
        &self,
        locator: &Descriptor,
    ) -> Result<Vec<Arc<D>>, ApplicationError> {
        let v = self.get_optional(locator);
        if v.is_empty() {
            Err(reference_error(locator))
        } else {
            Ok(v)
        }
    }
}

/// The `REF_ERROR` for a missing reference.
pub fn reference_error(locator: &Descriptor) -> ApplicationError {
    ApplicationError::internal("REF_ERROR", format!("Failed to obtain reference to {locator}"))
        .with_details("locator", locator.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Greeter: Send + Sync {
        fn hello(&self) -> String;
    }
    struct A(&'static str);
    impl Component for A {}
    impl Greeter for A {
        fn hello(&self) -> String {
            self.0.to_string()
        }
    }
    struct Plain;
    impl Component for Plain {}

    fn d(s: &str) -> Descriptor {
        s.parse().unwrap()
    }

    fn registry() -> References {
        let refs = References::new();
        let a1 = Arc::new(A("first"));
        refs.put(Registration::new(d("g:greeter:a:one:1.0"), a1.clone()).provide::<dyn Greeter>(a1));
        refs.put(Registration::new(d("g:greeter:plain:x:1.0"), Arc::new(Plain)));
        let a2 = Arc::new(A("second"));
        refs.put(Registration::new(d("g:greeter:a:two:1.0"), a2.clone()).provide::<dyn Greeter>(a2));
        refs
    }

    #[test]
    fn typed_lookups_scan_newest_first() {
        let refs = registry();
        let any = d("g:greeter:*:*:1.0");
        assert_eq!(refs.get_one_required::<dyn Greeter>(&any).unwrap().hello(), "second");
        let all: Vec<String> = refs.get_optional::<dyn Greeter>(&any).iter().map(|g| g.hello()).collect();
        assert_eq!(all, vec!["second", "first"]);
        assert_eq!(refs.get_one_required::<dyn Greeter>(&d("*:*:*:one:*")).unwrap().hello(), "first");
        assert_eq!(refs.get_required::<dyn Greeter>(&any).unwrap().len(), 2);
        assert!(refs.get_one_optional::<Plain>(&any).is_some());
        assert!(refs.get_one_optional::<A>(&d("g:greeter:a:two:1.0")).is_some());
    }

    #[test]
    fn a_locator_match_without_the_facet_is_absent() {
        let refs = registry();
        let e = refs.get_one_required::<dyn Greeter>(&d("g:greeter:plain:*:1.0")).err().unwrap();
        assert_eq!(e.code, "REF_ERROR");
        assert_eq!(e.message, "Failed to obtain reference to g:greeter:plain:*:1.0");
        assert_eq!(e.details["locator"], "g:greeter:plain:*:1.0");
        assert!(refs.get_required::<dyn Greeter>(&d("x:*:*:*:*")).is_err());
    }

    #[test]
    fn remove_all_and_locators() {
        let refs = registry();
        assert_eq!(refs.locators().len(), 3);
        assert_eq!(refs.remove_all(&d("g:greeter:a:*:1.0")).len(), 2);
        assert_eq!(refs.locators(), vec![d("g:greeter:plain:x:1.0")]);
    }
}
