//! Recursive next-hop resolution: a BGP next hop that is not on a connected subnet (a node on another segment)
//! is replaced by the gateway of the kernel's route towards it, because the kernel only takes on-link gateways.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};

use crate::dataplane::ROUTE_PROTOCOL;

/// What resolution needs from the kernel: connected subnets, and the other daemons' / admin's gateway routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelView {
    /// Subnets of the node's own addresses (on-link).
    pub connected: Vec<IpNet>,
    /// Main-table unicast routes with a single gateway, not fairlead's own: (destination, gateway).
    pub gateways: Vec<(IpNet, IpAddr)>,
}

/// The on-link gateway to use for `next_hop`: itself when on-link (or when nothing better is known), else the
/// gateway of the longest matching route that reaches it (one level: that gateway must itself be on-link).
pub fn resolve(next_hop: IpAddr, view: &KernelView) -> IpAddr {
    if view.connected.iter().any(|n| n.contains(&next_hop)) {
        return next_hop;
    }
    view.gateways
        .iter()
        .filter(|(dst, gw)| {
            dst.contains(&next_hop)
                && gw.is_ipv6() == next_hop.is_ipv6()
                && view.connected.iter().any(|n| n.contains(gw))
        })
        .max_by_key(|(dst, _)| dst.prefix_len())
        .map_or(next_hop, |(_, gw)| *gw)
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Reads the connected subnets and the gateway routes of the main table.
pub async fn read_kernel_view(handle: &rtnetlink::Handle) -> Result<KernelView, rtnetlink::Error> {
    let mut view = KernelView::default();
    let mut addrs = handle.address().get().execute();
    while let Some(msg) = addrs.try_next().await? {
        for a in &msg.attributes {
            if let AddressAttribute::Address(ip) = a
                && let Ok(net) = IpNet::new(*ip, msg.header.prefix_len)
            {
                view.connected.push(net.trunc());
            }
        }
    }
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        let mut dump = handle.route().get(query).execute();
        while let Some(msg) = dump.try_next().await? {
            if msg.header.protocol == RouteProtocol::from(ROUTE_PROTOCOL)
                || msg.header.kind != RouteType::Unicast
                || msg.header.table != RouteHeader::RT_TABLE_MAIN
            {
                continue;
            }
            let gw = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => address(g),
                _ => None,
            });
            let dst = msg
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Destination(d) => address(d),
                    _ => None,
                })
                .or(match family {
                    AddressFamily::Inet => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                    _ => Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
                });
            if let (Some(gw), Some(dst)) = (gw, dst)
                && let Ok(net) = IpNet::new(dst, msg.header.destination_prefix_length)
            {
                view.gateways.push((net.trunc(), gw));
            }
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> KernelView {
        KernelView {
            connected: vec![
                "fd00:0:0:1::/64".parse().unwrap(),
                "198.18.1.0/24".parse().unwrap(),
            ],
            gateways: vec![
                (
                    "fd00:0:0:2::/64".parse().unwrap(),
                    "fd00:0:0:1::201".parse().unwrap(),
                ),
                (
                    "198.18.2.0/24".parse().unwrap(),
                    "198.18.1.201".parse().unwrap(),
                ),
                (
                    "0.0.0.0/0".parse().unwrap(),
                    "198.18.1.254".parse().unwrap(),
                ),
                // A gateway that is not on-link itself is never used.
                (
                    "fd00:0:0:3::/64".parse().unwrap(),
                    "fd00:0:0:2::9".parse().unwrap(),
                ),
            ],
        }
    }

    #[test]
    fn an_on_link_next_hop_is_kept() {
        let nh: IpAddr = "fd00:0:0:1::3".parse().unwrap();
        assert_eq!(resolve(nh, &view()), nh);
    }

    #[test]
    fn an_off_link_next_hop_takes_the_longest_matching_gateway() {
        let v = view();
        assert_eq!(
            resolve("fd00:0:0:2::3".parse().unwrap(), &v),
            "fd00:0:0:1::201".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolve("198.18.2.3".parse().unwrap(), &v),
            "198.18.1.201".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            resolve("198.18.7.3".parse().unwrap(), &v),
            "198.18.1.254".parse::<IpAddr>().unwrap(),
            "the default route"
        );
    }

    #[test]
    fn an_unresolvable_next_hop_is_left_for_the_kernel_to_refuse() {
        let nh: IpAddr = "fd00:0:0:3::3".parse().unwrap();
        assert_eq!(resolve(nh, &view()), nh);
        let nh: IpAddr = "fd00:0:0:9::3".parse().unwrap();
        assert_eq!(resolve(nh, &view()), nh);
    }
}
