//! The file store's entry: `path` and the durability options.

use crate::persistence::PageOptions;
use std::path::{Path, PathBuf};

/// When a write is fsynced (`options.sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Acknowledge after the fsync; concurrent writes share one (group commit).
    #[default]
    Always,
    /// Fsync every `sync_interval` ms.
    Interval,
    /// Leave write-back to the OS.
    Never,
}

/// The durability options of the file backend (`options.*`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct FileOptions {
    /// When writes are fsynced (default `always`).
    pub sync: SyncMode,
    /// Period of the fsync under `interval`, in ms (default 1000).
    pub sync_interval: u64,
    /// Logs smaller than this many bytes are never compacted (default 64 MiB).
    pub compact_threshold: u64,
    /// Pause after a failed compaction (a failed rotation or snapshot) before the next try, in
    /// ms (default 10 000). Writes go on meanwhile.
    pub compact_retry: u64,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self { sync: SyncMode::Always, sync_interval: 1000, compact_threshold: 64 << 20, compact_retry: 10_000 }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct FileSettings {
    pub(super) path: Option<String>,
    pub(super) options: FileOptions,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct PageSettings {
    pub(super) options: PageOptions,
}

/// The store folder for a configured `path` (a path ending in `.json` names the Node service file
/// whose folder is that path without the extension).
pub fn store_dir(path: &Path) -> PathBuf {
    store_paths(path).0
}

/// The folder of the store and the Node JSON file to import, from the configured `path`.
pub(super) fn store_paths(path: &Path) -> (PathBuf, Option<PathBuf>) {
    match path.extension() {
        Some(ext) if ext.eq_ignore_ascii_case("json") => (path.with_extension(""), Some(path.to_path_buf())),
        _ => (path.to_path_buf(), None),
    }
}
