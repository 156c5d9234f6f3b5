//! Kubernetes API source tests: a broken API endpoint here, a real cluster when one is configured.
//!
//! The cluster tier runs only with `FAIRLEAD_E2E_KUBECONFIG=/path/to/kubeconfig` (it lists every
//! kind, and creates and deletes one Namespace `fairlead-e2e-source-<pid>`); without it the test
//! prints why and passes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::super::testutil::TempDir;
use super::super::{Change, Changes, ClusterSource, ClusterStores, Kind, ObjectKey, SourceError};
use super::KubeSource;

fn kubeconfig_for(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{server}\"}}\n\
         contexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n\
         users:\n- name: u\n  user: {{token: not-a-real-token}}\n"
    )
}

#[tokio::test]
async fn a_bad_kubeconfig_is_named() {
    let dir = TempDir::new("kubeconfig");
    let missing = dir.0.join("missing.conf");
    let err = KubeSource::client(Some(&missing))
        .await
        .err()
        .expect("no such file");
    assert!(matches!(&err, SourceError::Kubeconfig { path, .. } if path.ends_with("missing.conf")));

    dir.write("garbage.conf", "clusters: [this is: not a kubeconfig");
    let err = KubeSource::client(Some(&dir.0.join("garbage.conf")))
        .await
        .err()
        .expect("not YAML");
    assert!(err.to_string().contains("garbage.conf"), "{err}");
}

/// An API server that accepts connections and closes them: the source must retry with backoff,
/// never call a kind ready, and fail waits on kinds it does not watch at once.
#[tokio::test]
async fn a_failing_api_server_is_retried_and_never_ready() {
    let listener = tokio::net::TcpListener::bind("[::1]:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    let accepts = tokio::spawn(async move {
        let mut n = 0u32;
        while n < 2 {
            let (conn, _) = listener.accept().await.expect("accept");
            drop(conn);
            n += 1;
        }
        n
    });
    let dir = TempDir::new("failing-api");
    dir.write(
        "kubeconfig",
        &kubeconfig_for(&format!("http://[::1]:{port}")),
    );
    let client = KubeSource::client(Some(&dir.0.join("kubeconfig")))
        .await
        .expect("client from kubeconfig");
    let (stores, writers) = ClusterStores::new();
    let source = KubeSource::new(client).kinds(&[Kind::Node]);
    let task = tokio::spawn(source.run(writers));

    let pods = stores
        .wait_until_ready(&[Kind::Pod], Duration::from_secs(30))
        .await;
    assert!(
        matches!(pods, Err(SourceError::NotFed(Kind::Pod))),
        "{pods:?}"
    );

    // The first attempt and at least one retry (default backoff starts at 0.8 s, with jitter).
    let attempts = tokio::time::timeout(Duration::from_secs(15), accepts).await;
    let attempts = attempts
        .expect("retried within the wait")
        .expect("acceptor");
    assert_eq!(attempts, 2);
    let nodes = stores
        .wait_until_ready(&[Kind::Node], Duration::from_millis(200))
        .await;
    assert!(
        matches!(nodes, Err(SourceError::SyncTimeout(Kind::Node, _))),
        "{nodes:?}"
    );
    assert!(stores.nodes.is_empty());
    assert!(!task.is_finished(), "the source keeps retrying");
    task.abort();
}

/// Waits (bounded) until `wanted` arrives.
async fn wait_for(changes: &mut Changes, wanted: Change) {
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(change) = changes.recv().await {
            if change == wanted {
                return;
            }
        }
        panic!("change stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no {wanted:?} within 120 s"))
}

/// Deletes the test namespace even when the test fails.
struct NamespaceGuard {
    api: Api<Namespace>,
    name: String,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let (api, name) = (self.api.clone(), self.name.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(move || {
            let _ = handle.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    api.delete(&name, &DeleteParams::default()),
                )
                .await
            });
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_tier_lists_and_watches_a_real_api_server() {
    let Some(kubeconfig) = std::env::var_os("FAIRLEAD_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: set FAIRLEAD_E2E_KUBECONFIG to a cluster's kubeconfig to run the cluster tier"
        );
        return;
    };
    let client = KubeSource::client(Some(Path::new(&kubeconfig)))
        .await
        .expect("client from FAIRLEAD_E2E_KUBECONFIG");
    let (stores, writers) = ClusterStores::new();
    let mut changes = stores.changes();
    let task = tokio::spawn(KubeSource::new(client.clone()).run(writers));
    stores
        .wait_until_ready(&Kind::ALL, Duration::from_secs(60))
        .await
        .expect("every kind synced");
    assert!(!stores.nodes.is_empty(), "a cluster has nodes");
    for ns in ["default", "kube-system"] {
        assert!(
            stores.namespaces.get(&ObjectRef::new(ns)).is_some(),
            "namespace {ns}"
        );
    }
    assert!(
        stores
            .nodes
            .state()
            .iter()
            .all(|n| n.metadata.managed_fields.is_none()),
        "managedFields are dropped"
    );

    let name = format!("fairlead-e2e-source-{}", std::process::id());
    let api: Api<Namespace> = Api::all(client);
    let guard = NamespaceGuard {
        api: api.clone(),
        name: name.clone(),
    };
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    ns.metadata.labels = Some(BTreeMap::from([(
        "fairlead.io/test".to_string(),
        "source".to_string(),
    )]));
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let key = ObjectKey::cluster(&name);
    wait_for(
        &mut changes,
        Change::Applied {
            kind: Kind::Namespace,
            key: key.clone(),
        },
    )
    .await;
    assert!(stores.namespaces.get(&ObjectRef::new(&name)).is_some());

    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait_for(
        &mut changes,
        Change::Deleted {
            kind: Kind::Namespace,
            key,
        },
    )
    .await;
    assert!(stores.namespaces.get(&ObjectRef::new(&name)).is_none());
    drop(guard);
    task.abort();
}
