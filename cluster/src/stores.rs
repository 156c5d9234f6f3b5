//! The reflector stores every controller reads, their writers, and the change notification.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::watcher;
use tokio::sync::broadcast;

use super::SourceError;
use super::kind::{ClusterObject, Kind, ObjectKey};

/// How many changes a slow subscriber may fall behind before it gets [`Change::Missed`].
const CHANGES_CAPACITY: usize = 4096;

/// What changed in the stores. Sent after the store already holds the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// An object was added, or changed in a field a controller reads (see
    /// [`ClusterObject::relevance`]).
    Applied { kind: Kind, key: ObjectKey },
    /// An object was deleted.
    Deleted { kind: Kind, key: ObjectKey },
    /// Every object of this kind was (re)listed: the first sync, or a relist after a lost watch.
    /// Any object of the kind may have changed or vanished; recompute all that depends on it.
    Relisted { kind: Kind },
    /// This subscriber fell behind and `count` changes were lost: recompute everything.
    Missed { count: u64 },
}

impl Change {
    /// The kind the change concerns (`None` for [`Change::Missed`], which concerns every kind).
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Change::Applied { kind, .. }
            | Change::Deleted { kind, .. }
            | Change::Relisted { kind } => Some(*kind),
            Change::Missed { .. } => None,
        }
    }
}

/// A subscription to [`Change`]s.
#[derive(Debug)]
pub struct Changes {
    rx: broadcast::Receiver<Change>,
}

impl Changes {
    /// The next change; `None` once every writer is gone (the source stopped).
    pub async fn recv(&mut self) -> Option<Change> {
        match self.rx.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(count)) => Some(Change::Missed { count }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next change if one is already queued (no waiting).
    pub fn try_recv(&mut self) -> Option<Change> {
        match self.rx.try_recv() {
            Ok(change) => Some(change),
            Err(broadcast::error::TryRecvError::Lagged(count)) => Some(Change::Missed { count }),
            Err(_) => None,
        }
    }
}

/// The read side: one store per kind (clone freely) and the change notification.
#[derive(Clone, Debug)]
pub struct ClusterStores {
    pub nodes: Store<Node>,
    pub services: Store<Service>,
    pub endpoint_slices: Store<EndpointSlice>,
    pub pods: Store<Pod>,
    pub namespaces: Store<Namespace>,
    pub network_policies: Store<NetworkPolicy>,
    // A receiver kept only to hand out new ones; it never reads, and broadcast never waits for it.
    changes: Arc<broadcast::Receiver<Change>>,
}

/// The write side, handed to one [`ClusterSource`](super::ClusterSource).
#[derive(Debug)]
pub struct StoreWriters {
    pub nodes: KindWriter<Node>,
    pub services: KindWriter<Service>,
    pub endpoint_slices: KindWriter<EndpointSlice>,
    pub pods: KindWriter<Pod>,
    pub namespaces: KindWriter<Namespace>,
    pub network_policies: KindWriter<NetworkPolicy>,
}

impl ClusterStores {
    /// Empty stores (none ready) and their writers.
    pub fn new() -> (ClusterStores, StoreWriters) {
        let (tx, rx) = broadcast::channel(CHANGES_CAPACITY);
        let nodes = KindWriter::new(tx.clone());
        let services = KindWriter::new(tx.clone());
        let endpoint_slices = KindWriter::new(tx.clone());
        let pods = KindWriter::new(tx.clone());
        let namespaces = KindWriter::new(tx.clone());
        let network_policies = KindWriter::new(tx);
        let stores = ClusterStores {
            nodes: nodes.reader(),
            services: services.reader(),
            endpoint_slices: endpoint_slices.reader(),
            pods: pods.reader(),
            namespaces: namespaces.reader(),
            network_policies: network_policies.reader(),
            changes: Arc::new(rx),
        };
        let writers = StoreWriters {
            nodes,
            services,
            endpoint_slices,
            pods,
            namespaces,
            network_policies,
        };
        (stores, writers)
    }

    /// A new subscription; it sees the changes sent after this call. Subscribe before waiting
    /// for readiness so nothing between the first sync and the first full computation is lost.
    pub fn changes(&self) -> Changes {
        Changes {
            rx: self.changes.resubscribe(),
        }
    }

    /// Waits until each of `kinds` had its first sync, at most `timeout` in all.
    /// A kind that no source feeds fails at once with [`SourceError::NotFed`].
    pub async fn wait_until_ready(
        &self,
        kinds: &[Kind],
        timeout: Duration,
    ) -> Result<(), SourceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        for &kind in kinds {
            let ready = match kind {
                Kind::Node => {
                    tokio::time::timeout_at(deadline, self.nodes.wait_until_ready()).await
                }
                Kind::Service => {
                    tokio::time::timeout_at(deadline, self.services.wait_until_ready()).await
                }
                Kind::EndpointSlice => {
                    tokio::time::timeout_at(deadline, self.endpoint_slices.wait_until_ready()).await
                }
                Kind::Pod => tokio::time::timeout_at(deadline, self.pods.wait_until_ready()).await,
                Kind::Namespace => {
                    tokio::time::timeout_at(deadline, self.namespaces.wait_until_ready()).await
                }
                Kind::NetworkPolicy => {
                    tokio::time::timeout_at(deadline, self.network_policies.wait_until_ready())
                        .await
                }
            };
            match ready {
                Ok(Ok(())) => {}
                Ok(Err(_dropped)) => return Err(SourceError::NotFed(kind)),
                Err(_elapsed) => return Err(SourceError::SyncTimeout(kind, timeout)),
            }
        }
        Ok(())
    }
}

/// One kind's store writer plus its change notifier: every watcher event goes through [`apply`].
///
/// [`apply`]: KindWriter::apply
#[derive(Debug)]
pub struct KindWriter<K: ClusterObject> {
    writer: Writer<K>,
    tx: broadcast::Sender<Change>,
    /// The relevance hash of every object in the store, to tell a relevant update from a no-op.
    seen: HashMap<ObjectKey, Option<u64>>,
    /// The relevance hashes collected during an `Init`..`InitDone` relist.
    relisting: HashMap<ObjectKey, Option<u64>>,
}

impl<K: ClusterObject> KindWriter<K> {
    fn new(tx: broadcast::Sender<Change>) -> Self {
        KindWriter {
            writer: Writer::default(),
            tx,
            seen: HashMap::new(),
            relisting: HashMap::new(),
        }
    }

    fn reader(&self) -> Store<K> {
        self.writer.as_reader()
    }

    /// Applies a watcher event to the store, then notifies subscribers if a controller cares.
    pub fn apply(&mut self, event: &watcher::Event<K>) {
        self.writer.apply_watcher_event(event);
        let change = match event {
            watcher::Event::Apply(obj) => {
                let key = ObjectKey::of(obj);
                let relevance = obj.relevance();
                let unchanged = relevance.is_some() && self.seen.get(&key) == Some(&relevance);
                self.seen.insert(key.clone(), relevance);
                if unchanged {
                    return;
                }
                Change::Applied { kind: K::KIND, key }
            }
            watcher::Event::Delete(obj) => {
                // Never filtered: a deletion always concerns whoever used the object.
                let key = ObjectKey::of(obj);
                self.seen.remove(&key);
                Change::Deleted { kind: K::KIND, key }
            }
            watcher::Event::Init => {
                self.relisting.clear();
                return;
            }
            watcher::Event::InitApply(obj) => {
                self.relisting.insert(ObjectKey::of(obj), obj.relevance());
                return;
            }
            watcher::Event::InitDone => {
                self.seen = std::mem::take(&mut self.relisting);
                Change::Relisted { kind: K::KIND }
            }
        };
        // An error only means nobody subscribed right now; the stores are what counts.
        let _ = self.tx.send(change);
    }
}

#[cfg(test)]
mod tests;
