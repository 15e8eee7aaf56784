//! `SessionsServiceFactory`: the only place that names the concrete component types.

use crate::logic::SessionsController;
use crate::persistence::file::SessionsFilePersistence;
use crate::persistence::memory::SessionsMemoryPersistence;
use crate::persistence::SessionsPersistence;
use crate::services::version1::SessionsCommandableHttpServiceV1;
use crate::toolkit::commands::Commandable;
use crate::toolkit::defaults::default_factory;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::factory::{CompositeFactory, TableFactory};
use crate::toolkit::http::commandable::CommandableHttpService;
use crate::toolkit::http::swagger::OpenApiDocument;
use crate::toolkit::references::Registration;
use std::sync::Arc;

/// `service-sessions:persistence:memory:*:1.0`.
pub fn memory_persistence_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "persistence", "memory", "*", "1.0")
}

/// `service-sessions:persistence:file:*:1.0`.
pub fn file_persistence_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "persistence", "file", "*", "1.0")
}

/// `service-sessions:controller:default:*:1.0`.
pub fn controller_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "controller", "default", "*", "1.0")
}

/// `service-sessions:service:commandable-http:*:1.0`.
pub fn commandable_http_service_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "service", "commandable-http", "*", "1.0")
}

fn any() -> Descriptor {
    Descriptor::new("*", "*", "*", "*", "*")
}

/// The sessions components.
pub struct SessionsServiceFactory;

impl SessionsServiceFactory {
    /// The table of sessions components.
    pub fn table() -> TableFactory {
        TableFactory::new()
            .register(memory_persistence_descriptor(), |c| {
                let p = Arc::new(SessionsMemoryPersistence::from_config(c)?);
                Ok(Registration::new(any(), p.clone()).provide::<dyn SessionsPersistence>(p))
            })
            .register(file_persistence_descriptor(), |c| {
                let p = Arc::new(SessionsFilePersistence::from_config(c)?);
                Ok(Registration::new(any(), p.clone()).provide::<dyn SessionsPersistence>(p))
            })
            .register(controller_descriptor(), |c| {
                let ctl = SessionsController::from_config(c)?;
                Ok(Registration::new(any(), ctl.clone()).provide::<dyn Commandable>(ctl))
            })
            .register(commandable_http_service_descriptor(), |c| {
                let s: Arc<CommandableHttpService> = Arc::new(SessionsCommandableHttpServiceV1::from_config(c)?);
                Ok(Registration::new(any(), s.clone()).provide::<dyn OpenApiDocument>(s))
            })
    }

    /// The toolkit defaults plus the sessions components (which override them).
    pub fn composite() -> CompositeFactory {
        CompositeFactory::new().with(Arc::new(default_factory())).with(Arc::new(Self::table()))
    }
}
