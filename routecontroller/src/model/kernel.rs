//! BGP best paths -> desired kernel routes, with the family rules for next hops.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::types::IpFamily;
use super::warning::ModelWarning;

/// A best path as the BGP speaker reports it: one prefix and its (multipath) next hops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestPath {
    /// The destination.
    pub prefix: IpNet,
    /// Next hops of the best (and equal-cost) paths.
    pub next_hops: Vec<IpAddr>,
}

/// A kernel next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelNextHop {
    /// `via ADDR` of the route's own family (RTA_GATEWAY).
    Gateway(IpAddr),
    /// `via inet6 ADDR` for an IPv4 route (RTA_VIA, RFC 8950).
    ViaInet6(Ipv6Addr),
}

/// A route fairlead wants in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    /// The destination.
    pub prefix: IpNet,
    /// One next hop, or several for ECMP; sorted, no duplicates.
    pub next_hops: Vec<KernelNextHop>,
}

/// The result of [`desired_kernel_routes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelRoutes {
    /// Routes sorted by prefix.
    pub routes: Vec<KernelRoute>,
    /// Paths (or next hops) that were dropped, and why.
    pub warnings: Vec<ModelWarning>,
}

/// Computes the kernel routes for `best_paths`.
///
/// Rules: prefixes inside the local node's pod CIDRs are skipped (the bridge serves them); an IPv4 route takes an
/// IPv4 gateway or an IPv6 one as `via inet6` (RFC 8950); an IPv6 route never takes an IPv4 next hop;
/// IPv4-mapped IPv6 next hops (`::ffff:a.b.c.d`) count as IPv4; unspecified, loopback, multicast, link-local
/// (no interface is known here) and the node's own addresses are never next hops.
pub fn desired_kernel_routes(
    best_paths: &[BestPath],
    local_pod_cidrs: &[IpNet],
    local_addresses: &[IpAddr],
) -> KernelRoutes {
    let mut out = KernelRoutes::default();
    for path in best_paths {
        let prefix = path.prefix.trunc();
        if local_pod_cidrs.iter().any(|own| own.contains(&prefix)) {
            continue;
        }
        let family = IpFamily::of_net(&prefix);
        let mut hops: Vec<KernelNextHop> = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        for raw in &path.next_hops {
            let nh = normalize(*raw);
            if let Err(why) = usable(&nh, local_addresses) {
                dropped.push(format!("{raw}: {why}"));
                continue;
            }
            let hop = match (family, nh) {
                (IpFamily::Ipv4, IpAddr::V4(_)) | (IpFamily::Ipv6, IpAddr::V6(_)) => {
                    KernelNextHop::Gateway(nh)
                }
                (IpFamily::Ipv4, IpAddr::V6(v6)) => KernelNextHop::ViaInet6(v6),
                (IpFamily::Ipv6, IpAddr::V4(_)) => {
                    dropped.push(format!("{raw}: an IPv6 route never takes an IPv4 next hop"));
                    continue;
                }
            };
            if !hops.contains(&hop) {
                hops.push(hop);
            }
        }
        hops.sort();
        if hops.is_empty() {
            out.warnings.push(ModelWarning::UnusableRoute {
                prefix,
                reason: if dropped.is_empty() {
                    "no next hop".into()
                } else {
                    dropped.join("; ")
                },
            });
            continue;
        }
        match out.routes.iter_mut().find(|r| r.prefix == prefix) {
            // The same prefix twice in the input: merge into one ECMP route.
            Some(r) => {
                for h in hops {
                    if !r.next_hops.contains(&h) {
                        r.next_hops.push(h);
                    }
                }
                r.next_hops.sort();
            }
            None => out.routes.push(KernelRoute {
                prefix,
                next_hops: hops,
            }),
        }
    }
    out.routes.sort_by_key(|r| r.prefix);
    out
}

fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn usable(ip: &IpAddr, local_addresses: &[IpAddr]) -> Result<(), &'static str> {
    if ip.is_unspecified() {
        return Err("unspecified address");
    }
    if ip.is_loopback() {
        return Err("loopback address");
    }
    if ip.is_multicast() {
        return Err("multicast address");
    }
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => return Err("broadcast address"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            return Err("link-local next hop without an interface");
        }
        _ => {}
    }
    if local_addresses.contains(ip) {
        return Err("one of this node's own addresses");
    }
    Ok(())
}
