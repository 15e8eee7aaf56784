//! Factories: descriptor → configured component registration.
//!
//! A factory is a table of (registered locator, constructor). Lookups scan in registration order
//! with symmetric wildcard matching; a [`CompositeFactory`] asks its children last-added first,
//! so a later factory overrides an earlier one. Constructors receive the component's config entry
//! and return a [`Registration`] carrying the typed handles the component exports.

use super::config::ComponentConfig;
use super::descriptor::Descriptor;
use super::errors::ApplicationError;
use super::references::Registration;
use std::sync::Arc;

/// A constructor: reads its typed section from the entry and builds the registration.
pub type Constructor = Arc<dyn Fn(&ComponentConfig) -> Result<Registration, ApplicationError> + Send + Sync>;

/// Creates components from descriptors.
pub trait Factory: Send + Sync {
    /// The registered locator that can create `locator`, if any.
    fn can_create(&self, locator: &Descriptor) -> Option<Descriptor>;
    /// Creates and configures the component for `config.descriptor`.
    ///
    /// # Errors
    /// `CANNOT_CREATE` when nothing is registered, or the constructor's own error (bad config).
    fn create(&self, config: &ComponentConfig) -> Result<Registration, ApplicationError>;
}

/// A table of constructors.
#[derive(Default, Clone)]
pub struct TableFactory {
    entries: Vec<(Descriptor, Constructor)>,
}

impl std::fmt::Debug for TableFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|(d, _)| d)).finish()
    }
}

impl TableFactory {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a constructor under a locator (wildcards allowed).
    #[must_use]
    pub fn register<F>(mut self, locator: Descriptor, ctor: F) -> Self
    where
        F: Fn(&ComponentConfig) -> Result<Registration, ApplicationError> + Send + Sync + 'static,
    {
        self.entries.push((locator, Arc::new(ctor)));
        self
    }
}

impl Factory for TableFactory {
    fn can_create(&self, locator: &Descriptor) -> Option<Descriptor> {
        self.entries.iter().find(|(d, _)| d.matches(locator)).map(|(d, _)| d.clone())
    }

    fn create(&self, config: &ComponentConfig) -> Result<Registration, ApplicationError> {
        let (registered, ctor) = self
            .entries
            .iter()
            .find(|(d, _)| d.matches(&config.descriptor))
            .ok_or_else(|| cannot_create(&config.descriptor))?;
        let locator = config.descriptor.clarify(registered);
        Ok(ctor(config)?.with_locator(locator))
    }
}

fn cannot_create(locator: &Descriptor) -> ApplicationError {
    ApplicationError::internal("CANNOT_CREATE", format!("No factory can create component {locator}"))
        .with_details("descriptor", locator.to_string())
}

/// Several factories; the last added is asked first.
#[derive(Default, Clone)]
pub struct CompositeFactory {
    factories: Vec<Arc<dyn Factory>>,
}

impl std::fmt::Debug for CompositeFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeFactory").field("factories", &self.factories.len()).finish()
    }
}

impl CompositeFactory {
    /// An empty composite.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a factory that overrides the ones added before it.
    #[must_use]
    pub fn with(mut self, factory: Arc<dyn Factory>) -> Self {
        self.factories.push(factory);
        self
    }
}

impl Factory for CompositeFactory {
    fn can_create(&self, locator: &Descriptor) -> Option<Descriptor> {
        self.factories.iter().rev().find_map(|f| f.can_create(locator))
    }

    fn create(&self, config: &ComponentConfig) -> Result<Registration, ApplicationError> {
        match self.factories.iter().rev().find(|f| f.can_create(&config.descriptor).is_some()) {
            Some(f) => f.create(config),
            None => Err(cannot_create(&config.descriptor)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::component::Component;

    struct C(&'static str);
    impl Component for C {}

    fn d(s: &str) -> Descriptor {
        s.parse().unwrap()
    }

    fn table(tag: &'static str) -> TableFactory {
        TableFactory::new().register(d("g:t:k:*:1.0"), move |_| Ok(Registration::new(d("x:x:x:x:x"), Arc::new(C(tag)))))
    }

    #[test]
    fn clarifies_locator_and_prefers_last_added() {
        let f = CompositeFactory::new().with(Arc::new(table("base"))).with(Arc::new(table("user")));
        let cfg = ComponentConfig::new(d("g:t:k:main:1.0"), serde_json::json!({}));
        let r = f.create(&cfg).unwrap();
        assert_eq!(r.locator().to_string(), "g:t:k:main:1.0");
        assert_eq!(r.facet::<C>().unwrap().0, "user");
        assert_eq!(f.can_create(&d("g:t:*:*:*")), Some(d("g:t:k:*:1.0")));
        let miss = ComponentConfig::new(d("g:t:other:main:1.0"), serde_json::json!({}));
        assert_eq!(f.create(&miss).err().unwrap().code, "CANNOT_CREATE");
    }
}
