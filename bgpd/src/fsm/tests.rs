//! FSM tests: events in, actions out, no sockets.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::packet::Capability;

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const V4: Family = (Afi::Ipv4, Safi::Unicast);
const V6: Family = (Afi::Ipv6, Safi::Unicast);

fn config() -> FsmConfig {
    FsmConfig::new(65001, 65002, LOCAL_ID)
}

fn fixed_jitter(f: f64) -> Jitter {
    Box::new(move || f)
}

fn fsm(config: FsmConfig) -> Fsm {
    Fsm::new(config, fixed_jitter(1.0))
}

fn peer_open() -> OpenMsg {
    OpenMsg {
        version: 4,
        my_as: 65002,
        hold_time: 30,
        bgp_identifier: PEER_ID,
        capabilities: vec![
            Capability::MultiProtocol {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
            },
            Capability::MultiProtocol {
                afi: Afi::Ipv4,
                safi: Safi::Unicast,
            },
            Capability::RouteRefresh,
            Capability::FourOctetAs(65002),
        ],
    }
}

fn sends_notification(actions: &[Action]) -> Option<(u8, u8)> {
    actions.iter().find_map(|a| match a {
        Action::SendNotification(n) => Some((n.code, n.subcode)),
        _ => None,
    })
}

fn has(actions: &[Action], want: &Action) -> bool {
    actions.contains(want)
}

fn session_down(actions: &[Action]) -> Option<&SessionDown> {
    actions.iter().find_map(|a| match a {
        Action::SessionDown(d) => Some(d),
        _ => None,
    })
}

/// An FSM driven into `state` on the normal path (active open).
fn in_state(config: FsmConfig, state: State) -> Fsm {
    let mut f = fsm(config);
    if state == State::Idle {
        return f;
    }
    f.process(Event::ManualStart);
    if state == State::Connect {
        return f;
    }
    if state == State::Active {
        // A failed attempt with the ConnectRetry timer still running puts an active peer in Active through OpenSent.
        f.process(Event::TcpCrAcked);
        f.process(Event::TcpConnectionFails);
        assert_eq!(f.state(), State::Active);
        return f;
    }
    f.process(Event::TcpCrAcked);
    if state == State::OpenSent {
        return f;
    }
    f.process(Event::BgpOpen(peer_open()));
    if state == State::OpenConfirm {
        return f;
    }
    f.process(Event::KeepAliveMsg);
    assert_eq!(f.state(), State::Established);
    f
}

// ---- Idle ----

#[test]
fn idle_manual_start_active_connects() {
    let mut f = fsm(config());
    let a = f.process(Event::ManualStart);
    assert_eq!(f.state(), State::Connect);
    assert!(has(&a, &Action::ConnectTcp));
    assert!(has(
        &a,
        &Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5))
    ));
}

#[test]
fn idle_manual_start_passive_never_connects() {
    let mut f = fsm(FsmConfig {
        passive: true,
        ..config()
    });
    let a = f.process(Event::ManualStart);
    assert_eq!(f.state(), State::Active);
    assert!(!has(&a, &Action::ConnectTcp));
    assert!(
        !a.iter()
            .any(|x| matches!(x, Action::StartTimer(Timer::ConnectRetry, _)))
    );
    // Incoming connection then OPEN exchange works as usual.
    let a = f.process(Event::TcpConnectionConfirmed);
    assert_eq!(f.state(), State::OpenSent);
    assert!(a.iter().any(|x| matches!(x, Action::SendOpen(_))));
}

#[test]
fn idle_automatic_start_connects() {
    let mut f = fsm(config());
    f.process(Event::AutomaticStart);
    assert_eq!(f.state(), State::Connect);
    assert!(f.is_started());
}

#[test]
fn idle_ignores_other_events_and_refuses_connections() {
    for ev in [
        Event::ManualStop,
        Event::ConnectRetryTimerExpires,
        Event::HoldTimerExpires,
        Event::KeepaliveTimerExpires,
        Event::TcpConnectionFails,
        Event::KeepAliveMsg,
        Event::BgpOpen(peer_open()),
        Event::IdleHoldTimerExpires,
    ] {
        let mut f = fsm(config());
        let a = f.process(ev.clone());
        assert_eq!(f.state(), State::Idle, "{ev:?}");
        assert!(!has(&a, &Action::ConnectTcp), "{ev:?}");
        assert!(sends_notification(&a).is_none(), "{ev:?}");
    }
    let mut f = fsm(config());
    assert_eq!(
        f.process(Event::TcpConnectionConfirmed),
        vec![Action::DropTcp]
    );
    assert_eq!(f.state(), State::Idle);
}

// ---- Connect ----

#[test]
fn connect_tcp_acked_sends_open_with_large_hold() {
    let mut f = in_state(config(), State::Connect);
    let a = f.process(Event::TcpCrAcked);
    assert_eq!(f.state(), State::OpenSent);
    assert!(has(&a, &Action::StopTimer(Timer::ConnectRetry)));
    assert!(has(
        &a,
        &Action::StartTimer(Timer::Hold, Duration::from_secs(240))
    ));
    let open = a
        .iter()
        .find_map(|x| match x {
            Action::SendOpen(o) => Some(o.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(open.version, 4);
    assert_eq!(open.my_as, 65001);
    assert_eq!(open.hold_time, 90);
    assert_eq!(open.bgp_identifier, LOCAL_ID);
    assert!(open.capabilities.contains(&Capability::FourOctetAs(65001)));
    assert!(open.capabilities.contains(&Capability::MultiProtocol {
        afi: Afi::Ipv6,
        safi: Safi::Unicast
    }));
    assert!(open.capabilities.contains(&Capability::RouteRefresh));
}

#[test]
fn connect_incoming_confirmed_sends_open() {
    let mut f = in_state(config(), State::Connect);
    f.process(Event::TcpConnectionConfirmed);
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn connect_retry_expiry_reconnects() {
    let mut f = in_state(config(), State::Connect);
    let a = f.process(Event::ConnectRetryTimerExpires);
    assert_eq!(f.state(), State::Connect);
    assert_eq!(
        a,
        vec![
            Action::DropTcp,
            Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5)),
            Action::ConnectTcp
        ]
    );
}

#[test]
fn connect_tcp_fails_goes_idle_and_restarts_with_backoff() {
    let mut f = in_state(config(), State::Connect);
    let a = f.process(Event::TcpConnectionFails);
    assert_eq!(f.state(), State::Idle);
    assert_eq!(f.connect_retry_counter(), 1);
    assert!(has(&a, &Action::DropTcp));
    assert!(has(
        &a,
        &Action::StartTimer(Timer::IdleHold, Duration::from_secs(10))
    ));
    let a = f.process(Event::IdleHoldTimerExpires);
    assert_eq!(f.state(), State::Connect);
    assert!(has(&a, &Action::ConnectTcp));
    assert!(has(
        &a,
        &Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(10))
    ));
    // Failures keep doubling the delay up to the maximum.
    let mut last = Duration::ZERO;
    for _ in 0..10 {
        let a = f.process(Event::TcpConnectionFails);
        last = a
            .iter()
            .find_map(|x| match x {
                Action::StartTimer(Timer::IdleHold, d) => Some(*d),
                _ => None,
            })
            .unwrap();
        f.process(Event::IdleHoldTimerExpires);
    }
    assert_eq!(last, Duration::from_secs(120));
}

#[test]
fn jitter_scales_the_retry_delay() {
    let mut f = Fsm::new(config(), fixed_jitter(0.75));
    let a = f.process(Event::ManualStart);
    assert!(has(
        &a,
        &Action::StartTimer(Timer::ConnectRetry, Duration::from_millis(3750))
    ));
    // Out-of-range jitter is clamped to RFC 4271's [0.75, 1].
    let mut f = Fsm::new(config(), fixed_jitter(7.0));
    let a = f.process(Event::ManualStart);
    assert!(has(
        &a,
        &Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5))
    ));
    let mut j = random_jitter();
    for _ in 0..100 {
        let v = j();
        assert!((0.75..=1.0).contains(&v), "{v}");
    }
}

#[test]
fn connect_and_active_manual_stop_go_idle_without_notification() {
    for st in [State::Connect, State::Active] {
        let mut f = in_state(config(), st);
        let a = f.process(Event::ManualStop);
        assert_eq!(f.state(), State::Idle);
        assert!(has(&a, &Action::DropTcp));
        assert!(sends_notification(&a).is_none());
        assert!(
            !a.iter().any(|x| matches!(x, Action::StartTimer(..))),
            "{st:?}: {a:?}"
        );
        assert!(!f.is_started());
        assert_eq!(f.connect_retry_counter(), 0);
    }
}

#[test]
fn connect_and_active_unexpected_events_go_idle() {
    for st in [State::Connect, State::Active] {
        for ev in [
            Event::HoldTimerExpires,
            Event::KeepAliveMsg,
            Event::BgpOpen(peer_open()),
        ] {
            let mut f = in_state(config(), st);
            let a = f.process(ev.clone());
            assert_eq!(f.state(), State::Idle, "{st:?} {ev:?}");
            assert!(has(&a, &Action::DropTcp));
        }
        let mut f = in_state(config(), st);
        assert!(f.process(Event::ManualStart).is_empty());
        assert_eq!(f.state(), st);
    }
}

// ---- Active ----

#[test]
fn active_connect_retry_expiry_goes_connect() {
    let mut f = in_state(config(), State::Active);
    let a = f.process(Event::ConnectRetryTimerExpires);
    assert_eq!(f.state(), State::Connect);
    assert!(has(&a, &Action::ConnectTcp));
}

#[test]
fn active_incoming_goes_open_sent() {
    let mut f = in_state(config(), State::Active);
    f.process(Event::TcpConnectionConfirmed);
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn active_tcp_fails_goes_idle() {
    let mut f = in_state(config(), State::Active);
    f.process(Event::TcpConnectionFails);
    assert_eq!(f.state(), State::Idle);
}

// ---- OpenSent ----

#[test]
fn open_sent_valid_open_goes_open_confirm() {
    let mut f = in_state(config(), State::OpenSent);
    let a = f.process(Event::BgpOpen(peer_open()));
    assert_eq!(f.state(), State::OpenConfirm);
    assert!(has(&a, &Action::SendKeepalive));
    // Negotiated hold = min(90, 30); keepalive = 10.
    assert!(has(
        &a,
        &Action::StartTimer(Timer::Hold, Duration::from_secs(30))
    ));
    assert!(has(
        &a,
        &Action::StartTimer(Timer::Keepalive, Duration::from_secs(10))
    ));
    let n = f.negotiated().unwrap();
    assert_eq!(n.hold_time, 30);
    assert_eq!(n.keepalive_time, 10);
    assert_eq!(f.peer_id(), Some(PEER_ID));
}

#[test]
fn open_sent_zero_hold_time_disables_timers() {
    let mut f = in_state(config(), State::OpenSent);
    let a = f.process(Event::BgpOpen(OpenMsg {
        hold_time: 0,
        ..peer_open()
    }));
    assert_eq!(f.state(), State::OpenConfirm);
    assert!(has(&a, &Action::StopTimer(Timer::Hold)));
    assert!(
        !a.iter()
            .any(|x| matches!(x, Action::StartTimer(Timer::Keepalive | Timer::Hold, _)))
    );
}

#[test]
fn open_sent_invalid_opens_send_the_right_notification() {
    let ibgp = FsmConfig::new(65001, 65001, LOCAL_ID);
    let cases: Vec<(FsmConfig, OpenMsg, (u8, u8))> = vec![
        (
            config(),
            OpenMsg {
                version: 3,
                ..peer_open()
            },
            (2, 1),
        ),
        (
            config(),
            OpenMsg {
                version: 5,
                ..peer_open()
            },
            (2, 1),
        ),
        // Wrong AS in the 4-octet capability.
        (
            config(),
            OpenMsg {
                capabilities: vec![Capability::FourOctetAs(65003)],
                ..peer_open()
            },
            (2, 2),
        ),
        // Wrong AS without the capability.
        (
            config(),
            OpenMsg {
                my_as: 65003,
                capabilities: vec![],
                ..peer_open()
            },
            (2, 2),
        ),
        // AS_TRANS without the 4-octet capability is not the peer's AS.
        (
            FsmConfig::new(65001, 4_200_000_000, LOCAL_ID),
            OpenMsg {
                my_as: AS_TRANS,
                capabilities: vec![],
                ..peer_open()
            },
            (2, 2),
        ),
        (
            config(),
            OpenMsg {
                hold_time: 1,
                ..peer_open()
            },
            (2, 6),
        ),
        (
            config(),
            OpenMsg {
                hold_time: 2,
                ..peer_open()
            },
            (2, 6),
        ),
        (
            config(),
            OpenMsg {
                bgp_identifier: Ipv4Addr::UNSPECIFIED,
                ..peer_open()
            },
            (2, 3),
        ),
        // iBGP with our own identifier.
        (
            ibgp.clone(),
            OpenMsg {
                my_as: 65001,
                bgp_identifier: LOCAL_ID,
                capabilities: vec![Capability::FourOctetAs(65001)],
                ..peer_open()
            },
            (2, 3),
        ),
        // No family in common.
        (
            FsmConfig {
                families: vec![V6],
                ..config()
            },
            OpenMsg {
                capabilities: vec![
                    Capability::MultiProtocol {
                        afi: Afi::Ipv4,
                        safi: Safi::Unicast,
                    },
                    Capability::FourOctetAs(65002),
                ],
                ..peer_open()
            },
            (2, 7),
        ),
    ];
    for (cfg, open, want) in cases {
        let mut f = in_state(cfg, State::OpenSent);
        let a = f.process(Event::BgpOpen(open.clone()));
        assert_eq!(sends_notification(&a), Some(want), "{open:?}");
        assert!(has(&a, &Action::DropTcp));
        assert_eq!(f.state(), State::Idle);
        assert_eq!(f.connect_retry_counter(), 1);
        assert!(session_down(&a).is_none());
    }
}

#[test]
fn unsupported_version_notification_carries_our_version() {
    let n = OpenError::UnsupportedVersionNumber(5).notification();
    assert_eq!((n.code, n.subcode, n.data), (2, 1, vec![0, 4]));
    assert_eq!(
        OpenError::UnsupportedOptionalParameter
            .notification()
            .subcode,
        4
    );
}

#[test]
fn ebgp_peer_may_share_our_identifier() {
    let mut f = in_state(config(), State::OpenSent);
    f.process(Event::BgpOpen(OpenMsg {
        bgp_identifier: LOCAL_ID,
        ..peer_open()
    }));
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn four_octet_as_and_as_trans() {
    // Our own big ASN goes out as AS_TRANS with the real one in the capability.
    let cfg = FsmConfig::new(4_200_000_001, 4_200_000_002, LOCAL_ID);
    let open = build_open(&cfg);
    assert_eq!(open.my_as, AS_TRANS);
    assert!(
        open.capabilities
            .contains(&Capability::FourOctetAs(4_200_000_001))
    );
    // The peer's big ASN is taken from its capability.
    let mut f = in_state(cfg, State::OpenSent);
    f.process(Event::BgpOpen(OpenMsg {
        my_as: AS_TRANS,
        capabilities: vec![Capability::FourOctetAs(4_200_000_002)],
        ..peer_open()
    }));
    assert_eq!(f.state(), State::OpenConfirm);
    let n = f.negotiated().unwrap();
    assert_eq!(n.peer_as, 4_200_000_002);
    assert!(n.four_octet_as);
    // A 2-octet-only peer.
    let mut f = in_state(config(), State::OpenSent);
    f.process(Event::BgpOpen(OpenMsg {
        capabilities: vec![],
        ..peer_open()
    }));
    let n = f.negotiated().unwrap();
    assert!(!n.four_octet_as);
    assert_eq!(n.peer_as, 65002);
}

#[test]
fn open_sent_errors_from_codec_and_collision() {
    let cases = [
        (Event::BgpHeaderErr(notification(1, 2)), (1, 2)),
        (Event::BgpOpenMsgErr(notification(2, 4)), (2, 4)),
        (Event::OpenCollisionDump, (6, 7)),
        (Event::HoldTimerExpires, (4, 0)),
        (Event::AutomaticStop(code::cease::MAX_PREFIXES), (6, 1)),
        (Event::KeepAliveMsg, (5, 1)),
        (Event::UpdateMsg(Box::default()), (5, 1)),
        (Event::KeepaliveTimerExpires, (5, 1)),
        (Event::ConnectRetryTimerExpires, (5, 1)),
        (Event::RouteRefreshMsg(V4), (5, 1)),
    ];
    for (ev, want) in cases {
        let mut f = in_state(config(), State::OpenSent);
        let a = f.process(ev.clone());
        assert_eq!(sends_notification(&a), Some(want), "{ev:?}");
        assert!(has(&a, &Action::DropTcp));
        assert_eq!(f.state(), State::Idle, "{ev:?}");
    }
}

#[test]
fn open_sent_notification_received_goes_idle_silently() {
    for ev in [
        Event::NotifMsg(cease(2)),
        Event::NotifMsgVerErr(notification(2, 1)),
    ] {
        let mut f = in_state(config(), State::OpenSent);
        let a = f.process(ev);
        assert!(sends_notification(&a).is_none());
        assert!(has(&a, &Action::DropTcp));
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn open_sent_tcp_fails_goes_active() {
    let mut f = in_state(config(), State::OpenSent);
    let a = f.process(Event::TcpConnectionFails);
    assert_eq!(f.state(), State::Active);
    assert!(has(&a, &Action::DropTcp));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::StartTimer(Timer::ConnectRetry, _)))
    );
}

#[test]
fn open_sent_second_connection_is_ignored() {
    let mut f = in_state(config(), State::OpenSent);
    assert!(f.process(Event::TcpConnectionConfirmed).is_empty());
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn manual_stop_after_open_sends_cease_admin_shutdown() {
    for st in [State::OpenSent, State::OpenConfirm, State::Established] {
        let mut f = in_state(config(), st);
        let a = f.process(Event::ManualStop);
        assert_eq!(sends_notification(&a), Some((6, 2)), "{st:?}");
        assert!(has(&a, &Action::DropTcp));
        assert_eq!(f.state(), State::Idle);
        assert!(!a.iter().any(|x| matches!(x, Action::StartTimer(..))));
        assert_eq!(session_down(&a).is_some(), st == State::Established);
        // Stopped means no automatic restart.
        assert!(f.process(Event::IdleHoldTimerExpires).is_empty());
        assert_eq!(f.state(), State::Idle);
    }
}

// ---- OpenConfirm ----

#[test]
fn open_confirm_keepalive_establishes() {
    let mut f = in_state(config(), State::OpenConfirm);
    let a = f.process(Event::KeepAliveMsg);
    assert_eq!(f.state(), State::Established);
    assert!(has(
        &a,
        &Action::StartTimer(Timer::Hold, Duration::from_secs(30))
    ));
    let neg = a
        .iter()
        .find_map(|x| match x {
            Action::SessionEstablished(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(neg.peer_as, 65002);
    assert_eq!(neg.families, [V4, V6].into_iter().collect());
}

#[test]
fn open_confirm_keepalive_timer_sends_keepalive() {
    let mut f = in_state(config(), State::OpenConfirm);
    let a = f.process(Event::KeepaliveTimerExpires);
    assert_eq!(
        a,
        vec![
            Action::SendKeepalive,
            Action::StartTimer(Timer::Keepalive, Duration::from_secs(10))
        ]
    );
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn open_confirm_errors() {
    let cases = [
        (Event::HoldTimerExpires, Some((4, 0))),
        (Event::OpenCollisionDump, Some((6, 7))),
        (Event::BgpHeaderErr(notification(1, 1)), Some((1, 1))),
        (Event::BgpOpenMsgErr(notification(2, 2)), Some((2, 2))),
        (Event::BgpOpen(peer_open()), Some((5, 2))),
        (Event::UpdateMsg(Box::default()), Some((5, 2))),
        (Event::ConnectRetryTimerExpires, Some((5, 2))),
        (Event::TcpConnectionFails, None),
        (Event::NotifMsg(cease(4)), None),
        (Event::NotifMsgVerErr(notification(2, 1)), None),
    ];
    for (ev, want) in cases {
        let mut f = in_state(config(), State::OpenConfirm);
        let a = f.process(ev.clone());
        assert_eq!(sends_notification(&a), want, "{ev:?}");
        assert!(has(&a, &Action::DropTcp), "{ev:?}");
        assert_eq!(f.state(), State::Idle, "{ev:?}");
        assert!(session_down(&a).is_none(), "{ev:?}");
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::StartTimer(Timer::IdleHold, _))),
            "{ev:?}"
        );
    }
}

// ---- Established ----

#[test]
fn established_messages_restart_hold_and_deliver() {
    let mut f = in_state(config(), State::Established);
    let hold = Action::StartTimer(Timer::Hold, Duration::from_secs(30));
    assert_eq!(f.process(Event::KeepAliveMsg), vec![hold.clone()]);
    let u = Box::new(UpdateMsg {
        nlri: vec!["fd00:1::/64".parse().unwrap()],
        ..Default::default()
    });
    assert_eq!(
        f.process(Event::UpdateMsg(u.clone())),
        vec![hold.clone(), Action::DeliverUpdate(u)]
    );
    assert_eq!(
        f.process(Event::RouteRefreshMsg(V6)),
        vec![hold, Action::DeliverRouteRefresh(V6)]
    );
    let a = f.process(Event::KeepaliveTimerExpires);
    assert_eq!(
        a,
        vec![
            Action::SendKeepalive,
            Action::StartTimer(Timer::Keepalive, Duration::from_secs(10))
        ]
    );
    assert!(f.process(Event::TcpConnectionConfirmed).is_empty());
    assert_eq!(f.state(), State::Established);
}

#[test]
fn established_failures_bring_the_session_down() {
    let cases = [
        (
            Event::HoldTimerExpires,
            Some((4, 0)),
            DownReason::HoldTimerExpired,
        ),
        (
            Event::TcpConnectionFails,
            None,
            DownReason::TcpConnectionFails,
        ),
        (
            Event::NotifMsg(cease(2)),
            None,
            DownReason::NotificationReceived(cease(2)),
        ),
        (
            Event::UpdateMsgErr(notification(3, 1)),
            Some((3, 1)),
            DownReason::NotificationSent(notification(3, 1)),
        ),
        (
            Event::BgpHeaderErr(notification(1, 3)),
            Some((1, 3)),
            DownReason::NotificationSent(notification(1, 3)),
        ),
        (
            Event::BgpOpen(peer_open()),
            Some((5, 3)),
            DownReason::NotificationSent(notification(5, 3)),
        ),
        (
            Event::ConnectRetryTimerExpires,
            Some((5, 3)),
            DownReason::NotificationSent(notification(5, 3)),
        ),
        (
            Event::OpenCollisionDump,
            Some((6, 7)),
            DownReason::CollisionDump,
        ),
        (
            Event::AutomaticStop(1),
            Some((6, 1)),
            DownReason::NotificationSent(cease(1)),
        ),
    ];
    for (ev, notif, reason) in cases {
        let mut f = in_state(config(), State::Established);
        let a = f.process(ev.clone());
        assert_eq!(sends_notification(&a), notif, "{ev:?}");
        assert!(has(&a, &Action::DropTcp), "{ev:?}");
        assert_eq!(
            session_down(&a).map(|d| d.reason.clone()),
            Some(reason),
            "{ev:?}"
        );
        assert_eq!(f.state(), State::Idle);
        // Restart scheduled.
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::StartTimer(Timer::IdleHold, _))),
            "{ev:?}"
        );
        let a = f.process(Event::IdleHoldTimerExpires);
        assert!(has(&a, &Action::ConnectTcp));
    }
}

#[test]
fn counter_resets_when_established() {
    let mut f = in_state(config(), State::Connect);
    f.process(Event::TcpConnectionFails);
    f.process(Event::IdleHoldTimerExpires);
    assert_eq!(f.connect_retry_counter(), 1);
    f.process(Event::TcpCrAcked);
    f.process(Event::BgpOpen(peer_open()));
    f.process(Event::KeepAliveMsg);
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.connect_retry_counter(), 0);
}

// ---- capabilities ----

fn gr_config() -> FsmConfig {
    FsmConfig {
        graceful_restart: Some(GracefulRestartConfig {
            restart_time: 120,
            restarting: false,
            forwarding: vec![
                (Afi::Ipv4, Safi::Unicast, true),
                (Afi::Ipv6, Safi::Unicast, true),
            ],
        }),
        extended_next_hop: vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)],
        add_path: vec![(Afi::Ipv6, Safi::Unicast, 3), (Afi::Ipv4, Safi::Unicast, 1)],
        ..config()
    }
}

fn gr_peer_open() -> OpenMsg {
    let mut o = peer_open();
    o.capabilities.extend([
        Capability::GracefulRestart {
            restarting: true,
            restart_time: 60,
            families: vec![
                (Afi::Ipv6, Safi::Unicast, true),
                (Afi::Ipv4, Safi::Unicast, false),
            ],
        },
        Capability::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]),
        Capability::AddPath(vec![
            (Afi::Ipv6, Safi::Unicast, 1),
            (Afi::Ipv4, Safi::Unicast, 1),
        ]),
        Capability::Unknown {
            code: 200,
            value: vec![1, 2],
        },
    ]);
    o
}

#[test]
fn capability_negotiation_result() {
    let cfg = gr_config();
    let open = build_open(&cfg);
    assert!(open.capabilities.iter().any(|c| matches!(
        c,
        Capability::GracefulRestart {
            restart_time: 120,
            ..
        }
    )));
    assert!(
        open.capabilities
            .contains(&Capability::ExtendedNextHop(vec![(
                Afi::Ipv4,
                Safi::Unicast,
                Afi::Ipv6
            )]))
    );
    let n = negotiate(&cfg, &gr_peer_open()).unwrap();
    assert_eq!(n.families, [V4, V6].into_iter().collect());
    assert!(n.route_refresh);
    assert!(n.next_hop_allowed(V4, Afi::Ipv6));
    assert!(n.next_hop_allowed(V6, Afi::Ipv6));
    assert!(!n.next_hop_allowed(V6, Afi::Ipv4));
    let gr = n.graceful_restart.as_ref().unwrap();
    assert_eq!(gr.restart_time, 60);
    assert!(gr.restarting);
    assert_eq!(gr.forwarding.get(&V6), Some(&true));
    assert_eq!(gr.forwarding.get(&V4), Some(&false));
    // IPv6: we send+receive, the peer only receives -> we may send. IPv4: both only receive -> nothing.
    assert_eq!(
        n.add_path.get(&V6),
        Some(&AddPathMode {
            send: true,
            receive: false
        })
    );
    assert_eq!(n.add_path.get(&V4), None);
}

#[test]
fn capabilities_need_both_sides() {
    // The peer advertises everything, we advertise little.
    let cfg = FsmConfig {
        route_refresh: false,
        families: vec![V6],
        ..config()
    };
    let n = negotiate(&cfg, &gr_peer_open()).unwrap();
    assert_eq!(n.families, [V6].into_iter().collect());
    assert!(!n.route_refresh);
    assert!(n.graceful_restart.is_none());
    assert!(n.extended_next_hop.is_empty());
    assert!(n.add_path.is_empty());
    // A peer without Multiprotocol capabilities speaks IPv4 unicast only.
    let n = negotiate(
        &config(),
        &OpenMsg {
            capabilities: vec![],
            ..peer_open()
        },
    )
    .unwrap();
    assert_eq!(n.families, [V4].into_iter().collect());
    // Negotiated hold time is the minimum.
    let n = negotiate(
        &FsmConfig {
            hold_time: 9,
            ..config()
        },
        &peer_open(),
    )
    .unwrap();
    assert_eq!((n.hold_time, n.keepalive_time), (9, 3));
}

#[test]
fn graceful_restart_keeps_routes_only_on_tcp_failure() {
    let mut f = fsm(gr_config());
    f.process(Event::ManualStart);
    f.process(Event::TcpCrAcked);
    f.process(Event::BgpOpen(gr_peer_open()));
    f.process(Event::KeepAliveMsg);
    assert_eq!(f.state(), State::Established);
    let a = f.process(Event::TcpConnectionFails);
    let down = session_down(&a).unwrap();
    let (time, fams) = down.graceful_restart.clone().unwrap();
    assert_eq!(time, Duration::from_secs(60));
    assert_eq!(fams, vec![V4, V6]);

    let mut f = fsm(gr_config());
    f.process(Event::ManualStart);
    f.process(Event::TcpCrAcked);
    f.process(Event::BgpOpen(gr_peer_open()));
    f.process(Event::KeepAliveMsg);
    let a = f.process(Event::NotifMsg(cease(2)));
    assert_eq!(session_down(&a).unwrap().graceful_restart, None);
}

// ---- collisions ----

#[test]
fn collision_winner_compares_identifiers_then_as() {
    use ConnectionOrigin::*;
    let lo = Ipv4Addr::new(198, 18, 0, 1);
    let hi = Ipv4Addr::new(198, 18, 0, 200);
    assert_eq!(collision_winner(hi, 1, lo, 2), Outgoing);
    assert_eq!(collision_winner(lo, 1, hi, 2), Incoming);
    // Compared as numbers, not bytes of a string.
    assert_eq!(
        collision_winner(Ipv4Addr::new(10, 0, 0, 9), 1, Ipv4Addr::new(9, 0, 0, 10), 1),
        Outgoing
    );
    assert_eq!(collision_winner(lo, 65002, lo, 65001), Outgoing);
    assert_eq!(collision_winner(lo, 65001, lo, 65002), Incoming);
}

fn incoming_fsm(cfg: FsmConfig, state: State) -> Fsm {
    let mut f = Fsm::new_for_incoming(cfg, fixed_jitter(1.0));
    assert_eq!(f.state(), State::Active);
    f.process(Event::TcpConnectionConfirmed);
    if state == State::OpenConfirm {
        f.process(Event::BgpOpen(peer_open()));
    }
    assert_eq!(f.state(), state);
    f
}

#[test]
fn collision_lower_local_id_dumps_outgoing() {
    use ConnectionOrigin::*;
    // LOCAL_ID < PEER_ID: the peer's connection (incoming) survives.
    let out = in_state(config(), State::OpenSent);
    let inc = incoming_fsm(config(), State::OpenConfirm);
    assert_eq!(
        collision_loser((&out, Outgoing), (&inc, Incoming)),
        Some(Outgoing)
    );
    assert_eq!(
        collision_loser((&inc, Incoming), (&out, Outgoing)),
        Some(Outgoing)
    );
    // The loser sends Cease / Connection Collision Resolution.
    let mut out = out;
    let a = out.process(Event::OpenCollisionDump);
    assert_eq!(sends_notification(&a), Some((6, 7)));
}

#[test]
fn collision_higher_local_id_dumps_incoming() {
    use ConnectionOrigin::*;
    let cfg = FsmConfig {
        router_id: Ipv4Addr::new(198, 19, 255, 254),
        ..config()
    };
    let out = in_state(cfg.clone(), State::OpenConfirm);
    let inc = incoming_fsm(cfg, State::OpenSent);
    assert_eq!(
        collision_loser((&out, Outgoing), (&inc, Incoming)),
        Some(Incoming)
    );
}

#[test]
fn collision_needs_the_peer_identifier_and_two_connections() {
    use ConnectionOrigin::*;
    // Both in OpenSent: no OPEN received yet, the identifier is unknown.
    let out = in_state(config(), State::OpenSent);
    let inc = incoming_fsm(config(), State::OpenSent);
    assert_eq!(collision_loser((&out, Outgoing), (&inc, Incoming)), None);
    // A connection still in Connect does not collide.
    let conn = in_state(config(), State::Connect);
    let inc = incoming_fsm(config(), State::OpenConfirm);
    assert_eq!(collision_loser((&conn, Outgoing), (&inc, Incoming)), None);
    // Established always survives.
    let est = in_state(config(), State::Established);
    assert_eq!(
        collision_loser((&est, Outgoing), (&inc, Incoming)),
        Some(Incoming)
    );
}

#[test]
fn event_from_message() {
    assert_eq!(Event::from_message(Message::Keepalive), Event::KeepAliveMsg);
    assert_eq!(
        Event::from_message(Message::Notification(notification(2, 1))),
        Event::NotifMsgVerErr(notification(2, 1))
    );
    assert_eq!(
        Event::from_message(Message::Notification(cease(3))),
        Event::NotifMsg(cease(3))
    );
    assert_eq!(
        Event::from_message(Message::RouteRefresh {
            afi: Afi::Ipv4,
            safi: Safi::Unicast
        }),
        Event::RouteRefreshMsg(V4)
    );
    assert_eq!(Timer::Hold.expiry_event(), Event::HoldTimerExpires);
}

#[test]
fn collision_on_open_decides_before_processing() {
    use ConnectionOrigin::*;
    // LOCAL_ID < PEER_ID: an OPEN on the incoming connection dumps our outgoing one.
    let out = in_state(config(), State::OpenSent);
    let inc = incoming_fsm(config(), State::OpenSent);
    assert_eq!(
        collision_on_open((&inc, Incoming), (&out, Outgoing), &peer_open()),
        Some(Outgoing)
    );
    // With a higher local identifier the receiving incoming connection itself loses.
    let hi = FsmConfig {
        router_id: Ipv4Addr::new(198, 19, 0, 1),
        ..config()
    };
    let out = in_state(hi.clone(), State::OpenSent);
    let inc = incoming_fsm(hi, State::OpenSent);
    assert_eq!(
        collision_on_open((&inc, Incoming), (&out, Outgoing), &peer_open()),
        Some(Incoming)
    );
    // An invalid OPEN is left to the FSM; a lone connection has no collision.
    let bad = OpenMsg {
        hold_time: 1,
        ..peer_open()
    };
    assert_eq!(
        collision_on_open((&inc, Incoming), (&out, Outgoing), &bad),
        None
    );
    let conn = in_state(config(), State::Connect);
    assert_eq!(
        collision_on_open((&inc, Incoming), (&conn, Outgoing), &peer_open()),
        None
    );
    // An Established session always wins.
    let est = in_state(config(), State::Established);
    assert_eq!(
        collision_on_open((&inc, Incoming), (&est, Outgoing), &peer_open()),
        Some(Incoming)
    );
}

#[test]
fn config_validation() {
    assert_eq!(config().validate(), Ok(()));
    assert_eq!(
        FsmConfig {
            hold_time: 0,
            ..config()
        }
        .validate(),
        Ok(())
    );
    assert_eq!(
        FsmConfig {
            hold_time: 2,
            ..config()
        }
        .validate(),
        Err(ConfigError::HoldTime(2))
    );
    assert_eq!(
        FsmConfig {
            peer_as: 0,
            ..config()
        }
        .validate(),
        Err(ConfigError::ZeroAs)
    );
    assert_eq!(
        FsmConfig {
            router_id: Ipv4Addr::UNSPECIFIED,
            ..config()
        }
        .validate(),
        Err(ConfigError::ZeroRouterId)
    );
    assert_eq!(
        FsmConfig {
            families: vec![],
            ..config()
        }
        .validate(),
        Err(ConfigError::NoFamilies)
    );
    assert_eq!(
        FsmConfig {
            add_path: vec![(Afi::Ipv6, Safi::Unicast, 4)],
            ..config()
        }
        .validate(),
        Err(ConfigError::AddPathMode(4, V6))
    );
    let gr = GracefulRestartConfig {
        restart_time: 5000,
        restarting: false,
        forwarding: vec![],
    };
    assert_eq!(
        FsmConfig {
            graceful_restart: Some(gr),
            ..config()
        }
        .validate(),
        Err(ConfigError::RestartTime(5000))
    );
    assert_eq!(
        FsmConfig {
            connect_retry_time: Duration::ZERO,
            ..config()
        }
        .validate(),
        Err(ConfigError::ConnectRetry)
    );
}
