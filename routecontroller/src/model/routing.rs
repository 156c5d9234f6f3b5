//! Node objects + [`Config`] -> [`DesiredRouting`]: router-id, BGP peers, announcements, import filters.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

use super::annotations::{NodeBgpSettings, parse_node_annotations};
use super::config::{Config, RouterIdMode, parse_canonical_cidr};
use super::types::{AsPathPrepend, Asn, Community, IpFamily, PeerPassword};
use super::warning::ModelWarning;

/// What this node's BGP speaker should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRouting {
    /// The local ASN (`node.asn` annotation, else `--cluster-asn`).
    pub local_asn: Asn,
    /// The BGP identifier.
    pub router_id: Ipv4Addr,
    /// Where the router-id came from.
    pub router_id_source: RouterIdSource,
    /// TCP port the speaker listens on.
    pub listen_port: u16,
    /// All sessions, sorted by remote address.
    pub peers: Vec<DesiredPeer>,
    /// Originated prefixes, sorted by prefix.
    pub announcements: Vec<Announcement>,
    /// Every valid pod CIDR of the local node (announced or not): kernel routes into them are never installed.
    pub local_pod_cidrs: Vec<IpNet>,
    /// Problems found, for logs and Events (each daemon should raise Events only for its own node).
    pub warnings: Vec<ModelWarning>,
}

/// Where the router-id came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterIdSource {
    /// `--router-id`.
    Flag,
    /// The node's first IPv4 InternalIP.
    NodeIpv4Address(Ipv4Addr),
    /// [`hashed_router_id`] of the node's first IPv6 InternalIP's 16 octets.
    HashOfIpv6Address(Ipv6Addr),
    /// [`hashed_router_id`] of the node name's UTF-8 bytes (no IPv6 InternalIP either).
    HashOfNodeName,
}

/// One BGP session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPeer {
    /// Remote address.
    pub address: IpAddr,
    /// Remote ASN.
    pub remote_asn: Asn,
    /// Local ASN for this session.
    pub local_asn: Asn,
    /// Source address of the session (None: the kernel's choice).
    pub local_address: Option<IpAddr>,
    /// Remote TCP port.
    pub port: u16,
    /// TCP MD5 password.
    pub password: Option<PeerPassword>,
    /// AFI/SAFI unicast families negotiated (RFC 4760), whatever the session's transport family.
    pub families: BTreeSet<IpFamily>,
    /// What the peer is.
    pub kind: PeerKind,
    /// Set when this node reflects routes to the peer (RFC 4456): the peer is our client, with our cluster id.
    pub route_reflector_client_of: Option<Ipv4Addr>,
    /// eBGP multihop TTL (None: directly connected, TTL 1 for eBGP).
    pub ebgp_multihop_ttl: Option<u8>,
    /// Rewrite the next hop to our address on export (`--override-nexthop`, external peers only).
    pub next_hop_self: bool,
    /// Which received prefixes are accepted.
    pub import: ImportPolicy,
}

/// What kind of peer a session is with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// Another node of the cluster.
    Node {
        /// Node name.
        name: String,
    },
    /// A router outside the cluster.
    External {
        /// Where it was configured.
        source: PeerSource,
    },
}

/// Where an external peer was configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerSource {
    /// `--peer-router-*` flags.
    Flags,
    /// A local node annotation (the key: `fairlead.io/peers` or `kube-router.io/peer.ips`).
    Annotation(&'static str),
}

impl std::fmt::Display for PeerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerSource::Flags => f.write_str("--peer-router-ips"),
            PeerSource::Annotation(key) => write!(f, "annotation {key}"),
        }
    }
}

/// An originated prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The pod CIDR.
    pub prefix: IpNet,
    /// Next hop: an address of the prefix's family, or for an IPv4 prefix an IPv6 address (RFC 8950) when the
    /// node has an IPv4 address but no IPv4 InternalIP.
    pub next_hop: IpAddr,
    /// Communities from `node.bgp.communities`.
    pub communities: Vec<Community>,
    /// AS-path prepend for eBGP export.
    pub as_path_prepend: Option<AsPathPrepend>,
}

/// Accept or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterAction {
    /// Accept the route.
    Accept,
    /// Reject the route.
    Reject,
}

/// How a rule's prefix matches a received prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixMatch {
    /// Only this exact prefix.
    Exact,
    /// This prefix or any more specific inside it (`le` = family maximum).
    OrLonger,
}

/// One prefix-list line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixRule {
    /// The prefix.
    pub prefix: IpNet,
    /// How it matches.
    pub matching: PrefixMatch,
    /// What a match does.
    pub action: FilterAction,
}

/// An ordered prefix list: the first matching rule decides, else `default_action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportPolicy {
    /// Rules in order.
    pub rules: Vec<PrefixRule>,
    /// When nothing matches.
    pub default_action: FilterAction,
}

impl ImportPolicy {
    /// Decides a received prefix.
    pub fn evaluate(&self, prefix: &IpNet) -> FilterAction {
        self.rules
            .iter()
            .find(|r| match r.matching {
                PrefixMatch::Exact => r.prefix == *prefix,
                PrefixMatch::OrLonger => r.prefix.contains(prefix),
            })
            .map_or(self.default_action, |r| r.action)
    }
}

/// Errors that prevent computing any desired state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The local node is not among the Node objects (yet).
    #[error("node {0} not found among the Node objects")]
    LocalNodeNotFound(String),
}

/// FNV-1a (32-bit) of `input`, used as a router-id: deterministic across restarts, builds and architectures.
///
/// 0.0.0.0 and 255.255.255.255 are not valid BGP identifiers; if the hash is one of them, the octet 0x01 is
/// appended to the input and hashing goes on (0x00 would keep 0 at 0), bounded; in practice once at most.
pub fn hashed_router_id(input: &[u8]) -> Ipv4Addr {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let mut h = OFFSET_BASIS;
    for b in input {
        h ^= u32::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    for _ in 0..16 {
        if h != 0 && h != u32::MAX {
            return Ipv4Addr::from(h);
        }
        h = (h ^ 0x01).wrapping_mul(PRIME); // the same as appending the octet 0x01
    }
    Ipv4Addr::new(0, 0, 0, 1)
}

/// A Node reduced to what routing needs, with invalid data dropped (and warned about).
#[derive(Clone, Debug)]
struct NodeView {
    name: String,
    /// InternalIP addresses in `status.addresses` order.
    internal_ips: Vec<IpAddr>,
    /// Every address (any type), in order.
    addresses: Vec<IpAddr>,
    pod_cidrs: Vec<IpNet>,
    settings: NodeBgpSettings,
}

impl NodeView {
    fn parse(node: &Node, warnings: &mut Vec<ModelWarning>) -> Option<NodeView> {
        let name = node.metadata.name.clone()?;
        let mut internal_ips = Vec::new();
        let mut addresses = Vec::new();
        for a in node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
        {
            if a.type_ != "InternalIP" && a.type_ != "ExternalIP" {
                continue; // Hostname, InternalDNS, ExternalDNS
            }
            match a.address.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    if a.type_ == "InternalIP" {
                        internal_ips.push(ip);
                    }
                    addresses.push(ip);
                }
                Err(_) => warnings.push(ModelWarning::InvalidNodeAddress {
                    node: name.clone(),
                    address_type: a.type_.clone(),
                    value: a.address.clone(),
                }),
            }
        }
        let spec = node.spec.as_ref();
        let raw_cidrs: Vec<String> = match spec.and_then(|s| s.pod_cidrs.clone()) {
            Some(v) if !v.is_empty() => v,
            _ => spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect(),
        };
        let mut pod_cidrs: Vec<IpNet> = Vec::new();
        for raw in raw_cidrs {
            match parse_canonical_cidr(&raw) {
                Ok(net)
                    if pod_cidrs
                        .iter()
                        .any(|n| IpFamily::of_net(n) == IpFamily::of_net(&net)) =>
                {
                    warnings.push(ModelWarning::InvalidPodCidr {
                        node: name.clone(),
                        value: raw,
                        reason: "a second pod CIDR of the same family".into(),
                    })
                }
                Ok(net) => pod_cidrs.push(net),
                Err(reason) => warnings.push(ModelWarning::InvalidPodCidr {
                    node: name.clone(),
                    value: raw,
                    reason,
                }),
            }
        }
        let settings = match &node.metadata.annotations {
            Some(a) => parse_node_annotations(&name, a, warnings),
            None => NodeBgpSettings::default(),
        };
        Some(NodeView {
            name,
            internal_ips,
            addresses,
            pod_cidrs,
            settings,
        })
    }

    fn first_internal(&self, family: IpFamily) -> Option<IpAddr> {
        self.internal_ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of_addr(ip) == family)
    }

    fn has_address_of(&self, family: IpFamily) -> bool {
        self.addresses
            .iter()
            .any(|ip| IpFamily::of_addr(ip) == family)
    }

    fn asn(&self, config: &Config) -> Asn {
        self.settings.asn.unwrap_or(config.cluster_asn)
    }

    fn role(&self) -> RrRole {
        match (self.settings.rr_server, self.settings.rr_client) {
            (Some(id), _) => RrRole::Server(id),
            (None, Some(id)) => RrRole::Client(id),
            (None, None) => RrRole::Plain,
        }
    }

    /// The next hop for one of the node's pod CIDRs, or None if the node must not announce it.
    fn next_hop_for(&self, family: IpFamily) -> Option<IpAddr> {
        if !self.has_address_of(family) {
            return None;
        }
        self.first_internal(family)
            .or_else(|| match family {
                // RFC 8950: an IPv4 prefix with an IPv6 next hop.
                IpFamily::Ipv4 => self.first_internal(IpFamily::Ipv6),
                IpFamily::Ipv6 => None,
            })
            .or_else(|| {
                self.addresses
                    .iter()
                    .copied()
                    .find(|ip| IpFamily::of_addr(ip) == family)
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RrRole {
    Server(Ipv4Addr),
    Client(Ipv4Addr),
    Plain,
}

/// Computes the desired routing state of node `local_node` from all Node objects.
///
/// Node-to-node sessions:
/// - without route-reflector annotations: a full mesh when `--nodes-full-mesh` is set, none otherwise;
/// - with any `rr.server`/`rr.client` annotation in the cluster: servers peer with each other, with their
///   clients (same cluster id; marked as clients on the server side) and with plain nodes; clients peer only
///   with the servers of their cluster id; plain nodes peer with servers, and with each other only under
///   `--nodes-full-mesh`.
///
/// Sessions between nodes of the same ASN exist only with `--enable-ibgp`. Each runs over the cluster's primary
/// family (first InternalIP of that family on both nodes), else over the other family, and negotiates all the
/// cluster's families.
pub fn desired_routing(
    nodes: &[Node],
    local_node: &str,
    config: &Config,
) -> Result<DesiredRouting, ModelError> {
    let mut warnings = Vec::new();
    let mut views: BTreeMap<String, NodeView> = BTreeMap::new();
    for node in nodes {
        if let Some(v) = NodeView::parse(node, &mut warnings) {
            views.entry(v.name.clone()).or_insert(v);
        }
    }
    let local = views
        .get(local_node)
        .ok_or_else(|| ModelError::LocalNodeNotFound(local_node.to_owned()))?;
    let local_asn = local.asn(config);

    let (router_id, router_id_source) = derive_router_id(local, config);
    if router_id_source != RouterIdSource::Flag {
        // Other nodes derive theirs the same way (assuming the same flags): equal ids break sessions between
        // the two (RFC 4271 OPEN checks) and reflection (ORIGINATOR_ID, RFC 4456).
        for other in views.values().filter(|v| v.name != local.name) {
            if derive_router_id(other, config).0 == router_id {
                warnings.push(ModelWarning::RouterIdCollision {
                    node: local.name.clone(),
                    other: other.name.clone(),
                    router_id,
                });
            }
        }
    }

    let mut announcements = Vec::new();
    for cidr in &local.pod_cidrs {
        let family = IpFamily::of_net(cidr);
        match local.next_hop_for(family) {
            Some(next_hop) => announcements.push(Announcement {
                prefix: *cidr,
                next_hop,
                communities: local.settings.communities.clone(),
                as_path_prepend: local.settings.prepend,
            }),
            None => {
                tracing::warn!(node = %local.name, %cidr, "pod CIDR of a family the node has no address of; not announced");
                warnings.push(ModelWarning::PodCidrWithoutAddress {
                    node: local.name.clone(),
                    cidr: *cidr,
                    family,
                });
            }
        }
    }
    announcements.sort_by_key(|a| a.prefix);

    let mut peers = node_peers(local, &views, config, &mut warnings);
    external_peers(local, config, local_asn, &mut peers, &mut warnings);
    peers.sort_by_key(|p| p.address);

    Ok(DesiredRouting {
        local_asn,
        router_id,
        router_id_source,
        listen_port: config.bgp_port,
        peers,
        announcements,
        local_pod_cidrs: local.pod_cidrs.clone(),
        warnings,
    })
}

fn derive_router_id(local: &NodeView, config: &Config) -> (Ipv4Addr, RouterIdSource) {
    if let RouterIdMode::Fixed(id) = config.router_id {
        return (id, RouterIdSource::Flag);
    }
    if config.router_id == RouterIdMode::Derive
        && let Some(IpAddr::V4(v4)) = local.first_internal(IpFamily::Ipv4)
        && !v4.is_unspecified()
        && !v4.is_broadcast()
    {
        return (v4, RouterIdSource::NodeIpv4Address(v4));
    }
    // An IPv6 address is preferred over the name: names like "worker-1" repeat across clusters that may share
    // a route reflector or ToR, where equal router-ids break ORIGINATOR_ID loop detection (RFC 4456).
    match local.first_internal(IpFamily::Ipv6) {
        Some(IpAddr::V6(v6)) => (
            hashed_router_id(&v6.octets()),
            RouterIdSource::HashOfIpv6Address(v6),
        ),
        _ => (
            hashed_router_id(local.name.as_bytes()),
            RouterIdSource::HashOfNodeName,
        ),
    }
}

/// The (local, remote) session addresses between two nodes: primary family first, else the other one.
fn session_addresses(
    local: &NodeView,
    remote: &NodeView,
    primary: IpFamily,
) -> Option<(IpAddr, IpAddr)> {
    [primary, primary.other()]
        .into_iter()
        .find_map(|f| Some((local.first_internal(f)?, remote.first_internal(f)?)))
}

fn node_peers(
    local: &NodeView,
    views: &BTreeMap<String, NodeView>,
    config: &Config,
    warnings: &mut Vec<ModelWarning>,
) -> Vec<DesiredPeer> {
    let rr_mode = views.values().any(|v| v.role() != RrRole::Plain);
    if !rr_mode && !config.nodes_full_mesh {
        return Vec::new();
    }
    if rr_mode {
        let server_ids: BTreeSet<Ipv4Addr> = views
            .values()
            .filter_map(|v| match v.role() {
                RrRole::Server(id) => Some(id),
                _ => None,
            })
            .collect();
        if let RrRole::Client(id) = local.role()
            && !server_ids.contains(&id)
        {
            warnings.push(ModelWarning::OrphanRouteReflectorClient {
                node: local.name.clone(),
                cluster_id: id,
            });
        }
    }
    if local.internal_ips.is_empty() {
        // Reported once, naming the local node, rather than once per remote node.
        warnings.push(ModelWarning::NoPeeringAddress {
            node: local.name.clone(),
        });
        return Vec::new();
    }
    let local_asn = local.asn(config);
    let service_ranges = config.advertised_service_ranges();
    let mut peers = Vec::new();
    for remote in views.values().filter(|v| v.name != local.name) {
        let remote_asn = remote.asn(config);
        let ibgp = remote_asn == local_asn;
        if ibgp && !config.enable_ibgp {
            continue;
        }
        let (wanted, rr_client_of, remote_is_reflector) = if rr_mode {
            match (local.role(), remote.role()) {
                (RrRole::Server(_), RrRole::Server(_)) => (true, None, true),
                (RrRole::Server(a), RrRole::Client(b)) => {
                    (a == b, (ibgp && a == b).then_some(a), false)
                }
                (RrRole::Client(a), RrRole::Server(b)) => (a == b, None, true),
                (RrRole::Client(_), _) | (_, RrRole::Client(_)) => (false, None, false),
                (RrRole::Server(_), RrRole::Plain) => (true, None, false),
                (RrRole::Plain, RrRole::Server(_)) => (true, None, true),
                (RrRole::Plain, RrRole::Plain) => (config.nodes_full_mesh, None, false),
            }
        } else {
            (true, None, false)
        };
        if !wanted {
            continue;
        }
        let Some((local_ip, remote_ip)) = session_addresses(local, remote, config.primary_family())
        else {
            warnings.push(ModelWarning::NoPeeringAddress {
                node: remote.name.clone(),
            });
            continue;
        };
        // A reflector (iBGP) passes on every other node's routes; a plain peer only its own.
        let mut accept: Vec<IpNet> = if remote_is_reflector && ibgp {
            views
                .values()
                .filter(|v| v.name != local.name)
                .flat_map(|v| v.pod_cidrs.iter().copied())
                .collect()
        } else {
            remote.pod_cidrs.clone()
        };
        accept.extend(service_ranges.iter().copied());
        peers.push(DesiredPeer {
            address: remote_ip,
            remote_asn,
            local_asn,
            local_address: Some(local_ip),
            port: config.bgp_port,
            password: None,
            families: config.cluster_families(),
            kind: PeerKind::Node {
                name: remote.name.clone(),
            },
            route_reflector_client_of: rr_client_of,
            ebgp_multihop_ttl: None,
            next_hop_self: false,
            import: node_import_policy(&accept),
        });
    }
    peers
}

/// From a node peer: only prefixes inside `accept` (its pod CIDRs, reflected pod CIDRs, advertised service
/// ranges); everything else, default routes included, is rejected.
pub fn node_import_policy(accept: &[IpNet]) -> ImportPolicy {
    let mut rules: Vec<PrefixRule> = Vec::new();
    for prefix in accept {
        let rule = PrefixRule {
            prefix: *prefix,
            matching: PrefixMatch::OrLonger,
            action: FilterAction::Accept,
        };
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    ImportPolicy {
        rules,
        default_action: FilterAction::Reject,
    }
}

/// From an external peer: default routes only with `--bgp-accept-default-route`; never a prefix inside the
/// cluster's own ranges; then `--peer-router-import-prefixes` if given (else everything).
pub fn external_import_policy(config: &Config) -> ImportPolicy {
    let default_action = if config.accept_default_route {
        FilterAction::Accept
    } else {
        FilterAction::Reject
    };
    let mut rules: Vec<PrefixRule> = [IpFamily::Ipv4, IpFamily::Ipv6]
        .into_iter()
        .map(|f| PrefixRule {
            prefix: f.default_route(),
            matching: PrefixMatch::Exact,
            action: default_action,
        })
        .collect();
    for prefix in config.cluster_owned_ranges() {
        rules.push(PrefixRule {
            prefix,
            matching: PrefixMatch::OrLonger,
            action: FilterAction::Reject,
        });
    }
    match &config.import_prefixes {
        None => ImportPolicy {
            rules,
            default_action: FilterAction::Accept,
        },
        Some(list) => {
            rules.extend(list.iter().map(|p| PrefixRule {
                prefix: *p,
                matching: PrefixMatch::OrLonger,
                action: FilterAction::Accept,
            }));
            ImportPolicy {
                rules,
                default_action: FilterAction::Reject,
            }
        }
    }
}

/// External peers: the local node's annotations first, then the flags; a repeated address keeps the first.
fn external_peers(
    local: &NodeView,
    config: &Config,
    local_asn: Asn,
    peers: &mut Vec<DesiredPeer>,
    warnings: &mut Vec<ModelWarning>,
) {
    let import = external_import_policy(config);
    let sources = local
        .settings
        .peers
        .iter()
        .map(|(spec, key)| (spec, PeerSource::Annotation(key)))
        .chain(
            config
                .global_peers
                .iter()
                .map(|spec| (spec, PeerSource::Flags)),
        );
    for (spec, source) in sources {
        if let Some(existing) = peers.iter().find(|p| p.address == spec.address) {
            let kept = match &existing.kind {
                PeerKind::Node { name } => format!("node {name}"),
                PeerKind::External { source } => source.to_string(),
            };
            warnings.push(ModelWarning::DuplicatePeer {
                node: local.name.clone(),
                address: spec.address,
                source_ignored: format!("{source} (kept: {kept})"),
            });
            continue;
        }
        let ebgp = spec.asn != local_asn;
        peers.push(DesiredPeer {
            address: spec.address,
            remote_asn: spec.asn,
            local_asn,
            local_address: spec.local_address,
            port: spec.port.unwrap_or(config.bgp_port),
            password: spec.password.clone(),
            families: spec
                .families
                .clone()
                .unwrap_or_else(|| config.cluster_families()),
            kind: PeerKind::External { source },
            route_reflector_client_of: None,
            ebgp_multihop_ttl: if ebgp {
                match spec.multihop_ttl {
                    Some(ttl) => (ttl >= 2).then_some(ttl),
                    None => config.peer_multihop_ttl,
                }
            } else {
                None
            },
            next_hop_self: config.override_nexthop,
            import: import.clone(),
        });
    }
}
