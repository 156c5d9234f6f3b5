//! Typed IPVS objects: virtual services, destinations (real servers), statistics, timeouts, version.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::uapi::*;

/// Address family of a service or destination (`AF_INET`, `AF_INET6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    Inet,
    Inet6,
}

impl AddressFamily {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::Inet,
            IpAddr::V6(_) => Self::Inet6,
        }
    }

    pub(crate) fn to_af(self) -> u16 {
        match self {
            Self::Inet => AF_INET,
            Self::Inet6 => AF_INET6,
        }
    }

    pub(crate) fn from_af(af: u16) -> Option<Self> {
        match af {
            AF_INET => Some(Self::Inet),
            AF_INET6 => Some(Self::Inet6),
            _ => None,
        }
    }

    /// Longest prefix of the family: the netmask of a service that persists per client address.
    pub fn max_prefix_len(self) -> u8 {
        match self {
            Self::Inet => 32,
            Self::Inet6 => 128,
        }
    }
}

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub(crate) fn number(self) -> u16 {
        match self {
            Self::Tcp => IPPROTO_TCP,
            Self::Udp => IPPROTO_UDP,
            Self::Sctp => IPPROTO_SCTP,
        }
    }

    pub(crate) fn from_number(n: u16) -> Option<Self> {
        match n {
            IPPROTO_TCP => Some(Self::Tcp),
            IPPROTO_UDP => Some(Self::Udp),
            IPPROTO_SCTP => Some(Self::Sctp),
            _ => None,
        }
    }
}

/// What identifies a virtual service in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// (protocol, virtual address, port); the family follows the address.
    Addr {
        protocol: Protocol,
        addr: IpAddr,
        port: u16,
    },
    /// A firewall mark set by packet filtering rules, per family.
    Fwmark { family: AddressFamily, mark: u32 },
}

impl ServiceKey {
    pub fn family(&self) -> AddressFamily {
        match self {
            Self::Addr { addr, .. } => AddressFamily::of(addr),
            Self::Fwmark { family, .. } => *family,
        }
    }
}

/// Scheduler names the kernel ships (`ip_vs_<name>` modules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheduler {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection.
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Maglev hashing.
    Mh,
    /// Weighted random twos choice.
    Twos,
}

impl Scheduler {
    const ALL: [Scheduler; 14] = [
        Self::Rr,
        Self::Wrr,
        Self::Lc,
        Self::Wlc,
        Self::Lblc,
        Self::Lblcr,
        Self::Dh,
        Self::Sh,
        Self::Sed,
        Self::Nq,
        Self::Fo,
        Self::Ovf,
        Self::Mh,
        Self::Twos,
    ];

    /// The kernel's name for the scheduler (`IPVS_SVC_ATTR_SCHED_NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Wrr => "wrr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
            Self::Lblc => "lblc",
            Self::Lblcr => "lblcr",
            Self::Dh => "dh",
            Self::Sh => "sh",
            Self::Sed => "sed",
            Self::Nq => "nq",
            Self::Fo => "fo",
            Self::Ovf => "ovf",
            Self::Mh => "mh",
            Self::Twos => "twos",
        }
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scheduler name the kernel does not ship.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown IPVS scheduler {0:?}")]
pub struct UnknownScheduler(pub String);

impl FromStr for Scheduler {
    type Err = UnknownScheduler;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|sched| sched.name() == s)
            .ok_or_else(|| UnknownScheduler(s.to_owned()))
    }
}

/// Service flags a user sets (`IP_VS_SVC_F_*` without the kernel-internal `HASHED`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceFlags(u32);

impl ServiceFlags {
    /// Persistent service: a client sticks to one destination for the service's timeout.
    pub const PERSISTENT: Self = Self(IP_VS_SVC_F_PERSISTENT);
    /// One-packet scheduling (UDP): schedule every datagram.
    pub const ONEPACKET: Self = Self(IP_VS_SVC_F_ONEPACKET);
    /// Scheduler flag 1 (`sh-fallback` for sh, `mh-fallback` for mh).
    pub const SCHED1: Self = Self(IP_VS_SVC_F_SCHED1);
    /// Scheduler flag 2 (`sh-port` for sh, `mh-port` for mh).
    pub const SCHED2: Self = Self(IP_VS_SVC_F_SCHED2);
    /// Scheduler flag 3.
    pub const SCHED3: Self = Self(IP_VS_SVC_F_SCHED3);

    pub const fn empty() -> Self {
        Self(0)
    }

    /// The flags from the kernel's bits; the kernel-internal `HASHED` bit is dropped.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits & !IP_VS_SVC_F_HASHED)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for ServiceFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A virtual service: its key and how it schedules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (used with `ServiceFlags::PERSISTENT`).
    pub timeout: u32,
    /// Prefix length that groups clients for persistence: 32 (IPv4) or 128 (IPv6) means per client address.
    pub netmask: u8,
}

impl Service {
    /// A non-persistent service with the family's full netmask, as `ipvsadm -A` makes by default.
    pub fn new(key: ServiceKey, scheduler: Scheduler) -> Self {
        Self {
            netmask: key.family().max_prefix_len(),
            key,
            scheduler,
            flags: ServiceFlags::empty(),
            timeout: 0,
        }
    }
}

/// How packets reach a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FwdMethod {
    /// NAT (`-m`): the only method that rewrites the destination, the one a Kubernetes proxy uses.
    Masquerade,
    /// The destination is this host (the kernel reports it, a user cannot ask for it).
    LocalNode,
    /// IP-in-IP tunnel (`-i`).
    Tunnel,
    /// Direct routing (`-g`).
    DirectRoute,
}

impl FwdMethod {
    pub(crate) fn bits(self) -> u32 {
        match self {
            Self::Masquerade => IP_VS_CONN_F_MASQ,
            Self::LocalNode => IP_VS_CONN_F_LOCALNODE,
            Self::Tunnel => IP_VS_CONN_F_TUNNEL,
            Self::DirectRoute => IP_VS_CONN_F_DROUTE,
        }
    }

    pub(crate) fn from_bits(bits: u32) -> Option<Self> {
        match bits & IP_VS_CONN_F_FWD_MASK {
            IP_VS_CONN_F_MASQ => Some(Self::Masquerade),
            IP_VS_CONN_F_LOCALNODE => Some(Self::LocalNode),
            IP_VS_CONN_F_TUNNEL => Some(Self::Tunnel),
            IP_VS_CONN_F_DROUTE => Some(Self::DirectRoute),
            _ => None,
        }
    }
}

/// A destination (real server) of a virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub addr: IpAddr,
    pub port: u16,
    pub fwd_method: FwdMethod,
    /// Relative weight; 0 takes the destination out of scheduling without dropping its connections.
    /// The kernel takes it as a signed int and rejects values above `i32::MAX` (EINVAL).
    pub weight: u32,
    /// Upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0: none).
    pub lower_threshold: u32,
}

impl Destination {
    /// A masqueraded (NAT) destination without thresholds.
    pub fn masquerade(addr: IpAddr, port: u16, weight: u32) -> Self {
        Self {
            addr,
            port,
            fwd_method: FwdMethod::Masquerade,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }
}

/// Counters and rate estimates of a service or destination (from `*_ATTR_STATS64`, else `*_ATTR_STATS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Connections per second.
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

/// A service as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub service: Service,
    pub stats: Stats,
}

/// A destination as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationEntry {
    pub destination: Destination,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub persistent_conns: u32,
    pub stats: Stats,
}

/// IPVS version as `IP_VS_VERSION_CODE` encodes it (major << 16 | minor << 8 | patch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl Version {
    pub fn from_code(code: u32) -> Self {
        Self {
            major: ((code >> 16) & 0xff) as u8,
            minor: ((code >> 8) & 0xff) as u8,
            patch: (code & 0xff) as u8,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Reply to `IPVS_CMD_GET_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    pub version: Version,
    /// Size of the connection hash table.
    pub conn_table_size: u32,
}

/// Connection timeouts in seconds (`ipvsadm --set tcp tcpfin udp`). In a SET_CONFIG, 0 leaves a value unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}
