//! `SessionsServiceFactory`: the only place that names the concrete component types.

use crate::clients::version1::{
    SessionsClientV1, SessionsCommandableGrpcClientV1, SessionsDirectClientV1, SessionsGrpcClientV1,
    SessionsHttpClientV1,
};
use crate::logic::SessionsController;
use crate::persistence::file::SessionsFilePersistence;
use crate::persistence::instrumented::InstrumentedPersistence;
use crate::persistence::memory::SessionsMemoryPersistence;
use crate::persistence::mongodb::SessionsMongoDbPersistence;
use crate::persistence::redis::SessionsRedisPersistence;
use crate::services::version1::{
    SessionsCommandableGrpcServiceV1, SessionsCommandableHttpServiceV1, SessionsGrpcServiceV1, SessionsRestServiceV1,
};
use crate::toolkit::commands::Commandable;
use crate::toolkit::defaults::default_factory;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::factory::{CompositeFactory, TableFactory};
use crate::toolkit::http::commandable::CommandableHttpService;
use crate::toolkit::http::swagger::OpenApiDocument;
use crate::toolkit::metrics::MetricsSource;
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

/// `service-sessions:persistence:mongodb:*:1.0`.
pub fn mongodb_persistence_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "persistence", "mongodb", "*", "1.0")
}

/// `service-sessions:persistence:redis:*:1.0`.
pub fn redis_persistence_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "persistence", "redis", "*", "1.0")
}

/// `service-sessions:controller:default:*:1.0`.
pub fn controller_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "controller", "default", "*", "1.0")
}

/// `service-sessions:service:commandable-http:*:1.0`.
pub fn commandable_http_service_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "service", "commandable-http", "*", "1.0")
}

/// `service-sessions:service:grpc:*:1.0` (the original's `sessions_v1.proto` service).
pub fn grpc_service_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "service", "grpc", "*", "1.0")
}

/// `service-sessions:service:commandable-grpc:*:1.0` (the original's commandable gRPC service).
pub fn commandable_grpc_service_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "service", "commandable-grpc", "*", "1.0")
}

/// `service-sessions:client:commandable-http:*:1.0`.
pub fn http_client_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "client", "commandable-http", "*", "1.0")
}

/// `service-sessions:client:commandable-grpc:*:1.0`.
pub fn commandable_grpc_client_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "client", "commandable-grpc", "*", "1.0")
}

/// `service-sessions:client:grpc:*:1.0`.
pub fn grpc_client_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "client", "grpc", "*", "1.0")
}

/// `service-sessions:client:direct:*:1.0`.
pub fn direct_client_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "client", "direct", "*", "1.0")
}

/// `service-sessions:service:rest:*:1.0`.
pub fn rest_service_descriptor() -> Descriptor {
    Descriptor::new("service-sessions", "service", "rest", "*", "1.0")
}

fn any() -> Descriptor {
    Descriptor::new("*", "*", "*", "*", "*")
}

/// Default `options.max_in_flight` of a store shared over the network (MongoDB, Redis): enough for the
/// driver's pool to stay busy, few enough that calls over capacity are refused at once instead of
/// queueing until they time out. The in-process stores are unbounded by default.
pub const DEFAULT_SHARED_MAX_IN_FLIGHT: usize = 256;

/// The sessions components.
#[derive(Debug)]
pub struct SessionsServiceFactory;

impl SessionsServiceFactory {
    /// The table of sessions components.
    pub fn table() -> TableFactory {
        TableFactory::new()
            .register(memory_persistence_descriptor(), |c| {
                let p = Arc::new(SessionsMemoryPersistence::from_config(c)?);
                let store = InstrumentedPersistence::wrap_configured("memory", p.clone(), c, 0)?;
                Ok(Registration::new(any(), p).provide(store))
            })
            .register(mongodb_persistence_descriptor(), |c| {
                let p = Arc::new(SessionsMongoDbPersistence::from_config(c)?);
                let store =
                    InstrumentedPersistence::wrap_configured("mongodb", p.clone(), c, DEFAULT_SHARED_MAX_IN_FLIGHT)?;
                Ok(Registration::new(any(), p).provide(store))
            })
            .register(redis_persistence_descriptor(), |c| {
                let p = Arc::new(SessionsRedisPersistence::from_config(c)?);
                let store =
                    InstrumentedPersistence::wrap_configured("redis", p.clone(), c, DEFAULT_SHARED_MAX_IN_FLIGHT)?;
                Ok(Registration::new(any(), p).provide(store))
            })
            .register(file_persistence_descriptor(), |c| {
                let p = Arc::new(SessionsFilePersistence::from_config(c)?);
                let store = InstrumentedPersistence::wrap_configured("file", p.clone(), c, 0)?;
                Ok(Registration::new(any(), p).provide(store))
            })
            .register(controller_descriptor(), |c| {
                let ctl = SessionsController::from_config(c)?;
                Ok(Registration::new(any(), ctl.clone())
                    .provide::<dyn Commandable>(ctl.clone())
                    .provide::<dyn MetricsSource>(ctl))
            })
            .register(commandable_http_service_descriptor(), |c| {
                let s: Arc<CommandableHttpService> = Arc::new(SessionsCommandableHttpServiceV1::from_config(c)?);
                Ok(Registration::new(any(), s.clone()).provide::<dyn OpenApiDocument>(s))
            })
            .register(grpc_service_descriptor(), |c| {
                Ok(Registration::new(any(), Arc::new(SessionsGrpcServiceV1::from_config(c)?)))
            })
            .register(commandable_grpc_service_descriptor(), |c| {
                Ok(Registration::new(any(), Arc::new(SessionsCommandableGrpcServiceV1::from_config(c)?)))
            })
            .register(http_client_descriptor(), |c| {
                let client = Arc::new(SessionsHttpClientV1::from_config(c)?);
                Ok(Registration::new(any(), client.clone()).provide::<dyn SessionsClientV1>(client))
            })
            .register(commandable_grpc_client_descriptor(), |c| {
                let client = Arc::new(SessionsCommandableGrpcClientV1::from_config(c)?);
                Ok(Registration::new(any(), client.clone()).provide::<dyn SessionsClientV1>(client))
            })
            .register(grpc_client_descriptor(), |c| {
                let client = Arc::new(SessionsGrpcClientV1::from_config(c)?);
                Ok(Registration::new(any(), client.clone()).provide::<dyn SessionsClientV1>(client))
            })
            .register(direct_client_descriptor(), |c| {
                let client = Arc::new(SessionsDirectClientV1::from_config(c)?);
                Ok(Registration::new(any(), client.clone()).provide::<dyn SessionsClientV1>(client))
            })
            .register(rest_service_descriptor(), |c| {
                let s = Arc::new(SessionsRestServiceV1::from_config(c)?);
                Ok(Registration::new(any(), s.clone()).provide::<dyn OpenApiDocument>(s))
            })
        // The original's gRPC services: known, and refused until gRPC transports exist.
    }

    /// The toolkit defaults plus the sessions components (which override them).
    pub fn composite() -> CompositeFactory {
        CompositeFactory::new().with(Arc::new(default_factory())).with(Arc::new(Self::table()))
    }
}
