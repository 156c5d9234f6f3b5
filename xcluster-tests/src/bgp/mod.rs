//! Real BGP peers for tests: a typed router spec, config writers and launchers for BIRD, GoBGP and FRR, and CLI queries.
//!
//! One [`RouterSpec`] describes a speaker; [`Bird::start`], [`Gobgp::start`] and [`Frr::start`] write it in each
//! daemon's own config language, start the daemon in a namespace (process owned by the [`Guard`](crate::Guard)),
//! wait until its CLI answers, and return a handle implementing [`BgpSpeaker`] for observation.

mod bird;
mod frr;
mod gobgp;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

pub use bird::Bird;
pub use frr::Frr;
pub use gobgp::Gobgp;

use crate::error::{HarnessError, Result};
use crate::exec::wait_until;
use crate::plan::Family;

/// How long a daemon gets to answer its CLI after start.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Hold time the config writers set (keepalive is a third of it), so sessions come up and fail fast.
pub const HOLD_TIME_SECS: u16 = 9;

/// The address families a session carries (AFI/SAFI pairs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AfiSafi {
    /// AFI 1 / SAFI 1.
    Ipv4Unicast,
    /// AFI 2 / SAFI 1.
    Ipv6Unicast,
}

impl AfiSafi {
    /// The unicast AFI/SAFI of `family`.
    pub fn of_family(family: Family) -> AfiSafi {
        match family {
            Family::V4 => AfiSafi::Ipv4Unicast,
            Family::V6 => AfiSafi::Ipv6Unicast,
        }
    }

    /// The unicast AFI/SAFI a prefix belongs to.
    pub fn of_prefix(prefix: &IpNet) -> AfiSafi {
        AfiSafi::of_family(Family::of(prefix.addr()))
    }

    /// The address family.
    pub fn family(self) -> Family {
        match self {
            AfiSafi::Ipv4Unicast => Family::V4,
            AfiSafi::Ipv6Unicast => Family::V6,
        }
    }
}

/// A configured neighbour of a [`RouterSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's AS (equal to the local AS: iBGP).
    pub remote_asn: u32,
    /// Families negotiated on the session.
    pub families: Vec<AfiSafi>,
    /// Wait for the peer to connect; never connect out.
    pub passive: bool,
    /// eBGP multihop TTL.
    pub multihop: Option<u8>,
    /// TCP MD5 signature password (RFC 2385).
    pub password: Option<String>,
    /// Reflect iBGP routes to this peer (RFC 4456).
    pub route_reflector_client: bool,
    /// Advertise the extended next hop capability (RFC 8950: IPv4 NLRI with IPv6 next hops).
    pub extended_next_hop: bool,
    /// Source address of the session; by default the spec's first listen address of the peer's family.
    pub local_address: Option<IpAddr>,
}

impl Neighbor {
    /// A neighbour carrying the unicast family of its address.
    pub fn new(address: IpAddr, remote_asn: u32) -> Self {
        Neighbor {
            address,
            remote_asn,
            families: vec![AfiSafi::of_family(Family::of(address))],
            passive: false,
            multihop: None,
            password: None,
            route_reflector_client: false,
            extended_next_hop: false,
            local_address: None,
        }
    }

    /// Sets the families carried on the session.
    pub fn families(mut self, families: &[AfiSafi]) -> Self {
        self.families = families.to_vec();
        self
    }

    /// Makes the session passive.
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// Allows an eBGP peer `ttl` hops away.
    pub fn multihop(mut self, ttl: u8) -> Self {
        self.multihop = Some(ttl);
        self
    }

    /// Sets a TCP MD5 password.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Marks the peer a route-reflector client.
    pub fn route_reflector_client(mut self) -> Self {
        self.route_reflector_client = true;
        self
    }

    /// Advertises the extended next hop capability.
    pub fn extended_next_hop(mut self) -> Self {
        self.extended_next_hop = true;
        self
    }

    /// Sets the session's source address.
    pub fn local_address(mut self, addr: IpAddr) -> Self {
        self.local_address = Some(addr);
        self
    }

    /// Whether the session is iBGP for a speaker in `local_asn`.
    pub fn is_ibgp(&self, local_asn: u32) -> bool {
        self.remote_asn == local_asn
    }
}

/// One BGP speaker, independent of the daemon that runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterSpec {
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Local AS.
    pub asn: u32,
    /// Addresses to listen on (and to source sessions from); empty: all.
    pub listen: Vec<IpAddr>,
    /// Neighbours.
    pub neighbors: Vec<Neighbor>,
    /// Prefixes originated by this speaker (static routes announced to every neighbour of their family).
    pub announce: Vec<IpNet>,
}

impl RouterSpec {
    /// A speaker with no neighbours.
    pub fn new(router_id: Ipv4Addr, asn: u32) -> Self {
        RouterSpec {
            router_id,
            asn,
            listen: Vec::new(),
            neighbors: Vec::new(),
            announce: Vec::new(),
        }
    }

    /// Adds a listen address.
    pub fn listen(mut self, addr: IpAddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Adds a neighbour.
    pub fn neighbor(mut self, neighbor: Neighbor) -> Self {
        self.neighbors.push(neighbor);
        self
    }

    /// Adds a prefix to originate.
    pub fn announce(mut self, prefix: IpNet) -> Self {
        self.announce.push(prefix.trunc());
        self
    }

    /// The source address of the session with `n`.
    pub fn local_address_for(&self, n: &Neighbor) -> Option<IpAddr> {
        n.local_address.or_else(|| {
            self.listen
                .iter()
                .copied()
                .find(|a| a.is_ipv6() == n.address.is_ipv6())
        })
    }

    /// Originated prefixes of `afi`.
    pub fn announced(&self, afi: AfiSafi) -> impl Iterator<Item = &IpNet> {
        self.announce
            .iter()
            .filter(move |p| AfiSafi::of_prefix(p) == afi)
    }
}

/// Observing a running BGP daemon through its own CLI.
pub trait BgpSpeaker {
    /// Which daemon (for messages).
    fn kind(&self) -> &'static str;
    /// The namespace it runs in.
    fn netns(&self) -> &str;
    /// Its PID (owned by the guard).
    fn pid(&self) -> u32;
    /// Whether the session with `neighbor` is Established.
    fn session_established(&self, neighbor: IpAddr) -> Result<bool>;
    /// The prefixes in its RIB for `afi` (originated and learned).
    fn rib(&self, afi: AfiSafi) -> Result<Vec<IpNet>>;

    /// Waits until the session with `neighbor` is Established.
    fn wait_established(&self, neighbor: IpAddr, timeout: Duration) -> Result<()> {
        let mut last = None;
        wait_until(
            &format!(
                "{} in {}: session with {neighbor} Established",
                self.kind(),
                self.netns()
            ),
            timeout,
            Duration::from_millis(200),
            || match self.session_established(neighbor) {
                Ok(up) => up,
                Err(e) => {
                    last = Some(e);
                    false
                }
            },
        )
        .map_err(|e| with_last_error(e, last))
    }

    /// Waits until `prefix` is in its RIB.
    fn wait_route(&self, prefix: IpNet, timeout: Duration) -> Result<()> {
        let afi = AfiSafi::of_prefix(&prefix);
        let mut last = None;
        wait_until(
            &format!("{} in {}: {prefix} in the RIB", self.kind(), self.netns()),
            timeout,
            Duration::from_millis(200),
            || match self.rib(afi) {
                Ok(rib) => rib.contains(&prefix),
                Err(e) => {
                    last = Some(e);
                    false
                }
            },
        )
        .map_err(|e| with_last_error(e, last))
    }
}

/// A timeout that also says what the last failing query said.
fn with_last_error(timeout: HarnessError, last: Option<HarnessError>) -> HarnessError {
    match (timeout, last) {
        (HarnessError::Timeout { what, timeout }, Some(last)) => HarnessError::Timeout {
            what: format!("{what} (last query error: {last})"),
            timeout,
        },
        (e, _) => e,
    }
}

/// Parses a prefix printed by a daemon's CLI.
fn parse_prefix(what: &str, s: &str) -> Result<IpNet> {
    s.parse::<IpNet>().map_err(|e| HarnessError::Parse {
        what: what.to_owned(),
        detail: format!("prefix {s:?}: {e}"),
    })
}
