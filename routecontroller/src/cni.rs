//! Writing the CNI conflist to disk atomically (the one module of the model side that does I/O).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::model::{CONFLIST_FILE_NAME, ConflistError, merge_conflist, render_conflist};

/// Why the conflist could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The existing file could not be merged.
    #[error("{path}: {source}")]
    Merge {
        /// The file.
        path: PathBuf,
        /// The error.
        source: ConflistError,
    },
}

/// Replaces `path` with `contents` atomically: a temporary file in the same directory is written, fsynced and
/// renamed over `path`, then the directory is fsynced, so a reader (the container runtime) sees either the old or
/// the new file, never a partial one, even across a crash.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // A dot-prefixed name without the .conflist suffix, so the runtime never loads the temporary file.
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes the conflist into `dir` as [`CONFLIST_FILE_NAME`], merged into the existing file if there is one.
/// Returns whether the file changed (an unchanged file is not rewritten).
pub fn install_conflist(dir: &Path, desired: &serde_json::Value) -> Result<bool, CniError> {
    let path = dir.join(CONFLIST_FILE_NAME);
    let io_err = |source| CniError::Io {
        path: path.clone(),
        source,
    };
    let existing = match fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e)),
    };
    let merged = match &existing {
        Some(text) => merge_conflist(text, desired).map_err(|source| CniError::Merge {
            path: path.clone(),
            source,
        })?,
        None => desired.clone(),
    };
    let rendered = render_conflist(&merged);
    if existing.as_deref() == Some(rendered.as_str()) {
        return Ok(false);
    }
    write_atomic(&path, rendered.as_bytes(), 0o644).map_err(io_err)?;
    Ok(true)
}
