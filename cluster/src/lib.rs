//! cluster: Kubernetes objects (from the API server or a directory of YAML) into kube-rs reflector stores.
//!
//! Brief overview:
//! - [`ClusterStores`]: one kube-rs [`Store`](kube::runtime::reflector::Store) per [`Kind`] (cloneable
//!   readers), a change notification ([`Changes`], one [`Change`] per object that changed in a way a
//!   controller reads) and a "first sync done" signal per kind ([`ClusterStores::wait_until_ready`]).
//! - [`ClusterSource`]: fills the stores through the [`StoreWriters`]. Two implementations:
//!   [`KubeSource`] (kube-rs `watcher` per kind, the default) and [`DirSource`] (`--objects-from DIR`,
//!   a directory of YAML/JSON files polled for changes). Both emit the same watcher events, so a
//!   controller cannot tell them apart.
//!
//! Usage: `let (stores, writers) = ClusterStores::new();` then subscribe (`stores.changes()`), spawn
//! `source.run(writers)`, `stores.wait_until_ready(&kinds, timeout)`, compute everything once, and
//! from then on recompute what each [`Change`] concerns ([`Change::Relisted`] and [`Change::Missed`]:
//! everything of that kind, or everything).
//!
//! This module refers to nothing else in the binary (no `crate::` paths), so it can become a library
//! crate by moving the directory.

mod api;
mod dir;
mod kind;
mod stores;
#[cfg(test)]
mod testutil;

pub use api::KubeSource;
pub use dir::{DirError, DirSource, DirStatus};
pub use kind::{ClusterObject, Kind, ObjectKey};
pub use stores::{Change, Changes, ClusterStores, KindWriter, StoreWriters};

use std::future::Future;
use std::path::PathBuf;

/// Something that fills the cluster stores; runs until its task is dropped or it fails for good.
pub trait ClusterSource {
    /// Feeds the stores: one `Init`/`InitApply`/`InitDone` sequence per kind (after which that kind's
    /// store is ready), then `Apply`/`Delete` per change. Transient errors are logged and retried.
    fn run(self, writers: StoreWriters) -> impl Future<Output = Result<(), SourceError>> + Send;
}

/// Errors that stop a cluster source, or a wait on one.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `--objects-from DIR` does not name a readable directory.
    #[error("--objects-from {dir}: {reason}")]
    ObjectsDir { dir: PathBuf, reason: String },
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    /// No Kubernetes client configuration could be inferred (no kubeconfig, not in a pod).
    #[error("no Kubernetes client configuration: {0}")]
    InferConfig(String),
    /// Building the Kubernetes client failed.
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// A store's writer was dropped before its first sync: nothing feeds this kind.
    #[error("no source feeds {0} objects (its writer was dropped before the first sync)")]
    NotFed(Kind),
    /// The first sync of a kind did not finish in time.
    #[error("{0} objects not synced within {1:?}")]
    SyncTimeout(Kind, std::time::Duration),
}
