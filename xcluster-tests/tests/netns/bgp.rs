//! Real BGP daemons in router namespaces: each starts and answers its CLI; BIRD <-> GoBGP and FRR <-> BIRD
//! peer over IPv6 and over IPv4 and exchange a prefix of each family. This validates the config writers.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use xcluster_tests::bgp::{AfiSafi, BgpSpeaker, Bird, Frr, Gobgp, Neighbor, RouterSpec};
use xcluster_tests::{
    AddressPlan, Family, Router, Topology, TopologyBuilder, require_root_and_tools, tcp_connect,
};

const SESSION_TIMEOUT: Duration = Duration::from_secs(20);
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Daemon {
    Bird,
    Gobgp,
    Frr,
}

impl Daemon {
    fn tools(self) -> &'static [&'static str] {
        match self {
            Daemon::Bird => &["ip", "bird", "birdc"],
            Daemon::Gobgp => &["ip", "gobgpd", "gobgp"],
            Daemon::Frr => &["ip", "bgpd", "vtysh"],
        }
    }

    fn start(self, topo: &Topology, router: &Router, spec: &RouterSpec) -> Box<dyn BgpSpeaker> {
        let (g, ns) = (topo.guard(), router.netns.as_str());
        let label = format!("{:?}-{}", self, router.name).to_lowercase();
        match self {
            Daemon::Bird => Box::new(Bird::start(g, ns, &label, spec).expect("start bird")),
            Daemon::Gobgp => Box::new(Gobgp::start(g, ns, &label, spec).expect("start gobgpd")),
            Daemon::Frr => Box::new(Frr::start(g, ns, &label, spec).expect("start frr bgpd")),
        }
    }
}

fn prefixes(router: u8) -> [IpNet; 2] {
    [
        format!("fd00:99:{router}::/48").parse().unwrap(),
        format!("198.18.{}.0/24", 160 + router).parse().unwrap(),
    ]
}

fn addr(r: &Router, family: Family) -> IpAddr {
    r.address(family).expect("router address")
}

/// The spec of router `me` peering with `peer` in both families, one session per family.
fn spec(me: &Router, asn: u32, peer: &Router, peer_asn: u32, index: u8) -> RouterSpec {
    let mut s = RouterSpec::new(me.router_id, asn)
        .listen(addr(me, Family::V6))
        .listen(addr(me, Family::V4));
    for family in [Family::V6, Family::V4] {
        s = s.neighbor(Neighbor::new(addr(peer, family), peer_asn));
    }
    for p in prefixes(index) {
        s = s.announce(p);
    }
    s
}

fn two_routers() -> Topology {
    TopologyBuilder::new(AddressPlan::DualStackV6Primary)
        .router("r1", &[1])
        .router("r2", &[1])
        .build()
        .expect("build topology")
}

/// The daemon starts, answers its CLI, holds its own prefixes of both families, and does not claim a session
/// with a peer that does not exist.
fn starts_and_answers(daemon: Daemon) {
    if !require_root_and_tools(daemon.tools()) {
        return;
    }
    let topo = two_routers();
    let (r1, r2) = (topo.router("r1").unwrap(), topo.router("r2").unwrap());
    let speaker = daemon.start(&topo, r1, &spec(r1, 65001, r2, 65002, 1));
    for p in prefixes(1) {
        speaker
            .wait_route(p, ROUTE_TIMEOUT)
            .expect("own prefix in RIB");
    }
    let rib6 = speaker.rib(AfiSafi::Ipv6Unicast).unwrap();
    assert!(
        !rib6.contains(&prefixes(2)[0]),
        "{rib6:?} has a prefix nobody announced"
    );
    assert!(
        !speaker.session_established(addr(r2, Family::V6)).unwrap(),
        "session with a silent peer"
    );
    // Every process of the test (for FRR: zebra too) is gone once the topology is dropped.
    let pids = topo.guard().pids();
    assert!(pids.contains(&speaker.pid()), "{pids:?}");
    drop(speaker);
    drop(topo);
    for pid in pids {
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None);
        assert_eq!(
            gone,
            Err(nix::errno::Errno::ESRCH),
            "{daemon:?}: pid {pid} survived the guard"
        );
    }
}

#[test]
fn bird_starts_and_answers_birdc() {
    starts_and_answers(Daemon::Bird);
}

#[test]
fn gobgp_starts_and_answers_gobgp_cli() {
    starts_and_answers(Daemon::Gobgp);
}

#[test]
fn frr_starts_and_answers_vtysh() {
    starts_and_answers(Daemon::Frr);
}

/// `a` in r1 (AS 65001) and `b` in r2 (AS 65002): an IPv6 session and an IPv4 session, each carrying its own
/// family; each side learns the other's prefix of each family.
fn peer_pair(a: Daemon, b: Daemon) {
    let mut tools = a.tools().to_vec();
    tools.extend(b.tools());
    tools.push("nc");
    if !require_root_and_tools(&tools) {
        return;
    }
    let topo = two_routers();
    let (r1, r2) = (topo.router("r1").unwrap(), topo.router("r2").unwrap());
    let s1 = a.start(&topo, r1, &spec(r1, 65001, r2, 65002, 1));
    let s2 = b.start(&topo, r2, &spec(r2, 65002, r1, 65001, 2));
    for family in [Family::V6, Family::V4] {
        tcp_connect(&r2.netns, addr(r1, family), 179).expect("r1 listens on 179");
        s1.wait_established(addr(r2, family), SESSION_TIMEOUT)
            .expect("r1 session");
        s2.wait_established(addr(r1, family), SESSION_TIMEOUT)
            .expect("r2 session");
    }
    for p in prefixes(2) {
        s1.wait_route(p, ROUTE_TIMEOUT)
            .expect("r1 learns r2's prefix");
    }
    for p in prefixes(1) {
        s2.wait_route(p, ROUTE_TIMEOUT)
            .expect("r2 learns r1's prefix");
    }
    // Each session carries only its family: no IPv4 prefix arrived as IPv6 or vice versa.
    for (s, n) in [(&s1, 2), (&s2, 1)] {
        let [p6, p4] = prefixes(n);
        assert!(!s.rib(AfiSafi::Ipv4Unicast).unwrap().contains(&p6));
        assert!(!s.rib(AfiSafi::Ipv6Unicast).unwrap().contains(&p4));
    }
}

#[test]
fn bird_and_gobgp_peer_over_ipv6_and_ipv4() {
    peer_pair(Daemon::Bird, Daemon::Gobgp);
}

#[test]
fn frr_and_bird_peer_over_ipv6_and_ipv4() {
    peer_pair(Daemon::Frr, Daemon::Bird);
}
