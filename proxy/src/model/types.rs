//! Plain data of the proxy model: the node's context in, the desired IPVS state and warnings out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// An IP family, as Kubernetes spells it in `ipFamilies` and EndpointSlice `addressType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    /// `IPv4`
    Ipv4,
    /// `IPv6`
    Ipv6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::Ipv4,
            IpAddr::V6(_) => Self::Ipv6,
        }
    }

    /// Parses the Kubernetes spelling (`IPv4`, `IPv6`).
    pub fn from_kubernetes(value: &str) -> Option<Self> {
        match value {
            "IPv4" => Some(Self::Ipv4),
            "IPv6" => Some(Self::Ipv6),
            _ => None,
        }
    }
}

/// A transport protocol of a ServicePort / IPVS virtual server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `TCP` (the Kubernetes default when `protocol` is unset)
    Tcp,
    /// `UDP`
    Udp,
    /// `SCTP`
    Sctp,
}

impl Protocol {
    /// Parses the Kubernetes spelling; an unset protocol is `TCP`, as the API server defaults it.
    pub fn from_kubernetes(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("TCP") => Some(Self::Tcp),
            Some("UDP") => Some(Self::Udp),
            Some("SCTP") => Some(Self::Sctp),
            Some(_) => None,
        }
    }

    /// Whether a destination removed from a virtual server of this protocol is drained (weight 0, deleted later
    /// by the controller once its connections are gone) rather than deleted at once.
    ///
    /// UDP has no connection end to wait for, so it is deleted at once (the kernel's `expire_nodest_conn` drops
    /// its entries on the next packet). Note: kube-proxy deletes SCTP destinations at once too; fairlead drains
    /// SCTP like TCP because an SCTP association, like a TCP connection, has an end worth waiting for.
    pub fn drains_removed_destinations(self) -> bool {
        matches!(self, Self::Tcp | Self::Sctp)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// An IPVS scheduler, named by its kernel module suffix (`ip_vs_rr`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheduler {
    /// `rr`, round robin: kube-proxy's default and fairlead's.
    #[default]
    RoundRobin,
    /// `wrr`, weighted round robin.
    WeightedRoundRobin,
    /// `lc`, least connection.
    LeastConnection,
    /// `sh`, source hashing.
    SourceHashing,
    /// `mh`, maglev hashing.
    MaglevHashing,
}

impl Scheduler {
    /// The name the kernel knows the scheduler by (`IPVS_SVC_ATTR_SCHED_NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "rr",
            Self::WeightedRoundRobin => "wrr",
            Self::LeastConnection => "lc",
            Self::SourceHashing => "sh",
            Self::MaglevHashing => "mh",
        }
    }
}

impl FromStr for Scheduler {
    type Err = ();

    fn from_str(value: &str) -> Result<Self, ()> {
        match value {
            "rr" => Ok(Self::RoundRobin),
            "wrr" => Ok(Self::WeightedRoundRobin),
            "lc" => Ok(Self::LeastConnection),
            "sh" => Ok(Self::SourceHashing),
            "mh" => Ok(Self::MaglevHashing),
            _ => Err(()),
        }
    }
}

/// What identifies an IPVS virtual server: address, port, protocol (no firewall marks are used).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualServerKey {
    /// The virtual address (ClusterIP, ExternalIP, LoadBalancer ingress IP or node address).
    pub address: IpAddr,
    /// The port (the ServicePort's `port`, or its `nodePort`).
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl VirtualServerKey {
    /// A key.
    pub fn new(address: IpAddr, port: u16, protocol: Protocol) -> Self {
        Self {
            address,
            port,
            protocol,
        }
    }

    /// The family of the virtual address.
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.address)
    }
}

impl fmt::Display for VirtualServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.protocol,
            SocketAddr::new(self.address, self.port)
        )
    }
}

/// IPVS persistence (`IP_VS_SVC_F_PERSISTENT`), from `sessionAffinity: ClientIP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Persistence {
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800).
    pub timeout_seconds: u32,
}

/// One IPVS virtual server as the kernel holds it; the same type describes the desired and the actual table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualServer {
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Persistence, when the Service asks for ClientIP session affinity.
    pub persistence: Option<Persistence>,
    /// Destinations (real servers) and their weights. Desired weights are [`crate::model::DESTINATION_WEIGHT`];
    /// weight 0 in an actual table marks a destination being drained.
    pub destinations: BTreeMap<SocketAddr, u32>,
}

/// An IPVS table: the desired one from [`crate::model::desired_state`], or the actual one read back from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpvsState {
    /// Virtual servers by key.
    pub virtual_servers: BTreeMap<VirtualServerKey, VirtualServer>,
}

/// A Service by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    /// `metadata.namespace` (`default` when unset).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An object by kind, namespace and name, for warnings about objects other than Services.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// `kind`, e.g. `EndpointSlice`.
    pub kind: &'static str,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One port of a Service, as kube-proxy's `ServicePortName` (an unnamed port has the name "").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortRef {
    /// The Service.
    pub service: ServiceRef,
    /// The ServicePort's `name`.
    pub port_name: String,
    /// The ServicePort's `protocol`.
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.service, self.port_name, self.protocol)
    }
}

/// Which address of the Service a virtual server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VirtualServerKind {
    /// `spec.clusterIPs`; endpoints per `internalTrafficPolicy`.
    ClusterIp,
    /// A node address and the ServicePort's `nodePort`; endpoints per `externalTrafficPolicy`.
    NodePort,
    /// `spec.externalIPs`; endpoints per `externalTrafficPolicy`.
    ExternalIp,
    /// `status.loadBalancer.ingress[].ip`; endpoints per `externalTrafficPolicy`.
    LoadBalancer,
}

/// Where a desired virtual server came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualServerOrigin {
    /// The Service port.
    pub service_port: ServicePortRef,
    /// The kind of address.
    pub kind: VirtualServerKind,
}

/// Addresses split by family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilyAddresses {
    /// IPv4 addresses.
    pub ipv4: BTreeSet<Ipv4Addr>,
    /// IPv6 addresses.
    pub ipv6: BTreeSet<Ipv6Addr>,
}

impl FamilyAddresses {
    /// Adds an address to the set of its family.
    pub fn insert(&mut self, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => {
                self.ipv4.insert(a);
            }
            IpAddr::V6(a) => {
                self.ipv6.insert(a);
            }
        }
    }

    /// Whether the address is in the set of its family.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.ipv4.contains(a),
            IpAddr::V6(a) => self.ipv6.contains(a),
        }
    }

    /// All addresses, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .iter()
            .map(|&a| IpAddr::V4(a))
            .chain(self.ipv6.iter().map(|&a| IpAddr::V6(a)))
    }

    /// Whether both sets are empty.
    pub fn is_empty(&self) -> bool {
        self.ipv4.is_empty() && self.ipv6.is_empty()
    }
}

/// Which node addresses accept NodePort traffic, as kube-proxy's `--nodeport-addresses`.
///
/// The filters are per family: a family with no filter accepts all of the node's addresses of that family
/// (except the VIPs fairlead put on its dummy interface), as kube-proxy does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePortAddresses {
    /// The CIDRs (an address is a /32 or /128 prefix: `IpNet::from(addr)`).
    pub filters: Vec<IpNet>,
}

impl NodePortAddresses {
    /// Accepts all addresses of both families.
    pub fn all() -> Self {
        Self::default()
    }

    /// Accepts the addresses in these CIDRs (and all addresses of a family none of them belongs to).
    pub fn only(filters: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            filters: filters.into_iter().collect(),
        }
    }

    /// The node addresses that accept NodePort traffic.
    pub fn select(&self, node_addresses: &[IpAddr], vips: &FamilyAddresses) -> FamilyAddresses {
        let mut selected = FamilyAddresses::default();
        for addr in node_addresses {
            let family = IpFamily::of(addr);
            let filters: Vec<&IpNet> = self
                .filters
                .iter()
                .filter(|net| IpFamily::of(&net.addr()) == family)
                .collect();
            let accepted = if filters.is_empty() {
                !vips.contains(addr)
            } else {
                filters.iter().any(|net| net.contains(addr))
            };
            if accepted {
                selected.insert(*addr);
            }
        }
        selected
    }
}

/// This node, as the model needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeContext {
    /// `metadata.name` of the Node, compared with endpoints' `nodeName` and `hints.forNodes`.
    pub name: String,
    /// The Node's `topology.kubernetes.io/zone` label, compared with `hints.forZones`.
    pub zone: Option<String>,
    /// The node's interface addresses (both families), candidates for NodePort virtual servers. With no filter
    /// for a family the model leaves out the VIPs it wants on the dummy interface; the caller should leave out
    /// whatever else is on that interface (stale VIPs being removed), as kube-proxy skips all of kube-ipvs0.
    pub addresses: Vec<IpAddr>,
    /// The `--nodeport-addresses` filter.
    pub node_port_addresses: NodePortAddresses,
}

/// The health check server entry of a `LoadBalancer` Service with `externalTrafficPolicy: Local`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service.
    pub service: ServiceRef,
    /// Ready endpoints on this node, counted by distinct address as kube-proxy does (terminating endpoints do not
    /// count, so the check fails while a node only has terminating ones). With dual-stack, the larger count of the
    /// two families.
    pub local_endpoints: usize,
}

/// Everything this node's proxy should program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// The IPVS table.
    pub ipvs: IpvsState,
    /// For each virtual server, the Service port and address kind it serves.
    pub origins: BTreeMap<VirtualServerKey, VirtualServerOrigin>,
    /// Addresses to put on fairlead's dummy interface: ClusterIPs, ExternalIPs, LoadBalancer ingress IPs.
    pub vips: FamilyAddresses,
    /// Node addresses that carry NodePort virtual servers (not put on the dummy interface).
    pub node_port_addresses: FamilyAddresses,
    /// The HTTP health check server's ports (`spec.healthCheckNodePort`).
    pub health_check_node_ports: BTreeMap<u16, HealthCheck>,
    /// Bad input that was skipped, each naming its object.
    pub warnings: Vec<Warning>,
}

/// Bad input the model skipped; the controller logs each with the object's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// `fairlead.io/service.scheduler` is not one of rr, wrr, lc, sh, mh; rr is used.
    #[error("service {service}: invalid scheduler annotation {value:?}, using rr")]
    InvalidScheduler {
        /// The Service.
        service: ServiceRef,
        /// The annotation's value.
        value: String,
    },
    /// A Service without `metadata.name`.
    #[error("service without a name in namespace {namespace}")]
    UnnamedService {
        /// `metadata.namespace`.
        namespace: String,
    },
    /// An address field of a Service that does not parse, or has another family than `ipFamilies` says.
    #[error("service {service}: invalid {field} {value:?}, skipped")]
    InvalidServiceAddress {
        /// The Service.
        service: ServiceRef,
        /// The field (`spec.clusterIPs`, `spec.externalIPs`, `status.loadBalancer.ingress.ip`).
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A ServicePort with a port, nodePort or protocol fairlead cannot program.
    #[error("service {service}: invalid port {port_name:?}: {reason}, skipped")]
    InvalidServicePort {
        /// The Service.
        service: ServiceRef,
        /// The ServicePort's name.
        port_name: String,
        /// What is wrong.
        reason: String,
    },
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` outside 1..=86400; the default 10800 is used.
    #[error("service {service}: invalid session affinity timeout {value}, using 10800")]
    InvalidSessionAffinityTimeout {
        /// The Service.
        service: ServiceRef,
        /// The value.
        value: i32,
    },
    /// An EndpointSlice field fairlead cannot use; the endpoint or port is skipped.
    #[error("{slice}: invalid {field} {value:?}, skipped")]
    InvalidEndpointSlice {
        /// The EndpointSlice.
        slice: ObjectRef,
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// Two Service ports want the same virtual server; the first by namespace/name keeps it.
    #[error("virtual server {virtual_server} wanted by {} and {}, kept the first", kept.service_port, dropped.service_port)]
    VirtualServerConflict {
        /// The virtual server.
        virtual_server: VirtualServerKey,
        /// The owner that keeps it.
        kept: VirtualServerOrigin,
        /// The owner that does not get it.
        dropped: VirtualServerOrigin,
    },
    /// Two Services with the same `healthCheckNodePort`.
    #[error("health check node port {port} wanted by {kept} and {dropped}, kept the first")]
    HealthCheckNodePortConflict {
        /// The port.
        port: u16,
        /// The Service that keeps it.
        kept: ServiceRef,
        /// The Service that does not get it.
        dropped: ServiceRef,
    },
}
