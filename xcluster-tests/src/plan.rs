//! Address plans: which families a topology uses, which is primary, and the numbering of every address.
//!
//! | what | IPv6 | IPv4 |
//! |---|---|---|
//! | segment `s` subnet | `fd00:0:0:s::/64` | `198.18.s.0/24` |
//! | host `h` on segment `s` (node `i`: h = i; router `r`: h = 200 + r) | `fd00:0:0:s::h/64` | `198.18.s.h/24` |
//! | cluster pod CIDR | `fd00:10:244::/56` | `198.19.0.0/16` |
//! | pod CIDR of node `i` | `fd00:10:244:i::/64` | `198.19.i.0/24` |
//! | service CIDR | `fd00:10:96::/112` | `198.18.240.0/20` |
//! | free for tests to announce over BGP | `fd00:99::/32` | `198.18.160.0/19` |
//!
//! Segment and host numbers are decimal digits in IPv4 and the same digits read as hex in IPv6 (`node12` is
//! `fd00:0:0:1::12`), so the two families of one host are easy to match by eye.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv6.
    V6,
    /// IPv4.
    V4,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Family {
        if addr.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }
}

/// The four address plans every address-bearing test runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressPlan {
    /// IPv6 only.
    Ipv6Only,
    /// Both families, IPv6 first in every list.
    DualStackV6Primary,
    /// Both families, IPv4 first in every list.
    DualStackV4Primary,
    /// IPv4 only.
    Ipv4Only,
}

/// Offset of router host numbers on a segment (router `r` is host `200 + r`).
pub const ROUTER_HOST_BASE: u8 = 200;

/// Segment and host numbers as hex digits that read like the decimal number (12 -> 0x12).
fn decimal_as_hex(n: u8) -> u16 {
    let s = n.to_string();
    u16::from_str_radix(&s, 16).unwrap_or(u16::from(n))
}

impl AddressPlan {
    /// All four plans.
    pub const ALL: [AddressPlan; 4] = [
        AddressPlan::Ipv6Only,
        AddressPlan::DualStackV6Primary,
        AddressPlan::DualStackV4Primary,
        AddressPlan::Ipv4Only,
    ];

    /// The plan's families, primary first.
    pub fn families(self) -> &'static [Family] {
        match self {
            AddressPlan::Ipv6Only => &[Family::V6],
            AddressPlan::DualStackV6Primary => &[Family::V6, Family::V4],
            AddressPlan::DualStackV4Primary => &[Family::V4, Family::V6],
            AddressPlan::Ipv4Only => &[Family::V4],
        }
    }

    /// The primary family (first in every list).
    pub fn primary(self) -> Family {
        self.families()[0]
    }

    /// Whether the plan uses `family`.
    pub fn has(self, family: Family) -> bool {
        self.families().contains(&family)
    }

    /// A short tag for names (`v6`, `ds6`, `ds4`, `v4`).
    pub fn tag(self) -> &'static str {
        match self {
            AddressPlan::Ipv6Only => "v6",
            AddressPlan::DualStackV6Primary => "ds6",
            AddressPlan::DualStackV4Primary => "ds4",
            AddressPlan::Ipv4Only => "v4",
        }
    }

    /// Subnets of segment `segment`, primary first.
    pub fn segment_subnets(self, segment: u8) -> Vec<IpNet> {
        self.families()
            .iter()
            .map(|&f| segment_subnet(segment, f))
            .collect()
    }

    /// Addresses (with the segment's prefix length) of host `host` on `segment`, primary first.
    pub fn host_addresses(self, segment: u8, host: u8) -> Vec<IpNet> {
        self.families()
            .iter()
            .map(|&f| host_address(segment, host, f))
            .collect()
    }

    /// Pod CIDRs of node `node` (1-based), primary first: what `node.spec.podCIDRs` would hold.
    pub fn pod_cidrs(self, node: u8) -> Vec<IpNet> {
        self.families().iter().map(|&f| pod_cidr(node, f)).collect()
    }

    /// Cluster pod CIDRs, primary first.
    pub fn cluster_cidrs(self) -> Vec<IpNet> {
        self.families().iter().map(|&f| cluster_cidr(f)).collect()
    }

    /// Service CIDRs, primary first.
    pub fn service_cidrs(self) -> Vec<IpNet> {
        self.families().iter().map(|&f| service_cidr(f)).collect()
    }
}

fn net(addr: IpAddr, len: u8) -> IpNet {
    // Every length used in this module is valid for its family.
    IpNet::new(addr, len).unwrap_or_else(|_| IpNet::from(addr))
}

/// The subnet of `segment` in `family`.
pub fn segment_subnet(segment: u8, family: Family) -> IpNet {
    host_address(segment, 0, family).trunc()
}

/// Host `host`'s address on `segment` in `family`, with the segment's prefix length.
pub fn host_address(segment: u8, host: u8, family: Family) -> IpNet {
    match family {
        Family::V6 => net(
            Ipv6Addr::new(
                0xfd00,
                0,
                0,
                decimal_as_hex(segment),
                0,
                0,
                0,
                decimal_as_hex(host),
            )
            .into(),
            64,
        ),
        Family::V4 => net(Ipv4Addr::new(198, 18, segment, host).into(), 24),
    }
}

/// The pod CIDR of node `node` in `family`.
pub fn pod_cidr(node: u8, family: Family) -> IpNet {
    match family {
        Family::V6 => net(
            Ipv6Addr::new(0xfd00, 0x10, 0x244, decimal_as_hex(node), 0, 0, 0, 0).into(),
            64,
        ),
        Family::V4 => net(Ipv4Addr::new(198, 19, node, 0).into(), 24),
    }
}

/// The cluster pod CIDR in `family`.
pub fn cluster_cidr(family: Family) -> IpNet {
    match family {
        Family::V6 => Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0), 56)
            .map(IpNet::V6)
            .unwrap_or_default(),
        Family::V4 => Ipv4Net::new(Ipv4Addr::new(198, 19, 0, 0), 16)
            .map(IpNet::V4)
            .unwrap_or_default(),
    }
}

/// The service CIDR in `family`.
pub fn service_cidr(family: Family) -> IpNet {
    match family {
        Family::V6 => net(Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0).into(), 112),
        Family::V4 => net(Ipv4Addr::new(198, 18, 240, 0).into(), 20),
    }
}

/// A BGP router-id for host `host` (`198.18.0.<host>`): never an interface address, unique per topology.
pub fn router_id(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_the_documented_one() {
        assert_eq!(
            host_address(1, 12, Family::V6).to_string(),
            "fd00:0:0:1::12/64"
        );
        assert_eq!(
            host_address(2, 201, Family::V4).to_string(),
            "198.18.2.201/24"
        );
        assert_eq!(segment_subnet(3, Family::V6).to_string(), "fd00:0:0:3::/64");
        assert_eq!(pod_cidr(3, Family::V6).to_string(), "fd00:10:244:3::/64");
        assert_eq!(pod_cidr(3, Family::V4).to_string(), "198.19.3.0/24");
        assert!(cluster_cidr(Family::V6).contains(&pod_cidr(99, Family::V6)));
        assert!(cluster_cidr(Family::V4).contains(&pod_cidr(99, Family::V4)));
    }

    #[test]
    fn every_address_is_in_the_allowed_ranges() {
        let v6: IpNet = "fd00::/8".parse().unwrap();
        let v4: IpNet = "198.18.0.0/15".parse().unwrap();
        let allowed = |n: &IpNet| v6.contains(n) || v4.contains(n);
        for plan in AddressPlan::ALL {
            for n in plan
                .segment_subnets(9)
                .into_iter()
                .chain(plan.host_addresses(9, 250))
                .chain(plan.pod_cidrs(99))
                .chain(plan.cluster_cidrs())
                .chain(plan.service_cidrs())
            {
                assert!(
                    allowed(&n),
                    "{plan:?}: {n} outside fd00::/8 and 198.18.0.0/15"
                );
            }
        }
    }

    #[test]
    fn plan_orders_families() {
        assert_eq!(AddressPlan::DualStackV4Primary.primary(), Family::V4);
        assert_eq!(
            AddressPlan::DualStackV4Primary.pod_cidrs(1)[1],
            pod_cidr(1, Family::V6)
        );
        assert!(!AddressPlan::Ipv6Only.has(Family::V4));
        assert_eq!(AddressPlan::Ipv4Only.service_cidrs().len(), 1);
    }
}
