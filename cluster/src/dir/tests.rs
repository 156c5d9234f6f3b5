//! Directory source tests: real files in a temporary directory, read by the running source.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;

use super::super::testutil::TempDir;
use super::super::{Change, Changes, ClusterSource, ClusterStores, Kind, ObjectKey, SourceError};
use super::{DirError, DirSource, DirStatus};

const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// A running directory source; aborted on drop.
struct Running {
    stores: ClusterStores,
    changes: Changes,
    status: watch::Receiver<DirStatus>,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(dir: &Path) -> Running {
    let source = DirSource::new(dir).expect("dir source").poll_interval(POLL);
    let status = source.status();
    let (stores, writers) = ClusterStores::new();
    let changes = stores.changes();
    let task = tokio::spawn(source.run(writers));
    stores
        .wait_until_ready(&Kind::ALL, WAIT)
        .await
        .expect("every kind ready after the first load");
    Running {
        stores,
        changes,
        status,
        task,
    }
}

impl Running {
    /// The next change that is not a relist, within `WAIT`.
    async fn next_change(&mut self) -> Change {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.changes.recv().await.expect("source still running") {
                    Change::Relisted { .. } => continue,
                    change => return change,
                }
            }
        })
        .await
        .expect("a change within the wait")
    }

    /// The status once `ok` holds, within `WAIT`.
    async fn status_where(&mut self, ok: impl Fn(&DirStatus) -> bool) -> DirStatus {
        let status = tokio::time::timeout(WAIT, self.status.wait_for(|s| ok(s)))
            .await
            .expect("status within the wait")
            .expect("source still running");
        status.clone()
    }

    /// Lets `n` more scans happen and returns every change they sent (relists excluded).
    async fn changes_over_scans(&mut self, n: u64) -> Vec<Change> {
        let now = self.status.borrow().scans;
        self.status_where(|s| s.scans >= now + n).await;
        std::iter::from_fn(|| self.changes.try_recv())
            .filter(|c| !matches!(c, Change::Relisted { .. }))
            .collect()
    }

    fn node(&self, name: &str) -> Option<std::sync::Arc<Node>> {
        self.stores.nodes.get(&ObjectRef::new(name))
    }
}

/// Three nodes: IPv6-only, dual-stack (IPv6 primary), IPv4-only.
const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-v6
  annotations:
    fairlead.io/node.asn: "64512"
spec:
  podCIDR: fd00:10:244:1::/64
  podCIDRs: ["fd00:10:244:1::/64"]
status:
  addresses:
  - {type: InternalIP, address: "fd00::1"}
---
apiVersion: v1
kind: Node
metadata:
  name: node-dual
spec:
  podCIDRs: ["fd00:10:244:2::/64", "198.18.2.0/24"]
status:
  addresses:
  - {type: InternalIP, address: "fd00::2"}
  - {type: InternalIP, address: "198.18.0.2"}
---
apiVersion: v1
kind: Node
metadata:
  name: node-v4
spec:
  podCIDRs: ["198.18.3.0/24"]
status:
  addresses:
  - {type: InternalIP, address: "198.18.0.3"}
---
"#;

/// A dual-stack Service (IPv4 primary) without a namespace, and an IPv6-only one.
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  clusterIPs: ["198.19.0.10", "fd00:96::10"]
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ipFamilies: [IPv6]
  clusterIPs: ["fd00:96::20"]
  ports: [{port: 443, targetPort: https}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-carried}
data: {a: b}
"#;

const SLICES_JSON: &str = r#"{
  "apiVersion": "discovery.k8s.io/v1",
  "kind": "EndpointSlice",
  "metadata": {"name": "web-v6", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
  "addressType": "IPv6",
  "endpoints": [{"addresses": ["fd00:10:244:1::5"], "conditions": {"ready": true}, "nodeName": "node-v6"}],
  "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
}"#;

/// A `kind: List` of pods of each family, and a namespace.
const PODS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: web-0, namespace: shop, labels: {app: web}}
  spec: {nodeName: node-v6, containers: [{name: web, image: web, ports: [{name: http, containerPort: 8080}]}]}
  status: {phase: Running, podIP: "fd00:10:244:1::5", podIPs: [{ip: "fd00:10:244:1::5"}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: web-1, namespace: shop, labels: {app: web}}
  spec: {nodeName: node-dual, containers: [{name: web, image: web}]}
  status: {phase: Running, podIPs: [{ip: "fd00:10:244:2::5"}, {ip: "198.18.2.5"}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: web-2, namespace: shop, labels: {app: web}}
  spec: {nodeName: node-v4, containers: [{name: web, image: web}]}
  status: {phase: Running, podIPs: [{ip: "198.18.3.5"}]}
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop, namespace: ignored-for-cluster-scoped, labels: {team: a}}
"#;

const POLICIES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - ipBlock: {cidr: "fd00:10::/32", except: ["fd00:10:244:9::/64"]}
    - ipBlock: {cidr: "198.18.0.0/15"}
    ports: [{port: http}]
"#;

fn full_dir(test: &str) -> TempDir {
    let dir = TempDir::new(test);
    dir.write("nodes.yaml", NODES);
    dir.write("services.yml", SERVICES);
    dir.write("slices.json", SLICES_JSON);
    dir.write("pods.yaml", PODS);
    dir.write("policies.yaml", POLICIES);
    // Not object files, or hidden: never read.
    dir.write(
        "README.md",
        "apiVersion: v1\nkind: Node\nmetadata: {name: from-readme}\n",
    );
    dir.write(
        ".hidden.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: from-hidden}\n",
    );
    dir
}

#[tokio::test]
async fn initial_load_fills_every_store() {
    let dir = full_dir("initial");
    let run = start(&dir.0).await;
    let s = &run.stores;
    assert_eq!(s.nodes.len(), 3);
    assert_eq!(s.services.len(), 2);
    assert_eq!(s.endpoint_slices.len(), 1);
    assert_eq!(s.pods.len(), 3);
    assert_eq!(s.namespaces.len(), 1);
    assert_eq!(s.network_policies.len(), 1);

    let dual = run.node("node-dual").expect("node-dual");
    let cidrs = dual.spec.as_ref().unwrap().pod_cidrs.clone().unwrap();
    assert_eq!(cidrs, vec!["fd00:10:244:2::/64", "198.18.2.0/24"]);
    assert!(
        dual.metadata.resource_version.is_some(),
        "a resourceVersion is stamped"
    );
    assert!(run.node("from-readme").is_none() && run.node("from-hidden").is_none());

    // A namespaced object without a namespace lands in `default`, as with kubectl apply.
    let web: Option<std::sync::Arc<Service>> =
        s.services.get(&ObjectRef::new("web").within("default"));
    let web = web.expect("default/web");
    assert_eq!(
        web.spec.as_ref().unwrap().cluster_ips.clone().unwrap(),
        vec!["198.19.0.10", "fd00:96::10"]
    );
    // A cluster-scoped object's stray namespace is dropped.
    assert!(s.namespaces.get(&ObjectRef::new("shop")).is_some());
    let pod: Option<std::sync::Arc<Pod>> = s.pods.get(&ObjectRef::new("web-1").within("shop"));
    let ips: Vec<String> = pod
        .unwrap()
        .status
        .as_ref()
        .unwrap()
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    assert_eq!(ips, vec!["fd00:10:244:2::5", "198.18.2.5"]);

    let status = run.status.borrow().clone();
    assert_eq!(status.files, 5);
    assert_eq!(status.objects, 11);
    assert_eq!(
        status.problems,
        vec![],
        "an unknown kind (ConfigMap) is not a problem"
    );
}

#[tokio::test]
async fn the_first_load_announces_every_kind_even_empty_ones() {
    let dir = TempDir::new("relisted");
    dir.write("nodes.yaml", NODES);
    let source = DirSource::new(&dir.0).expect("source").poll_interval(POLL);
    let (stores, writers) = ClusterStores::new();
    let mut changes = stores.changes();
    let task = tokio::spawn(source.run(writers));
    let mut relisted = Vec::new();
    while relisted.len() < Kind::ALL.len() {
        match tokio::time::timeout(WAIT, changes.recv()).await {
            Ok(Some(Change::Relisted { kind })) => relisted.push(kind),
            other => panic!("expected a relist, got {other:?}"),
        }
    }
    task.abort();
    assert_eq!(relisted, Kind::ALL.to_vec());
    assert_eq!(stores.nodes.len(), 3);
    assert!(stores.pods.is_empty());
}

#[tokio::test]
async fn a_modified_file_updates_the_store_and_notifies() {
    let dir = full_dir("modify");
    let mut run = start(&dir.0).await;

    let changed = NODES.replace("\"64512\"", "\"64513\"");
    dir.write("nodes.yaml", &changed);
    assert_eq!(
        run.next_change().await,
        Change::Applied {
            kind: Kind::Node,
            key: ObjectKey::cluster("node-v6")
        }
    );
    let annotations = run
        .node("node-v6")
        .unwrap()
        .metadata
        .annotations
        .clone()
        .unwrap();
    assert_eq!(annotations["fairlead.io/node.asn"], "64513");
    assert_eq!(
        run.changes_over_scans(2).await,
        vec![],
        "only the changed object is announced"
    );

    // A new object in a new file.
    dir.write(
        "more.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-new}\nspec: {podCIDRs: [\"fd00:10:244:7::/64\"]}\n",
    );
    assert_eq!(
        run.next_change().await,
        Change::Applied {
            kind: Kind::Node,
            key: ObjectKey::cluster("node-new")
        }
    );
    assert!(run.node("node-new").is_some());

    // The same objects written differently (JSON flow style, other order): nothing changes.
    dir.write("more.yaml", "{\"spec\": {\"podCIDRs\": [\"fd00:10:244:7::/64\"]}, \"metadata\": {\"name\": \"node-new\"}, \"kind\": \"Node\", \"apiVersion\": \"v1\"}\n");
    assert_eq!(run.changes_over_scans(3).await, vec![]);
}

#[tokio::test]
async fn removed_files_and_objects_are_deleted() {
    let dir = full_dir("remove");
    let mut run = start(&dir.0).await;

    dir.remove("policies.yaml");
    assert_eq!(
        run.next_change().await,
        Change::Deleted {
            kind: Kind::NetworkPolicy,
            key: ObjectKey::namespaced("shop", "web-ingress")
        }
    );
    assert!(run.stores.network_policies.is_empty());

    // One object dropped from a multi-object file: only it goes.
    let without_v4 = NODES
        .split("---")
        .filter(|doc| !doc.contains("node-v4"))
        .collect::<Vec<_>>()
        .join("---");
    dir.write("nodes.yaml", &without_v4);
    assert_eq!(
        run.next_change().await,
        Change::Deleted {
            kind: Kind::Node,
            key: ObjectKey::cluster("node-v4")
        }
    );
    assert!(run.node("node-v4").is_none());
    assert!(run.node("node-v6").is_some() && run.node("node-dual").is_some());
    let status = run.status_where(|s| s.files == 4).await;
    assert_eq!(status.objects, 9);
}

#[tokio::test]
async fn malformed_yaml_keeps_the_previous_objects_and_is_reported() {
    let dir = full_dir("malformed");
    let mut run = start(&dir.0).await;

    dir.write(
        "nodes.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-v6\n  bad: [indent\n",
    );
    let status = run.status_where(|s| !s.problems.is_empty()).await;
    let file = dir.0.join("nodes.yaml");
    assert!(
        matches!(&status.problems[..], [DirError::Syntax { file: f, .. }] if *f == file),
        "{:?}",
        status.problems
    );
    assert!(status.problems[0].to_string().contains("nodes.yaml"));
    assert_eq!(
        run.changes_over_scans(3).await,
        vec![],
        "bad input removes nothing"
    );
    assert_eq!(run.stores.nodes.len(), 3);

    // Fixed: the problem clears and the new content applies.
    dir.write("nodes.yaml", &NODES.replace("fd00::1", "fd00::11"));
    assert_eq!(
        run.next_change().await,
        Change::Applied {
            kind: Kind::Node,
            key: ObjectKey::cluster("node-v6")
        }
    );
    run.status_where(|s| s.problems.is_empty()).await;

    // Invalid JSON too.
    dir.write("slices.json", "{\"apiVersion\": \"discovery.k8s.io/v1\",");
    let status = run.status_where(|s| !s.problems.is_empty()).await;
    assert!(
        matches!(&status.problems[..], [DirError::Syntax { file, .. }] if file.ends_with("slices.json"))
    );
    assert_eq!(run.changes_over_scans(2).await, vec![]);
    assert_eq!(run.stores.endpoint_slices.len(), 1);
}

#[tokio::test]
async fn a_malformed_object_keeps_its_previous_version_and_names_itself() {
    let dir = full_dir("badobject");
    let mut run = start(&dir.0).await;

    // node-dual's podCIDRs becomes a number; node-v4's address changes legitimately.
    let text = NODES
        .replace(
            "podCIDRs: [\"fd00:10:244:2::/64\", \"198.18.2.0/24\"]",
            "podCIDRs: 5",
        )
        .replace("198.18.0.3", "198.18.0.33");
    dir.write("nodes.yaml", &text);
    assert_eq!(
        run.next_change().await,
        Change::Applied {
            kind: Kind::Node,
            key: ObjectKey::cluster("node-v4")
        }
    );
    let status = run.status_where(|s| !s.problems.is_empty()).await;
    match &status.problems[..] {
        [
            DirError::Object {
                file, kind, key, ..
            },
        ] => {
            assert!(file.ends_with("nodes.yaml"));
            assert_eq!((*kind, key), (Kind::Node, &ObjectKey::cluster("node-dual")));
        }
        other => panic!("expected one object problem, got {other:?}"),
    }
    let message = status.problems[0].to_string();
    assert!(
        message.contains("nodes.yaml") && message.contains("Node node-dual"),
        "{message}"
    );
    let dual = run.node("node-dual").expect("previous node-dual kept");
    assert_eq!(
        dual.spec
            .as_ref()
            .unwrap()
            .pod_cidrs
            .as_ref()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(run.changes_over_scans(2).await, vec![]);

    // A document with no name, and one that is not an object: reported; nothing is deleted,
    // since a nameless document might have been any of the file's objects.
    dir.write(
        "pods.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {namespace: shop}\n---\n- just a list\n",
    );
    let status = run
        .status_where(|s| {
            s.problems
                .iter()
                .any(|p| p.to_string().contains("pods.yaml"))
        })
        .await;
    let pods_problems: Vec<&DirError> = status
        .problems
        .iter()
        .filter(|p| p.to_string().contains("pods.yaml"))
        .collect();
    assert!(
        matches!(pods_problems[0], DirError::Object { kind: Kind::Pod, key, .. } if key.name.is_empty())
    );
    assert!(matches!(
        pods_problems[1],
        DirError::Document { document: 2, .. }
    ));
    assert_eq!(run.changes_over_scans(2).await, vec![]);
    assert_eq!(run.stores.pods.len(), 3);
    assert_eq!(run.stores.namespaces.len(), 1);
}

#[tokio::test]
async fn a_duplicate_object_is_reported_and_the_later_file_wins() {
    let dir = full_dir("duplicate");
    let mut run = start(&dir.0).await;
    dir.write(
        "zz-override.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-v4}\nspec: {podCIDRs: [\"198.18.4.0/24\"]}\n",
    );
    assert_eq!(
        run.next_change().await,
        Change::Applied {
            kind: Kind::Node,
            key: ObjectKey::cluster("node-v4")
        }
    );
    let status = run.status_where(|s| !s.problems.is_empty()).await;
    assert!(
        matches!(&status.problems[..], [DirError::Duplicate { kind: Kind::Node, second, .. }] if second.ends_with("zz-override.yaml")),
        "{:?}",
        status.problems
    );
    let v4 = run.node("node-v4").unwrap();
    assert_eq!(
        v4.spec.as_ref().unwrap().pod_cidrs.clone().unwrap(),
        vec!["198.18.4.0/24"]
    );

    // The override goes away: the first definition is back.
    dir.remove("zz-override.yaml");
    assert_eq!(
        run.next_change().await,
        Change::Applied {
            kind: Kind::Node,
            key: ObjectKey::cluster("node-v4")
        }
    );
    run.status_where(|s| s.problems.is_empty()).await;
    let v4 = run.node("node-v4").unwrap();
    assert_eq!(
        v4.spec.as_ref().unwrap().pod_cidrs.clone().unwrap(),
        vec!["198.18.3.0/24"]
    );
}

#[tokio::test]
async fn an_unreadable_directory_keeps_everything() {
    let dir = full_dir("vanish");
    let mut run = start(&dir.0).await;
    let moved = dir.0.with_extension("moved");
    std::fs::rename(&dir.0, &moved).expect("move the directory away");
    let status = run
        .status_where(|s| {
            s.problems
                .iter()
                .any(|p| matches!(p, DirError::List { .. }))
        })
        .await;
    assert_eq!(status.objects, 11);
    assert_eq!(run.changes_over_scans(2).await, vec![]);
    assert_eq!(run.stores.nodes.len(), 3);
    std::fs::rename(&moved, &dir.0).expect("move it back");
    run.status_where(|s| s.problems.is_empty()).await;
    assert_eq!(run.changes_over_scans(2).await, vec![]);
}

#[test]
fn a_missing_directory_is_a_flag_error() {
    let dir = TempDir::new("missing");
    let missing = dir.0.join("nope");
    let err = DirSource::new(&missing).expect_err("no such directory");
    assert!(matches!(&err, SourceError::ObjectsDir { dir, .. } if *dir == missing));
    assert!(err.to_string().starts_with("--objects-from "), "{err}");
}

#[tokio::test]
async fn a_duplicate_within_one_file_is_reported_and_the_later_document_wins() {
    let dir = TempDir::new("duplicate-in-file");
    let twice = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {v: \"1\"}}\n---\n\
                 apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {v: \"2\"}}\n";
    dir.write("ns.yaml", twice);
    let mut run = start(&dir.0).await;
    let status = run.status_where(|s| s.scans >= 1).await;
    assert!(
        matches!(&status.problems[..], [DirError::Duplicate { kind: Kind::Namespace, first, second, .. }]
            if first == second && first.ends_with("ns.yaml")),
        "{:?}",
        status.problems
    );
    let ns = run
        .stores
        .namespaces
        .get(&ObjectRef::new("shop"))
        .expect("shop");
    assert_eq!(ns.metadata.labels.as_ref().unwrap()["v"], "2");
}
