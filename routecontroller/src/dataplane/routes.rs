//! Kernel routes of fairlead's own protocol number: read back, diff against the desired routes, apply only the diff.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::Handle;

use crate::model::{KernelNextHop, KernelRoute};

/// The route protocol number (`rtm_protocol`, `ip route ... proto 44`) that marks a kernel route as fairlead's.
///
/// 44 is free in the kernel's list (`include/uapi/linux/rtnetlink.h`: 0-4 unspec/redirect/kernel/boot/static,
/// 8-18 gated..keepalived, 42 babel, 99 openr, 186-192 bgp/isis/ospf/rip/eigrp) and in iproute2's
/// `rt_protos` (same names), and clear of the numbers FRR adds (191 nhrp, 193-198 ldp..srte) and of the daemons
/// the `fairlead` may share a node with (BIRD 12, zebra 11, keepalived 18, Calico's 80). Everything fairlead
/// deletes carries this number, so it never removes a route it did not create; admins can name it with
/// `echo "44 fairlead" >> /etc/iproute2/rt_protos`.
pub const ROUTE_PROTOCOL: u8 = 44;

/// The kernel's default IPv6 route metric (`IP6_RT_PRIO_USER`): an IPv6 route asked for with metric 0 gets it.
const IPV6_DEFAULT_METRIC: u32 = 1024;

/// errno values a delete of an already absent route yields (IPv4 and IPv6 answer ESRCH; ENOENT for a missing table).
const ESRCH: i32 = 3;
const ENOENT: i32 = 2;

/// Where and how the routes are installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDataplaneConfig {
    /// Routing table (`RT_TABLE_MAIN` = 254 by default).
    pub table: u32,
    /// Route metric (`ip route ... metric N`); 0 means the kernel default (0 for IPv4, 1024 for IPv6).
    pub metric: u32,
    /// How many netlink requests are in flight before the first answer is awaited (pipelining; >= 1).
    pub max_in_flight: usize,
}

impl Default for RouteDataplaneConfig {
    fn default() -> Self {
        Self {
            table: u32::from(RouteHeader::RT_TABLE_MAIN),
            metric: 0,
            max_in_flight: 256,
        }
    }
}

impl RouteDataplaneConfig {
    /// The metric the kernel reports for a route of `family` installed by this config.
    fn effective_metric(&self, prefix: &IpNet) -> u32 {
        match prefix {
            IpNet::V6(_) if self.metric == 0 => IPV6_DEFAULT_METRIC,
            _ => self.metric,
        }
    }
}

/// A route of fairlead's protocol as read back from the kernel: the model's route and its metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledRoute {
    /// Prefix and next hops.
    pub route: KernelRoute,
    /// `RTA_PRIORITY` as the kernel reports it.
    pub metric: u32,
}

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// `ip route add` (create, exclusive: a foreign route at the same prefix and metric is never overwritten).
    Add(KernelRoute),
    /// `ip route replace` of our own route whose next hops changed (atomic, no gap).
    Replace(KernelRoute),
    /// `ip route del ... proto 44 metric M` of our route that is no longer wanted (or has a stale metric).
    Delete(InstalledRoute),
}

impl RouteOp {
    /// The prefix the op is about.
    pub fn prefix(&self) -> IpNet {
        match self {
            RouteOp::Add(r) | RouteOp::Replace(r) => r.prefix,
            RouteOp::Delete(i) => i.route.prefix,
        }
    }
}

/// A route the kernel refused (the others were still applied).
#[derive(Debug, thiserror::Error)]
#[error("{op:?} {prefix}: {source}")]
pub struct RouteError {
    /// The route's prefix.
    pub prefix: IpNet,
    /// What was attempted.
    pub op: &'static str,
    /// The kernel's (or the request's) error.
    #[source]
    pub source: RouteDataplaneError,
}

/// What [`RouteDataplane::apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Routes created.
    pub added: usize,
    /// Routes whose next hops were replaced.
    pub replaced: usize,
    /// Routes deleted (including ones already gone).
    pub deleted: usize,
    /// Routes that failed, each with its error.
    pub errors: Vec<RouteError>,
}

/// Errors of the route dataplane.
#[derive(Debug, thiserror::Error)]
pub enum RouteDataplaneError {
    /// A netlink request failed (the kernel's errno is inside for NACKs).
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// A route the kernel cannot take (an IPv6 route with an IPv4 next hop, no next hop).
    #[error("invalid route {prefix}: {reason}")]
    InvalidRoute {
        /// The route's prefix.
        prefix: IpNet,
        /// Why.
        reason: &'static str,
    },
}

/// The kernel routes of protocol [`ROUTE_PROTOCOL`] in one table, both families.
#[derive(Clone, Debug)]
pub struct RouteDataplane {
    handle: Handle,
    config: RouteDataplaneConfig,
}

impl RouteDataplane {
    /// A dataplane on `handle` (whose socket's network namespace is the one changed). Creating it changes nothing:
    /// the routes of a previous run stay until [`apply`](Self::apply) diffs against them.
    pub fn new(handle: Handle, config: RouteDataplaneConfig) -> Self {
        Self { handle, config }
    }

    /// Its configuration.
    pub fn config(&self) -> &RouteDataplaneConfig {
        &self.config
    }

    /// Every route of fairlead's protocol in the configured table (IPv4 then IPv6), sorted by prefix.
    pub async fn read_back(&self) -> Result<Vec<KernelRoute>, RouteDataplaneError> {
        let mut routes: Vec<KernelRoute> = self
            .read_back_installed()
            .await?
            .into_iter()
            .map(|i| i.route)
            .collect();
        routes.sort_by_key(|r| r.prefix);
        Ok(routes)
    }

    /// Like [`read_back`](Self::read_back), with each route's metric.
    pub async fn read_back_installed(&self) -> Result<Vec<InstalledRoute>, RouteDataplaneError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            let mut dump = self.handle.route().get(query).execute();
            while let Some(msg) = dump.try_next().await? {
                if msg.header.protocol != RouteProtocol::from(ROUTE_PROTOCOL)
                    || table_of(&msg) != self.config.table
                    || msg.header.kind != RouteType::Unicast
                {
                    continue;
                }
                if let Some(installed) = parse_route(&msg) {
                    out.push(installed);
                }
            }
        }
        Ok(out)
    }

    /// Makes the kernel hold exactly `desired` (of our protocol, in our table): reads back, diffs, and applies only
    /// the difference, pipelined. Routes of other protocols are never touched. A route the kernel refuses is
    /// reported in [`ApplyReport::errors`] and does not stop the others; `Err` only when the read-back fails.
    pub async fn apply(&self, desired: &[KernelRoute]) -> Result<ApplyReport, RouteDataplaneError> {
        let current = self.read_back_installed().await?;
        let ops = diff_routes(&current, desired, &self.config);
        Ok(self.execute(ops).await)
    }

    /// Applies `ops` in order (creations and replacements before deletions, as [`diff_routes`] sorts them),
    /// keeping up to `max_in_flight` requests outstanding.
    pub async fn execute(&self, ops: Vec<RouteOp>) -> ApplyReport {
        let results: Vec<(RouteOp, Result<(), RouteDataplaneError>)> = futures::stream::iter(ops)
            .map(|op| async move {
                let res = self.execute_one(&op).await;
                (op, res)
            })
            .buffered(self.config.max_in_flight.max(1))
            .collect()
            .await;
        let mut report = ApplyReport::default();
        for (op, res) in results {
            match (res, &op) {
                (Ok(()), RouteOp::Add(_)) => report.added += 1,
                (Ok(()), RouteOp::Replace(_)) => report.replaced += 1,
                (Ok(()), RouteOp::Delete(_)) => report.deleted += 1,
                (Err(source), _) => {
                    tracing::warn!(prefix = %op.prefix(), error = %source, "kernel route change failed");
                    report.errors.push(RouteError {
                        prefix: op.prefix(),
                        op: match op {
                            RouteOp::Add(_) => "add",
                            RouteOp::Replace(_) => "replace",
                            RouteOp::Delete(_) => "delete",
                        },
                        source,
                    });
                }
            }
        }
        report
    }

    async fn execute_one(&self, op: &RouteOp) -> Result<(), RouteDataplaneError> {
        let (payload, flags) = match op {
            RouteOp::Add(route) => (
                RouteNetlinkMessage::NewRoute(route_message(&self.config, route)?),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
            RouteOp::Replace(route) => (
                RouteNetlinkMessage::NewRoute(route_message(&self.config, route)?),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            RouteOp::Delete(installed) => (
                RouteNetlinkMessage::DelRoute(key_message(
                    &self.config,
                    &installed.route.prefix,
                    installed.metric,
                )),
                0,
            ),
        };
        let mut req = NetlinkMessage::from(payload);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut answers = handle.request(req)?;
        while let Some(msg) = answers.next().await {
            if let NetlinkPayload::Error(e) = msg.payload {
                let err = rtnetlink::Error::NetlinkError(e);
                // A route that is already gone is what a delete wanted.
                if matches!(op, RouteOp::Delete(_))
                    && matches!(super::errno(&err), Some(ESRCH | ENOENT))
                {
                    return Ok(());
                }
                return Err(err.into());
            }
        }
        Ok(())
    }
}

/// The header and key attributes (destination, table, metric) of a route of ours.
fn key_message(config: &RouteDataplaneConfig, prefix: &IpNet, metric: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match prefix {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = prefix.prefix_len();
    msg.header.table = u8::try_from(config.table)
        .ok()
        .filter(|t| *t != 0)
        .unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes.push(RouteAttribute::Table(config.table));
    if prefix.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                prefix.network(),
            )));
    }
    msg.attributes.push(RouteAttribute::Priority(metric));
    msg
}

/// The full `RTM_NEWROUTE` message for `route`.
fn route_message(
    config: &RouteDataplaneConfig,
    route: &KernelRoute,
) -> Result<RouteMessage, RouteDataplaneError> {
    let invalid = |reason| RouteDataplaneError::InvalidRoute {
        prefix: route.prefix,
        reason,
    };
    let v6_route = matches!(route.prefix, IpNet::V6(_));
    for hop in &route.next_hops {
        match hop {
            KernelNextHop::Gateway(IpAddr::V4(_)) if v6_route => {
                return Err(invalid("an IPv6 route never takes an IPv4 next hop"));
            }
            KernelNextHop::ViaInet6(_) if v6_route => {
                return Err(invalid("`via inet6` is for IPv4 routes"));
            }
            KernelNextHop::Gateway(IpAddr::V6(_)) if !v6_route => {
                return Err(invalid(
                    "an IPv6 next hop of an IPv4 route goes as `via inet6`",
                ));
            }
            _ => {}
        }
    }
    let mut msg = key_message(config, &route.prefix, config.metric);
    match route.next_hops.as_slice() {
        [] => return Err(invalid("no next hop")),
        [one] => msg.attributes.push(next_hop_attribute(one)),
        many => msg.attributes.push(RouteAttribute::MultiPath(
            many.iter()
                .map(|hop| {
                    let mut nh = RouteNextHop::default();
                    nh.attributes.push(next_hop_attribute(hop));
                    nh
                })
                .collect(),
        )),
    }
    Ok(msg)
}

fn next_hop_attribute(hop: &KernelNextHop) -> RouteAttribute {
    match hop {
        KernelNextHop::Gateway(ip) => RouteAttribute::Gateway(RouteAddress::from(*ip)),
        KernelNextHop::ViaInet6(v6) => RouteAttribute::Via(RouteVia::Inet6(*v6)),
    }
}

fn table_of(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

fn address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The next hops named by `attrs` (a route's or one multipath entry's).
fn hops_of(attrs: &[RouteAttribute], out: &mut Vec<KernelNextHop>) {
    for attr in attrs {
        match attr {
            RouteAttribute::Gateway(a) => {
                if let Some(ip) = address(a) {
                    out.push(KernelNextHop::Gateway(ip));
                }
            }
            RouteAttribute::Via(RouteVia::Inet6(v6)) => out.push(KernelNextHop::ViaInet6(*v6)),
            RouteAttribute::Via(RouteVia::Inet(v4)) => {
                out.push(KernelNextHop::Gateway(IpAddr::V4(*v4)));
            }
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    hops_of(&hop.attributes, out);
                }
            }
            _ => {}
        }
    }
}

/// A dumped route message -> the model's route; `None` for what fairlead never installs (no gateway).
fn parse_route(msg: &RouteMessage) -> Option<InstalledRoute> {
    let len = msg.header.destination_prefix_length;
    let dest = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => address(d),
        _ => None,
    });
    let addr = match (msg.header.address_family, dest) {
        (_, Some(ip)) => ip,
        (AddressFamily::Inet, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (AddressFamily::Inet6, None) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let prefix = IpNet::new(addr, len).ok()?.trunc();
    let metric = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0);
    let mut next_hops = Vec::new();
    hops_of(&msg.attributes, &mut next_hops);
    next_hops.sort();
    next_hops.dedup();
    if next_hops.is_empty() {
        return None;
    }
    Some(InstalledRoute {
        route: KernelRoute { prefix, next_hops },
        metric,
    })
}

/// The ops that turn `current` (our routes as read back) into `desired` under `config`'s metric: a desired route
/// absent at that metric is added, one present with other next hops replaced, ours not desired (or at another
/// metric, e.g. after a config change) deleted. Creations and replacements come first, deletions last, so a route
/// moving metric is never absent. Pure: a full resync is this with what the kernel holds.
pub fn diff_routes(
    current: &[InstalledRoute],
    desired: &[KernelRoute],
    config: &RouteDataplaneConfig,
) -> Vec<RouteOp> {
    // (prefix, metric) -> next hops; later duplicates of a key are stale copies to delete.
    let mut have: BTreeMap<(IpNet, u32), &InstalledRoute> = BTreeMap::new();
    let mut deletes = Vec::new();
    for c in current {
        let key = (c.route.prefix, c.metric);
        if have.insert(key, c).is_some() {
            deletes.push(RouteOp::Delete(c.clone()));
        }
    }
    let mut ops = Vec::new();
    let mut wanted: BTreeMap<(IpNet, u32), ()> = BTreeMap::new();
    for d in desired {
        let mut route = d.clone();
        route.prefix = route.prefix.trunc();
        route.next_hops.sort();
        route.next_hops.dedup();
        let key = (route.prefix, config.effective_metric(&route.prefix));
        if wanted.insert(key, ()).is_some() {
            continue;
        }
        match have.get(&key) {
            Some(c) if c.route.next_hops == route.next_hops => {}
            Some(_) => ops.push(RouteOp::Replace(route)),
            None => ops.push(RouteOp::Add(route)),
        }
    }
    for (key, c) in &have {
        if !wanted.contains_key(key) {
            deletes.push(RouteOp::Delete((*c).clone()));
        }
    }
    ops.extend(deletes);
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, hops: &[&str]) -> KernelRoute {
        let prefix: IpNet = prefix.parse().unwrap();
        KernelRoute {
            prefix,
            next_hops: hops
                .iter()
                .map(|h| {
                    let ip: IpAddr = h.parse().unwrap();
                    match (prefix, ip) {
                        (IpNet::V4(_), IpAddr::V6(v6)) => KernelNextHop::ViaInet6(v6),
                        _ => KernelNextHop::Gateway(ip),
                    }
                })
                .collect(),
        }
    }

    fn installed(r: KernelRoute, metric: u32) -> InstalledRoute {
        InstalledRoute { route: r, metric }
    }

    #[test]
    fn diff_adds_replaces_deletes_and_keeps() {
        let cfg = RouteDataplaneConfig::default();
        let current = vec![
            installed(route("198.18.10.0/24", &["198.18.0.2"]), 0),
            installed(route("198.18.11.0/24", &["198.18.0.2"]), 0),
            installed(route("fd00:10:1::/64", &["fd00::2"]), 1024),
        ];
        let desired = vec![
            route("198.18.10.0/24", &["198.18.0.2"]),
            route("198.18.11.0/24", &["198.18.0.3", "fd00::3"]),
            route("fd00:10:2::/64", &["fd00::2"]),
        ];
        let ops = diff_routes(&current, &desired, &cfg);
        assert_eq!(
            ops,
            vec![
                RouteOp::Replace(route("198.18.11.0/24", &["198.18.0.3", "fd00::3"])),
                RouteOp::Add(route("fd00:10:2::/64", &["fd00::2"])),
                RouteOp::Delete(installed(route("fd00:10:1::/64", &["fd00::2"]), 1024)),
            ]
        );
    }

    #[test]
    fn diff_of_equal_states_is_empty_and_next_hop_order_does_not_matter() {
        let cfg = RouteDataplaneConfig::default();
        let mut desired = route("fd00:10:1::/64", &["fd00::3", "fd00::2"]);
        let current = vec![installed(
            route("fd00:10:1::/64", &["fd00::2", "fd00::3"]),
            1024,
        )];
        assert!(diff_routes(&current, std::slice::from_ref(&desired), &cfg).is_empty());
        desired.prefix = "fd00:10:1::1/64".parse().unwrap();
        assert!(
            diff_routes(&current, &[desired], &cfg).is_empty(),
            "host bits are ignored"
        );
    }

    #[test]
    fn metric_change_adds_before_deleting() {
        let cfg = RouteDataplaneConfig {
            metric: 20,
            ..Default::default()
        };
        let current = vec![installed(route("198.18.10.0/24", &["198.18.0.2"]), 0)];
        let desired = vec![route("198.18.10.0/24", &["198.18.0.2"])];
        assert_eq!(
            diff_routes(&current, &desired, &cfg),
            vec![
                RouteOp::Add(desired[0].clone()),
                RouteOp::Delete(current[0].clone()),
            ]
        );
    }

    #[test]
    fn invalid_families_are_refused_before_the_kernel() {
        let cfg = RouteDataplaneConfig::default();
        let bad = KernelRoute {
            prefix: "fd00:10::/64".parse().unwrap(),
            next_hops: vec![KernelNextHop::Gateway("198.18.0.1".parse().unwrap())],
        };
        assert!(matches!(
            route_message(&cfg, &bad),
            Err(RouteDataplaneError::InvalidRoute { .. })
        ));
        let bad = KernelRoute {
            prefix: "fd00:10::/64".parse().unwrap(),
            next_hops: vec![KernelNextHop::ViaInet6("fd00::1".parse().unwrap())],
        };
        assert!(route_message(&cfg, &bad).is_err());
        let empty = KernelRoute {
            prefix: "198.18.1.0/24".parse().unwrap(),
            next_hops: vec![],
        };
        assert!(route_message(&cfg, &empty).is_err());
    }

    #[test]
    fn messages_round_trip_through_the_parser() {
        let cfg = RouteDataplaneConfig::default();
        for r in [
            route("198.18.1.0/24", &["198.18.0.2"]),
            route("198.18.1.0/24", &["198.18.0.2", "fd00::2"]),
            route("198.18.1.0/24", &["fd00::2"]),
            route("fd00:10::/64", &["fd00::2", "fd00::3"]),
            route("::/0", &["fd00::2"]),
        ] {
            let msg = route_message(&cfg, &r).unwrap();
            assert_eq!(parse_route(&msg).unwrap().route, r);
            assert_eq!(table_of(&msg), 254);
            assert_eq!(msg.header.protocol, RouteProtocol::Other(ROUTE_PROTOCOL));
        }
    }
}
