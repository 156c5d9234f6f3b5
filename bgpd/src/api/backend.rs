//! What the API server asks of the BGP speaker: the [`ApiBackend`] trait and its plain Rust types.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use ipnet::IpNet;

use crate::packet::{Afi, PathAttributes};

/// Errors a backend reports; the server maps each to a gRPC status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No neighbour with that address is configured.
    #[error("neighbor {0} not found")]
    PeerNotFound(IpAddr),
    /// A neighbour with that address is already configured.
    #[error("neighbor {0} already exists")]
    PeerExists(IpAddr),
    /// The request cannot be carried out as given (bad prefix, family mismatch, missing field).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request is valid GoBGP but asks for something fairlead does not do (VRFs, other families).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The speaker failed to carry out the request.
    #[error("{0}")]
    Internal(String),
}

/// The speaker's global settings (GoBGP `Global`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalInfo {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// TCP port BGP listens on; `None` when the speaker does not listen (GoBGP shows -1).
    pub listen_port: Option<u16>,
    pub listen_addresses: Vec<IpAddr>,
    /// Unicast families the speaker handles.
    pub families: Vec<Afi>,
    pub use_multiple_paths: bool,
}

/// RFC 4271 section 8.2.2 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// Administrative state of a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AdminState {
    #[default]
    Up,
    /// Disabled by the operator (GoBGP `disable`).
    Down,
    /// Shut down because the prefix limit was exceeded.
    PrefixLimitExceeded,
}

/// Per-message-type counters of one direction (GoBGP `Message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageCounters {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub refresh: u64,
    pub discarded: u64,
    pub total: u64,
    pub withdraw_update: u64,
    pub withdraw_prefix: u64,
}

/// Timers of a neighbour, in seconds (GoBGP `Timers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerTimers {
    pub connect_retry: u64,
    /// Configured hold time.
    pub hold_time: u64,
    /// Configured keepalive interval.
    pub keepalive_interval: u64,
    pub minimum_advertisement_interval: u64,
    /// Hold time agreed in the OPEN exchange (0 before Established).
    pub negotiated_hold_time: u64,
    /// Keepalive interval in use (derived from the negotiated hold time).
    pub negotiated_keepalive_interval: u64,
}

/// Per-family state and prefix counters of a neighbour (GoBGP `AfiSafi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyState {
    pub afi: Afi,
    pub enabled: bool,
    /// Prefixes in Adj-RIB-In.
    pub received: u64,
    /// Prefixes accepted by import policy.
    pub accepted: u64,
    /// Prefixes in Adj-RIB-Out.
    pub advertised: u64,
    /// Configured maximum-prefix limit, if any.
    pub max_prefixes: Option<u32>,
}

/// A capability advertised in an OPEN, as far as the API shows it (GoBGP's capability messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760 multiprotocol, unicast SAFI.
    MultiProtocol(Afi),
    /// RFC 2918 route refresh.
    RouteRefresh,
    /// RFC 6793 four-octet AS number.
    FourOctetAs(u32),
    /// RFC 8950 extended next hop: (unicast NLRI AFI, next-hop AFI) pairs.
    ExtendedNexthop(Vec<(Afi, Afi)>),
    /// RFC 4724 graceful restart: the flags nibble (0x8 restart, 0x4 notification), restart time in seconds,
    /// per unicast family whether forwarding state was preserved.
    GracefulRestart {
        flags: u8,
        restart_time: u16,
        families: Vec<(Afi, bool)>,
    },
    /// RFC 7911 ADD-PATH: per unicast family the mode (1 receive, 2 send, 3 both).
    AddPath(Vec<(Afi, u8)>),
    /// RFC 7313 enhanced route refresh (code 70).
    EnhancedRouteRefresh,
    /// RFC 9494 long-lived graceful restart (code 71): per unicast family its flags and stale time (seconds).
    LongLivedGracefulRestart(Vec<(Afi, u8, u32)>),
    /// The hostname capability (code 73, draft-walton-bgp-hostname-capability).
    Fqdn {
        host_name: String,
        domain_name: String,
    },
    /// A capability the API does not model, as code and raw value.
    Unknown { code: u8, value: Vec<u8> },
}

impl Capability {
    /// The IANA capability code.
    pub fn code(&self) -> u8 {
        match self {
            Capability::MultiProtocol(_) => 1,
            Capability::RouteRefresh => 2,
            Capability::ExtendedNexthop(_) => 5,
            Capability::GracefulRestart { .. } => 64,
            Capability::FourOctetAs(_) => 65,
            Capability::AddPath(_) => 69,
            Capability::EnhancedRouteRefresh => 70,
            Capability::LongLivedGracefulRestart(_) => 71,
            Capability::Fqdn { .. } => 73,
            Capability::Unknown { code, .. } => *code,
        }
    }
}

/// Everything the API shows about one neighbour (GoBGP `Peer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: IpAddr,
    /// Configured peer AS; 0 when not known yet.
    pub peer_asn: u32,
    pub local_asn: u32,
    pub description: String,
    /// BGP Identifier from the neighbour's OPEN, once received.
    pub remote_router_id: Option<Ipv4Addr>,
    pub session_state: SessionState,
    pub admin_state: AdminState,
    /// When the session last reached Established; `None` if it never did.
    pub uptime: Option<SystemTime>,
    /// When the session last left Established.
    pub downtime: Option<SystemTime>,
    /// Number of times the session left Established.
    pub flops: u32,
    pub timers: PeerTimers,
    pub sent: MessageCounters,
    pub received: MessageCounters,
    pub families: Vec<FamilyState>,
    pub route_reflector_client: bool,
    pub cluster_id: Option<Ipv4Addr>,
    pub passive: bool,
    /// eBGP multihop TTL, when enabled.
    pub multihop_ttl: Option<u8>,
    pub local_address: Option<IpAddr>,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_capabilities: Vec<Capability>,
    pub remote_capabilities: Vec<Capability>,
}

/// A neighbour to add (GoBGP `AddPeer`); unset fields take the speaker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub peer_asn: u32,
    pub local_asn: Option<u32>,
    pub description: String,
    /// TCP-MD5 key (RFC 2385).
    pub auth_password: Option<String>,
    pub passive: bool,
    pub route_reflector_client: bool,
    pub cluster_id: Option<Ipv4Addr>,
    pub multihop_ttl: Option<u8>,
    pub hold_time: Option<u16>,
    pub keepalive_interval: Option<u16>,
    pub connect_retry: Option<u16>,
    pub remote_port: Option<u16>,
    /// Families to negotiate; empty means the family of `address`.
    pub families: Vec<Afi>,
    /// Configure it disabled (GoBGP `admin_down`).
    pub admin_down: bool,
}

/// Which table a path query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// The Loc-RIB.
    Global,
    /// Adj-RIB-In of one neighbour.
    AdjIn(IpAddr),
    /// Adj-RIB-Out of one neighbour.
    AdjOut(IpAddr),
}

/// How a [`PrefixFilter`] matches (GoBGP `TableLookupPrefix.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixMatch {
    /// The same prefix; a bare address (host prefix) means the longest prefix that covers it.
    Exact,
    /// The prefix and every more specific one.
    Longer,
    /// The prefix and every less specific one.
    Shorter,
}

/// One prefix filter of a path query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixFilter {
    pub prefix: IpNet,
    pub kind: PrefixMatch,
    /// The filter was a bare address rather than a prefix (longest match for [`PrefixMatch::Exact`]).
    pub is_address: bool,
}

/// A path query (GoBGP `ListPath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathQuery {
    pub table: TableKind,
    pub afi: Afi,
    /// Empty means every destination.
    pub prefixes: Vec<PrefixFilter>,
}

/// One path to a destination, as a table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath {
    pub prefix: IpNet,
    pub attrs: PathAttributes,
    /// Chosen by the decision process (Loc-RIB only).
    pub best: bool,
    /// When the path was received or originated.
    pub age: SystemTime,
    /// The neighbour it came from; `None` for a locally originated path.
    pub neighbor: Option<IpAddr>,
    pub source_asn: u32,
    /// BGP Identifier of the neighbour it came from.
    pub source_id: Option<Ipv4Addr>,
    pub is_from_external: bool,
    /// Rejected by import policy (Adj-RIB-In).
    pub filtered: bool,
    /// Kept over a graceful restart (RFC 4724), not refreshed yet.
    pub stale: bool,
    /// ADD-PATH identifier received (RFC 7911), 0 without ADD-PATH.
    pub path_id: u32,
    /// ADD-PATH identifier sent.
    pub local_path_id: u32,
    /// Handle of a path added through the API (GoBGP `uuid`), empty otherwise.
    pub uuid: Vec<u8>,
}

/// A prefix and its paths (GoBGP `Destination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub prefix: IpNet,
    pub paths: Vec<RoutePath>,
}

/// A path to originate (GoBGP `AddPath`), or to withdraw by value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPath {
    pub prefix: IpNet,
    pub attrs: PathAttributes,
}

/// What a `DeletePath` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathDeletion {
    /// The path `AddPath` returned this handle for.
    Uuid(Vec<u8>),
    /// The locally originated path to this prefix.
    Path(NewPath),
    /// Every locally originated path of a family.
    AllOfFamily(Afi),
}

/// The kind of `ResetPeer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetKind {
    /// Close the session (NOTIFICATION Cease/Administrative Reset, RFC 8203 message) and start again.
    Hard { communication: String },
    /// Re-run import policy over Adj-RIB-In (or send ROUTE-REFRESH).
    SoftIn,
    /// Re-send Adj-RIB-Out.
    SoftOut,
    /// Both soft directions.
    SoftBoth,
}

/// The speaker as the API sees it. The server calls these from tonic's tasks, so futures must be `Send`.
pub trait ApiBackend: Send + Sync + 'static {
    /// Global settings (GetBgp).
    fn global(&self) -> impl Future<Output = Result<GlobalInfo, ApiError>> + Send;
    /// Every neighbour, or only the one at `address` (empty when not configured).
    fn peers(
        &self,
        address: Option<IpAddr>,
    ) -> impl Future<Output = Result<Vec<PeerInfo>, ApiError>> + Send;
    /// Destinations of one table and family, filtered, sorted by prefix.
    fn paths(
        &self,
        query: PathQuery,
    ) -> impl Future<Output = Result<Vec<Destination>, ApiError>> + Send;
    /// Originates a path; returns its handle.
    fn add_path(&self, path: NewPath) -> impl Future<Output = Result<Vec<u8>, ApiError>> + Send;
    /// Withdraws locally originated paths.
    fn delete_path(
        &self,
        deletion: PathDeletion,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Configures a neighbour.
    fn add_peer(&self, config: PeerConfig) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Removes a neighbour (closing its session).
    fn delete_peer(&self, address: IpAddr) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Administratively enables a neighbour.
    fn enable_peer(&self, address: IpAddr) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Administratively disables a neighbour, with an RFC 8203 shutdown communication.
    fn disable_peer(
        &self,
        address: IpAddr,
        communication: String,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Resets one neighbour, or all of them when `address` is `None`.
    fn reset_peer(
        &self,
        address: Option<IpAddr>,
        kind: ResetKind,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

impl PrefixFilter {
    /// Whether `prefix` passes this filter (the longest-match case of a bare address is
    /// resolved over a whole table by [`filter_destinations`]).
    pub fn matches(&self, prefix: &IpNet) -> bool {
        match self.kind {
            PrefixMatch::Exact => *prefix == self.prefix,
            PrefixMatch::Longer => self.prefix.contains(prefix),
            PrefixMatch::Shorter => prefix.contains(&self.prefix),
        }
    }
}

/// Applies GoBGP's prefix filters to a table: a destination passes if any filter matches; an exact filter
/// given as a bare address selects the longest prefix covering it. Backends may use this as is.
pub fn filter_destinations(
    destinations: Vec<Destination>,
    filters: &[PrefixFilter],
) -> Vec<Destination> {
    if filters.is_empty() {
        return destinations;
    }
    let mut keep = vec![false; destinations.len()];
    for filter in filters {
        if filter.kind == PrefixMatch::Exact && filter.is_address {
            let best = destinations
                .iter()
                .enumerate()
                .filter(|(_, d)| d.prefix.contains(&filter.prefix.addr()))
                .max_by_key(|(_, d)| d.prefix.prefix_len());
            if let Some((i, _)) = best {
                keep[i] = true;
            }
        } else {
            for (i, d) in destinations.iter().enumerate() {
                if filter.matches(&d.prefix) {
                    keep[i] = true;
                }
            }
        }
    }
    destinations
        .into_iter()
        .zip(keep)
        .filter_map(|(d, k)| k.then_some(d))
        .collect()
}

/// The unicast AFI of an address.
pub fn afi_of(addr: IpAddr) -> Afi {
    match addr {
        IpAddr::V4(_) => Afi::Ipv4,
        IpAddr::V6(_) => Afi::Ipv6,
    }
}
