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
    assert!(n.messages.received.update >= 2, "{:?}", n.messages);
    assert!(
        n.messages.sent.open >= 1 && n.messages.received.open >= 1,
        "{:?}",
        n.messages
    );
    assert_eq!(n.local.map(|l| l.ip()), Some(IpAddr::V4(LO2)));
    let na = wait_state(&a, State::Established).await;
    assert_eq!(na.advertised.get(&V4), Some(&1));
    assert_eq!(na.advertised.get(&V6), Some(&1));
    // Disabling stops the session for good; enabling brings it back.
    b.set_peer_enabled(a_id, false).await.unwrap();
    let idle = wait_state(&b, State::Idle).await;
    assert!(idle.admin_down && idle.down_since.is_some());
    sub.until("fd00:1::/64", |n| n.is_empty()).await;
    b.set_peer_enabled(a_id, true).await.unwrap();
    sub.until("fd00:1::/64", |n| !n.is_empty()).await;
    assert_eq!(wait_state(&b, State::Established).await.flaps, 1);
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
async fn max_prefix_teardown_closes_the_session() {
    let ((a, nb), (b, _na)) = two_speakers().await;
    // A allows B one IPv4 prefix.
    let mut limited = nb.clone();
    limited.rib.max_prefix =
        Some(crate::policy::MaxPrefix::new(1, crate::policy::MaxPrefixAction::TearDown).unwrap());
    a.update_peer(limited).await.unwrap();
    assert_eq!(
        wait_state(&a, State::Established).await.flaps,
        0,
        "a policy change must not reset the session"
    );
    b.originate("198.18.7.0/24".parse().unwrap(), PathAttributes::default())
        .await
        .unwrap();
    b.originate("198.18.8.0/24".parse().unwrap(), PathAttributes::default())
        .await
        .unwrap();
    // A sends Cease / Maximum Number of Prefixes Reached: the session drops (and comes back, then drops again).
    let fut = async {
        loop {
            let n = a.neighbors().await.unwrap();
            if n[0].flaps >= 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("session never torn down");
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
    let mut bad = nb.clone();
    bad.session.fsm.hold_time = 2;
    bad.session.remote = IpAddr::V4(Ipv4Addr::new(198, 18, 9, 8));
    assert!(matches!(
        a.add_peer(bad).await,
        Err(SpeakerError::Session(SessionError::Config(_)))
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

// ---- interop with a real peer: gobgpd in one namespace, a Speaker in the other ----

/// gobgpd started in a namespace; killed (by PID) and reaped on drop.
struct Gobgpd {
    child: std::process::Child,
    ns: String,
    conf: std::path::PathBuf,
}

impl Gobgpd {
    fn start(ns: &str, config: &str) -> Gobgpd {
        let conf = std::env::temp_dir().join(format!("{ns}-gobgpd.toml"));
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(conf.with_extension("log")).unwrap();
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "gobgpd",
                "-p",
                "--pprof-disable",
                "--api-hosts",
                "127.0.0.1:50051",
                "-f",
            ])
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start gobgpd");
        let g = Gobgpd {
            child,
            ns: ns.to_owned(),
            conf,
        };
        let t0 = std::time::Instant::now();
        while g.cli(&["global"]).is_none() {
            assert!(
                t0.elapsed() < WAIT,
                "gobgpd did not answer; log: {}",
                g.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        g
    }

    /// `gobgp <args>` against this daemon; `None` when it fails.
    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "gobgp",
                "-u",
                "127.0.0.1",
                "-p",
                "50051",
            ])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.conf.with_extension("log")).unwrap_or_default()
    }

    /// Polls (bounded) until a line of `gobgp global rib -a <family>` has all of `words`.
    fn wait_rib_line(&self, family: &str, words: &[&str]) {
        let t0 = std::time::Instant::now();
        loop {
            let rib = self
                .cli(&["global", "rib", "-a", family])
                .unwrap_or_default();
            if rib
                .lines()
                .any(|l| words.iter().all(|w| l.split_whitespace().any(|x| x == *w)))
            {
                return;
            }
            assert!(
                t0.elapsed() < WAIT,
                "gobgpd {family} RIB lacks {words:?}:\n{rib}\nlog: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gobgpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.conf);
        let _ = std::fs::remove_file(self.conf.with_extension("log"));
    }
}

/// gobgpd (65001) and a Speaker (65002) with an IPv6 session for IPv6 routes and an IPv4 session for IPv4 routes
/// over one veth pair, both with TCP-MD5; each side originates one prefix per family and must learn the other's.
#[test]
fn interop_with_gobgpd_ipv6_and_ipv4_sessions_md5() {
    if !crate::session::tests::need_root("interop_with_gobgpd_ipv6_and_ipv4_sessions_md5") {
        return;
    }
    let ns = crate::session::tests::NetnsPair::create("fl-spk-gobgp");
    ns.ip(0, &["addr", "add", "fd00:5::1/64", "dev", "va", "nodad"]);
    ns.ip(1, &["addr", "add", "fd00:5::2/64", "dev", "vb", "nodad"]);
    ns.ip(0, &["addr", "add", "198.18.5.1/24", "dev", "va"]);
    ns.ip(1, &["addr", "add", "198.18.5.2/24", "dev", "vb"]);
    let mut conf =
        String::from("[global.config]\n  as = 65001\n  router-id = \"198.18.5.1\"\n  port = 179\n");
    for (addr, fam) in [
        ("fd00:5::2", "ipv6-unicast"),
        ("198.18.5.2", "ipv4-unicast"),
    ] {
        conf.push_str(&format!(
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{addr}\"\n    peer-as = 65002\n    \
             auth-password = \"fairlead-md5\"\n  [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 9\n    \
             keepalive-interval = 3\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{fam}\"\n"
        ));
    }
    let gobgp = Gobgpd::start(&ns.names[0], &conf);
    gobgp
        .cli(&["global", "rib", "-a", "ipv6", "add", "fd00:a::/64"])
        .expect("add ipv6 route");
    gobgp
        .cli(&["global", "rib", "-a", "ipv4", "add", "198.18.100.0/24"])
        .expect("add ipv4 route");

    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let speaker = crate::session::tests::in_netns(&ns.names[1], move || {
        Box::pin(async move {
            let cfg = SpeakerConfig {
                asn: 65002,
                router_id: Ipv4Addr::new(198, 18, 5, 2),
                cluster_id: None,
                listen: crate::session::any_addrs(crate::session::BGP_PORT).to_vec(),
            };
            let (s, _) = Speaker::start(cfg.clone()).unwrap();
            for remote in ["fd00:5::1", "198.18.5.1"] {
                let mut n = Neighbor::new(&cfg, remote.parse().unwrap(), 65001);
                n.session.md5_key = Some(b"fairlead-md5".to_vec());
                fast(&mut n);
                s.add_peer(n).await.unwrap();
            }
            let mut sub = Watch::new(s.subscribe().await.unwrap());
            s.originate("fd00:b::/64".parse().unwrap(), PathAttributes::default())
                .await
                .unwrap();
            s.originate(
                "198.18.200.0/24".parse().unwrap(),
                PathAttributes::default(),
            )
            .await
            .unwrap();
            let r6 = sub.until("fd00:a::/64", |n| !n.is_empty()).await.new[0].clone();
            let r4 = sub.until("198.18.100.0/24", |n| !n.is_empty()).await.new[0].clone();
            let states = s.neighbors().await.unwrap();
            // Keep the sessions up while the other side is checked.
            let _ = tokio::task::spawn_blocking(move || done_rx.recv_timeout(WAIT * 2)).await;
            s.shutdown().await.unwrap();
            (r6, r4, states)
        })
    });
    // gobgpd learned our prefixes with our addresses as next hops.
    gobgp.wait_rib_line("ipv6", &["fd00:b::/64", "fd00:5::2"]);
    gobgp.wait_rib_line("ipv4", &["198.18.200.0/24", "198.18.5.2"]);
    let neighbors = gobgp.cli(&["neighbor"]).unwrap_or_default();
    let _ = done_tx.send(());
    let (r6, r4, states) = speaker.join().expect("speaker thread");
    assert_eq!(r6.attrs.next_hop, Some("fd00:5::1".parse().unwrap()));
    assert_eq!(r4.attrs.next_hop, Some("198.18.5.1".parse().unwrap()));
    assert_eq!(
        r6.attrs.as_path,
        vec![crate::packet::AsPathSegment::Sequence(vec![65001])]
    );
    assert_eq!(states.len(), 2);
    for n in &states {
        assert_eq!(n.state, State::Established, "{n:?}");
        let fams = &n.negotiated.as_ref().unwrap().families;
        assert_eq!(fams.len(), 1, "{n:?}");
    }
    assert_eq!(neighbors.matches("Establ").count(), 2, "{neighbors}");
}

// ---- graceful restart (RFC 4724) against a scripted peer ----

use crate::fsm::GracefulRestartConfig;
use crate::packet::{Capability, EncodeCxt, Message, OpenMsg};
use crate::session::tests::RawPeer;

const GR_PREFIX: &str = "198.18.50.0/24";

/// A speaker (65002 at 127.0.0.2, graceful restart) connecting to a listener at 127.0.0.1 played by the test.
async fn gr_speaker() -> (Speaker, tokio::net::TcpListener, Watch) {
    let peer_listener = tokio::net::TcpListener::bind((LO1, 0)).await.unwrap();
    let cfg = SpeakerConfig {
        asn: 65002,
        router_id: Ipv4Addr::new(198, 18, 0, 2),
        cluster_id: None,
        listen: vec![],
    };
    let (s, _) = Speaker::start(cfg.clone()).unwrap();
    let mut n = Neighbor::new(&cfg, IpAddr::V4(LO1), 65001);
    n.session.remote_port = peer_listener.local_addr().unwrap().port();
    n.session.local_addr = Some(IpAddr::V4(LO2));
    n.session.fsm.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: false,
        forwarding: vec![(Afi::Ipv4, Safi::Unicast, true)],
    });
    fast(&mut n);
    s.add_peer(n).await.unwrap();
    let watch = Watch::new(s.subscribe().await.unwrap());
    (s, peer_listener, watch)
}

/// Accepts the speaker's connection, completes the OPEN exchange with a graceful restart capability of
/// `restart_time` seconds and F bit `forwarding`, and announces GR_PREFIX.
async fn gr_session(
    listener: &tokio::net::TcpListener,
    restart_time: u16,
    forwarding: bool,
) -> RawPeer {
    let (s, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut p = RawPeer::new(s);
    let Some(Message::Open(ours)) = p.recv().await else {
        panic!("no OPEN")
    };
    assert!(ours.capabilities.iter().any(|c| matches!(
        c,
        Capability::GracefulRestart {
            restart_time: 120,
            ..
        }
    )));
    p.send(Message::Open(OpenMsg {
        version: 4,
        my_as: 65001,
        hold_time: 9,
        bgp_identifier: Ipv4Addr::new(198, 18, 0, 1),
        capabilities: vec![
            Capability::MultiProtocol {
                afi: Afi::Ipv4,
                safi: Safi::Unicast,
            },
            Capability::GracefulRestart {
                restarting: false,
                restart_time,
                families: vec![(Afi::Ipv4, Safi::Unicast, forwarding)],
            },
            Capability::FourOctetAs(65001),
        ],
    }))
    .await;
    p.cx = EncodeCxt {
        four_octet_as: true,
        ..Default::default()
    };
    assert_eq!(p.recv().await, Some(Message::Keepalive));
    p.send(Message::Keepalive).await;
    p.send(Message::Update(UpdateMsg {
        nlri: vec![GR_PREFIX.parse().unwrap()],
        attributes: Some(PathAttributes {
            as_path: vec![crate::packet::AsPathSegment::Sequence(vec![65001])],
            next_hop: Some(IpAddr::V4(LO1)),
            ..Default::default()
        }),
        ..Default::default()
    }))
    .await;
    p
}

#[tokio::test]
async fn graceful_restart_keeps_stale_routes_until_the_restart_time() {
    let (s, listener, mut watch) = gr_speaker().await;
    let peer = gr_session(&listener, 1, true).await;
    let r = watch.until(GR_PREFIX, |n| !n.is_empty()).await;
    assert!(!r.new[0].stale);
    // The peer's TCP session dies without a NOTIFICATION: routes stay, marked stale.
    drop(peer);
    let t0 = Instant::now();
    let fut = async {
        loop {
            let best = s.best(GR_PREFIX.parse().unwrap()).await.unwrap();
            if best.first().is_some_and(|r| r.stale) {
                return;
            }
            assert!(!best.is_empty(), "route withdrawn instead of kept stale");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("route never became stale");
    // The peer does not come back within its restart time (1 s): the stale route goes.
    watch.until(GR_PREFIX, |n| n.is_empty()).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "stale route removed after {:?}",
        t0.elapsed()
    );
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn graceful_restart_end_of_rib_refreshes_stale_routes() {
    let (s, listener, mut watch) = gr_speaker().await;
    let peer = gr_session(&listener, 1, true).await;
    watch.until(GR_PREFIX, |n| !n.is_empty()).await;
    drop(peer);
    // The peer is back at once, re-announces and ends with End-of-RIB.
    let mut peer = gr_session(&listener, 1, true).await;
    peer.send(Message::Update(UpdateMsg {
        end_of_rib: Some((Afi::Ipv4, Safi::Unicast)),
        ..Default::default()
    }))
    .await;
    let fut = async {
        loop {
            let best = s.best(GR_PREFIX.parse().unwrap()).await.unwrap();
            if best.first().is_some_and(|r| !r.stale)
                && s.neighbors().await.unwrap()[0].state == State::Established
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("route not refreshed");
    // Past the old restart time the route is still there: End-of-RIB cancelled the sweep.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let best = s.best(GR_PREFIX.parse().unwrap()).await.unwrap();
    assert_eq!(best.len(), 1);
    assert!(!best[0].stale);
    // And subscribers never saw it go away.
    let prefix: IpNet = GR_PREFIX.parse().unwrap();
    while let Ok(c) = watch.sub.changes.try_recv() {
        assert!(
            !(c.prefix == prefix && c.new.is_empty()),
            "subscribers saw {prefix} withdrawn"
        );
    }
    s.shutdown().await.unwrap();
    drop(peer);
}

#[tokio::test]
async fn graceful_restart_without_preserved_forwarding_flushes_stale_routes_on_reconnect() {
    let (s, listener, mut watch) = gr_speaker().await;
    let peer = gr_session(&listener, 120, true).await;
    watch.until(GR_PREFIX, |n| !n.is_empty()).await;
    drop(peer);
    let fut = async {
        while !s.best(GR_PREFIX.parse().unwrap()).await.unwrap()[0].stale {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, fut).await.expect("stale");
    assert!(s.neighbors().await.unwrap()[0].stale.is_some());
    // Back with the F bit clear: the stale route goes at once (no End-of-RIB, 120 s restart time), and the
    // route it announces again arrives fresh.
    let t0 = Instant::now();
    let _peer = gr_session(&listener, 120, false).await;
    let gone = watch.until(GR_PREFIX, |n| n.is_empty()).await;
    assert!(gone.old[0].stale, "{gone:?}");
    let back = watch.until(GR_PREFIX, |n| !n.is_empty()).await;
    assert!(!back.new[0].stale);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(s.neighbors().await.unwrap()[0].stale, None);
    s.shutdown().await.unwrap();
}

// ---- interop with BIRD 2: one IPv6 session carrying IPv4 routes with IPv6 next hops (RFC 8950) ----

/// bird started in a namespace; killed (by PID) and reaped on drop.
struct Bird {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Bird {
    fn start(ns: &str, config: &str) -> Bird {
        let dir = std::env::temp_dir().join(format!("{ns}-bird"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bird.conf"), config).unwrap();
        let log = std::fs::File::create(dir.join("bird.log")).unwrap();
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(dir.join("bird.conf"))
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bird");
        let b = Bird { child, dir };
        let t0 = std::time::Instant::now();
        while !b.birdc(&["show", "status"]).contains("Daemon is up") {
            assert!(t0.elapsed() < WAIT, "bird did not answer; log: {}", b.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        b
    }

    fn birdc(&self, args: &[&str]) -> String {
        std::process::Command::new("birdc")
            .arg("-s")
            .arg(self.dir.join("bird.ctl"))
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }

    /// Polls (bounded) until `show route <prefix>` names protocol `fl` and the next hop `via`.
    fn wait_route(&self, prefix: &str, via: &str) {
        let t0 = std::time::Instant::now();
        loop {
            let out = self.birdc(&["show", "route", "for", prefix, "all"]);
            if out.contains(prefix) && out.contains("[fl ") && out.contains(&format!("via {via}")) {
                return;
            }
            assert!(
                t0.elapsed() < WAIT,
                "bird lacks {prefix} via {via}:\n{out}\nlog: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn interop_with_bird_ipv4_routes_over_an_ipv6_session() {
    if !crate::session::tests::need_root("interop_with_bird_ipv4_routes_over_an_ipv6_session") {
        return;
    }
    let ns = crate::session::tests::NetnsPair::create("fl-spk-bird");
    ns.ip(0, &["addr", "add", "fd00:6::1/64", "dev", "va", "nodad"]);
    ns.ip(1, &["addr", "add", "fd00:6::2/64", "dev", "vb", "nodad"]);
    let conf = "router id 198.18.6.1;\n\
        protocol device {}\n\
        protocol static s4 { ipv4; route 198.18.101.0/24 blackhole; }\n\
        protocol static s6 { ipv6; route fd00:c::/64 blackhole; }\n\
        protocol bgp fl {\n  local fd00:6::1 as 65001;\n  neighbor fd00:6::2 as 65002;\n  hold time 9;\n  \
        connect retry time 1;\n  ipv4 { extended next hop on; import all; export all; };\n  \
        ipv6 { import all; export all; };\n}\n";
    let bird = Bird::start(&ns.names[0], conf);

    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let speaker = crate::session::tests::in_netns(&ns.names[1], move || {
        Box::pin(async move {
            let cfg = SpeakerConfig {
                asn: 65002,
                router_id: Ipv4Addr::new(198, 18, 6, 2),
                cluster_id: None,
                listen: crate::session::any_addrs(crate::session::BGP_PORT).to_vec(),
            };
            let (s, _) = Speaker::start(cfg.clone()).unwrap();
            let mut n = Neighbor::new(&cfg, "fd00:6::1".parse().unwrap(), 65001);
            n.session.fsm.extended_next_hop = vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)];
            fast(&mut n);
            s.add_peer(n).await.unwrap();
            let mut sub = Watch::new(s.subscribe().await.unwrap());
            s.originate("fd00:d::/64".parse().unwrap(), PathAttributes::default())
                .await
                .unwrap();
            s.originate(
                "198.18.201.0/24".parse().unwrap(),
                PathAttributes::default(),
            )
            .await
            .unwrap();
            let r6 = sub.until("fd00:c::/64", |n| !n.is_empty()).await.new[0].clone();
            let r4 = sub.until("198.18.101.0/24", |n| !n.is_empty()).await.new[0].clone();
            let states = s.neighbors().await.unwrap();
            let _ = tokio::task::spawn_blocking(move || done_rx.recv_timeout(WAIT * 2)).await;
            s.shutdown().await.unwrap();
            (r6, r4, states)
        })
    });
    bird.wait_route("fd00:d::/64", "fd00:6::2");
    bird.wait_route("198.18.201.0/24", "fd00:6::2");
    let _ = done_tx.send(());
    let (r6, r4, states) = speaker.join().expect("speaker thread");
    let nh: IpAddr = "fd00:6::1".parse().unwrap();
    assert_eq!(r6.attrs.next_hop, Some(nh));
    assert_eq!(
        r4.attrs.next_hop,
        Some(nh),
        "IPv4 route must carry the IPv6 next hop (RFC 8950)"
    );
    let neg = states[0].negotiated.as_ref().unwrap();
    assert_eq!(neg.families.len(), 2);
    assert!(neg.next_hop_allowed((Afi::Ipv4, Safi::Unicast), Afi::Ipv6));
}

#[tokio::test]
async fn adj_rib_queries_received_counts_and_wall_clock_ages() {
    use crate::api::{AdminState, ApiBackend, PathQuery, SpeakerBackend, TableKind};
    let ((a, nb), (b, _na)) = two_speakers().await;
    let mut sub = Watch::new(b.subscribe().await.unwrap());
    let before = unix_seconds();
    a.originate("198.18.3.0/24".parse().unwrap(), PathAttributes::default())
        .await
        .unwrap();
    a.originate("fd00:3::/64".parse().unwrap(), PathAttributes::default())
        .await
        .unwrap();
    sub.until("198.18.3.0/24", |n| !n.is_empty()).await;
    sub.until("fd00:3::/64", |n| !n.is_empty()).await;
    let a_id = PeerId::new(IpAddr::V4(LO1));

    // B's Adj-RIB-In from A: the route, fresh, stamped with the wall clock.
    let adj_in = b.adj_rib_in(a_id, V4).await.unwrap();
    assert_eq!(adj_in.len(), 1, "{adj_in:?}");
    assert_eq!(adj_in[0].0, "198.18.3.0/24".parse::<IpNet>().unwrap());
    assert!(!adj_in[0].1.stale);
    let learned = adj_in[0].1.learned_at;
    assert!(
        learned >= before && learned <= unix_seconds(),
        "learned_at {learned} not within [{before}, now]"
    );
    // A's Adj-RIB-Out towards B: the IPv6 route with A's configured IPv6 next hop.
    let out = a.adj_rib_out(nb.id(), V6).await.unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, "fd00:3::/64".parse::<IpNet>().unwrap());
    assert_eq!(out[0].1.next_hop, Some("fd00::a".parse().unwrap()));
    assert!(a.adj_rib_out(nb.id(), V4).await.unwrap().len() == 1);
    let unknown = PeerId::new("198.18.9.9".parse().unwrap());
    assert!(matches!(
        b.adj_rib_in(unknown, V4).await,
        Err(SpeakerError::UnknownPeer(_))
    ));
    assert!(matches!(
        a.adj_rib_out(unknown, V6).await,
        Err(SpeakerError::UnknownPeer(_))
    ));
    let n = wait_state(&b, State::Established).await;
    assert_eq!(n.received.get(&V4), Some(&1));
    assert_eq!(n.received.get(&V6), Some(&1));
    assert_eq!(n.stale, None);

    // The same through the API backend: adj-in/adj-out tables, counters, timers, enable/disable.
    let cfg = SpeakerConfig {
        asn: 65002,
        router_id: Ipv4Addr::new(198, 18, 0, 2),
        cluster_id: None,
        listen: vec![],
    };
    let api = SpeakerBackend::new(b.clone(), cfg);
    let dests = api
        .paths(PathQuery {
            table: TableKind::AdjIn(IpAddr::V4(LO1)),
            afi: Afi::Ipv6,
            prefixes: vec![],
        })
        .await
        .unwrap();
    assert_eq!(dests.len(), 1);
    assert_eq!(dests[0].paths[0].neighbor, Some(IpAddr::V4(LO1)));
    let age = dests[0].paths[0]
        .age
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        age,
        u64::from(b.adj_rib_in(a_id, V6).await.unwrap()[0].1.learned_at)
    );
    let api_a = SpeakerBackend::new(
        a.clone(),
        SpeakerConfig {
            asn: 65001,
            router_id: Ipv4Addr::new(198, 18, 0, 1),
            cluster_id: None,
            listen: vec![],
        },
    );
    let out = api_a
        .paths(PathQuery {
            table: TableKind::AdjOut(IpAddr::V4(LO2)),
            afi: Afi::Ipv4,
            prefixes: vec![],
        })
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].prefix, "198.18.3.0/24".parse::<IpNet>().unwrap());
    let peer = api.peers(Some(IpAddr::V4(LO1))).await.unwrap().remove(0);
    assert_eq!(peer.timers.hold_time, 9);
    assert_eq!(peer.timers.keepalive_interval, 3);
    assert_eq!(peer.timers.negotiated_hold_time, 9);
    assert!(
        peer.received.update >= 2 && peer.received.open >= 1,
        "{:?}",
        peer.received
    );
    assert_eq!(
        peer.received.total,
        n.messages.received.total().max(peer.received.total)
    );
    assert!(peer.sent.keepalive >= 1, "{:?}", peer.sent);
    let v4 = peer.families.iter().find(|f| f.afi == Afi::Ipv4).unwrap();
    assert_eq!((v4.received, v4.accepted, v4.advertised), (1, 1, 0));
    assert_eq!(peer.local_address, Some(IpAddr::V4(LO2)));
    assert_eq!(peer.admin_state, AdminState::Up);
    api.disable_peer(IpAddr::V4(LO1), String::new())
        .await
        .unwrap();
    sub.until("198.18.3.0/24", |n| n.is_empty()).await;
    let peer = api.peers(Some(IpAddr::V4(LO1))).await.unwrap().remove(0);
    assert_eq!(peer.admin_state, AdminState::Down);
    assert!(peer.downtime.is_some());
    assert_eq!(
        peer.sent.notification, 1,
        "a Cease on disable: {:?}",
        peer.sent
    );
    api.enable_peer(IpAddr::V4(LO1)).await.unwrap();
    sub.until("198.18.3.0/24", |n| !n.is_empty()).await;
    let n = wait_state(&b, State::Established).await;
    assert!(!n.admin_down);
    assert_eq!(
        n.last_notification_sent.map(|m| (m.code, m.subcode)),
        Some((6, 2))
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
