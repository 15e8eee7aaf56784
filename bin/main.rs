//! The `service-sessions` binary: runs [`SessionsProcess`] with the command line.

use clap::Parser;
use service_sessions::container::SessionsProcess;
use service_sessions::toolkit::process::ProcessArgs;

#[tokio::main]
async fn main() {
    let code = SessionsProcess::run(ProcessArgs::parse()).await;
    std::process::exit(code);
}
