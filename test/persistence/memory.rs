//! The memory backend runs the conformance fixture.

use super::Subject;
use service_sessions::persistence::memory::SessionsMemoryPersistence;
use std::sync::Arc;

pub(super) async fn subject() -> Subject {
    Subject { persistence: Arc::new(SessionsMemoryPersistence::new()), _guard: Box::new(()) }
}

crate::conformance_tests!(memory_conformance, crate::persistence::memory::subject);
