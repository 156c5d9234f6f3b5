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

#[test]
fn gobgp_and_frr_peer_over_ipv6_and_ipv4() {
    peer_pair(Daemon::Gobgp, Daemon::Frr);
}

/// Session options: BIRD passive, both sides with a TCP MD5 password, and one IPv6 session carrying IPv4
/// unicast too with extended next hop (RFC 8950): each side learns both of the other's prefixes over it.
#[test]
fn bird_passive_md5_and_extended_next_hop_with_frr() {
    let mut tools = Daemon::Bird.tools().to_vec();
    tools.extend(Daemon::Frr.tools());
    if !require_root_and_tools(&tools) {
        return;
    }
    let topo = two_routers();
    let (r1, r2) = (topo.router("r1").unwrap(), topo.router("r2").unwrap());
    let both = [AfiSafi::Ipv6Unicast, AfiSafi::Ipv4Unicast];
    let session = |me: &Router, asn, peer: &Router, peer_asn, index| {
        let mut s = RouterSpec::new(me.router_id, asn).listen(addr(me, Family::V6));
        s = s.neighbor(
            Neighbor::new(addr(peer, Family::V6), peer_asn)
                .families(&both)
                .password("fl-md5-secret")
                .extended_next_hop(),
        );
        for p in prefixes(index) {
            s = s.announce(p);
        }
        s
    };
    let mut bird_spec = session(r1, 65001, r2, 65002, 1);
    bird_spec.neighbors[0].passive = true;
    let bird = Daemon::Bird.start(&topo, r1, &bird_spec);
    let frr = Daemon::Frr.start(&topo, r2, &session(r2, 65002, r1, 65001, 2));
    bird.wait_established(addr(r2, Family::V6), SESSION_TIMEOUT)
        .expect("bird session");
    frr.wait_established(addr(r1, Family::V6), SESSION_TIMEOUT)
        .expect("frr session");
    // BIRD is passive: the established connection is the one FRR opened to r1's port 179.
    let conns = topo
        .exec(&r1.netns, &["ss", "-Htn", "state", "established"])
        .unwrap();
    assert!(
        !conns.trim().is_empty(),
        "no established TCP connection in r1"
    );
    let local = format!("[{}]:179", addr(r1, Family::V6));
    assert!(
        conns.lines().all(|l| l.contains(&local)),
        "r1 opened a connection although passive: {conns}"
    );
    for p in prefixes(2) {
        bird.wait_route(p, ROUTE_TIMEOUT)
            .expect("bird learns frr's prefix");
    }
    for p in prefixes(1) {
        frr.wait_route(p, ROUTE_TIMEOUT)
            .expect("frr learns bird's prefix");
    }
}

/// A TCP MD5 password mismatch keeps the session down (so the password lines really reach the kernel).
#[test]
fn md5_mismatch_keeps_the_session_down() {
    let mut tools = Daemon::Bird.tools().to_vec();
    tools.extend(Daemon::Gobgp.tools());
    if !require_root_and_tools(&tools) {
        return;
    }
    let topo = two_routers();
    let (r1, r2) = (topo.router("r1").unwrap(), topo.router("r2").unwrap());
    let with_password = |me: &Router, asn, peer: &Router, peer_asn, pw: &str| {
        RouterSpec::new(me.router_id, asn)
            .listen(addr(me, Family::V6))
            .neighbor(Neighbor::new(addr(peer, Family::V6), peer_asn).password(pw))
    };
    let bird = Daemon::Bird.start(&topo, r1, &with_password(r1, 65001, r2, 65002, "one"));
    let _gobgp = Daemon::Gobgp.start(&topo, r2, &with_password(r2, 65002, r1, 65001, "two"));
    // Several connect retries (1-2 s each) happen in this window; none may succeed.
    let up = bird.wait_established(addr(r2, Family::V6), Duration::from_secs(5));
    assert!(
        up.is_err(),
        "session came up despite mismatched MD5 passwords"
    );
}

/// iBGP route reflection in one address family: BIRD reflects between a GoBGP client and an FRR client.
fn route_reflection(plan: AddressPlan) {
    let mut tools = Daemon::Bird.tools().to_vec();
    tools.extend(Daemon::Gobgp.tools());
    tools.extend(Daemon::Frr.tools());
    if !require_root_and_tools(&tools) {
        return;
    }
    let family = plan.primary();
    let topo = TopologyBuilder::new(plan)
        .router("rr", &[1])
        .router("c2", &[1])
        .router("c3", &[1])
        .build()
        .expect("build topology");
    let [rr, c2, c3] = ["rr", "c2", "c3"].map(|n| topo.router(n).unwrap());
    const AS: u32 = 65000;
    let client = |me: &Router, index| {
        let mut s = RouterSpec::new(me.router_id, AS)
            .listen(addr(me, family))
            .neighbor(Neighbor::new(addr(rr, family), AS));
        for p in prefixes(index)
            .into_iter()
            .filter(|p| Family::of(p.addr()) == family)
        {
            s = s.announce(p);
        }
        s
    };
    let rr_spec = RouterSpec::new(rr.router_id, AS)
        .listen(addr(rr, family))
        .neighbor(Neighbor::new(addr(c2, family), AS).route_reflector_client())
        .neighbor(Neighbor::new(addr(c3, family), AS).route_reflector_client());
    let reflector = Daemon::Bird.start(&topo, rr, &rr_spec);
    let gobgp = Daemon::Gobgp.start(&topo, c2, &client(c2, 2));
    let frr = Daemon::Frr.start(&topo, c3, &client(c3, 3));
    for c in [c2, c3] {
        reflector
            .wait_established(addr(c, family), SESSION_TIMEOUT)
            .expect("client session");
    }
    let [p6, p4] = prefixes(2);
    let p2 = if family == Family::V6 { p6 } else { p4 };
    let [p6, p4] = prefixes(3);
    let p3 = if family == Family::V6 { p6 } else { p4 };
    frr.wait_route(p2, ROUTE_TIMEOUT)
        .expect("frr learns gobgp's prefix through the reflector");
    gobgp
        .wait_route(p3, ROUTE_TIMEOUT)
        .expect("gobgp learns frr's prefix through the reflector");
}

#[test]
fn route_reflection_ipv6_only() {
    route_reflection(AddressPlan::Ipv6Only);
}

#[test]
fn route_reflection_ipv4_only() {
    route_reflection(AddressPlan::Ipv4Only);
}

/// Every option of the spec, written for each daemon, passes that daemon's own config check
/// (`bird -p`, `gobgpd -d`, `bgpd -C`): the options no interop test exercises (multihop) are covered here.
#[test]
fn config_writers_pass_each_daemons_check() {
    if !require_root_and_tools(&["bird", "gobgpd", "bgpd"]) {
        return;
    }
    let guard = xcluster_tests::Guard::for_current_test().expect("guard");
    let v6: IpAddr = "fd00:0:0:1::201".parse().unwrap();
    let v4: IpAddr = "198.18.1.201".parse().unwrap();
    let spec = RouterSpec::new("198.18.0.201".parse().unwrap(), 65001)
        .listen(v6)
        .listen(v4)
        .neighbor(
            Neighbor::new("fd00:0:0:2::202".parse().unwrap(), 65002)
                .families(&[AfiSafi::Ipv6Unicast, AfiSafi::Ipv4Unicast])
                .multihop(3)
                .password("pw")
                .passive()
                .extended_next_hop(),
        )
        .neighbor(
            Neighbor::new("198.18.1.203".parse().unwrap(), 65001)
                .route_reflector_client()
                .local_address(v4),
        )
        .announce(prefixes(1)[0])
        .announce(prefixes(1)[1]);
    let dir = guard.temp_dir();
    let bad = dir.join("bad-bgpd.conf");
    std::fs::write(
        &bad,
        "router bgp 65001\n neighbor 198.18.1.1 no-such-option\n",
    )
    .unwrap();
    assert!(
        Frr::check_config(&bad).is_err(),
        "bgpd -C check accepted an unknown command"
    );
    let checks: [(&str, String, Vec<&str>); 2] = [
        ("bird.conf", Bird::config(&spec), vec!["bird", "-p", "-c"]),
        (
            "gobgpd.toml",
            Gobgp::config(&spec),
            vec!["gobgpd", "-d", "-f"],
        ),
    ];
    let frr_conf = dir.join("bgpd.conf");
    let frr_text = Frr::config(&spec);
    std::fs::write(&frr_conf, &frr_text).unwrap();
    Frr::check_config(&frr_conf).unwrap_or_else(|e| panic!("bgpd.conf rejected: {e}\n{frr_text}"));
    for (file, text, cmd) in checks
        .into_iter()
        .chain([("bgpd.conf", frr_text.clone(), vec![])])
    {
        if !cmd.is_empty() {
            let path = dir.join(file);
            std::fs::write(&path, &text).unwrap();
            let mut c = std::process::Command::new(cmd[0]);
            c.args(&cmd[1..]).arg(&path);
            xcluster_tests::exec::run(&mut c)
                .unwrap_or_else(|e| panic!("{file} rejected: {e}\n{text}"));
        }
        for needle in ["fd00:0:0:2::202", "198.18.1.203", "pw"] {
            assert!(text.contains(needle), "{file} lacks {needle}:\n{text}");
        }
    }
}
