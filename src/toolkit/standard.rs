//! Pip's standard components that have nothing to do in this process, accepted so that a Pip
//! configuration starts unchanged; the list says why each does nothing here.
//!
//! * `logger:null`, `logger:composite`: every component logs through `tracing`, whose subscriber
//!   already fans out; a composite has nothing to add. When loggers are configured but none of
//!   them is a console logger, the process logs nothing (Pip: a null logger swallows, a
//!   composite without targets has none).
//! * `counters:null`, `counters:composite`: every component records into the Prometheus registry
//!   whatever counters are configured; the registry is reported by `/metrics` and by the
//!   `counters:log` / `counters:prometheus` components (see [`super::counters`]).
//! * `tracer:null`, `tracer:log`, `tracer:composite`: the HTTP endpoint already logs every request
//!   at debug ("Request served." with its route, status and elapsed time) and every 5xx at error,
//!   which is what Pip's log tracer adds; there is no other tracer.
//! * `cache:null|memory`, `credential-store:memory`, `discovery:memory`,
//!   `config-reader:memory|json|yaml`: services for other components to look up; no component
//!   here uses a cache, resolves `credential.store_key` or `connection.discovery_key`, or reads a
//!   config reader (the container reads its file itself), as none did in the original.

use super::component::Component;

/// A standard Pip component accepted in configuration that does nothing here.
#[derive(Debug, Clone, Copy)]
pub struct Inert {
    role: &'static str,
}

impl Inert {
    /// An inert component; `role` says what Pip would do with it (for `Debug`).
    pub fn new(role: &'static str) -> Self {
        Self { role }
    }

    /// What the component stands for.
    pub fn role(&self) -> &'static str {
        self.role
    }
}

impl Component for Inert {}
