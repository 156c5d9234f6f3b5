//! The object kinds the cluster source carries, their keys, and which fields of each controllers read.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::stores::{KindWriter, StoreWriters};

/// A Kubernetes kind the stores hold (`Secret`, for BGP passwords, is not carried yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` `Node`: routecontroller (annotations, `spec.podCIDRs`, `status.addresses`).
    Node,
    /// `v1` `Service`: the service proxy.
    Service,
    /// `discovery.k8s.io/v1` `EndpointSlice`: the service proxy.
    EndpointSlice,
    /// `v1` `Pod`: the firewall (labels, `status.podIPs`, named ports).
    Pod,
    /// `v1` `Namespace`: the firewall (labels).
    Namespace,
    /// `networking.k8s.io/v1` `NetworkPolicy`: the firewall.
    NetworkPolicy,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 6] = [
        Kind::Node,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Pod,
        Kind::Namespace,
        Kind::NetworkPolicy,
    ];

    /// The `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => <Node as k8s_openapi::Resource>::KIND,
            Kind::Service => <Service as k8s_openapi::Resource>::KIND,
            Kind::EndpointSlice => <EndpointSlice as k8s_openapi::Resource>::KIND,
            Kind::Pod => <Pod as k8s_openapi::Resource>::KIND,
            Kind::Namespace => <Namespace as k8s_openapi::Resource>::KIND,
            Kind::NetworkPolicy => <NetworkPolicy as k8s_openapi::Resource>::KIND,
        }
    }

    /// The `apiVersion` field.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Node => <Node as k8s_openapi::Resource>::API_VERSION,
            Kind::Service => <Service as k8s_openapi::Resource>::API_VERSION,
            Kind::EndpointSlice => <EndpointSlice as k8s_openapi::Resource>::API_VERSION,
            Kind::Pod => <Pod as k8s_openapi::Resource>::API_VERSION,
            Kind::Namespace => <Namespace as k8s_openapi::Resource>::API_VERSION,
            Kind::NetworkPolicy => <NetworkPolicy as k8s_openapi::Resource>::API_VERSION,
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Node | Kind::Namespace)
    }

    /// The kind an object's `apiVersion` and `kind` name, if the stores carry it.
    pub fn from_type_meta(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object's identity within its kind: `namespace/name`, or `name` for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `metadata.namespace`; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// A cluster-scoped key.
    pub fn cluster(name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: None,
            name: name.into(),
        }
    }

    /// A namespaced key.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// The key of an object (an object without a name has the empty name).
    pub fn of<K: Resource>(obj: &K) -> Self {
        let meta = obj.meta();
        ObjectKey {
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A k8s-openapi type the stores carry, with the plumbing that lets the sources treat kinds generically.
pub trait ClusterObject:
    Resource<DynamicType = ()>
    + Clone
    + fmt::Debug
    + PartialEq
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// This type's kind.
    const KIND: Kind;

    /// This kind's writer.
    fn writer(writers: &mut StoreWriters) -> &mut KindWriter<Self>;

    /// A hash of the fields a controller reads, so an update that changes none of them (a Node
    /// heartbeat, a Pod's container status) raises no [`Change`](super::Change). The store is
    /// always updated; this only decides the notification. `None`: every update is a change.
    fn relevance(&self) -> Option<u64> {
        None
    }
}

fn hash_json<T: Serialize>(fields: &T) -> Option<u64> {
    // k8s-openapi types are not `Hash`; their JSON form is canonical enough (maps are BTreeMaps).
    let bytes = serde_json::to_vec(fields).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

impl ClusterObject for Node {
    const KIND: Kind = Kind::Node;
    fn writer(writers: &mut StoreWriters) -> &mut KindWriter<Self> {
        &mut writers.nodes
    }
    /// routecontroller reads labels, annotations (BGP settings), the spec (`podCIDRs`) and
    /// `status.addresses`; the kubelet's heartbeats (`status.conditions`, images) are left out.
    fn relevance(&self) -> Option<u64> {
        let m = &self.metadata;
        hash_json(&(
            &m.labels,
            &m.annotations,
            &m.deletion_timestamp,
            &self.spec,
            self.status.as_ref().map(|s| &s.addresses),
        ))
    }
}

impl ClusterObject for Pod {
    const KIND: Kind = Kind::Pod;
    fn writer(writers: &mut StoreWriters) -> &mut KindWriter<Self> {
        &mut writers.pods
    }
    /// The firewall reads labels, `spec.hostNetwork`, `spec.nodeName`, container ports (named
    /// ports), `status.phase`, `status.podIP(s)`, `status.hostIP(s)`; container statuses and
    /// conditions, which change often, are left out.
    fn relevance(&self) -> Option<u64> {
        let m = &self.metadata;
        let spec = self.spec.as_ref().map(|s| {
            let ports: Vec<_> = s.containers.iter().map(|c| &c.ports).collect();
            (&s.node_name, &s.host_network, ports)
        });
        let status = self
            .status
            .as_ref()
            .map(|s| (&s.phase, &s.pod_ip, &s.pod_ips, &s.host_ip, &s.host_ips));
        hash_json(&(
            &m.labels,
            &m.annotations,
            &m.deletion_timestamp,
            spec,
            status,
        ))
    }
}

impl ClusterObject for Service {
    const KIND: Kind = Kind::Service;
    fn writer(writers: &mut StoreWriters) -> &mut KindWriter<Self> {
        &mut writers.services
    }
}

impl ClusterObject for EndpointSlice {
    const KIND: Kind = Kind::EndpointSlice;
    fn writer(writers: &mut StoreWriters) -> &mut KindWriter<Self> {
        &mut writers.endpoint_slices
    }
}

impl ClusterObject for Namespace {
    const KIND: Kind = Kind::Namespace;
    fn writer(writers: &mut StoreWriters) -> &mut KindWriter<Self> {
        &mut writers.namespaces
    }
}

impl ClusterObject for NetworkPolicy {
    const KIND: Kind = Kind::NetworkPolicy;
    fn writer(writers: &mut StoreWriters) -> &mut KindWriter<Self> {
        &mut writers.network_policies
    }
}
