//! Problems found in Node objects: logged and turned into Events by the controller, never fatal.

use std::net::IpAddr;

use ipnet::IpNet;

use super::types::IpFamily;

/// A problem with one node's data; the node's other valid data is still used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelWarning {
    /// An annotation value that does not parse; the annotation is ignored (or the entry, for lists).
    #[error("node {node}: annotation {annotation}: {reason}")]
    InvalidAnnotation {
        /// Node name.
        node: String,
        /// Annotation key.
        annotation: String,
        /// What is wrong.
        reason: String,
    },
    /// A `spec.podCIDRs` / `spec.podCIDR` entry that is not a CIDR.
    #[error("node {node}: invalid pod CIDR {value:?}: {reason}")]
    InvalidPodCidr {
        /// Node name.
        node: String,
        /// The raw value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A `status.addresses` entry that is not an IP address.
    #[error("node {node}: invalid {address_type} address {value:?}")]
    InvalidNodeAddress {
        /// Node name.
        node: String,
        /// `InternalIP`, `ExternalIP`.
        address_type: String,
        /// The raw value.
        value: String,
    },
    /// A pod CIDR of a family the node has no address of (e.g. IPv4 on an IPv6-only node): not announced.
    #[error(
        "node {node}: pod CIDR {cidr} is {family} but the node has no {family} address; not announced"
    )]
    PodCidrWithoutAddress {
        /// Node name.
        node: String,
        /// The pod CIDR.
        cidr: IpNet,
        /// Its family.
        family: IpFamily,
    },
    /// A node with no InternalIP usable for a session with the local node.
    #[error("node {node}: no InternalIP of a family the local node also has; no BGP session")]
    NoPeeringAddress {
        /// Node name.
        node: String,
    },
    /// A route-reflector client whose cluster id no route-reflector server carries.
    #[error(
        "node {node}: route-reflector client of cluster id {cluster_id} but no server has that cluster id"
    )]
    OrphanRouteReflectorClient {
        /// Node name.
        node: String,
        /// The cluster id.
        cluster_id: std::net::Ipv4Addr,
    },
    /// The same remote address configured twice; the first by precedence is kept.
    #[error("node {node}: peer {address} configured more than once ({source_ignored} ignored)")]
    DuplicatePeer {
        /// Node name.
        node: String,
        /// Remote address.
        address: IpAddr,
        /// Which configuration was ignored.
        source_ignored: String,
    },
    /// Another node derives the same router-id (a hash collision, or equal IPv4 InternalIPs): set `--router-id`.
    #[error(
        "node {node}: router-id {router_id} is also derived by node {other}; set --router-id on one of them"
    )]
    RouterIdCollision {
        /// The local node.
        node: String,
        /// The other node.
        other: String,
        /// The shared id.
        router_id: std::net::Ipv4Addr,
    },
    /// A best path without any next hop usable in the kernel.
    #[error("route {prefix}: no usable next hop ({reason})")]
    UnusableRoute {
        /// The prefix.
        prefix: IpNet,
        /// Why.
        reason: String,
    },
}

impl ModelWarning {
    /// The node the warning is about, for the controller's Event; `None` for route warnings.
    pub fn node(&self) -> Option<&str> {
        match self {
            ModelWarning::InvalidAnnotation { node, .. }
            | ModelWarning::InvalidPodCidr { node, .. }
            | ModelWarning::InvalidNodeAddress { node, .. }
            | ModelWarning::PodCidrWithoutAddress { node, .. }
            | ModelWarning::NoPeeringAddress { node }
            | ModelWarning::OrphanRouteReflectorClient { node, .. }
            | ModelWarning::DuplicatePeer { node, .. }
            | ModelWarning::RouterIdCollision { node, .. } => Some(node),
            ModelWarning::UnusableRoute { .. } => None,
        }
    }

    /// A short stable label per variant (metrics, Event reasons).
    pub fn reason(&self) -> &'static str {
        match self {
            ModelWarning::InvalidAnnotation { .. } => "InvalidAnnotation",
            ModelWarning::InvalidPodCidr { .. } => "InvalidPodCIDR",
            ModelWarning::InvalidNodeAddress { .. } => "InvalidNodeAddress",
            ModelWarning::PodCidrWithoutAddress { .. } => "PodCIDRWithoutAddress",
            ModelWarning::NoPeeringAddress { .. } => "NoPeeringAddress",
            ModelWarning::OrphanRouteReflectorClient { .. } => "OrphanRouteReflectorClient",
            ModelWarning::DuplicatePeer { .. } => "DuplicatePeer",
            ModelWarning::RouterIdCollision { .. } => "RouterIDCollision",
            ModelWarning::UnusableRoute { .. } => "UnusableRoute",
        }
    }
}
