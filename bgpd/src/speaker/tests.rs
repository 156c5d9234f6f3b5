//! Speaker tests: two speakers on loopback addresses exchange originated routes of both families.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use std::collections::HashMap;

use super::*;
use crate::rib::PathSource;

const WAIT: Duration = Duration::from_secs(10);
const LO1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const LO2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const V4: Family = (Afi::Ipv4, Safi::Unicast);
const V6: Family = (Afi::Ipv6, Safi::Unicast);

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fast(n: &mut Neighbor) {
    n.session.fsm.hold_time = 9;
    n.session.fsm.connect_retry_time = Duration::from_millis(200);
    n.session.fsm.connect_retry_max = Duration::from_secs(1);
}

/// The Loc-RIB as a subscriber sees it: the snapshot plus every change applied.
struct Watch {
    sub: Subscription,
    current: HashMap<IpNet, BestChange>,
}

impl Watch {
    fn new(sub: Subscription) -> Self {
        let current = sub.snapshot.iter().map(|c| (c.prefix, c.clone())).collect();
        Watch { sub, current }
    }

    /// Waits (bounded) until the latest change of `prefix` satisfies `pred` (an unseen prefix counts as empty).
    async fn until(&mut self, prefix: &str, pred: impl Fn(&[Route]) -> bool) -> BestChange {
        let prefix: IpNet = prefix.parse().unwrap();
        let fut = async {
            loop {
                let latest = self.current.get(&prefix);
                if pred(latest.map_or(&[][..], |c| &c.new)) {
                    return latest.cloned();
                }
                let c = self.sub.changes.recv().await.expect("subscription closed");
                self.current.insert(c.prefix, c);
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {prefix}"))
            .unwrap_or_else(|| panic!("{prefix} never seen"))
    }
}

async fn wait_state(s: &Speaker, want: State) -> NeighborState {
    let fut = async {
        loop {
            if let Some(n) = s
                .neighbors()
                .await
                .unwrap()
                .into_iter()
                .find(|n| n.state == want)
            {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {want}"))
}

/// A (65001, 127.0.0.1, listening, passive) and B (65002, 127.0.0.2, active) over an IPv4 session that carries
/// IPv6 routes too, with configured IPv6 next hops.
async fn two_speakers() -> ((Speaker, Neighbor), (Speaker, Neighbor)) {
    let port = free_port(LO1);
    let ca = SpeakerConfig {
        asn: 65001,
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        cluster_id: None,
        listen: vec![SocketAddr::new(IpAddr::V4(LO1), port)],
    };
    let cb = SpeakerConfig {
        asn: 65002,
        router_id: Ipv4Addr::new(198, 18, 0, 2),
        cluster_id: None,
        listen: vec![],
    };
    let (a, _) = Speaker::start(ca.clone()).unwrap();
    let (b, _) = Speaker::start(cb.clone()).unwrap();
    let mut nb = Neighbor::new(&ca, IpAddr::V4(LO2), 65002);
    nb.session.fsm.passive = true;
    nb.local_ipv6 = Some("fd00::a".parse().unwrap());
    fast(&mut nb);
    let mut na = Neighbor::new(&cb, IpAddr::V4(LO1), 65001);
    na.session.remote_port = port;
    na.session.local_addr = Some(IpAddr::V4(LO2));
    na.local_ipv6 = Some("fd00::b".parse().unwrap());
    fast(&mut na);
    a.add_peer(nb.clone()).await.unwrap();
    b.add_peer(na.clone()).await.unwrap();
    ((a, nb), (b, na))
}

#[tokio::test]
async fn speakers_exchange_dual_stack_routes() {
    let ((a, nb), (b, _na)) = two_speakers().await;
    let mut sub = Watch::new(b.subscribe().await.unwrap());
    a.originate("fd00:1::/64".parse().unwrap(), PathAttributes::default())
        .await
        .unwrap();
    a.originate("198.18.1.0/24".parse().unwrap(), PathAttributes::default())
        .await
        .unwrap();

    let c6 = sub.until("fd00:1::/64", |n| !n.is_empty()).await;
    let c4 = sub.until("198.18.1.0/24", |n| !n.is_empty()).await;
    let a_id = PeerId::new(IpAddr::V4(LO1));
    for (c, nh) in [
        (&c6, IpAddr::V6("fd00::a".parse::<Ipv6Addr>().unwrap())),
        (&c4, IpAddr::V4(LO1)),
    ] {
        let r = &c.new[0];
        assert_eq!(r.source, PathSource::Peer(a_id));
        assert_eq!(r.attrs.next_hop, Some(nh), "{}", c.prefix);
        assert_eq!(
            r.attrs.as_path,
            vec![crate::packet::AsPathSegment::Sequence(vec![65001])]
        );
    }
    assert_eq!(c6.family, V6);
    assert_eq!(c4.family, V4);

    let n = wait_state(&b, State::Established).await;
    assert_eq!(n.id, a_id);
    assert_eq!(n.accepted.get(&V4), Some(&1));
    assert_eq!(n.accepted.get(&V6), Some(&1));
    assert_eq!(b.loc_rib(V6).await.unwrap().len(), 1);
    assert_eq!(
        b.best("198.18.1.0/24".parse().unwrap())
            .await
            .unwrap()
            .len(),
        1
    );

    // A withdraws one; B loses it.
    a.withdraw("fd00:1::/64".parse().unwrap()).await.unwrap();
    sub.until("fd00:1::/64", |n| n.is_empty()).await;
    // A late subscriber starts from a snapshot.
    let late = b.subscribe().await.unwrap();
    assert_eq!(late.snapshot.len(), 1);
    assert_eq!(
        late.snapshot[0].prefix,
        "198.18.1.0/24".parse::<IpNet>().unwrap()
    );

    // A drops B: the session goes down and B withdraws what it learned.
    a.remove_peer(nb.id()).await.unwrap();
    sub.until("198.18.1.0/24", |n| n.is_empty()).await;
    assert!(a.neighbors().await.unwrap().is_empty());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn routes_sent_before_establishment_arrive_and_soft_reset_resends() {
    let ((a, _nb), (b, na)) = two_speakers().await;
    // Originated before the session is up: sent by the initial full export.
    a.originate("198.18.2.0/24".parse().unwrap(), PathAttributes::default())
        .await
        .unwrap();
    let mut sub = Watch::new(b.subscribe().await.unwrap());
    sub.until("198.18.2.0/24", |n| !n.is_empty()).await;
    // A soft reset in both directions keeps the route and the session.
    b.reset_peer(na.id(), true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = wait_state(&b, State::Established).await;
    assert_eq!(n.flaps, 0);
    assert_eq!(
        b.best("198.18.2.0/24".parse().unwrap())
            .await
            .unwrap()
            .len(),
        1
    );
    // A hard reset brings the session down (routes withdrawn) and back up (routes re-learned).
    b.reset_peer(na.id(), false).await.unwrap();
    sub.until("198.18.2.0/24", |n| n.is_empty()).await;
    sub.until("198.18.2.0/24", |n| !n.is_empty()).await;
    assert_eq!(wait_state(&b, State::Established).await.flaps, 1);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn duplicate_and_unknown_peers_are_errors() {
    let ((a, nb), (b, _)) = two_speakers().await;
    assert!(matches!(
        a.add_peer(nb.clone()).await,
        Err(SpeakerError::DuplicatePeer(_))
    ));
    let unknown = PeerId::new(IpAddr::V4(Ipv4Addr::new(198, 18, 9, 9)));
    assert!(matches!(
        a.remove_peer(unknown).await,
        Err(SpeakerError::UnknownPeer(_))
    ));
    assert!(matches!(
        a.reset_peer(unknown, false).await,
        Err(SpeakerError::UnknownPeer(_))
    ));
    a.shutdown().await.unwrap();
    assert!(matches!(a.neighbors().await, Err(SpeakerError::Stopped)));
    b.shutdown().await.unwrap();
}

#[test]
fn build_updates_groups_by_family_and_attributes() {
    let x = Arc::new(PathAttributes {
        med: Some(1),
        ..Default::default()
    });
    let y = Arc::new(PathAttributes {
        med: Some(2),
        ..Default::default()
    });
    let p = |s: &str| s.parse::<IpNet>().unwrap();
    let mut out = vec![
        OutChange::Announce {
            prefix: p("198.18.0.0/24"),
            attrs: x.clone(),
        },
        OutChange::Announce {
            prefix: p("fd00:1::/64"),
            attrs: x.clone(),
        },
        OutChange::Announce {
            prefix: p("198.18.1.0/24"),
            attrs: x.clone(),
        },
        OutChange::Announce {
            prefix: p("198.18.2.0/24"),
            attrs: y.clone(),
        },
        OutChange::Withdraw {
            prefix: p("fd00:2::/64"),
        },
        OutChange::Withdraw {
            prefix: p("198.18.3.0/24"),
        },
    ];
    for i in 0..250u32 {
        out.push(OutChange::Withdraw {
            prefix: IpNet::new(
                IpAddr::V6(Ipv6Addr::from(0xfd00u128 << 112 | u128::from(i) << 64)),
                64,
            )
            .unwrap(),
        });
    }
    let u = build_updates(out);
    // Withdrawals per family (IPv6 chunked 100/100/51), then announcements per (attributes, family).
    assert_eq!(
        u.iter().map(|u| u.withdrawn.len()).collect::<Vec<_>>(),
        vec![1, 100, 100, 51, 0, 0, 0]
    );
    assert_eq!(u[4].nlri, vec![p("198.18.0.0/24"), p("198.18.1.0/24")]);
    assert_eq!(u[5].nlri, vec![p("fd00:1::/64")]);
    assert_eq!(u[6].nlri, vec![p("198.18.2.0/24")]);
    assert_eq!(u[6].attributes.as_ref().unwrap().med, Some(2));
}
