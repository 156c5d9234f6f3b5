//! Hold-timer expiry with a real peer gone silent: nftables in the peer's namespace drops the session's packets;
//! fairlead sends NOTIFICATION 4/0, leaves Established and withdraws the peer's routes (Loc-RIB and subscribers).
//! Once the packets flow again the session and routes come back.

mod api_common;
mod speaker_peers;

use std::time::{Duration, Instant};

use bgpd::fsm::State;
use ipnet::IpNet;

use api_common::{need_root, stdout};
use speaker_peers::{Fairlead, Kind, Pair, Peer, Plan, drain, wait};

const HOLD: u16 = 9;

/// Drops BGP both ways in the peer's namespace, as a silent peer (or a dead link) would look.
const SILENCE: &str = "table inet fl_hold {
  chain input { type filter hook input priority 0; policy accept; tcp sport 179 drop; tcp dport 179 drop; }
  chain output { type filter hook output priority 0; policy accept; tcp sport 179 drop; tcp dport 179 drop; }
}
";

fn hold_timer_expires(kind: Kind, plan: Plan, tag: &str) {
    if !need_root(tag) {
        return;
    }
    let pair = Pair::create(tag);
    let mut peer = Peer::new(kind, plan, &pair.b, false, HOLD);
    let (a, b) = plan.peer_routes();
    let routes: Vec<IpNet> = a.into_iter().chain(b).collect();
    peer.start(&routes, false);
    let fl = Fairlead::start(&pair.a, plan, &[], None, HOLD);
    wait(
        Duration::from_secs(60),
        "the peer's routes in fairlead's Loc-RIB",
        || routes.iter().all(|p| !fl.best(p).is_empty()),
    );
    let up = fl.neighbor();
    assert_eq!(up.negotiated.as_ref().map(|n| n.hold_time), Some(HOLD));
    let mut sub = fl.subscribe();

    let script = std::env::temp_dir().join(format!("{}-silence.nft", pair.b.name));
    std::fs::write(&script, SILENCE).unwrap();
    stdout(
        pair.b.exec("nft", &["-f", &script.to_string_lossy()]),
        "nft silence",
    );
    let _ = std::fs::remove_file(&script);
    let t0 = Instant::now();
    wait(
        Duration::from_secs(30),
        "fairlead leaves Established",
        || fl.neighbor().state != State::Established,
    );
    let elapsed = t0.elapsed();
    // The last KEEPALIVE arrived at most a keepalive interval (3 s) before the drop: expiry comes 6-9 s later.
    assert!(
        elapsed >= Duration::from_secs(5),
        "down after {elapsed:?}: before the hold time could run out"
    );
    let down = fl.neighbor();
    let sent = down
        .last_notification_sent
        .clone()
        .expect("a NOTIFICATION sent");
    assert_eq!((sent.code, sent.subcode), (4, 0), "Hold Timer Expired");
    assert_eq!(
        down.messages.sent.notification,
        up.messages.sent.notification + 1
    );
    assert_eq!(down.flaps, up.flaps + 1);
    assert!(down.stale.is_none(), "no graceful restart negotiated");
    for p in &routes {
        assert!(fl.best(p).is_empty(), "{p} withdrawn from the Loc-RIB");
    }
    let changes = drain(&mut sub);
    for p in &routes {
        assert!(
            changes.iter().any(|c| c.prefix == *p && c.new.is_empty()),
            "the subscriber saw {p} withdrawn: {changes:?}"
        );
    }

    // Packets flow again: the session and the routes return.
    stdout(
        pair.b.exec("nft", &["delete", "table", "inet", "fl_hold"]),
        "nft delete",
    );
    wait(
        Duration::from_secs(90),
        "the session and routes back",
        || {
            fl.neighbor().state == State::Established
                && routes.iter().all(|p| !fl.best(p).is_empty())
        },
    );
    let _ = peer.log();
    fl.stop(true);
}

#[test]
fn hold_timer_expiry_bird_dual_stack_over_ipv6() {
    hold_timer_expires(Kind::Bird, Plan::DualStackV6Primary, "flhold-bd6");
}

#[test]
fn hold_timer_expiry_bird_ipv6_only() {
    hold_timer_expires(Kind::Bird, Plan::Ipv6Only, "flhold-bv6");
}

#[test]
fn hold_timer_expiry_bird_dual_stack_over_ipv4() {
    hold_timer_expires(Kind::Bird, Plan::DualStackV4Primary, "flhold-bd4");
}

#[test]
fn hold_timer_expiry_bird_ipv4_only() {
    hold_timer_expires(Kind::Bird, Plan::Ipv4Only, "flhold-bv4");
}

#[test]
fn hold_timer_expiry_gobgp_dual_stack_over_ipv6() {
    hold_timer_expires(Kind::Gobgp, Plan::DualStackV6Primary, "flhold-gd6");
}

#[test]
fn hold_timer_expiry_gobgp_ipv4_only() {
    hold_timer_expires(Kind::Gobgp, Plan::Ipv4Only, "flhold-gv4");
}

#[test]
fn hold_timer_expiry_frr_dual_stack_over_ipv6() {
    hold_timer_expires(Kind::Frr, Plan::DualStackV6Primary, "flhold-fd6");
}

#[test]
fn hold_timer_expiry_frr_ipv4_only() {
    hold_timer_expires(Kind::Frr, Plan::Ipv4Only, "flhold-fv4");
}
