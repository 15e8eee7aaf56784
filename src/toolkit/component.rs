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
use parking_lot::Mutex;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A background task a component owns: started once (a second start while it runs is a no-op),
/// cancelled and joined by [`OwnedTask::stop`] — what `close` must do with every task it spawned.
#[derive(Debug, Default)]
pub struct OwnedTask(Mutex<Option<(CancellationToken, JoinHandle<()>)>>);

impl OwnedTask {
    /// No task yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task` with the token that cancels it, unless a task runs already.
    pub fn start<F, Fut>(&self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut slot = self.0.lock();
        if slot.is_none() {
            let token = CancellationToken::new();
            *slot = Some((token.clone(), tokio::spawn(task(token))));
        }
    }

    /// Spawns a task that runs `tick` every `period` (first after one period; a late tick delays
    /// the next ones) until stopped, unless a task runs already.
    pub fn start_periodic<F, Fut>(&self, period: Duration, tick: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        // The first tick is one period after the start, not after the task's first poll.
        let first = tokio::time::Instant::now() + period;
        self.start(move |stop| async move {
            let mut ticks = tokio::time::interval_at(first, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => tick().await,
                }
            }
        });
    }

    /// Whether a task was started and not stopped.
    pub fn is_running(&self) -> bool {
        self.0.lock().is_some()
    }

    /// Cancels the task and waits for it to end.
    pub async fn stop(&self) {
        let running = self.0.lock().take();
        if let Some((token, task)) = running {
            token.cancel();
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "A background task ended abnormally.");
            }
        }
    }
}

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
