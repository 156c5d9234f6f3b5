//! Graceful restart (RFC 4724) with real peers, both ways: the peer restarts and fairlead keeps its routes as
//! stale until its End-of-RIB; fairlead restarts abruptly and the peer (helper) keeps fairlead's routes until
//! fairlead re-sends them. BIRD and GoBGP; IPv6 session with both families, IPv6-only and IPv4-only.

mod api_common;
mod speaker_peers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bgpd::fsm::State;
use bgpd::packet::Safi;
use ipnet::IpNet;

use api_common::need_root;
use speaker_peers::{Fairlead, Kind, Pair, Peer, Plan, afi_of, drain, wait};

const HOLD: u16 = 9;

/// The peer is killed (no NOTIFICATION) and comes back with one route of each family fewer: meanwhile fairlead
/// keeps every route as stale and emits no withdrawal; after its End-of-RIB the routes are fresh and the missing
/// ones are swept.
fn peer_restarts(kind: Kind, plan: Plan, tag: &str) {
    if !need_root(tag) {
        return;
    }
    let pair = Pair::create(tag);
    let mut peer = Peer::new(kind, plan, &pair.b, true, HOLD);
    let (keep, gone) = plan.peer_routes();
    let all: Vec<IpNet> = keep.iter().chain(&gone).copied().collect();
    peer.start(&all, false);
    let (fl_routes, _) = plan.fairlead_routes();
    let fl = Fairlead::start(&pair.a, plan, &fl_routes, Some(false), HOLD);
    wait(
        Duration::from_secs(60),
        "the peer's routes in fairlead's Loc-RIB",
        || all.iter().all(|p| !fl.best(p).is_empty()),
    );
    wait(
        Duration::from_secs(30),
        "fairlead's routes at the peer",
        || fl_routes.iter().all(|p| peer.has_route_from_fairlead(p)),
    );
    let up = fl.neighbor();
    let gr = up
        .negotiated
        .as_ref()
        .and_then(|n| n.graceful_restart.clone())
        .unwrap_or_else(|| panic!("the peer advertised graceful restart: {up:?}"));
    assert_eq!(gr.restart_time, speaker_peers::RESTART_TIME);
    let mut sub = fl.subscribe();
    assert_eq!(sub.snapshot.len(), all.len() + fl_routes.len());

    peer.kill();
    wait(
        Duration::from_secs(15),
        "fairlead sees the session drop",
        || fl.neighbor().stale.is_some(),
    );
    let down = fl.neighbor();
    assert_ne!(down.state, State::Established);
    let mut stale_families = down.stale.clone().unwrap().1;
    stale_families.sort();
    let mut want: Vec<_> = plan
        .families()
        .into_iter()
        .map(|a| (a, Safi::Unicast))
        .collect();
    want.sort();
    assert_eq!(stale_families, want);
    // While the peer is away: every route of it still in the Loc-RIB, marked stale, in the Adj-RIB-In too.
    for p in &all {
        let best = fl.best(p);
        assert!(
            best.len() == 1 && best[0].stale,
            "{p} during the restart: {best:?}"
        );
        let adj = fl
            .block_on(
                fl.speaker
                    .adj_rib_in(fl.peer_id(plan), (afi_of(p), Safi::Unicast)),
            )
            .unwrap();
        assert!(adj.iter().any(|(q, r)| q == p && r.stale), "{p}: {adj:?}");
    }
    // Hold it down a moment longer (connection attempts are refused meanwhile), then check the stream.
    std::thread::sleep(Duration::from_secs(2));
    let during = drain(&mut sub);
    assert!(
        during.iter().all(|c| !c.new.is_empty()),
        "no withdrawal while the peer restarts: {during:?}"
    );
    assert!(
        all.iter()
            .all(|p| fl.best(p).first().is_some_and(|r| r.stale)),
        "still stale"
    );

    peer.start(&keep, true);
    wait(
        Duration::from_secs(60),
        "fresh routes, the missing ones swept",
        || {
            let n = fl.neighbor();
            n.state == State::Established
                && n.stale.is_none()
                && keep
                    .iter()
                    .all(|p| fl.best(p).first().is_some_and(|r| !r.stale))
                && gone.iter().all(|p| fl.best(p).is_empty())
        },
    );
    let after = drain(&mut sub);
    for c in &after {
        assert!(
            !keep.contains(&c.prefix) || !c.new.is_empty(),
            "a kept route was withdrawn: {c:?}"
        );
    }
    for p in &gone {
        let withdrawals = after
            .iter()
            .filter(|c| c.prefix == *p && c.new.is_empty())
            .count();
        assert_eq!(withdrawals, 1, "{p} swept once: {after:?}");
    }
    let n = fl.neighbor();
    assert_eq!(n.flaps, up.flaps + 1);
    // Swept by the End-of-RIB, well before the restart time ran out.
    assert!(
        n.established_since.unwrap().elapsed()
            < Duration::from_secs(u64::from(speaker_peers::RESTART_TIME)),
        "{n:?}"
    );
    wait(
        Duration::from_secs(30),
        "fairlead's routes at the restarted peer",
        || fl_routes.iter().all(|p| peer.has_route_from_fairlead(p)),
    );
    fl.stop(true);
}

/// fairlead's speaker dies without a NOTIFICATION: the peer keeps its routes (polled all along, never missing);
/// a new speaker (Restart State bit set) re-sends all but one of each family and its End-of-RIB: the peer's
/// table ends exactly right.
fn fairlead_restarts(kind: Kind, plan: Plan, tag: &str) {
    if !need_root(tag) {
        return;
    }
    let pair = Pair::create(tag);
    let mut peer = Peer::new(kind, plan, &pair.b, true, HOLD);
    let (peer_routes, _) = plan.peer_routes();
    peer.start(&peer_routes, false);
    let (keep, gone) = plan.fairlead_routes();
    let all: Vec<IpNet> = keep.iter().chain(&gone).copied().collect();
    let fl = Fairlead::start(&pair.a, plan, &all, Some(false), HOLD);
    wait(
        Duration::from_secs(60),
        "fairlead's routes at the peer",
        || all.iter().all(|p| peer.has_route_from_fairlead(p)),
    );
    wait(
        Duration::from_secs(30),
        "the peer's routes at fairlead",
        || peer_routes.iter().all(|p| !fl.best(p).is_empty()),
    );
    assert!(
        fl.neighbor()
            .negotiated
            .and_then(|n| n.graceful_restart)
            .is_some(),
        "graceful restart negotiated"
    );

    let watching = AtomicBool::new(true);
    let (polls, missing) = std::thread::scope(|s| {
        // Stops the watcher however this scope ends (a failed assertion included), so the scope can join it.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        let stop_watcher = StopOnDrop(&watching);
        let watcher = s.spawn(|| {
            let (mut polls, mut missing) = (0u32, Vec::new());
            while watching.load(Ordering::Relaxed) {
                for p in &keep {
                    if !peer.has_route_from_fairlead(p) {
                        missing.push(format!("{p}: {}", peer.route(p)));
                    }
                }
                polls += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (polls, missing)
        });
        fl.stop(false);
        wait(Duration::from_secs(15), "the peer sees fairlead go", || {
            !peer_established(&peer)
        });
        let session = peer.session();
        if kind == Kind::Bird {
            assert!(
                session.contains("Neighbor graceful restart active"),
                "{session}"
            );
        }
        for p in &all {
            let route = peer.route(p);
            assert!(
                peer.has_route_from_fairlead(p),
                "{p} kept by the helper: {route}"
            );
            if kind == Kind::Frr {
                assert!(route.contains("stale"), "{p} shown stale: {route}");
            }
            if kind == Kind::Gobgp {
                // GoBGP marks a stale path with an `S` in front of its row.
                assert!(
                    route
                        .lines()
                        .any(|l| l.starts_with('S') && l.contains(&p.to_string())),
                    "{p} shown stale: {route}"
                );
            }
        }
        std::thread::sleep(Duration::from_secs(2));
        let fl2 = Fairlead::start(&pair.a, plan, &keep, Some(true), HOLD);
        let t0 = std::time::Instant::now();
        while !(peer_established(&peer)
            && keep.iter().all(|p| peer.has_route_from_fairlead(p))
            && gone.iter().all(|p| !peer.has_route_from_fairlead(p)))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the peer's table after fairlead's End-of-RIB: {}\n{:?}\n{}\nfairlead: {:?}\nSS {}",
                peer.session(),
                all.iter().map(|p| peer.route(p)).collect::<Vec<_>>(),
                peer.log(),
                fl2.neighbor(),
                String::from_utf8_lossy(&pair.b.exec("ss", &["-tan"]).stdout)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        wait(
            Duration::from_secs(30),
            "the peer's routes at the new speaker",
            || peer_routes.iter().all(|p| !fl2.best(p).is_empty()),
        );
        assert_eq!(
            fl2.neighbor().negotiated.map(|n| n.families.len()),
            Some(plan.families().len())
        );
        drop(stop_watcher);
        let r = watcher.join().unwrap();
        fl2.stop(true);
        r
    });
    assert!(polls >= 10, "the watcher polled {polls} times");
    assert!(
        missing.is_empty(),
        "fairlead's routes flapped at the peer: {missing:?}"
    );
}

fn peer_established(peer: &Peer) -> bool {
    let s = peer.session();
    match peer.kind {
        Kind::Bird => {
            s.lines().next_back().is_some() && s.contains("BGP state:          Established")
        }
        Kind::Gobgp | Kind::Frr => s.to_lowercase().contains("bgp state = established"),
    }
}

#[test]
fn bird_restarts_dual_stack_over_ipv6() {
    peer_restarts(Kind::Bird, Plan::DualStackV6Primary, "flgr-bpd6");
}

#[test]
fn bird_restarts_ipv6_only() {
    peer_restarts(Kind::Bird, Plan::Ipv6Only, "flgr-bpv6");
}

#[test]
fn bird_restarts_dual_stack_over_ipv4() {
    peer_restarts(Kind::Bird, Plan::DualStackV4Primary, "flgr-bpd4");
}

#[test]
fn bird_restarts_ipv4_only() {
    peer_restarts(Kind::Bird, Plan::Ipv4Only, "flgr-bpv4");
}

#[test]
fn gobgp_restarts_dual_stack_over_ipv6() {
    peer_restarts(Kind::Gobgp, Plan::DualStackV6Primary, "flgr-gpd6");
}

#[test]
fn gobgp_restarts_ipv4_only() {
    peer_restarts(Kind::Gobgp, Plan::Ipv4Only, "flgr-gpv4");
}

#[test]
fn fairlead_restarts_bird_helper_dual_stack_over_ipv6() {
    fairlead_restarts(Kind::Bird, Plan::DualStackV6Primary, "flgr-bfd6");
}

#[test]
fn fairlead_restarts_bird_helper_ipv6_only() {
    fairlead_restarts(Kind::Bird, Plan::Ipv6Only, "flgr-bfv6");
}

#[test]
fn fairlead_restarts_bird_helper_dual_stack_over_ipv4() {
    fairlead_restarts(Kind::Bird, Plan::DualStackV4Primary, "flgr-bfd4");
}

#[test]
fn fairlead_restarts_bird_helper_ipv4_only() {
    fairlead_restarts(Kind::Bird, Plan::Ipv4Only, "flgr-bfv4");
}

#[test]
fn fairlead_restarts_gobgp_helper_dual_stack_over_ipv6() {
    fairlead_restarts(Kind::Gobgp, Plan::DualStackV6Primary, "flgr-gfd6");
}

#[test]
fn fairlead_restarts_gobgp_helper_ipv4_only() {
    fairlead_restarts(Kind::Gobgp, Plan::Ipv4Only, "flgr-gfv4");
}

#[test]
fn frr_restarts_dual_stack_over_ipv6() {
    peer_restarts(Kind::Frr, Plan::DualStackV6Primary, "flgr-fpd6");
}

#[test]
fn frr_restarts_ipv4_only() {
    peer_restarts(Kind::Frr, Plan::Ipv4Only, "flgr-fpv4");
}

#[test]
fn fairlead_restarts_frr_helper_dual_stack_over_ipv6() {
    fairlead_restarts(Kind::Frr, Plan::DualStackV6Primary, "flgr-ffd6");
}

#[test]
fn fairlead_restarts_frr_helper_ipv4_only() {
    fairlead_restarts(Kind::Frr, Plan::Ipv4Only, "flgr-ffv4");
}
