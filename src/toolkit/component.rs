//! The component lifecycle: references, open, close, health.
//!
//! Components are created already configured by their factory (the typed settings are read
//! there), so the lifecycle left to the container is `set_references` → `open` → `close`
//! (→ `unset_references`). Every method has a no-op default. Methods take `&self`: components are
//! shared as `Arc` once referenced, so what they resolve or start is kept in `OnceLock`/`Mutex`
//! fields.

use super::errors::ApplicationError;
use super::references::References;
use async_trait::async_trait;

/// Health of a component as reported by `/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentHealth {
    /// Whether the component can serve requests now.
    pub ready: bool,
    /// A short human-readable note (never secrets).
    pub message: String,
}

impl ComponentHealth {
    /// A ready component.
    pub fn ready() -> Self {
        Self { ready: true, message: "ok".to_string() }
    }
    /// A component that cannot serve now.
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self { ready: false, message: message.into() }
    }
}

/// The lifecycle every registered component implements.
#[async_trait]
pub trait Component: Send + Sync + 'static {
    /// Resolves dependencies from the registry. Called on every component before any opens.
    ///
    /// # Errors
    /// A `REF_ERROR` naming the locator of a missing required dependency.
    fn set_references(&self, _references: &References) -> Result<(), ApplicationError> {
        Ok(())
    }

    /// Drops resolved dependencies (breaks `Arc` cycles) after close.
    fn unset_references(&self) {}

    /// Starts the component (binds ports, connects, spawns owned tasks).
    ///
    /// # Errors
    /// Any failure to start; the container then closes what was already opened.
    async fn open(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        Ok(())
    }

    /// Stops the component: cancels and joins every task it spawned, flushes and releases.
    ///
    /// # Errors
    /// Failures while releasing; the container logs them and keeps closing the others.
    async fn close(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        Ok(())
    }

    /// Current health (readiness) of the component.
    async fn health(&self) -> ComponentHealth {
        ComponentHealth::ready()
    }
}
