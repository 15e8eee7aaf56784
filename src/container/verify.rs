//! `verify`: checks the file backend's folder without opening it (see
//! [`crate::persistence::file::verify`]) and prints what it holds. Exit 0 when start-up would
//! accept the store (a torn tail included: start-up cuts it off), 2 when it would refuse it,
//! naming the file and offset.

use super::{inspect_configured_store, EXIT_DATA_PROBLEM};
use crate::persistence::file::verify::{verify_store, LockState, VerifyReport};
use crate::persistence::file::{store_dir, SessionsFilePersistence};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::process::{ProcessArgs, ProcessContainer};
use std::path::PathBuf;

/// `verify` options.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The store folder (or the configured `path`, `.json` included) instead of the configured
    /// file store.
    #[arg(long, value_name = "PATH")]
    pub path: Option<PathBuf>,
}

/// Runs `verify`.
///
/// # Errors
/// No file store configured (and no `--path`), no store in the folder, or a file that cannot be
/// read. Damage is reported, not an error.
pub async fn verify(process: &ProcessContainer, args: &ProcessArgs, a: &VerifyArgs) -> Result<i32, ApplicationError> {
    let dir = match &a.path {
        Some(p) => store_dir(p),
        None => configured_dir(process, args).await?,
    };
    let report = tokio::task::spawn_blocking(move || verify_store(&dir))
        .await
        .map_err(|e| ApplicationError::internal("VERIFY_FAILED", "The check stopped").with_cause(e))??;
    print(&report);
    if report.is_corrupt() {
        for p in &report.problems {
            eprintln!("{}: the store is corrupt: {p}", process.name());
        }
        return Ok(EXIT_DATA_PROBLEM);
    }
    Ok(0)
}

/// The folder of the configured file store (built from the configuration, never opened).
async fn configured_dir(process: &ProcessContainer, args: &ProcessArgs) -> Result<PathBuf, ApplicationError> {
    let (dir, configs) =
        inspect_configured_store(process, args, |f: &SessionsFilePersistence| f.dir().to_path_buf()).await?;
    dir.ok_or_else(|| {
        let configured: Vec<String> = configs.iter().map(|c| c.descriptor.to_string()).collect();
        ApplicationError::config(
            "NOT_A_FILE_STORE",
            format!(
                "verify checks the file backend; the configuration enables {} (use --path to name a store folder)",
                if configured.is_empty() { "no persistence component".to_string() } else { configured.join(", ") }
            ),
        )
    })
}

fn print(r: &VerifyReport) {
    println!("store: {}", r.dir.display());
    match r.lock {
        LockState::Free => println!("lock: free (no service has the store open)"),
        LockState::Held(pid) => {
            println!("lock: held by process {pid} (a service has the store open; its last log may grow meanwhile)")
        }
        LockState::Unknown => println!("lock: unknown"),
    }
    for f in &r.files {
        let mut line = format!("{}: {} frames, {} bytes", f.name, f.frames, f.bytes);
        if let Some(g) = f.generation {
            line.push_str(&format!(", covers logs up to generation {g}"));
        }
        match (&f.corruption, f.torn_tail) {
            (Some((offset, reason)), _) => line.push_str(&format!(", CORRUPT at offset {offset}: {reason}")),
            (None, Some((offset, bytes))) => {
                line.push_str(&format!(", torn tail: {bytes} bytes at offset {offset}"));
            }
            (None, None) => line.push_str(", ok"),
        }
        println!("{line}");
    }
    for l in &r.leftovers {
        println!("{l}: left over (start-up removes it), not checked");
    }
    println!("frames: {}", r.frames());
    println!("bytes: {}", r.bytes());
    match r.sessions {
        Some((all, open)) => {
            println!("sessions: {all}");
            println!("open: {open}");
            println!("closed: {}", all - open);
        }
        None => println!("sessions: not counted (the store is damaged)"),
    }
    match r.torn_tail() {
        Some((file, offset, bytes)) => {
            let why = if matches!(r.lock, LockState::Held(_)) {
                "an append in flight, or a crash: the service cuts it off at its next start"
            } else {
                "an append cut short by a crash; the service cuts it off at its next start"
            };
            println!("torn tail: {bytes} bytes at offset {offset} of {file} ({why})");
        }
        None => println!("torn tail: none"),
    }
    if r.is_corrupt() {
        println!("result: CORRUPT ({} problem(s)); the service refuses to start on it", r.problems.len());
    } else {
        println!("result: ok");
    }
}
