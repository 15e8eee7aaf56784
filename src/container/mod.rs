//! `SessionsProcess`: the process container of the sessions microservice.

use crate::build::SessionsServiceFactory;
use crate::toolkit::process::{ProcessArgs, ProcessContainer};
use std::sync::Arc;

/// The sessions microservice process.
#[derive(Debug, Default)]
pub struct SessionsProcess;

impl SessionsProcess {
    /// Runs the service until SIGINT/SIGTERM; returns the exit code.
    pub async fn run(args: ProcessArgs) -> i32 {
        ProcessContainer::new("service-sessions", Arc::new(SessionsServiceFactory::composite())).run(args).await
    }
}
