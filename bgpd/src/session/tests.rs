//! Session driver tests on loopback sockets: two drivers, or a driver against a scripted peer made of the codec.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::fsm::{DownReason, FsmConfig, build_open};
use crate::packet::iana::{Afi, Safi};
use crate::packet::{Capability, OpenMsg, PathAttributes};

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ID_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ID_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

fn fsm_config(local_as: u32, peer_as: u32, id: Ipv4Addr) -> FsmConfig {
    FsmConfig {
        hold_time: 9,
        connect_retry_time: Duration::from_millis(200),
        connect_retry_max: Duration::from_secs(1),
        ..FsmConfig::new(local_as, peer_as, id)
    }
}

struct Events(mpsc::UnboundedReceiver<PeerEvent>);

impl Events {
    /// Waits (bounded) for the first event `pick` accepts, skipping others.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&SessionEvent) -> Option<T>,
    ) -> T {
        let fut = async {
            while let Some(ev) = self.0.recv().await {
                if let Some(t) = pick(&ev.event) {
                    return Some(t);
                }
            }
            None
        };
        match tokio::time::timeout(WAIT, fut).await {
            Ok(Some(t)) => t,
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    async fn established(&mut self) -> Negotiated {
        self.wait_for("Established", |e| match e {
            SessionEvent::Established { negotiated, local } => {
                assert!(local.is_some());
                Some((**negotiated).clone())
            }
            _ => None,
        })
        .await
    }

    /// Collects events for `d`, returning them.
    async fn drain_for(&mut self, d: Duration) -> Vec<SessionEvent> {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(d, async {
            while let Some(ev) = self.0.recv().await {
                out.push(ev.event);
            }
        })
        .await;
        out
    }
}

fn spawn_session(config: SessionConfig) -> (SessionHandle, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    (spawn(config, tx), Events(rx))
}

/// A passive side `a` with a listener on `lo`, and an active side `b` connecting to it, both at `lo`.
async fn pair(
    lo: IpAddr,
    tweak: impl Fn(&mut SessionConfig),
) -> (Listener, (SessionHandle, Events), (SessionHandle, Events)) {
    let listener = Listener::bind(&[SocketAddr::new(lo, 0)]).unwrap();
    let port = listener.local_addrs()[0].port();
    let mut ca = SessionConfig::new(
        FsmConfig {
            passive: true,
            ..fsm_config(65001, 65002, ID_A)
        },
        lo,
    );
    tweak(&mut ca);
    let mut cb = SessionConfig::new(fsm_config(65002, 65001, ID_B), lo);
    cb.remote_port = port;
    tweak(&mut cb);
    let a = spawn_session(ca.clone());
    listener.register(&ca, &a.0).unwrap();
    let b = spawn_session(cb);
    a.0.send(SessionCommand::Start).unwrap();
    b.0.send(SessionCommand::Start).unwrap();
    (listener, a, b)
}

fn update(prefix: &str, next_hop: IpAddr) -> UpdateMsg {
    UpdateMsg {
        nlri: vec![prefix.parse().unwrap()],
        attributes: Some(PathAttributes {
            as_path: vec![crate::packet::AsPathSegment::Sequence(vec![65002])],
            next_hop: Some(next_hop),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn establish_exchange_and_stop(lo: IpAddr) {
    let (_l, (a, mut ea), (b, mut eb)) = pair(lo, |_| {}).await;
    let na = ea.established().await;
    let nb = eb.established().await;
    assert_eq!((na.peer_as, na.peer_id), (65002, ID_B));
    assert_eq!((nb.peer_as, nb.peer_id), (65001, ID_A));
    assert_eq!(na.hold_time, 9);
    assert_eq!(
        na.families.len(),
        2,
        "both unicast families negotiated over {lo}"
    );

    // Routes of both families over a session of one family.
    let nh4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    let nh6: IpAddr = "fd00::2".parse().unwrap();
    b.send(SessionCommand::SendUpdates(vec![
        update("fd00:10::/64", nh6),
        update("198.19.1.0/24", nh4),
    ]))
    .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let u = ea
            .wait_for("UPDATE", |e| match e {
                SessionEvent::Update(u) => Some(u.clone()),
                _ => None,
            })
            .await;
        got.push((u.nlri.clone(), u.attributes.and_then(|a| a.next_hop)));
    }
    assert_eq!(
        got,
        vec![
            (vec!["fd00:10::/64".parse().unwrap()], Some(nh6)),
            (vec!["198.19.1.0/24".parse().unwrap()], Some(nh4)),
        ]
    );

    // Route refresh goes through.
    a.send(SessionCommand::SoftResetIn((Afi::Ipv6, Safi::Unicast)))
        .unwrap();
    let f = eb
        .wait_for("ROUTE-REFRESH", |e| match e {
            SessionEvent::RouteRefresh(f) => Some(*f),
            _ => None,
        })
        .await;
    assert_eq!(f, (Afi::Ipv6, Safi::Unicast));

    // Stopping b: a sees Cease / Administrative Shutdown and withdraws.
    b.send(SessionCommand::Stop).unwrap();
    let down = ea
        .wait_for("Down", |e| match e {
            SessionEvent::Down(d) => Some(d.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        down.reason,
        DownReason::NotificationReceived(crate::fsm::cease(2))
    );
    assert_eq!(down.graceful_restart, None);
    let down_b = eb
        .wait_for("Down", |e| match e {
            SessionEvent::Down(d) => Some(d.clone()),
            _ => None,
        })
        .await;
    assert_eq!(down_b.reason, DownReason::ManualStop);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn two_drivers_establish_over_ipv6() {
    establish_exchange_and_stop(V6).await;
}

#[tokio::test]
async fn two_drivers_establish_over_ipv4() {
    establish_exchange_and_stop(V4).await;
}

#[tokio::test]
async fn passive_side_restarts_after_peer_reset() {
    let (_l, (_a, mut ea), (b, mut eb)) = pair(V6, |_| {}).await;
    ea.established().await;
    eb.established().await;
    b.send(SessionCommand::Reset).unwrap();
    let down = ea
        .wait_for("Down", |e| match e {
            SessionEvent::Down(d) => Some(d.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        down.reason,
        DownReason::NotificationReceived(crate::fsm::cease(4))
    );
    // Both come back on their own.
    ea.established().await;
    eb.established().await;
}

#[tokio::test]
async fn passive_side_accepts_the_peer_back_before_its_backoff_ends() {
    // a's own restart delay is 30 s; b comes back after 200 ms and must be let in at once.
    let (_l, (_a, mut ea), (b, mut eb)) = pair(V4, |c| {
        if c.fsm.passive {
            c.fsm.connect_retry_time = Duration::from_secs(30);
            c.fsm.connect_retry_max = Duration::from_secs(60);
        }
    })
    .await;
    ea.established().await;
    eb.established().await;
    b.send(SessionCommand::Reset).unwrap();
    let t0 = Instant::now();
    ea.wait_for("Down", |e| matches!(e, SessionEvent::Down(_)).then_some(()))
        .await;
    ea.established().await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "re-established after {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn unknown_peer_is_refused_by_the_listener() {
    let listener = Listener::bind(&[SocketAddr::new(V4, 0)]).unwrap();
    let port = listener.local_addrs()[0].port();
    let mut s = TcpStream::connect(SocketAddr::new(V4, port)).await.unwrap();
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(WAIT, s.read(&mut b))
        .await
        .expect("listener must close an unknown peer");
    assert!(matches!(r, Ok(0) | Err(_)));
}

#[tokio::test]
async fn listener_binds_both_families_on_one_port() {
    // Port 0 for IPv6 first, then the same port for IPv4: IPV6_V6ONLY lets them coexist.
    let port = std::net::TcpListener::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let l = Listener::bind(&any_addrs(port)).unwrap();
    let addrs = l.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert!(addrs.iter().all(|a| a.port() == port));
}

#[test]
fn session_config_validation() {
    let base = SessionConfig::new(fsm_config(65001, 65002, ID_A), V6);
    assert!(base.validate().is_ok());
    let ll = SessionConfig::new(fsm_config(65001, 65002, ID_A), "fe80::1".parse().unwrap());
    assert!(matches!(ll.validate(), Err(SessionError::MissingScope(_))));
    assert!(
        SessionConfig {
            scope_id: Some(2),
            ..ll
        }
        .validate()
        .is_ok()
    );
    let long_key = SessionConfig {
        md5_key: Some(vec![1; 81]),
        ..base.clone()
    };
    assert!(matches!(
        long_key.validate(),
        Err(SessionError::SockOpt(SockOptError::Md5KeyTooLong(81)))
    ));
    let gtsm0 = SessionConfig {
        ttl: TtlMode::Gtsm { hops: 0 },
        ..base.clone()
    };
    assert!(matches!(gtsm0.validate(), Err(SessionError::Ttl)));
    let mut bad_hold = base;
    bad_hold.fsm.hold_time = 1;
    assert!(matches!(
        bad_hold.validate(),
        Err(SessionError::Config(crate::fsm::ConfigError::HoldTime(1)))
    ));
}

#[test]
fn peer_key_normalises_addresses() {
    let mapped: IpAddr = "::ffff:198.18.0.1".parse().unwrap();
    assert_eq!(
        PeerKey::new(mapped, 0).addr,
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))
    );
    let ll: IpAddr = "fe80::1".parse().unwrap();
    assert_eq!(PeerKey::new(ll, 3).scope_id, 3);
    let ula: IpAddr = "fd00::1".parse().unwrap();
    assert_eq!(PeerKey::new(ula, 3).scope_id, 0);
}

// ---- a scripted peer: plain sockets and the codec ----

pub(crate) struct RawPeer {
    pub(crate) stream: TcpStream,
    buf: BytesMut,
    /// How this peer encodes (set it after the OPEN exchange, e.g. four-octet AS).
    pub(crate) cx: EncodeCxt,
}

impl RawPeer {
    pub(crate) fn new(stream: TcpStream) -> Self {
        RawPeer {
            stream,
            buf: BytesMut::new(),
            cx: EncodeCxt::default(),
        }
    }

    pub(crate) async fn send(&mut self, msg: Message) {
        let mut b = BytesMut::new();
        msg.encode(&self.cx, &mut b).unwrap();
        self.stream.write_all(&b).await.unwrap();
    }

    /// The next message, or None when the connection closed; bounded by WAIT.
    pub(crate) async fn recv(&mut self) -> Option<Message> {
        let fut = async {
            loop {
                if let Some(len) = frame_len(&self.buf).unwrap() {
                    let frame = self.buf.split_to(len);
                    return Some(Message::decode(&frame, &DecodeCxt::default()).unwrap());
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("raw peer: timed out waiting for a message")
    }
}

fn raw_open(asn: u16, id: Ipv4Addr, hold_time: u16) -> Message {
    Message::Open(OpenMsg {
        version: 4,
        my_as: asn,
        hold_time,
        bgp_identifier: id,
        capabilities: vec![
            Capability::MultiProtocol {
                afi: Afi::Ipv4,
                safi: Safi::Unicast,
            },
            Capability::FourOctetAs(u32::from(asn)),
        ],
    })
}

const LO2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Driver at 127.0.0.1 (listening, active) against a raw peer at 127.0.0.2 that connects both ways, so the two
/// connections collide; returns (NOTIFICATION on our outgoing connection, on the incoming one).
async fn collide(local_id: Ipv4Addr, peer_id: Ipv4Addr) -> (Option<Message>, Option<Message>) {
    let peer_listener = TcpListener::bind(SocketAddr::new(LO2, 0)).await.unwrap();
    let listener = Listener::bind(&[SocketAddr::new(V4, 0)]).unwrap();
    let our_port = listener.local_addrs()[0].port();
    let mut cfg = SessionConfig::new(fsm_config(65001, 65002, local_id), LO2);
    cfg.remote_port = peer_listener.local_addr().unwrap().port();
    cfg.local_addr = Some(V4);
    let (h, mut ev) = spawn_session(cfg.clone());
    listener.register(&cfg, &h).unwrap();
    h.send(SessionCommand::Start).unwrap();

    // Connection 1: the driver's outgoing one.
    let (s1, _) = tokio::time::timeout(WAIT, peer_listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut c1 = RawPeer::new(s1);
    assert!(matches!(c1.recv().await, Some(Message::Open(_))));
    // Connection 2: the peer connects to the driver too.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(LO2, 0)).unwrap();
    let mut c2 = RawPeer::new(sock.connect(SocketAddr::new(V4, our_port)).await.unwrap());
    assert!(matches!(c2.recv().await, Some(Message::Open(_))));
    ev.wait_for("OpenSent", |e| {
        matches!(
            e,
            SessionEvent::StateChanged {
                to: State::OpenSent,
                ..
            }
        )
        .then_some(())
    })
    .await;
    // The peer's OPEN on the incoming connection reveals its identifier: the collision is resolved now.
    c2.send(raw_open(65002, peer_id, 9)).await;
    let first = |m: Option<Message>| match m {
        Some(Message::Notification(n)) => Some(Message::Notification(n)),
        _ => None,
    };
    // The winner gets our KEEPALIVE, the loser a NOTIFICATION then EOF.
    let on_incoming = first(c2.recv().await);
    if on_incoming.is_some() {
        // Incoming dropped: finish the handshake on connection 1.
        c1.send(raw_open(65002, peer_id, 9)).await;
        assert_eq!(c1.recv().await, Some(Message::Keepalive));
        c1.send(Message::Keepalive).await;
        ev.established().await;
        assert_stays_up(&mut ev).await;
        (None, on_incoming)
    } else {
        let on_outgoing = first(c1.recv().await);
        c2.send(Message::Keepalive).await;
        ev.established().await;
        assert_stays_up(&mut ev).await;
        (on_outgoing, None)
    }
}

/// The dumped connection never was Established, so its end must not bring the session down.
async fn assert_stays_up(ev: &mut Events) {
    let later = ev.drain_for(Duration::from_millis(300)).await;
    assert!(
        !later
            .iter()
            .any(|e| matches!(e, SessionEvent::Down(_) | SessionEvent::StateChanged { .. })),
        "{later:?}"
    );
}

fn is_collision_cease(m: &Option<Message>) -> bool {
    matches!(m, Some(Message::Notification(n)) if (n.code, n.subcode) == (6, 7))
}

#[tokio::test]
async fn collision_higher_local_id_keeps_outgoing() {
    let (out, inc) = collide(Ipv4Addr::new(198, 18, 0, 200), Ipv4Addr::new(198, 18, 0, 3)).await;
    assert!(out.is_none());
    assert!(is_collision_cease(&inc), "{inc:?}");
}

#[tokio::test]
async fn collision_lower_local_id_keeps_incoming() {
    let (out, inc) = collide(Ipv4Addr::new(198, 18, 0, 3), Ipv4Addr::new(198, 18, 0, 200)).await;
    assert!(inc.is_none());
    assert!(is_collision_cease(&out), "{out:?}");
}

#[tokio::test]
async fn hold_timer_expiry_sends_notification() {
    let peer_listener = TcpListener::bind(SocketAddr::new(V6, 0)).await.unwrap();
    let mut cfg = SessionConfig::new(fsm_config(65001, 65002, ID_A), V6);
    cfg.remote_port = peer_listener.local_addr().unwrap().port();
    let (h, mut ev) = spawn_session(cfg);
    h.send(SessionCommand::Start).unwrap();
    let (s, _) = tokio::time::timeout(WAIT, peer_listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut p = RawPeer::new(s);
    assert!(matches!(p.recv().await, Some(Message::Open(_))));
    p.send(raw_open(65002, ID_B, 3)).await;
    assert_eq!(p.recv().await, Some(Message::Keepalive));
    p.send(Message::Keepalive).await;
    let neg = ev.established().await;
    assert_eq!((neg.hold_time, neg.keepalive_time), (3, 1));
    // Silence: the driver keeps sending KEEPALIVEs, then gives up after 3 s with Hold Timer Expired.
    let started = Instant::now();
    let mut keepalives = 0;
    let notif = loop {
        match p.recv().await {
            Some(Message::Keepalive) => keepalives += 1,
            Some(Message::Notification(n)) => break n,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!((notif.code, notif.subcode), (4, 0));
    assert!(keepalives >= 1, "no KEEPALIVE in 3 s");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "hold timer fired early: {:?}",
        started.elapsed()
    );
    let down = ev
        .wait_for("Down", |e| match e {
            SessionEvent::Down(d) => Some(d.reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(down, DownReason::HoldTimerExpired);
}

#[tokio::test]
async fn bad_open_gets_the_notification() {
    let peer_listener = TcpListener::bind(SocketAddr::new(V4, 0)).await.unwrap();
    let mut cfg = SessionConfig::new(fsm_config(65001, 65002, ID_A), V4);
    cfg.remote_port = peer_listener.local_addr().unwrap().port();
    let (h, _ev) = spawn_session(cfg);
    h.send(SessionCommand::Start).unwrap();
    let (s, _) = tokio::time::timeout(WAIT, peer_listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut p = RawPeer::new(s);
    let Some(Message::Open(ours)) = p.recv().await else {
        panic!("no OPEN")
    };
    assert_eq!(ours, build_open(&fsm_config(65001, 65002, ID_A)));
    p.send(raw_open(65099, ID_B, 90)).await;
    let Some(Message::Notification(n)) = p.recv().await else {
        panic!("no NOTIFICATION")
    };
    assert_eq!((n.code, n.subcode), (2, 2));
    assert_eq!(
        p.recv().await,
        None,
        "connection must be closed after the NOTIFICATION"
    );
    // And garbage instead of a header: Connection Not Synchronized.
    let (s, _) = tokio::time::timeout(WAIT, peer_listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut p = RawPeer::new(s);
    assert!(matches!(p.recv().await, Some(Message::Open(_))));
    p.stream.write_all(&[0u8; 19]).await.unwrap();
    let Some(Message::Notification(n)) = p.recv().await else {
        panic!("no NOTIFICATION")
    };
    assert_eq!((n.code, n.subcode), (1, 1));
}

// ---- TCP-MD5 and GTSM through the driver ----

pub(crate) fn need_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: needs root under CI"
    );
    eprintln!("skipping {test}: not root");
    false
}

#[tokio::test]
async fn md5_matching_keys_establish() {
    if !need_root("md5_matching_keys_establish") {
        return;
    }
    for lo in [V6, V4] {
        let (_l, (_a, mut ea), (_b, mut eb)) =
            pair(lo, |c| c.md5_key = Some(b"fairlead".to_vec())).await;
        ea.established().await;
        eb.established().await;
    }
}

#[tokio::test]
async fn md5_mismatched_keys_never_establish() {
    if !need_root("md5_mismatched_keys_never_establish") {
        return;
    }
    for lo in [V6, V4] {
        let listener = Listener::bind(&[SocketAddr::new(lo, 0)]).unwrap();
        let port = listener.local_addrs()[0].port();
        let mut ca = SessionConfig::new(
            FsmConfig {
                passive: true,
                ..fsm_config(65001, 65002, ID_A)
            },
            lo,
        );
        ca.md5_key = Some(b"one".to_vec());
        let mut cb = SessionConfig::new(fsm_config(65002, 65001, ID_B), lo);
        cb.remote_port = port;
        cb.md5_key = Some(b"two".to_vec());
        cb.connect_timeout = Duration::from_millis(500);
        let (a, mut ea) = spawn_session(ca.clone());
        listener.register(&ca, &a).unwrap();
        let (b, mut eb) = spawn_session(cb);
        a.send(SessionCommand::Start).unwrap();
        b.send(SessionCommand::Start).unwrap();
        let seen = eb.drain_for(Duration::from_secs(2)).await;
        assert!(
            !seen.iter().any(|e| matches!(
                e,
                SessionEvent::StateChanged {
                    to: State::OpenSent,
                    ..
                }
            )),
            "{seen:?}"
        );
        let seen_a = ea.drain_for(Duration::from_millis(10)).await;
        assert!(!seen_a.iter().any(|e| matches!(
            e,
            SessionEvent::StateChanged {
                to: State::OpenSent,
                ..
            }
        )));
        // The key is removed with the peer.
        listener.unregister(&ca).unwrap();
    }
}

#[tokio::test]
async fn gtsm_peers_establish() {
    for lo in [V6, V4] {
        let (_l, (_a, mut ea), (_b, mut eb)) =
            pair(lo, |c| c.ttl = TtlMode::Gtsm { hops: 1 }).await;
        ea.established().await;
        eb.established().await;
    }
}

// ---- link-local IPv6 peers, in two network namespaces joined by a veth pair ----

/// Two network namespaces joined by a veth pair; deleted on drop (deleting a namespace removes its veth end).
pub(crate) struct NetnsPair {
    pub(crate) names: [String; 2],
}

impl NetnsPair {
    pub(crate) fn create(prefix: &str) -> NetnsPair {
        let pid = std::process::id();
        let names = [format!("{prefix}-a-{pid}"), format!("{prefix}-b-{pid}")];
        let pair = NetnsPair { names };
        let [a, b] = &pair.names;
        for args in [
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec![
                "link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b,
            ],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
            vec!["-n", a, "addr", "add", "fe80::a/64", "dev", "va", "nodad"],
            vec!["-n", b, "addr", "add", "fe80::b/64", "dev", "vb", "nodad"],
            vec!["-n", a, "link", "set", "va", "up"],
            vec!["-n", b, "link", "set", "vb", "up"],
        ] {
            let st = std::process::Command::new("ip")
                .args(&args)
                .status()
                .expect("run ip");
            assert!(st.success(), "ip {args:?} failed");
        }
        pair
    }
}

impl NetnsPair {
    /// Runs `ip -n <namespace i> <args>` (test setup only).
    pub(crate) fn ip(&self, i: usize, args: &[&str]) {
        let st = std::process::Command::new("ip")
            .arg("-n")
            .arg(&self.names[i])
            .args(args)
            .status()
            .expect("run ip");
        assert!(st.success(), "ip -n {} {args:?} failed", self.names[i]);
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", n])
                .status();
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`, on a runtime of its own.
pub(crate) fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f())
    })
}

#[test]
fn link_local_peers_with_scope_id_md5_and_gtsm() {
    if !need_root("link_local_peers_with_scope_id_md5_and_gtsm") {
        return;
    }
    let ns = NetnsPair::create("fl-sess-ll");
    let ll_a: Ipv6Addr = "fe80::a".parse().unwrap();
    let ll_b: Ipv6Addr = "fe80::b".parse().unwrap();
    let opts = |c: &mut SessionConfig, ifname: &str| {
        c.scope_id = Some(nix::net::if_::if_nametoindex(ifname).expect("ifindex"));
        c.md5_key = Some(b"link-local".to_vec());
        c.ttl = TtlMode::Gtsm { hops: 1 };
    };
    // a: passive, listening on the default port 179 (a fresh namespace has it free).
    let a = in_netns(&ns.names[0], move || {
        Box::pin(async move {
            let mut cfg = SessionConfig::new(
                FsmConfig {
                    passive: true,
                    ..fsm_config(65001, 65002, ID_A)
                },
                ll_b.into(),
            );
            opts(&mut cfg, "va");
            let listener = Listener::bind(&any_addrs(BGP_PORT)).unwrap();
            let (h, mut ev) = spawn_session(cfg.clone());
            listener.register(&cfg, &h).unwrap();
            h.send(SessionCommand::Start).unwrap();
            let n = ev.established().await;
            // Stay up until the other side is done too.
            let rest = ev.drain_for(Duration::from_millis(500)).await;
            h.shutdown().await;
            (n.peer_id, cfg.peer_key(), rest)
        })
    });
    let b = in_netns(&ns.names[1], move || {
        Box::pin(async move {
            let mut cfg = SessionConfig::new(fsm_config(65002, 65001, ID_B), ll_a.into());
            opts(&mut cfg, "vb");
            let (h, mut ev) = spawn_session(cfg);
            h.send(SessionCommand::Start).unwrap();
            let n = ev.established().await;
            let rest = ev.drain_for(Duration::from_millis(500)).await;
            h.shutdown().await;
            (n.peer_id, rest)
        })
    });
    let (id_b, key, rest_a) = a.join().expect("side a");
    let (id_a, rest_b) = b.join().expect("side b");
    assert_eq!((id_a, id_b), (ID_A, ID_B));
    assert_ne!(
        key.scope_id, 0,
        "link-local peer key must carry the interface"
    );
    for rest in [rest_a, rest_b] {
        assert!(
            !rest.iter().any(|e| matches!(e, SessionEvent::Down(_))),
            "{rest:?}"
        );
    }
}

#[tokio::test]
async fn malformed_update_resets_the_session_with_update_message_error() {
    let peer_listener = TcpListener::bind(SocketAddr::new(V6, 0)).await.unwrap();
    let mut cfg = SessionConfig::new(fsm_config(65001, 65002, ID_A), V6);
    cfg.remote_port = peer_listener.local_addr().unwrap().port();
    let (h, mut ev) = spawn_session(cfg);
    h.send(SessionCommand::Start).unwrap();
    let (s, _) = tokio::time::timeout(WAIT, peer_listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut p = RawPeer::new(s);
    assert!(matches!(p.recv().await, Some(Message::Open(_))));
    p.send(raw_open(65002, ID_B, 9)).await;
    assert_eq!(p.recv().await, Some(Message::Keepalive));
    p.send(Message::Keepalive).await;
    ev.established().await;
    // An UPDATE whose Withdrawn Routes Length (200) runs past the end of the message: RFC 4271 §6.3 / RFC 7606
    // say Malformed Attribute List (3/1) and a reset.
    let mut bad = vec![0xffu8; 16];
    bad.extend_from_slice(&23u16.to_be_bytes());
    bad.push(2);
    bad.extend_from_slice(&200u16.to_be_bytes());
    bad.extend_from_slice(&0u16.to_be_bytes());
    p.stream.write_all(&bad).await.unwrap();
    let notif = loop {
        match p.recv().await {
            Some(Message::Keepalive) => continue,
            Some(Message::Notification(n)) => break n,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(notif.code, 3, "{notif:?}");
    let down = ev
        .wait_for("Down", |e| match e {
            SessionEvent::Down(d) => Some(d.reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(down, DownReason::NotificationSent(notif));
}

#[tokio::test]
async fn restarted_peer_replaces_the_established_session_with_graceful_restart() {
    let listener = Listener::bind(&[SocketAddr::new(V4, 0)]).unwrap();
    let port = listener.local_addrs()[0].port();
    let gr = crate::fsm::GracefulRestartConfig {
        restart_time: 120,
        restarting: false,
        forwarding: vec![(Afi::Ipv4, Safi::Unicast, true)],
    };
    let mut cfg = SessionConfig::new(
        FsmConfig {
            passive: true,
            graceful_restart: Some(gr),
            ..fsm_config(65001, 65002, ID_A)
        },
        LO2,
    );
    cfg.remote_port = 1; // never used: passive
    let (h, mut ev) = spawn_session(cfg.clone());
    listener.register(&cfg, &h).unwrap();
    h.send(SessionCommand::Start).unwrap();

    let gr_open = |restarting: bool| {
        Message::Open(OpenMsg {
            version: 4,
            my_as: 65002,
            hold_time: 9,
            bgp_identifier: ID_B,
            capabilities: vec![
                Capability::MultiProtocol {
                    afi: Afi::Ipv4,
                    safi: Safi::Unicast,
                },
                Capability::GracefulRestart {
                    restarting,
                    restart_time: 60,
                    families: vec![(Afi::Ipv4, Safi::Unicast, true)],
                },
                Capability::FourOctetAs(65002),
            ],
        })
    };
    let connect = || async {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(LO2, 0)).unwrap();
        RawPeer::new(sock.connect(SocketAddr::new(V4, port)).await.unwrap())
    };
    let mut old = connect().await;
    assert!(matches!(old.recv().await, Some(Message::Open(_))));
    old.send(gr_open(false)).await;
    assert_eq!(old.recv().await, Some(Message::Keepalive));
    old.send(Message::Keepalive).await;
    ev.established().await;

    // The peer reboots: its old TCP connection is never closed, a new one arrives with the R bit set.
    let mut new = connect().await;
    assert!(matches!(new.recv().await, Some(Message::Open(_))));
    new.send(gr_open(true)).await;
    let down = ev
        .wait_for("Down", |e| match e {
            SessionEvent::Down(d) => Some(d.clone()),
            _ => None,
        })
        .await;
    assert_eq!(down.reason, DownReason::TcpConnectionFails);
    assert_eq!(
        down.graceful_restart,
        Some((Duration::from_secs(60), vec![(Afi::Ipv4, Safi::Unicast)]))
    );
    // The old connection is closed without a NOTIFICATION; the new one completes.
    loop {
        match old.recv().await {
            None => break,
            Some(Message::Keepalive) => continue,
            other => panic!("old connection got {other:?}"),
        }
    }
    assert_eq!(new.recv().await, Some(Message::Keepalive));
    new.send(Message::Keepalive).await;
    let n = ev.established().await;
    assert!(n.graceful_restart.as_ref().is_some_and(|g| g.restarting));
}

#[tokio::test]
async fn new_connection_while_established_without_graceful_restart_is_refused() {
    let listener = Listener::bind(&[SocketAddr::new(V4, 0)]).unwrap();
    let port = listener.local_addrs()[0].port();
    let cfg = SessionConfig::new(
        FsmConfig {
            passive: true,
            ..fsm_config(65001, 65002, ID_A)
        },
        LO2,
    );
    let (h, mut ev) = spawn_session(cfg.clone());
    listener.register(&cfg, &h).unwrap();
    h.send(SessionCommand::Start).unwrap();
    let connect = || async {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(LO2, 0)).unwrap();
        RawPeer::new(sock.connect(SocketAddr::new(V4, port)).await.unwrap())
    };
    let mut old = connect().await;
    assert!(matches!(old.recv().await, Some(Message::Open(_))));
    old.send(raw_open(65002, ID_B, 9)).await;
    assert_eq!(old.recv().await, Some(Message::Keepalive));
    old.send(Message::Keepalive).await;
    ev.established().await;
    let mut new = connect().await;
    assert_eq!(
        new.recv().await,
        None,
        "the second connection must be closed"
    );
    let later = ev.drain_for(Duration::from_millis(300)).await;
    assert!(
        !later.iter().any(|e| matches!(e, SessionEvent::Down(_))),
        "{later:?}"
    );
}
