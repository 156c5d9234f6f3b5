//! The desired nftables state as plain data: one `inet` table of sets and chains.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Address family of a set or an address match (the `ip` / `ip6` payload in an `inet` table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// Both families, IPv6 first (fairlead is IPv6-first).
    pub const ALL: [Family; 2] = [Family::Ipv6, Family::Ipv4];

    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    /// Suffix used in set names (`_v4`, `_v6`).
    pub fn suffix(self) -> &'static str {
        match self {
            Family::Ipv4 => "v4",
            Family::Ipv6 => "v6",
        }
    }
}

/// Transport protocols a NetworkPolicyPort can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the Kubernetes spelling (`TCP`, `UDP`, `SCTP`).
    pub fn from_k8s(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The nftables keyword (`inet_proto` value).
    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// ICMP (RFC 792) types that are never dropped: the errors PMTU discovery and traceroute need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IcmpType {
    /// Type 3, includes code 4 "fragmentation needed" (RFC 1191 PMTU).
    DestinationUnreachable = 3,
    TimeExceeded = 11,
    ParameterProblem = 12,
}

impl IcmpType {
    pub fn nft_name(self) -> &'static str {
        match self {
            IcmpType::DestinationUnreachable => "destination-unreachable",
            IcmpType::TimeExceeded => "time-exceeded",
            IcmpType::ParameterProblem => "parameter-problem",
        }
    }
}

/// ICMPv6 (RFC 4443, RFC 4861) types that are never dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Icmpv6Type {
    DestinationUnreachable = 1,
    /// RFC 8201 PMTU discovery.
    PacketTooBig = 2,
    TimeExceeded = 3,
    ParameterProblem = 4,
    RouterSolicitation = 133,
    RouterAdvertisement = 134,
    NeighborSolicitation = 135,
    NeighborAdvertisement = 136,
    Redirect = 137,
}

impl Icmpv6Type {
    pub fn nft_name(self) -> &'static str {
        match self {
            Icmpv6Type::DestinationUnreachable => "destination-unreachable",
            Icmpv6Type::PacketTooBig => "packet-too-big",
            Icmpv6Type::TimeExceeded => "time-exceeded",
            Icmpv6Type::ParameterProblem => "parameter-problem",
            Icmpv6Type::RouterSolicitation => "nd-router-solicit",
            Icmpv6Type::RouterAdvertisement => "nd-router-advert",
            Icmpv6Type::NeighborSolicitation => "nd-neighbor-solicit",
            Icmpv6Type::NeighborAdvertisement => "nd-neighbor-advert",
            Icmpv6Type::Redirect => "nd-redirect",
        }
    }
}

/// Conntrack states a rule can match (`ct state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtState {
    New,
    Established,
    Related,
}

impl CtState {
    pub fn nft_name(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
        }
    }
}

/// What a set holds; the nftables set type follows from it and the set's family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// `type ipv4_addr` / `ipv6_addr`: pod addresses.
    Addr,
    /// `type ipv4_addr` / `ipv6_addr; flags interval`: ipBlock ranges.
    Interval,
    /// `type ipvX_addr . inet_proto . inet_service`: pod address + resolved named port.
    AddrProtoPort,
}

/// One set element, typed by the set kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetElement {
    Addr(IpAddr),
    Net(IpNet),
    AddrProtoPort(IpAddr, Protocol, u16),
}

impl SetElement {
    /// Family of the address inside the element.
    pub fn family(&self) -> Family {
        match self {
            SetElement::Addr(a) | SetElement::AddrProtoPort(a, _, _) => Family::of(a),
            SetElement::Net(n) => Family::of_net(n),
        }
    }
}

/// A named set in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub family: Family,
    pub kind: SetKind,
    /// Why the set exists (which policy / selector), for humans reading `nft list`.
    pub comment: String,
    pub elements: BTreeSet<SetElement>,
}

impl Set {
    pub fn new(family: Family, kind: SetKind, comment: impl Into<String>) -> Set {
        Set {
            family,
            kind,
            comment: comment.into(),
            elements: BTreeSet::new(),
        }
    }

    /// Same declaration (everything except the elements).
    pub fn same_declaration(&self, other: &Set) -> bool {
        self.family == other.family && self.kind == other.kind && self.comment == other.comment
    }
}

/// Which address of the packet an address match looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrField {
    Saddr,
    Daddr,
}

/// One match expression of a rule; all of a rule's matches must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `ct state { ... }`
    CtState(BTreeSet<CtState>),
    /// `ip saddr @set` / `ip6 daddr @set` (implies the family).
    Addr {
        field: AddrField,
        family: Family,
        set: String,
    },
    /// `meta l4proto tcp`
    Protocol(Protocol),
    /// `th dport 80` or `th dport 80-90` (needs a preceding `Protocol`).
    DestPort { first: u16, last: u16 },
    /// `ip daddr . meta l4proto . th dport @set`: named ports resolved per destination pod.
    NamedPort { family: Family, set: String },
    /// `fib saddr type local`: the source is one of the node's own addresses (any interface), i.e.
    /// the packet was sent by the node itself. Kernel state, not ruleset state: the evaluator
    /// takes the node's addresses from the `node_v4`/`node_v6` sets.
    SourceIsLocal,
    /// `icmp type { ... }` (IPv4 only).
    Icmp(BTreeSet<IcmpType>),
    /// `icmpv6 type { ... }` (IPv6 only).
    Icmpv6(BTreeSet<Icmpv6Type>),
}

/// Rate limit of the drop log (`limit rate N/second burst B packets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRate {
    pub per_second: u32,
    pub burst: u32,
}

/// What a rule does when all its matches hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    /// Back to the calling chain (the packet passed this check).
    Return,
    Jump(String),
    /// `limit rate ... log prefix "..."`: a non-terminal statement, evaluation continues.
    Log {
        prefix: String,
        rate: LogRate,
    },
}

/// One rule: matches, then an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
    pub comment: Option<String>,
}

/// Netfilter hooks fairlead attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Routed and (with br_netfilter) bridged pod traffic.
    Forward,
    /// Locally sent packets: pod traffic that a local proxy (IPVS) forwards after DNAT.
    Output,
}

/// Default verdict of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainPolicy {
    Accept,
    Drop,
}

/// Present on base chains only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    /// `priority filter` is 0.
    pub priority: i32,
    pub policy: ChainPolicy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

/// The whole table: what is sent to nftables in one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// Table name in family `inet`.
    pub table: String,
    pub sets: BTreeMap<String, Set>,
    /// Regular chains first, base chains last (so jump targets are declared before use).
    pub chains: Vec<Chain>,
}

impl Ruleset {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    pub fn element_count(&self) -> usize {
        self.sets.values().map(|s| s.elements.len()).sum()
    }
}
