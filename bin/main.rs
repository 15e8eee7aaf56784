//! The `service-sessions` binary: runs [`SessionsProcess`] with the command line (the service, or
//! one of its maintenance commands).

use clap::Parser;
use service_sessions::container::{SessionsArgs, SessionsProcess};

/// mimalloc: the service allocates many small JSON values on several threads (request handlers,
/// the file store's log writer and start-up decoders); with the system allocator about a quarter
/// of a million-session start-up went to its free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let code = SessionsProcess::main(SessionsArgs::parse()).await;
    std::process::exit(code);
}
