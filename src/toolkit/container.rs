//! The container: render → parse → create and configure every component → set references on all
//! → open in order; close in reverse order.
//!
//! Deviations from Pip, on purpose: every problem found before opening (an entry without a valid
//! descriptor, a descriptor no factory knows, a bad config value of any component, a missing
//! dependency) is collected and reported at once, in file order, and nothing opens. Dependencies
//! are checked once every entry could be built (a component that could not be built would
//! otherwise be reported a second time as a missing dependency of the ones that need it); a failed open closes what was already opened, in reverse;
//! close runs in reverse order with a per-component timeout; required references are never
//! created lazily.

use super::config::{config_problems, parse_config_entries, ComponentConfig, ConfigParameters};
use super::descriptor::Descriptor;
use super::errors::ApplicationError;
use super::factory::Factory;
use super::info::ContextInfo;
use super::references::{References, Registration};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// Locator of the context info component.
pub fn context_info_locator() -> Descriptor {
    Descriptor::new("pip-services", "context-info", "default", "default", "1.0")
}

/// A running set of components.
pub struct Container {
    factory: Arc<dyn Factory>,
    references: Arc<References>,
    opened: Mutex<Vec<Arc<Registration>>>,
    close_timeout: Duration,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container").field("components", &self.references.locators().len()).finish()
    }
}

impl Container {
    /// A container creating components with `factory`.
    pub fn new(factory: Arc<dyn Factory>) -> Self {
        Self {
            factory,
            references: Arc::new(References::new()),
            opened: Mutex::new(Vec::new()),
            close_timeout: Duration::from_secs(30),
        }
    }

    /// Sets how long each component may take to close.
    #[must_use]
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The registry of the container's components.
    pub fn references(&self) -> &Arc<References> {
        &self.references
    }

    /// The context info in use.
    pub fn info(&self) -> Arc<ContextInfo> {
        super::info::find(&self.references)
    }

    /// Renders, parses and opens a configuration text.
    ///
    /// # Errors
    /// Every configuration problem at once (`BAD_CONFIG` with `details.errors`), or the first
    /// open failure (after closing what was opened).
    pub async fn open_text(
        &self,
        text: &str,
        params: &ConfigParameters,
        correlation_id: Option<&str>,
    ) -> Result<(), ApplicationError> {
        let parsed = parse_config_entries(text, params).map_err(|e| e.with_correlation_id(correlation_id))?;
        self.open_reporting(parsed.components, parsed.problems, correlation_id).await
    }

    /// Builds, references and opens the given component entries.
    ///
    /// # Errors
    /// As [`Container::open_text`].
    pub async fn open(
        &self,
        configs: Vec<ComponentConfig>,
        correlation_id: Option<&str>,
    ) -> Result<(), ApplicationError> {
        self.open_reporting(configs, Vec::new(), correlation_id).await
    }

    /// Builds, references and opens the given entries; `earlier` are problems already found
    /// while parsing (`(entry index, message)`), reported together with the ones found here.
    async fn open_reporting(
        &self,
        configs: Vec<ComponentConfig>,
        earlier: Vec<(usize, String)>,
        correlation_id: Option<&str>,
    ) -> Result<(), ApplicationError> {
        if !self.opened.lock().is_empty() {
            return Err(ApplicationError::invalid_state("ALREADY_OPENED", "Container was already opened"));
        }
        self.build_reporting(&configs, earlier, correlation_id)?;
        for config in &configs {
            let settings: Vec<String> = config
                .redacted()
                .into_iter()
                .filter(|(k, _)| k != "descriptor")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            tracing::info!(component = %config.descriptor, settings = %settings.join(" "), "Effective configuration.");
        }
        for r in self.references.all() {
            if let Err(e) = r.component().open(correlation_id).await {
                tracing::error!(component = %r.locator(), error = %e, "Component failed to open; closing the container.");
                self.close(correlation_id).await;
                return Err(e);
            }
            self.opened.lock().push(r);
        }
        tracing::info!(name = %self.info().name, components = self.references.locators().len(), "Container started.");
        Ok(())
    }

    /// Creates every component of `configs` with the factory and sets the references on all of
    /// them, without opening any (maintenance commands that only read a component's settings
    /// use it alone; [`Container::open`] opens after it).
    ///
    /// # Errors
    /// Every creation and reference problem at once (`BAD_CONFIG` with `details.errors`); the
    /// registry is left empty then.
    pub fn build(&self, configs: &[ComponentConfig], correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        self.build_reporting(configs, Vec::new(), correlation_id)
    }

    /// Renders and parses a configuration text and builds every component (creation, settings,
    /// references) without opening any, then lets them all go again: what start-up would refuse,
    /// found without binding a port, touching a file or connecting anywhere. Returns how many
    /// components the configuration has.
    ///
    /// # Errors
    /// As [`Container::open_text`] before anything opens: template and YAML errors, else every
    /// descriptor, settings and reference problem at once.
    pub fn check_text(&self, text: &str, params: &ConfigParameters) -> Result<usize, ApplicationError> {
        let parsed = parse_config_entries(text, params)?;
        let count = parsed.components.len();
        let built = self.build_reporting(&parsed.components, parsed.problems, None);
        for r in self.references.all().iter().rev() {
            r.component().unset_references();
        }
        self.references.remove_all(&Descriptor::new("*", "*", "*", "*", "*"));
        built.map(|()| count)
    }

    /// [`Container::build`], reporting `earlier` problems (`(entry index, message)`, found while
    /// parsing) together with the ones found here.
    fn build_reporting(
        &self,
        configs: &[ComponentConfig],
        earlier: Vec<(usize, String)>,
        correlation_id: Option<&str>,
    ) -> Result<(), ApplicationError> {
        let mut problems = earlier;
        let has_info = configs.iter().any(|c| super::info::is_info_type(c.descriptor.typ()));
        if !has_info {
            self.references.put(Registration::new(context_info_locator(), Arc::new(ContextInfo::default())));
        }
        for config in configs {
            match self.factory.create(config) {
                Ok(r) => {
                    self.references.put(r);
                }
                Err(e) => {
                    // Settings errors name their entry already (`ComponentConfig::section`).
                    let prefix = format!("Component #{} ({}): ", config.index + 1, config.descriptor);
                    let message =
                        if e.message.starts_with(&prefix) { e.message } else { format!("{prefix}{}", e.message) };
                    problems.push((config.index, message));
                }
            }
        }
        if problems.is_empty() {
            for r in self.references.all() {
                if let Err(e) = r.component().set_references(&self.references) {
                    problems.push((usize::MAX, format!("Component {}: {}", r.locator(), e.message)));
                }
            }
        }
        if !problems.is_empty() {
            self.references.remove_all(&Descriptor::new("*", "*", "*", "*", "*"));
            // File order; the sort is stable, so dependency problems keep registration order.
            problems.sort_by_key(|(index, _)| *index);
            let problems = problems.into_iter().map(|(_, p)| p).collect();
            return Err(config_problems(problems).with_correlation_id(correlation_id));
        }
        Ok(())
    }

    /// Closes opened components in reverse order (each bounded by the close timeout), then
    /// unsets every reference. Close failures are logged; closing goes on.
    pub async fn close(&self, correlation_id: Option<&str>) {
        let opened: Vec<Arc<Registration>> = std::mem::take(&mut *self.opened.lock());
        for r in opened.iter().rev() {
            match tokio::time::timeout(self.close_timeout, r.component().close(correlation_id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(component = %r.locator(), error = %e, "Component failed to close."),
                Err(_) => tracing::warn!(component = %r.locator(), "Component did not close in time."),
            }
        }
        let all = self.references.all();
        for r in all.iter().rev() {
            r.component().unset_references();
        }
        self.references.remove_all(&Descriptor::new("*", "*", "*", "*", "*"));
        if !opened.is_empty() {
            tracing::info!("Container stopped.");
        }
    }
}
