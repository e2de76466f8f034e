//! File-system helpers for local state under `BRIDGE_DATA_DIR`.

use std::{fs, io::Write, os::unix::fs::OpenOptionsExt, path::Path};

/// Writes `contents` to `path` readable by the owner only (0600), atomically: a reader
/// sees the old file or the whole new one, never a half-written secret.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}
