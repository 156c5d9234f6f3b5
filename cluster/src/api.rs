//! The Kubernetes API source: one kube-rs `watcher` per kind, over one client, into the stores.

use std::path::Path;

use futures::{FutureExt, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::kind::{ClusterObject, Kind};
use super::stores::{KindWriter, StoreWriters};
use super::{ClusterSource, SourceError};

/// Watches the API server (all namespaces) for each selected kind.
#[derive(Clone)]
pub struct KubeSource {
    client: Client,
    kinds: Vec<Kind>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl KubeSource {
    /// A source watching every [`Kind`] with `client`.
    pub fn new(client: Client) -> Self {
        KubeSource {
            client,
            kinds: Kind::ALL.to_vec(),
        }
    }

    /// Watch only `kinds` (a node that runs only the router needs no Pods or NetworkPolicies, nor
    /// the RBAC to list them). The writers of the others are dropped, so waiting on them fails
    /// at once with [`SourceError::NotFed`] instead of hanging.
    pub fn kinds(mut self, kinds: &[Kind]) -> Self {
        self.kinds = kinds.to_vec();
        self
    }

    /// A client from the kubeconfig at `path`, or, without one, inferred as kubectl does
    /// (`$KUBECONFIG`, `~/.kube/config`, then the in-cluster service account).
    pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, SourceError> {
        let config = match kubeconfig {
            Some(path) => {
                let bad = |reason: String| SourceError::Kubeconfig {
                    path: path.display().to_string(),
                    reason,
                };
                let kubeconfig =
                    kube::config::Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
                kube::Config::from_custom_kubeconfig(
                    kubeconfig,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .map_err(|e| bad(e.to_string()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| SourceError::InferConfig(e.to_string()))?,
        };
        Ok(Client::try_from(config)?)
    }
}

impl ClusterSource for KubeSource {
    async fn run(self, writers: StoreWriters) -> Result<(), SourceError> {
        let StoreWriters {
            nodes,
            services,
            endpoint_slices,
            pods,
            namespaces,
            network_policies,
        } = writers;
        // Each watch loops forever (errors are retried with the default backoff), so this
        // future ends only when dropped. An unwanted kind's writer is dropped by `add` right
        // away, which fails waits on it instead of letting them hang.
        let mut watches = Vec::new();
        let c = &self.client;
        let k = &self.kinds;
        add(&mut watches, k, c, nodes);
        add(&mut watches, k, c, services);
        add(&mut watches, k, c, endpoint_slices);
        add(&mut watches, k, c, pods);
        add(&mut watches, k, c, namespaces);
        add(&mut watches, k, c, network_policies);
        futures::future::join_all(watches).await;
        Ok(())
    }
}

/// Adds the watch of `K` if `K` is wanted, else drops its writer.
fn add<K: ClusterObject>(
    watches: &mut Vec<futures::future::BoxFuture<'static, ()>>,
    kinds: &[Kind],
    client: &Client,
    writer: KindWriter<K>,
) {
    if kinds.contains(&K::KIND) {
        watches.push(watch(client.clone(), writer).boxed());
    }
}

/// Watches every `K` in the cluster into its store until the stream ends (it does not).
async fn watch<K: ClusterObject>(client: Client, mut writer: KindWriter<K>) {
    let api: Api<K> = Api::all(client);
    // No predicate_filter here: kube's works on objects after `touched_objects`, where it can
    // swallow deletions and relists. The store takes every event; `KindWriter` filters only
    // the notifications, by `ClusterObject::relevance`.
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        // managedFields is often the bulk of an object and no controller reads it.
        .modify(|obj: &mut K| obj.managed_fields_mut().clear());
    let mut events = std::pin::pin!(events);
    let mut synced = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if !synced && matches!(event, watcher::Event::InitDone) {
                    synced = true;
                    info!(kind = %K::KIND, "first sync done");
                }
                writer.apply(&event);
            }
            Err(error) => warn!(kind = %K::KIND, %error, "watch failed; retrying with backoff"),
        }
    }
}

#[cfg(test)]
mod tests;
