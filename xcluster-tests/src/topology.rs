//! The topology builder: nodes and routers in namespaces, on L2 segments that are bridges in their own namespaces.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::IpNet;

use crate::cni::{self, Pod};
use crate::error::{HarnessError, Result};
use crate::exec::{exec_in, ip};
use crate::guard::{Guard, current_test_name};
use crate::plan::{AddressPlan, Family, ROUTER_HOST_BASE, router_id};

/// Name of the bridge device inside a segment's namespace.
pub const SEGMENT_BRIDGE: &str = "br0";

/// A test host standing in for a Kubernetes node.
#[derive(Clone, Debug)]
pub struct Node {
    /// Logical name, `node<index>`.
    pub name: String,
    /// 1-based node number; numbers its addresses and pod CIDRs.
    pub index: u8,
    /// Its network namespace.
    pub netns: String,
    /// The segment it is attached to.
    pub segment: u8,
    /// Its interface on the segment.
    pub interface: String,
    /// Its addresses on the segment (with prefix length), primary family first.
    pub addresses: Vec<IpNet>,
    /// Its pod CIDRs (`node.spec.podCIDRs`), primary family first.
    pub pod_cidrs: Vec<IpNet>,
    /// A router-id for a BGP speaker on this node.
    pub router_id: Ipv4Addr,
}

impl Node {
    /// Its address of `family`, if the plan has that family.
    pub fn address(&self, family: Family) -> Option<IpAddr> {
        self.addresses
            .iter()
            .map(IpNet::addr)
            .find(|a| Family::of(*a) == family)
    }

    /// Its pod CIDR of `family`.
    pub fn pod_cidr(&self, family: Family) -> Option<IpNet> {
        self.pod_cidrs
            .iter()
            .copied()
            .find(|n| Family::of(n.addr()) == family)
    }
}

/// One interface of a router.
#[derive(Clone, Debug)]
pub struct RouterInterface {
    /// The segment it attaches to.
    pub segment: u8,
    /// Interface name inside the router namespace (`eth0`, `eth1`, ...).
    pub name: String,
    /// Its addresses on that segment, primary family first.
    pub addresses: Vec<IpNet>,
}

/// A router namespace (a place for BGP peers, route reflectors, a gateway between segments).
#[derive(Clone, Debug)]
pub struct Router {
    /// Logical name given to the builder.
    pub name: String,
    /// 1-based router number; its host number on every segment is 200 + index.
    pub index: u8,
    /// Its network namespace.
    pub netns: String,
    /// Its interfaces, in the order of the builder's segment list.
    pub interfaces: Vec<RouterInterface>,
    /// A router-id for a BGP speaker here.
    pub router_id: Ipv4Addr,
}

impl Router {
    /// Its address of `family` on `segment`.
    pub fn address_on(&self, segment: u8, family: Family) -> Option<IpAddr> {
        self.interfaces
            .iter()
            .filter(|i| i.segment == segment)
            .flat_map(|i| i.addresses.iter().map(IpNet::addr))
            .find(|a| Family::of(*a) == family)
    }

    /// Its address of `family` on its first segment.
    pub fn address(&self, family: Family) -> Option<IpAddr> {
        self.interfaces
            .first()
            .and_then(|i| self.address_on(i.segment, family))
    }
}

/// An L2 segment: a bridge in its own namespace.
#[derive(Clone, Debug)]
pub struct Segment {
    /// 1-based segment number.
    pub index: u8,
    /// The namespace holding the bridge.
    pub netns: String,
    /// Subnets, primary family first.
    pub subnets: Vec<IpNet>,
}

/// Declares a topology; [`TopologyBuilder::build`] creates it.
#[derive(Clone, Debug)]
pub struct TopologyBuilder {
    test_name: String,
    plan: AddressPlan,
    segments: u8,
    nodes: Vec<u8>,
    routers: Vec<(String, Vec<u8>)>,
}

impl TopologyBuilder {
    /// A topology for the current test (its libtest name gives the namespace prefix), one segment.
    pub fn new(plan: AddressPlan) -> Self {
        Self::named(&current_test_name(), plan)
    }

    /// A topology whose namespace prefix derives from `test_name`.
    pub fn named(test_name: &str, plan: AddressPlan) -> Self {
        TopologyBuilder {
            test_name: test_name.to_owned(),
            plan,
            segments: 1,
            nodes: Vec::new(),
            routers: Vec::new(),
        }
    }

    /// Number of segments (default 1).
    pub fn segments(mut self, n: u8) -> Self {
        self.segments = n;
        self
    }

    /// Adds `n` nodes on segment 1.
    pub fn nodes(self, n: u8) -> Self {
        self.nodes_on(1, n)
    }

    /// Adds `n` nodes on `segment`; nodes are numbered in the order they are added.
    pub fn nodes_on(mut self, segment: u8, n: u8) -> Self {
        self.nodes
            .extend(std::iter::repeat_n(segment, usize::from(n)));
        self
    }

    /// Adds a router attached to `segments` (interface `eth<k>` on the k-th). A router on several segments
    /// forwards between them, and nodes get routes to the other segments through it.
    pub fn router(mut self, name: &str, segments: &[u8]) -> Self {
        self.routers.push((name.to_owned(), segments.to_vec()));
        self
    }

    /// Creates every namespace, bridge, veth and address. On error the partial topology is cleaned up.
    pub fn build(self) -> Result<Topology> {
        let guard = Guard::new(&self.test_name)?;
        let plan = self.plan;
        let check_segment = |s: u8| {
            if s == 0 || s > self.segments {
                Err(HarnessError::Topology(format!(
                    "segment {s} does not exist (segments are 1..={})",
                    self.segments
                )))
            } else {
                Ok(())
            }
        };
        if self.nodes.len() >= usize::from(ROUTER_HOST_BASE) || self.routers.len() > 50 {
            return Err(HarnessError::Topology("too many nodes or routers".into()));
        }

        let mut segments = Vec::new();
        for index in 1..=self.segments {
            let netns = guard.add_netns(&format!("s{index}"))?;
            ip(&[
                "-n",
                &netns,
                "link",
                "add",
                SEGMENT_BRIDGE,
                "type",
                "bridge",
                // Snooping would drop neighbour solicitations until MLD reports were seen.
                "mcast_snooping",
                "0",
            ])?;
            ip(&["-n", &netns, "link", "set", SEGMENT_BRIDGE, "up"])?;
            segments.push(Segment {
                index,
                netns,
                subnets: plan.segment_subnets(index),
            });
        }

        let mut nodes = Vec::new();
        for (i, &segment) in self.nodes.iter().enumerate() {
            check_segment(segment)?;
            let index =
                u8::try_from(i + 1).map_err(|_| HarnessError::Topology("too many nodes".into()))?;
            let name = format!("node{index}");
            let netns = guard.add_netns(&name)?;
            let addresses = plan.host_addresses(segment, index);
            attach(
                &segments[usize::from(segment - 1)],
                &netns,
                &format!("n{index}"),
                "eth0",
                &addresses,
            )?;
            nodes.push(Node {
                name,
                index,
                netns,
                segment,
                interface: "eth0".into(),
                addresses,
                pod_cidrs: plan.pod_cidrs(index),
                router_id: router_id(index),
            });
        }

        let mut routers = Vec::new();
        for (i, (name, on)) in self.routers.iter().enumerate() {
            let index = u8::try_from(i + 1)
                .map_err(|_| HarnessError::Topology("too many routers".into()))?;
            let host = ROUTER_HOST_BASE + index;
            let netns = guard.add_netns(&format!("r{index}"))?;
            let mut interfaces = Vec::new();
            for (k, &segment) in on.iter().enumerate() {
                check_segment(segment)?;
                let ifname = format!("eth{k}");
                let addresses = plan.host_addresses(segment, host);
                attach(
                    &segments[usize::from(segment - 1)],
                    &netns,
                    &format!("r{index}s{segment}"),
                    &ifname,
                    &addresses,
                )?;
                interfaces.push(RouterInterface {
                    segment,
                    name: ifname,
                    addresses,
                });
            }
            if on.len() > 1 {
                exec_in(
                    &netns,
                    &[
                        "sysctl",
                        "-q",
                        "-w",
                        "net.ipv4.ip_forward=1",
                        "net.ipv6.conf.all.forwarding=1",
                    ],
                )?;
            }
            routers.push(Router {
                name: name.clone(),
                index,
                netns,
                interfaces,
                router_id: router_id(host),
            });
        }

        // Nodes reach other segments through a router attached to both (one hop; enough for the tests).
        for node in &nodes {
            for other in 1..=self.segments {
                if other == node.segment {
                    continue;
                }
                let Some(gw) = routers.iter().find(|r| {
                    r.interfaces.iter().any(|i| i.segment == node.segment)
                        && r.interfaces.iter().any(|i| i.segment == other)
                }) else {
                    continue;
                };
                for &family in plan.families() {
                    let (Some(via), Some(dst)) = (
                        gw.address_on(node.segment, family),
                        plan.segment_subnets(other)
                            .into_iter()
                            .find(|n| Family::of(n.addr()) == family),
                    ) else {
                        continue;
                    };
                    ip(&[
                        "-n",
                        &node.netns,
                        "route",
                        "add",
                        &dst.to_string(),
                        "via",
                        &via.to_string(),
                    ])?;
                }
            }
        }

        Ok(Topology {
            plan,
            segments,
            nodes,
            routers,
            pod_seq: AtomicU32::new(0),
            guard,
        })
    }
}

/// A veth from `netns` (as `ifname`) into the segment's bridge (as `bridge_port`), with `addresses`.
fn attach(
    segment: &Segment,
    netns: &str,
    bridge_port: &str,
    ifname: &str,
    addresses: &[IpNet],
) -> Result<()> {
    ip(&[
        "-n",
        &segment.netns,
        "link",
        "add",
        bridge_port,
        "type",
        "veth",
        "peer",
        "name",
        ifname,
        "netns",
        netns,
    ])?;
    ip(&[
        "-n",
        &segment.netns,
        "link",
        "set",
        bridge_port,
        "master",
        SEGMENT_BRIDGE,
        "up",
    ])?;
    for a in addresses {
        let a = a.to_string();
        let mut args = vec!["-n", netns, "addr", "add", &a, "dev", ifname];
        if a.contains(':') {
            args.push("nodad");
        }
        ip(&args)?;
    }
    ip(&["-n", netns, "link", "set", ifname, "up"])?;
    Ok(())
}

/// A created topology. Dropping it stops every process the test started and deletes every namespace.
pub struct Topology {
    plan: AddressPlan,
    segments: Vec<Segment>,
    nodes: Vec<Node>,
    routers: Vec<Router>,
    pod_seq: AtomicU32,
    // Last: dropped after everything that might still refer to its namespaces.
    guard: Guard,
}

impl Topology {
    /// The address plan.
    pub fn plan(&self) -> AddressPlan {
        self.plan
    }

    /// The guard owning namespaces, processes and the temp dir.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// All nodes, by number.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node number `index` (1-based).
    pub fn node(&self, index: u8) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.index == index)
            .ok_or_else(|| HarnessError::Topology(format!("no node{index}")))
    }

    /// All routers.
    pub fn routers(&self) -> &[Router] {
        &self.routers
    }

    /// The router named `name`.
    pub fn router(&self, name: &str) -> Result<&Router> {
        self.routers
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| HarnessError::Topology(format!("no router {name}")))
    }

    /// All segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Runs a command inside `netns` and returns its stdout.
    pub fn exec(&self, netns: &str, args: &[&str]) -> Result<String> {
        exec_in(netns, args)
    }

    /// The bridge + host-local conflist for `node` (one range per pod CIDR, state under the test's temp dir).
    pub fn bridge_conflist(&self, node: &Node) -> serde_json::Value {
        cni::bridge_conflist(
            "fairlead",
            &node.pod_cidrs,
            &self.guard.temp_dir().join("cni").join(&node.name),
        )
    }

    /// Creates a pod namespace `<prefix><node>p<n>` and runs CNI ADD for `conflist` in `node`'s namespace,
    /// as a kubelet would (loopback first for `lo`).
    pub fn add_pod(&self, node: &Node, conflist: &serde_json::Value) -> Result<Pod> {
        let seq = self.pod_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("n{}p{seq}", node.index);
        let netns = self.guard.add_netns(&name)?;
        cni::add_pod(
            &node.netns,
            &netns,
            &format!("{}{name}", self.guard.prefix()),
            conflist,
        )
    }
}
