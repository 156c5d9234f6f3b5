//! Store writer tests: watcher events in, store contents and notifications out.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerStatus, Node, NodeAddress, NodeCondition, NodeSpec,
    NodeStatus, Pod, PodIP, PodSpec, PodStatus, Service,
};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::{Change, ClusterStores, Kind, ObjectKey, SourceError};

fn node(name: &str, pod_cidrs: &[&str], addresses: &[&str]) -> Node {
    let mut node = Node::default();
    node.metadata.name = Some(name.into());
    node.spec = Some(NodeSpec {
        pod_cidr: pod_cidrs.first().map(|c| c.to_string()),
        pod_cidrs: Some(pod_cidrs.iter().map(|c| c.to_string()).collect()),
        ..NodeSpec::default()
    });
    node.status = Some(NodeStatus {
        addresses: Some(
            addresses
                .iter()
                .map(|a| NodeAddress {
                    type_: "InternalIP".into(),
                    address: a.to_string(),
                })
                .collect(),
        ),
        ..NodeStatus::default()
    });
    node
}

fn heartbeat(node: &mut Node, at: &str) {
    let status = node.status.get_or_insert_with(NodeStatus::default);
    status.conditions = Some(vec![NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        message: Some(format!("kubelet is posting ready status at {at}")),
        ..NodeCondition::default()
    }]);
}

fn pod(namespace: &str, name: &str, ips: &[&str]) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.namespace = Some(namespace.into());
    pod.metadata.name = Some(name.into());
    pod.metadata.labels = Some(BTreeMap::from([("app".to_string(), "web".to_string())]));
    pod.spec = Some(PodSpec {
        node_name: Some("node-a".into()),
        containers: vec![Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }],
        ..PodSpec::default()
    });
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: ips.first().map(|ip| ip.to_string()),
        pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
        ..PodStatus::default()
    });
    pod
}

fn drain(changes: &mut super::Changes) -> Vec<Change> {
    std::iter::from_fn(|| changes.try_recv()).collect()
}

fn node_change(name: &str) -> Change {
    Change::Applied {
        kind: Kind::Node,
        key: ObjectKey::cluster(name),
    }
}

#[tokio::test]
async fn relist_makes_the_store_ready_and_announces_the_kind() {
    let (stores, mut writers) = ClusterStores::new();
    let mut changes = stores.changes();
    let not_yet = stores
        .wait_until_ready(&[Kind::Node], Duration::from_millis(50))
        .await;
    assert!(
        matches!(not_yet, Err(SourceError::SyncTimeout(Kind::Node, _))),
        "{not_yet:?}"
    );

    writers.nodes.apply(&Event::Init);
    writers.nodes.apply(&Event::InitApply(node(
        "node-a",
        &["fd00:10:244:1::/64"],
        &["fd00::a"],
    )));
    writers.nodes.apply(&Event::InitApply(node(
        "node-b",
        &["198.18.1.0/24"],
        &["198.18.0.2"],
    )));
    // Objects listed but not yet InitDone are not visible, and nothing is announced.
    assert!(stores.nodes.is_empty());
    assert_eq!(drain(&mut changes), vec![]);
    writers.nodes.apply(&Event::InitDone);

    stores
        .wait_until_ready(&[Kind::Node], Duration::from_secs(5))
        .await
        .expect("nodes ready after InitDone");
    assert_eq!(stores.nodes.len(), 2);
    assert!(stores.nodes.get(&ObjectRef::new("node-b")).is_some());
    assert_eq!(
        drain(&mut changes),
        vec![Change::Relisted { kind: Kind::Node }]
    );
    // Other kinds are still not ready.
    let services = stores
        .wait_until_ready(&[Kind::Service], Duration::from_millis(50))
        .await;
    assert!(
        matches!(services, Err(SourceError::SyncTimeout(Kind::Service, _))),
        "{services:?}"
    );
}

#[tokio::test]
async fn node_heartbeat_updates_the_store_without_a_change() {
    let (stores, mut writers) = ClusterStores::new();
    let mut changes = stores.changes();
    let mut n = node(
        "node-a",
        &["fd00:10:244:1::/64", "198.18.1.0/24"],
        &["fd00::a", "198.18.0.1"],
    );
    heartbeat(&mut n, "t1");
    writers.nodes.apply(&Event::Init);
    writers.nodes.apply(&Event::InitApply(n.clone()));
    writers.nodes.apply(&Event::InitDone);
    assert_eq!(
        drain(&mut changes),
        vec![Change::Relisted { kind: Kind::Node }]
    );

    heartbeat(&mut n, "t2");
    writers.nodes.apply(&Event::Apply(n.clone()));
    let stored = stores
        .nodes
        .get(&ObjectRef::new("node-a"))
        .expect("node-a stored");
    assert_eq!(stored.as_ref(), &n, "the store holds the heartbeat");
    assert_eq!(
        drain(&mut changes),
        vec![],
        "a heartbeat concerns no controller"
    );

    // What routecontroller reads: annotations, podCIDRs, addresses.
    n.metadata.annotations = Some(BTreeMap::from([(
        "fairlead.io/node.asn".to_string(),
        "64512".to_string(),
    )]));
    writers.nodes.apply(&Event::Apply(n.clone()));
    assert_eq!(drain(&mut changes), vec![node_change("node-a")]);

    n.spec.as_mut().unwrap().pod_cidrs = Some(vec!["fd00:10:244:9::/64".into()]);
    writers.nodes.apply(&Event::Apply(n.clone()));
    assert_eq!(drain(&mut changes), vec![node_change("node-a")]);

    n.status.as_mut().unwrap().addresses.as_mut().unwrap()[0].address = "fd00::b".into();
    writers.nodes.apply(&Event::Apply(n.clone()));
    assert_eq!(drain(&mut changes), vec![node_change("node-a")]);

    // A deletion is always announced, though no read field changed.
    writers.nodes.apply(&Event::Delete(n.clone()));
    assert!(stores.nodes.is_empty());
    assert_eq!(
        drain(&mut changes),
        vec![Change::Deleted {
            kind: Kind::Node,
            key: ObjectKey::cluster("node-a")
        }]
    );
    // Re-created with the same content: announced again (the deletion forgot it).
    writers.nodes.apply(&Event::Apply(n));
    assert_eq!(drain(&mut changes), vec![node_change("node-a")]);
}

#[tokio::test]
async fn pod_status_noise_is_filtered_but_pod_ips_and_labels_are_not() {
    for ips in [
        vec!["fd00:10:244:1::5"],
        vec!["fd00:10:244:1::5", "198.18.1.5"],
        vec!["198.18.1.5"],
    ] {
        let (stores, mut writers) = ClusterStores::new();
        let mut changes = stores.changes();
        let key = ObjectKey::namespaced("shop", "web-0");
        let applied = Change::Applied {
            kind: Kind::Pod,
            key: key.clone(),
        };
        let mut p = pod("shop", "web-0", &ips);
        writers.pods.apply(&Event::Apply(p.clone()));
        assert_eq!(
            drain(&mut changes),
            vec![applied.clone()],
            "{ips:?}: a new pod"
        );

        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "web".into(),
            ready: true,
            restart_count: 1,
            ..ContainerStatus::default()
        }]);
        writers.pods.apply(&Event::Apply(p.clone()));
        assert_eq!(
            drain(&mut changes),
            vec![],
            "{ips:?}: container status only"
        );
        let stored = stores
            .pods
            .get(&ObjectRef::new("web-0").within("shop"))
            .expect("stored");
        assert_eq!(
            stored
                .status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap()[0]
                .restart_count,
            1
        );

        p.status.as_mut().unwrap().pod_ips = Some(vec![PodIP {
            ip: "fd00:10:244:2::7".into(),
        }]);
        writers.pods.apply(&Event::Apply(p.clone()));
        assert_eq!(
            drain(&mut changes),
            vec![applied.clone()],
            "{ips:?}: podIPs changed"
        );

        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "front".into());
        writers.pods.apply(&Event::Apply(p.clone()));
        assert_eq!(
            drain(&mut changes),
            vec![applied.clone()],
            "{ips:?}: labels changed"
        );

        p.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .container_port = 9090;
        writers.pods.apply(&Event::Apply(p.clone()));
        assert_eq!(
            drain(&mut changes),
            vec![applied.clone()],
            "{ips:?}: named port moved"
        );

        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        writers.pods.apply(&Event::Apply(p));
        assert_eq!(drain(&mut changes), vec![applied], "{ips:?}: phase changed");
    }
}

#[tokio::test]
async fn unfiltered_kinds_announce_every_update() {
    let (stores, mut writers) = ClusterStores::new();
    let mut changes = stores.changes();
    let mut svc = Service::default();
    svc.metadata.namespace = Some("shop".into());
    svc.metadata.name = Some("web".into());
    writers.services.apply(&Event::Apply(svc.clone()));
    writers.services.apply(&Event::Apply(svc));
    let applied = Change::Applied {
        kind: Kind::Service,
        key: ObjectKey::namespaced("shop", "web"),
    };
    assert_eq!(drain(&mut changes), vec![applied.clone(), applied]);
}

#[tokio::test]
async fn a_dropped_writer_fails_the_wait_at_once() {
    let (stores, writers) = ClusterStores::new();
    drop(writers);
    let started = std::time::Instant::now();
    let result = stores
        .wait_until_ready(&[Kind::Pod], Duration::from_secs(30))
        .await;
    assert!(
        matches!(result, Err(SourceError::NotFed(Kind::Pod))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut changes = stores.changes();
    assert_eq!(
        changes.recv().await,
        None,
        "no writer left: the change stream ends"
    );
}

#[tokio::test]
async fn a_slow_subscriber_is_told_it_missed_changes() {
    let (stores, mut writers) = ClusterStores::new();
    let mut changes = stores.changes();
    for i in 0..(super::CHANGES_CAPACITY + 10) {
        writers.nodes.apply(&Event::Apply(node(
            &format!("node-{i}"),
            &["fd00:10:244:1::/64"],
            &["fd00::a"],
        )));
    }
    assert_eq!(changes.try_recv(), Some(Change::Missed { count: 10 }));
    assert_eq!(changes.try_recv(), Some(node_change("node-10")));
    assert_eq!(Change::Missed { count: 1 }.kind(), None);
    assert_eq!(node_change("x").kind(), Some(Kind::Node));
}
