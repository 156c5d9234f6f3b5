//! The harness's error type: every failure names the command, file or wait that failed.

use std::path::PathBuf;
use std::time::Duration;

/// A harness failure. Each variant carries what a test author needs to see in a failed test's output.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): stderr: {stderr} stdout: {stdout}")]
    Command {
        command: String,
        status: String,
        stdout: String,
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A bounded wait expired.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CNI plugin returned an error (its JSON error object is in `message`).
    #[error("CNI {command} of plugin `{plugin}` failed: {message}")]
    Cni {
        plugin: String,
        command: &'static str,
        message: String,
    },
    /// The requested topology or spec is inconsistent (e.g. a segment that does not exist).
    #[error("invalid topology: {0}")]
    Topology(String),
    /// A tool printed something the harness could not understand.
    #[error("unexpected output from {what}: {detail}")]
    Parse { what: String, detail: String },
}

/// Result alias for the harness.
pub type Result<T> = std::result::Result<T, HarnessError>;

impl HarnessError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HarnessError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
