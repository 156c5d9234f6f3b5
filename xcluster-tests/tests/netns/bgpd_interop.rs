//! The `bgpd` binary against BIRD and FRR: one session over the plan's primary family carrying every family of
//! the plan (IPv4 over an IPv6 session via RFC 8950; IPv6 over an IPv4 session with a configured IPv6 next hop),
//! routes both ways with the right next hop per family, withdrawals, eBGP and iBGP, bgpd as route reflector,
//! and SIGHUP reloads that leave unchanged sessions alone.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use xcluster_tests::bgp::{AfiSafi, BgpSpeaker, Bird, Frr, Gobgp, Neighbor, RouterSpec};
use xcluster_tests::{
    AddressPlan, Family, Router, Topology, TopologyBuilder, require_root_and_tools, wait_until,
};

use super::bgpd_common::{
    Bgpd, BgpdConfig, BgpdNeighbor, ROUTE_TIMEOUT, SESSION_TIMEOUT, require_bgpd,
};

/// bgpd's gRPC API port inside its namespace (loopback only).
const API_PORT: u16 = 50051;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Bird,
    Frr,
    Gobgp,
}

/// A started peer daemon, kept for its CLI.
enum PeerHandle {
    Bird(Bird),
    Frr(Frr),
    Gobgp(Gobgp),
}

impl PeerHandle {
    fn speaker(&self) -> &dyn BgpSpeaker {
        match self {
            PeerHandle::Bird(b) => b,
            PeerHandle::Frr(f) => f,
            PeerHandle::Gobgp(g) => g,
        }
    }

    /// The next hop the daemon holds for `prefix` (the global one when it also has a link-local).
    fn next_hop(&self, prefix: IpNet) -> Option<IpAddr> {
        match self {
            PeerHandle::Bird(b) => {
                let out = b.birdc(&["show", "route", &prefix.to_string()]).ok()?;
                out.split_whitespace()
                    .skip_while(|w| *w != "via")
                    .nth(1)
                    .and_then(|a| a.parse().ok())
            }
            PeerHandle::Frr(f) => {
                let afi = if prefix.addr().is_ipv6() {
                    "ipv6"
                } else {
                    "ipv4"
                };
                let out = f
                    .vtysh(&format!("show bgp {afi} unicast {prefix} json"))
                    .ok()?;
                let v: serde_json::Value = serde_json::from_str(&out).ok()?;
                v["paths"][0]["nexthops"]
                    .as_array()?
                    .iter()
                    .find(|n| n["scope"].as_str() != Some("link-local"))
                    .and_then(|n| n["ip"].as_str())
                    .and_then(|a| a.parse().ok())
            }
            PeerHandle::Gobgp(g) => {
                let afi = if prefix.addr().is_ipv6() {
                    "ipv6"
                } else {
                    "ipv4"
                };
                let out = g
                    .cli(&["global", "rib", "-a", afi, &prefix.to_string(), "-j"])
                    .ok()?;
                let v: serde_json::Value = serde_json::from_str(&out).ok()?;
                // NEXT_HOP (type 3) or MP_REACH_NLRI (type 14) carry a "nexthop" field.
                v[prefix.to_string()][0]["attrs"]
                    .as_array()?
                    .iter()
                    .find_map(|a| a["nexthop"].as_str())
                    .and_then(|a| a.parse().ok())
            }
        }
    }

    fn wait_next_hop(&self, prefix: IpNet, want: IpAddr) {
        let mut last = None;
        wait_until(
            &format!("{}: {prefix} via {want}", self.speaker().kind()),
            ROUTE_TIMEOUT,
            Duration::from_millis(200),
            || {
                last = self.next_hop(prefix);
                last == Some(want)
            },
        )
        .unwrap_or_else(|e| panic!("{e}; last next hop {last:?}"));
    }

    fn wait_absent(&self, prefix: IpNet) {
        let s = self.speaker();
        wait_until(
            &format!("{}: {prefix} withdrawn", s.kind()),
            ROUTE_TIMEOUT,
            Duration::from_millis(200),
            || {
                s.rib(AfiSafi::of_prefix(&prefix))
                    .is_ok_and(|r| !r.contains(&prefix))
            },
        )
        .unwrap();
    }
}

fn start_peer(topo: &Topology, peer: Peer, router: &Router, spec: &RouterSpec) -> PeerHandle {
    let (g, ns) = (topo.guard(), router.netns.as_str());
    let label = format!("{peer:?}-{}", router.name).to_lowercase();
    match peer {
        Peer::Bird => PeerHandle::Bird(Bird::start(g, ns, &label, spec).expect("start bird")),
        Peer::Frr => PeerHandle::Frr(Frr::start(g, ns, &label, spec).expect("start frr")),
        Peer::Gobgp => PeerHandle::Gobgp(Gobgp::start(g, ns, &label, spec).expect("start gobgpd")),
    }
}

fn tools(peer: Peer) -> &'static [&'static str] {
    match peer {
        Peer::Bird => &["ip", "bird", "birdc"],
        Peer::Frr => &["ip", "vtysh"],
        Peer::Gobgp => &["ip", "gobgpd", "gobgp"],
    }
}

fn ready(peers: &[Peer]) -> bool {
    let mut t: Vec<&str> = peers.iter().flat_map(|p| tools(*p)).copied().collect();
    t.push("gobgp"); // the stock CLI against bgpd's gRPC API
    t.dedup();
    require_root_and_tools(&t) && require_bgpd().is_some()
}

/// Router `index`'s announced prefixes, one per family of the plan.
fn prefixes(plan: AddressPlan, index: u8) -> Vec<IpNet> {
    plan.families()
        .iter()
        .map(|f| match f {
            Family::V6 => format!("fd00:99:{index}::/48").parse().unwrap(),
            Family::V4 => format!("198.18.{}.0/24", 160 + index).parse().unwrap(),
        })
        .collect()
}

fn addr(r: &Router, family: Family) -> IpAddr {
    r.address(family).expect("router address")
}

fn afi_safis(plan: AddressPlan) -> Vec<AfiSafi> {
    plan.families()
        .iter()
        .map(|f| AfiSafi::of_family(*f))
        .collect()
}

fn family_names(plan: AddressPlan) -> Vec<&'static str> {
    plan.families()
        .iter()
        .map(|f| match f {
            Family::V6 => "ipv6-unicast",
            Family::V4 => "ipv4-unicast",
        })
        .collect()
}

/// The next hop `sender` (reached over a session of the plan's primary family) puts on `prefix`: its address
/// of the prefix's family, except IPv4 routes over an IPv6 session (RFC 8950: its IPv6 address).
fn expected_next_hop(plan: AddressPlan, sender: &Router, prefix: &IpNet) -> IpAddr {
    match (prefix, plan.primary()) {
        (IpNet::V4(_), Family::V6) => addr(sender, Family::V6),
        (IpNet::V4(_), Family::V4) => addr(sender, Family::V4),
        (IpNet::V6(_), _) => addr(sender, Family::V6),
    }
}

/// bgpd's neighbour entry for `peer` over the primary family, carrying every family of the plan.
fn bgpd_neighbor(plan: AddressPlan, me: &Router, peer: &Router, asn: u32) -> BgpdNeighbor {
    let mut n = BgpdNeighbor::new(addr(peer, plan.primary()), asn, &family_names(plan));
    match plan {
        // IPv4 routes with our IPv6 next hop (RFC 8950).
        AddressPlan::DualStackV6Primary => n.extended_next_hop = true,
        // IPv6 routes over the IPv4 session: our IPv6 address as their next hop.
        AddressPlan::DualStackV4Primary => n.next_hop_ipv6 = Some(addr(me, Family::V6)),
        _ => {}
    }
    n
}

/// A peer's spec: one session with `to` over the primary family carrying every family; announces `prefixes`.
fn peer_spec(plan: AddressPlan, me: &Router, asn: u32, to: &Router, to_asn: u32) -> RouterSpec {
    let mut s = RouterSpec::new(me.router_id, asn);
    for f in plan.families() {
        s = s.listen(addr(me, *f));
    }
    let mut n = Neighbor::new(addr(to, plan.primary()), to_asn).families(&afi_safis(plan));
    if plan == AddressPlan::DualStackV6Primary {
        n = n.extended_next_hop();
    }
    s = s.neighbor(n);
    for p in prefixes(plan, me.index) {
        s = s.announce(p);
    }
    s
}

fn bgpd_config(
    plan: AddressPlan,
    me: &Router,
    asn: u32,
    neighbors: Vec<BgpdNeighbor>,
) -> BgpdConfig {
    BgpdConfig {
        asn,
        router_id: me.router_id,
        listen: plan.families().iter().map(|f| addr(me, *f)).collect(),
        neighbors,
        originate: prefixes(plan, me.index),
        grpc_port: Some(API_PORT),
    }
}

fn topology(plan: AddressPlan, routers: &[&str]) -> Topology {
    let mut b = TopologyBuilder::new(plan);
    for r in routers {
        b = b.router(r, &[1]);
    }
    b.build().expect("build topology")
}

/// bgpd (r1) and `peer` (r2), eBGP or iBGP: routes both ways with the right next hops, then withdrawals
/// both ways (bgpd's by a SIGHUP that drops its originations, which must not reset the session).
fn interop(peer: Peer, plan: AddressPlan, ibgp: bool) {
    if !ready(&[peer]) {
        return;
    }
    let topo = topology(plan, &["r1", "r2"]);
    let g = topo.guard();
    let (r1, r2) = (topo.router("r1").unwrap(), topo.router("r2").unwrap());
    let (asn1, asn2) = if ibgp { (65000, 65000) } else { (65001, 65002) };
    let config = bgpd_config(plan, r1, asn1, vec![bgpd_neighbor(plan, r1, r2, asn2)]);
    let mut bgpd = Bgpd::start(g, &r1.netns, "bgpd-r1", &config);
    let p = start_peer(&topo, peer, r2, &peer_spec(plan, r2, asn2, r1, asn1));
    let session = addr(r2, plan.primary());
    bgpd.wait_established(g, session);
    p.speaker()
        .wait_established(addr(r1, plan.primary()), SESSION_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}; bgpd log: {}", g.log(&bgpd.label)));

    // The peer's routes in bgpd, each with the peer's next hop of the right family.
    for prefix in prefixes(plan, r2.index) {
        if peer == Peer::Gobgp && plan == AddressPlan::DualStackV4Primary && prefix.addr().is_ipv6()
        {
            // GoBGP puts the IPv4-mapped ::ffff:<its IPv4> on IPv6 routes over an IPv4 session (its config has
            // no IPv6 next hop for such a session), and bgpd's RIB currently accepts it: not a next hop this
            // test can call right, so only the other direction is checked for this family.
            continue;
        }
        let want = expected_next_hop(plan, r2, &prefix);
        let best = bgpd.wait_best(g, prefix, "learned from the peer", |b| b.is_some());
        assert_eq!(
            best.as_ref().and_then(|b| b.next_hop),
            Some(want),
            "{peer:?} {plan:?}: {prefix}"
        );
        assert_eq!(best.and_then(|b| b.from), Some(session));
        // The same through bgpd's gRPC API and the stock gobgp CLI.
        assert_eq!(
            Bgpd::api_next_hop(&r1.netns, API_PORT, prefix),
            Some(want),
            "gobgp global rib in r1: {prefix}"
        );
    }
    // bgpd's routes at the peer, with bgpd's next hop of the right family.
    for prefix in prefixes(plan, r1.index) {
        p.speaker().wait_route(prefix, ROUTE_TIMEOUT).unwrap();
        p.wait_next_hop(prefix, expected_next_hop(plan, r1, &prefix));
    }

    // Withdrawal from bgpd: a reload without the originations.
    let mut fewer = config.clone();
    fewer.originate.clear();
    bgpd.reload_with(&fewer.toml());
    for prefix in prefixes(plan, r1.index) {
        p.wait_absent(prefix);
    }
    // Withdrawal from the peer: BIRD's static protocols stop, GoBGP deletes its paths (FRR: not done here).
    let withdrawn = match &p {
        PeerHandle::Bird(b) => {
            for f in plan.families() {
                let proto = match f {
                    Family::V6 => "static_ipv6",
                    Family::V4 => "static_ipv4",
                };
                b.birdc(&["disable", proto]).unwrap();
            }
            true
        }
        PeerHandle::Gobgp(gb) => {
            for prefix in prefixes(plan, r2.index) {
                let afi = if prefix.addr().is_ipv6() {
                    "ipv6"
                } else {
                    "ipv4"
                };
                gb.cli(&["global", "rib", "-a", afi, "del", &prefix.to_string()])
                    .unwrap();
            }
            true
        }
        PeerHandle::Frr(_) => false,
    };
    if withdrawn {
        for prefix in prefixes(plan, r2.index) {
            bgpd.wait_best(g, prefix, "withdrawn", |b| b.is_none());
        }
    }
    let n = bgpd.neighbor(g, session).unwrap();
    assert_eq!((n.state.as_str(), n.flaps), ("Established", 0), "{n:?}");
}

#[test]
fn bgpd_bird_ebgp_ipv6_only() {
    interop(Peer::Bird, AddressPlan::Ipv6Only, false);
}

#[test]
fn bgpd_bird_ebgp_dual_stack_v6_primary() {
    interop(Peer::Bird, AddressPlan::DualStackV6Primary, false);
}

#[test]
fn bgpd_bird_ebgp_dual_stack_v4_primary() {
    interop(Peer::Bird, AddressPlan::DualStackV4Primary, false);
}

#[test]
fn bgpd_bird_ebgp_ipv4_only() {
    interop(Peer::Bird, AddressPlan::Ipv4Only, false);
}

#[test]
fn bgpd_bird_ibgp_dual_stack_v6_primary() {
    interop(Peer::Bird, AddressPlan::DualStackV6Primary, true);
}

#[test]
fn bgpd_bird_ibgp_ipv4_only() {
    interop(Peer::Bird, AddressPlan::Ipv4Only, true);
}

#[test]
fn bgpd_frr_ebgp_ipv6_only() {
    interop(Peer::Frr, AddressPlan::Ipv6Only, false);
}

#[test]
fn bgpd_frr_ebgp_dual_stack_v6_primary() {
    interop(Peer::Frr, AddressPlan::DualStackV6Primary, false);
}

#[test]
fn bgpd_frr_ebgp_dual_stack_v4_primary() {
    interop(Peer::Frr, AddressPlan::DualStackV4Primary, false);
}

#[test]
fn bgpd_frr_ebgp_ipv4_only() {
    interop(Peer::Frr, AddressPlan::Ipv4Only, false);
}

#[test]
fn bgpd_frr_ibgp_dual_stack_v6_primary() {
    interop(Peer::Frr, AddressPlan::DualStackV6Primary, true);
}

#[test]
fn bgpd_gobgp_ebgp_ipv6_only() {
    interop(Peer::Gobgp, AddressPlan::Ipv6Only, false);
}

#[test]
fn bgpd_gobgp_ebgp_dual_stack_v6_primary() {
    interop(Peer::Gobgp, AddressPlan::DualStackV6Primary, false);
}

#[test]
fn bgpd_gobgp_ebgp_dual_stack_v4_primary() {
    interop(Peer::Gobgp, AddressPlan::DualStackV4Primary, false);
}

#[test]
fn bgpd_gobgp_ebgp_ipv4_only() {
    interop(Peer::Gobgp, AddressPlan::Ipv4Only, false);
}

#[test]
fn bgpd_gobgp_ibgp_dual_stack_v6_primary() {
    interop(Peer::Gobgp, AddressPlan::DualStackV6Primary, true);
}

/// bgpd (r1) reflects between two iBGP BIRD clients (r2, r3): each learns the other's prefixes with the
/// originator's next hop, unchanged (RFC 4456 section 10).
fn route_reflector(plan: AddressPlan) {
    if !ready(&[Peer::Bird]) {
        return;
    }
    let topo = topology(plan, &["r1", "r2", "r3"]);
    let g = topo.guard();
    let (r1, r2, r3) = (
        topo.router("r1").unwrap(),
        topo.router("r2").unwrap(),
        topo.router("r3").unwrap(),
    );
    let asn = 65000;
    let clients = [r2, r3]
        .iter()
        .map(|c| {
            let mut n = bgpd_neighbor(plan, r1, c, asn);
            n.route_reflector_client = true;
            n
        })
        .collect();
    let mut config = bgpd_config(plan, r1, asn, clients);
    config.originate.clear();
    let mut bgpd = Bgpd::start(g, &r1.netns, "bgpd-rr", &config);
    let b2 = start_peer(&topo, Peer::Bird, r2, &peer_spec(plan, r2, asn, r1, asn));
    let b3 = start_peer(&topo, Peer::Bird, r3, &peer_spec(plan, r3, asn, r1, asn));
    for c in [r2, r3] {
        bgpd.wait_established(g, addr(c, plan.primary()));
    }
    for (from, to) in [(r2, &b3), (r3, &b2)] {
        for prefix in prefixes(plan, from.index) {
            to.speaker().wait_route(prefix, ROUTE_TIMEOUT).unwrap();
            to.wait_next_hop(prefix, expected_next_hop(plan, from, &prefix));
        }
    }
    // A client's withdrawal reaches the other client.
    if let PeerHandle::Bird(b) = &b2 {
        b.birdc(&["disable", "peer1"]).unwrap();
    }
    for prefix in prefixes(plan, r2.index) {
        b3.wait_absent(prefix);
    }
}

#[test]
fn bgpd_route_reflector_ipv6_only() {
    route_reflector(AddressPlan::Ipv6Only);
}

#[test]
fn bgpd_route_reflector_dual_stack_v6_primary() {
    route_reflector(AddressPlan::DualStackV6Primary);
}

#[test]
fn bgpd_route_reflector_dual_stack_v4_primary() {
    route_reflector(AddressPlan::DualStackV4Primary);
}

#[test]
fn bgpd_route_reflector_ipv4_only() {
    route_reflector(AddressPlan::Ipv4Only);
}

/// BIRD's "since" column of a protocol as seconds of the day: it moves whenever the session goes down or up.
/// (It can also move by a millisecond when a channel finishes its first feed, hence [`same_session`].)
fn bird_since(b: &PeerHandle, proto: &str) -> f64 {
    let PeerHandle::Bird(b) = b else {
        unreachable!()
    };
    let out = b.birdc(&["show", "protocols", proto]).unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with(proto))
        .unwrap_or_else(|| panic!("{proto} missing: {out}"));
    let time = line
        .split_whitespace()
        .find(|w| w.len() >= 8 && w.as_bytes()[2] == b':')
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    time.split(':')
        .map(|p| p.parse::<f64>().unwrap())
        .fold(0.0, |acc, p| acc * 60.0 + p)
}

/// Two "since" readings of one session: a reset takes BIRD at least its 1 s error wait to come back up.
fn same_session(before: f64, after: f64) -> bool {
    (after - before).abs() < 0.5
}

/// SIGHUP adds a neighbour (r3) without touching the session with r2, then changes r2's import policy in place;
/// removing r3 stops its session; a bad config on reload is refused and changes nothing; SIGTERM closes the sessions with a NOTIFICATION (Cease).
fn sighup(plan: AddressPlan) {
    if !ready(&[Peer::Bird]) {
        return;
    }
    let topo = topology(plan, &["r1", "r2", "r3"]);
    let g = topo.guard();
    let (r1, r2, r3) = (
        topo.router("r1").unwrap(),
        topo.router("r2").unwrap(),
        topo.router("r3").unwrap(),
    );
    let config = bgpd_config(plan, r1, 65001, vec![bgpd_neighbor(plan, r1, r2, 65002)]);
    let mut bgpd = Bgpd::start(g, &r1.netns, "bgpd-r1", &config);
    let b2 = start_peer(
        &topo,
        Peer::Bird,
        r2,
        &peer_spec(plan, r2, 65002, r1, 65001),
    );
    let b3 = start_peer(
        &topo,
        Peer::Bird,
        r3,
        &peer_spec(plan, r3, 65003, r1, 65001),
    );
    let (s2, s3) = (addr(r2, plan.primary()), addr(r3, plan.primary()));
    bgpd.wait_established(g, s2);
    b2.speaker()
        .wait_established(addr(r1, plan.primary()), SESSION_TIMEOUT)
        .unwrap();
    let since2 = bird_since(&b2, "peer1");
    let before = bgpd.neighbor(g, s2).unwrap();
    let t0 = Instant::now();
    assert!(bgpd.neighbor(g, s3).is_none(), "r3 is not configured yet");

    let mut more = config.clone();
    more.neighbors.push(bgpd_neighbor(plan, r1, r3, 65003));
    bgpd.reload_with(&more.toml());
    bgpd.wait_established(g, s3);
    for prefix in prefixes(plan, r3.index) {
        bgpd.wait_best(g, prefix, "learned from the new neighbour", |b| b.is_some());
        // ... and passed on to the old one.
        b2.speaker().wait_route(prefix, ROUTE_TIMEOUT).unwrap();
    }
    let after = bgpd.neighbor(g, s2).unwrap();
    assert_eq!(
        (after.state.as_str(), after.flaps),
        ("Established", 0),
        "{after:?}"
    );
    let elapsed = t0.elapsed().as_secs_f64();
    // The same session: its age grew by the time that passed (not reset to near zero).
    assert!(
        after.established_secs.unwrap() + 0.5 >= before.established_secs.unwrap() + elapsed,
        "{before:?} -> {after:?} after {elapsed} s"
    );
    let since = bird_since(&b2, "peer1");
    assert!(
        same_session(since2, since),
        "{since2} -> {since}: BIRD saw the session with bgpd restart"
    );

    // A policy change applies in place: r2's routes go (ROUTE-REFRESH + re-evaluation), the session stays.
    let mut deny = more.clone();
    deny.neighbors[0].import_deny_all = true;
    bgpd.reload_with(&deny.toml());
    for prefix in prefixes(plan, r2.index) {
        bgpd.wait_best(g, prefix, "rejected by the new import policy", |b| {
            b.is_none()
        });
    }
    let after = bgpd.neighbor(g, s2).unwrap();
    assert_eq!(
        (after.state.as_str(), after.flaps),
        ("Established", 0),
        "{after:?}"
    );
    let since = bird_since(&b2, "peer1");
    assert!(
        same_session(since2, since),
        "{since2} -> {since}: a policy change restarted the session"
    );

    // Removing r3 stops its session (BIRD sees it go) and withdraws what it sent; r2 stays.
    let mut back = deny.clone();
    back.neighbors.truncate(1);
    bgpd.reload_with(&back.toml());
    wait_until(
        "bgpd forgets r3",
        ROUTE_TIMEOUT,
        Duration::from_millis(200),
        || bgpd.neighbor(g, s3).is_none(),
    )
    .unwrap();
    wait_until(
        "BIRD r3: session with bgpd down",
        ROUTE_TIMEOUT,
        Duration::from_millis(200),
        || {
            b3.speaker()
                .session_established(addr(r1, plan.primary()))
                .is_ok_and(|up| !up)
        },
    )
    .unwrap();
    for prefix in prefixes(plan, r3.index) {
        bgpd.wait_best(g, prefix, "withdrawn with its neighbour", |b| b.is_none());
    }
    let after = bgpd.neighbor(g, s2).unwrap();
    assert_eq!(
        (after.state.as_str(), after.flaps),
        ("Established", 0),
        "{after:?}"
    );

    // A bad config is refused: bgpd keeps running with the old one.
    bgpd.reload_with("[global]\nasn = 0\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(bgpd.alive(), "bgpd exited on a bad config");
    let n = bgpd.neighbor(g, s2).unwrap();
    assert_eq!((n.state.as_str(), n.flaps), ("Established", 0), "{n:?}");
    assert!(
        bgpd.neighbor(g, s3).is_none(),
        "the refused config brought r3 back"
    );
    assert!(
        g.log(&bgpd.label).contains("reload refused"),
        "no log line for the refused reload: {}",
        g.log(&bgpd.label)
    );

    // SIGTERM: BIRD is told (a NOTIFICATION), not left to its hold timer.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bgpd.pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_until(
        "bgpd exits on SIGTERM",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || !bgpd.alive() || is_zombie(bgpd.pid),
    )
    .unwrap();
    let PeerHandle::Bird(b) = &b2 else {
        unreachable!()
    };
    wait_until(
        "BIRD r2 received a Cease",
        Duration::from_secs(3),
        Duration::from_millis(100),
        || {
            b.birdc(&["show", "protocols", "all", "peer1"])
                .is_ok_and(|o| o.contains("Received:"))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            b.birdc(&["show", "protocols", "all", "peer1"]).unwrap()
        )
    });
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[test]
fn bgpd_sighup_adds_neighbor_ipv6_only() {
    sighup(AddressPlan::Ipv6Only);
}

#[test]
fn bgpd_sighup_adds_neighbor_dual_stack_v6_primary() {
    sighup(AddressPlan::DualStackV6Primary);
}

#[test]
fn bgpd_sighup_adds_neighbor_dual_stack_v4_primary() {
    sighup(AddressPlan::DualStackV4Primary);
}

#[test]
fn bgpd_sighup_adds_neighbor_ipv4_only() {
    sighup(AddressPlan::Ipv4Only);
}

/// TCP-MD5 from the config file: bgpd and BIRD with the same key peer; a BIRD with another key never does.
fn md5(plan: AddressPlan) {
    if !ready(&[Peer::Bird]) {
        return;
    }
    let topo = topology(plan, &["r1", "r2", "r3"]);
    let g = topo.guard();
    let (r1, r2, r3) = (
        topo.router("r1").unwrap(),
        topo.router("r2").unwrap(),
        topo.router("r3").unwrap(),
    );
    let mut n2 = bgpd_neighbor(plan, r1, r2, 65002);
    n2.password = Some("fairlead-md5".into());
    let mut n3 = bgpd_neighbor(plan, r1, r3, 65003);
    n3.password = Some("fairlead-md5".into());
    let mut bgpd = Bgpd::start(
        g,
        &r1.netns,
        "bgpd-md5",
        &bgpd_config(plan, r1, 65001, vec![n2, n3]),
    );
    let mut spec2 = peer_spec(plan, r2, 65002, r1, 65001);
    spec2.neighbors[0] = spec2.neighbors[0].clone().password("fairlead-md5");
    let mut spec3 = peer_spec(plan, r3, 65003, r1, 65001);
    spec3.neighbors[0] = spec3.neighbors[0].clone().password("another-key");
    let _b2 = start_peer(&topo, Peer::Bird, r2, &spec2);
    let b3 = start_peer(&topo, Peer::Bird, r3, &spec3);
    bgpd.wait_established(g, addr(r2, plan.primary()));
    for prefix in prefixes(plan, r2.index) {
        bgpd.wait_best(g, prefix, "learned over the MD5 session", |b| b.is_some());
    }
    // r3 has had as long as r2 needed and more (BIRD retries every 2 s): still nothing.
    std::thread::sleep(Duration::from_secs(5));
    let n = bgpd.neighbor(g, addr(r3, plan.primary())).unwrap();
    assert_ne!(n.state, "Established", "a wrong MD5 key was accepted");
    assert!(
        !b3.speaker()
            .session_established(addr(r1, plan.primary()))
            .unwrap()
    );
}

#[test]
fn bgpd_md5_ipv6_only() {
    md5(AddressPlan::Ipv6Only);
}

#[test]
fn bgpd_md5_dual_stack_v4_primary() {
    md5(AddressPlan::DualStackV4Primary);
}

#[test]
fn bgpd_md5_ipv4_only() {
    md5(AddressPlan::Ipv4Only);
}
