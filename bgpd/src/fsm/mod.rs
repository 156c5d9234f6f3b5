//! The RFC 4271 session state machine, Sans-IO: inputs in, actions out.
//!
//! One [`Fsm`] drives one BGP connection. [`Fsm::process`] takes an [`Event`] (RFC 4271 §8.1 names) and returns the
//! [`Action`]s a driver must perform (open/drop TCP, send messages, arm timers, tell the RIB); it does no I/O and reads
//! no clock, so every transition is testable by feeding events. Connection collisions (§6.8) involve two
//! connections, hence two `Fsm`s; [`collision_loser`] tells the driver which one to feed [`Event::OpenCollisionDump`].
//!
//! Deviations from RFC 4271, on purpose: no DelayOpen and no peer oscillation damping; instead a session that falls
//! back to Idle while started restarts itself after [`Timer::IdleHold`], whose delay (like the ConnectRetry timer's)
//! grows exponentially with the ConnectRetryCounter, which is reset by manual events and on reaching Established.

mod open;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::time::Duration;

pub use open::{
    AS_TRANS, AddPathMode, BGP_VERSION, Negotiated, OpenError, PeerGracefulRestart, build_open,
    code, negotiate,
};

use crate::packet::iana::{Afi, Family, Safi};
use crate::packet::{Message, NotificationMsg, OpenMsg, UpdateMsg};

/// Session states (RFC 4271 §8.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    /// The name GoBGP and RFC 4271 print.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inputs of the FSM (RFC 4271 §8.1; number and RFC name in each doc comment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Event 1: ManualStart (event 4, ManualStart_with_PassiveTcpEstablishment, when `FsmConfig::passive`).
    ManualStart,
    /// Event 2: ManualStop.
    ManualStop,
    /// Event 3: AutomaticStart (event 5 when passive).
    AutomaticStart,
    /// Event 8: AutomaticStop, with the Cease subcode to send (e.g. 1, maximum number of prefixes reached).
    AutomaticStop(u8),
    /// Event 9: ConnectRetryTimer_Expires.
    ConnectRetryTimerExpires,
    /// Event 10: HoldTimer_Expires.
    HoldTimerExpires,
    /// Event 11: KeepaliveTimer_Expires.
    KeepaliveTimerExpires,
    /// Event 13: IdleHoldTimer_Expires (here: automatic restart after a failure, see the module doc).
    IdleHoldTimerExpires,
    /// Event 16: Tcp_CR_Acked (our outgoing connection completed).
    TcpCrAcked,
    /// Event 17: TcpConnectionConfirmed (an incoming connection was accepted).
    TcpConnectionConfirmed,
    /// Event 18: TcpConnectionFails.
    TcpConnectionFails,
    /// Event 19: BGPOpen (the FSM validates it; an invalid OPEN is handled as event 22).
    BgpOpen(OpenMsg),
    /// Event 21: BGPHeaderErr, with the NOTIFICATION the codec derived from the error.
    BgpHeaderErr(NotificationMsg),
    /// Event 22: BGPOpenMsgErr, with the NOTIFICATION the codec derived from the error.
    BgpOpenMsgErr(NotificationMsg),
    /// Event 23: OpenCollisionDump (this connection lost a collision, §6.8).
    OpenCollisionDump,
    /// Event 24: NotifMsgVerErr (a NOTIFICATION with OPEN Message Error / Unsupported Version Number).
    NotifMsgVerErr(NotificationMsg),
    /// Event 25: NotifMsg.
    NotifMsg(NotificationMsg),
    /// Event 26: KeepAliveMsg.
    KeepAliveMsg,
    /// Event 27: UpdateMsg.
    UpdateMsg(Box<UpdateMsg>),
    /// Event 28: UpdateMsgErr, with the NOTIFICATION the codec derived from the error.
    UpdateMsgErr(NotificationMsg),
    /// Not in RFC 4271: ROUTE-REFRESH received (RFC 2918); handled like an UPDATE for the timers.
    RouteRefreshMsg(Family),
}

impl Event {
    /// The event a received, well-formed message is.
    pub fn from_message(msg: Message) -> Event {
        match msg {
            Message::Open(open) => Event::BgpOpen(open),
            Message::Update(update) => Event::UpdateMsg(Box::new(update)),
            Message::Notification(n) if n.code == code::OPEN_MESSAGE && n.subcode == 1 => {
                Event::NotifMsgVerErr(n)
            }
            Message::Notification(n) => Event::NotifMsg(n),
            Message::Keepalive => Event::KeepAliveMsg,
            Message::RouteRefresh { afi, safi } => Event::RouteRefreshMsg((afi, safi)),
        }
    }
}

/// The timers of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// Automatic restart after the session fell back to Idle.
    IdleHold,
}

impl Timer {
    /// The event the driver feeds when this timer fires.
    pub fn expiry_event(self) -> Event {
        match self {
            Timer::ConnectRetry => Event::ConnectRetryTimerExpires,
            Timer::Hold => Event::HoldTimerExpires,
            Timer::Keepalive => Event::KeepaliveTimerExpires,
            Timer::IdleHold => Event::IdleHoldTimerExpires,
        }
    }
}

/// Why an Established session ended; the RIB withdraws the peer's routes, or keeps them as stale when
/// [`SessionDown::graceful_restart`] says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    ManualStop,
    AutomaticStop(u8),
    HoldTimerExpired,
    TcpConnectionFails,
    /// The peer sent this NOTIFICATION.
    NotificationReceived(NotificationMsg),
    /// We sent this NOTIFICATION (bad UPDATE, unexpected message, ...).
    NotificationSent(NotificationMsg),
    /// A collision with a new connection was resolved against this one.
    CollisionDump,
}

/// The end of an Established session, as the RIB needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDown {
    pub reason: DownReason,
    /// RFC 4724: the peer's restart time and the families whose routes to keep as stale meanwhile; `None` means
    /// withdraw everything now (graceful restart not negotiated, or the session ended by a NOTIFICATION or by us).
    pub graceful_restart: Option<(Duration, Vec<Family>)>,
}

/// Outputs of the FSM, to be performed by the driver in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open an outgoing TCP connection to the peer (answered by `TcpCrAcked` or `TcpConnectionFails`).
    ConnectTcp,
    /// Close the connection (and abandon a connection attempt in progress).
    DropTcp,
    SendOpen(OpenMsg),
    SendKeepalive,
    SendNotification(NotificationMsg),
    /// (Re)arm the timer to fire after the duration.
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// The session reached Established: start sending routes, using what was negotiated.
    SessionEstablished(Box<Negotiated>),
    /// The Established session ended: the RIB must withdraw or stale the peer's routes.
    SessionDown(SessionDown),
    /// An UPDATE for the RIB.
    DeliverUpdate(Box<UpdateMsg>),
    /// The peer asks us to resend a family (RFC 2918).
    DeliverRouteRefresh(Family),
}

/// Graceful restart settings we advertise (RFC 4724).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    pub restart_time: u16,
    /// The R bit: we have just restarted.
    pub restarting: bool,
    /// Per family, the F bit (we kept forwarding state).
    pub forwarding: Vec<(Afi, Safi, bool)>,
}

/// The source of timer jitter: returns a factor in [0.75, 1.0] (RFC 4271 §10). Injected so tests are exact.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// A jitter source from the std hasher's random keys (no RNG dependency needed for this).
pub fn random_jitter() -> Jitter {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut n: u64 = 0;
    Box::new(move || {
        n = n.wrapping_add(1);
        let mut h = state.build_hasher();
        h.write_u64(n);
        let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
        0.75 + 0.25 * unit
    })
}

/// Session settings the FSM needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_as: u32,
    /// The AS the peer must have.
    pub peer_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we offer: 0, or 3 and more.
    pub hold_time: u16,
    /// First ConnectRetry / automatic restart delay; doubled per consecutive failure up to `connect_retry_max`.
    pub connect_retry_time: Duration,
    pub connect_retry_max: Duration,
    /// Never open connections, only accept them (RFC 4271 PassiveTcpEstablishment).
    pub passive: bool,
    /// Families we advertise with the Multiprotocol capability.
    pub families: Vec<Family>,
    pub route_refresh: bool,
    pub extended_next_hop: Vec<(Afi, Safi, Afi)>,
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// ADD-PATH per family, mode 1 receive, 2 send, 3 both.
    pub add_path: Vec<(Afi, Safi, u8)>,
    /// Refuse a peer with no family in common (OPEN error, Unsupported Capability).
    pub require_common_family: bool,
}

impl FsmConfig {
    /// Defaults for a peer: hold 90 s, ConnectRetry 5 s doubling up to 120 s, both unicast families, route refresh.
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        FsmConfig {
            local_as,
            peer_as,
            router_id,
            hold_time: 90,
            connect_retry_time: Duration::from_secs(5),
            connect_retry_max: Duration::from_secs(120),
            passive: false,
            families: vec![(Afi::Ipv6, Safi::Unicast), (Afi::Ipv4, Safi::Unicast)],
            route_refresh: true,
            extended_next_hop: Vec::new(),
            graceful_restart: None,
            add_path: Vec::new(),
            require_common_family: true,
        }
    }
}

/// A session setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("hold time {0} s: must be 0 or at least 3 (RFC 4271 section 4.2)")]
    HoldTime(u16),
    #[error("AS number 0 is reserved (RFC 7607)")]
    ZeroAs,
    #[error("BGP identifier 0.0.0.0 is invalid (RFC 6286)")]
    ZeroRouterId,
    #[error("no address family to advertise")]
    NoFamilies,
    #[error("ADD-PATH mode {0} for {1:?}: must be 1 (receive), 2 (send) or 3 (both)")]
    AddPathMode(u8, Family),
    #[error("graceful restart time {0} s exceeds the capability's 12 bits (4095)")]
    RestartTime(u16),
    #[error("ConnectRetry time must be positive and not above its maximum")]
    ConnectRetry,
}

impl FsmConfig {
    /// Checks the settings before a session uses them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(ConfigError::HoldTime(self.hold_time));
        }
        if self.local_as == 0 || self.peer_as == 0 {
            return Err(ConfigError::ZeroAs);
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::ZeroRouterId);
        }
        if self.families.is_empty() {
            return Err(ConfigError::NoFamilies);
        }
        if let Some(&(afi, safi, mode)) =
            self.add_path.iter().find(|(_, _, m)| !(1..=3).contains(m))
        {
            return Err(ConfigError::AddPathMode(mode, (afi, safi)));
        }
        if let Some(gr) = &self.graceful_restart
            && gr.restart_time > 4095
        {
            return Err(ConfigError::RestartTime(gr.restart_time));
        }
        if self.connect_retry_time.is_zero() || self.connect_retry_time > self.connect_retry_max {
            return Err(ConfigError::ConnectRetry);
        }
        Ok(())
    }
}

/// The hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2: "suggested value ... is 4 minutes").
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

/// The state machine of one connection.
pub struct Fsm {
    config: FsmConfig,
    state: State,
    /// RFC 4271 ConnectRetryCounter; also the exponent of the retry backoff.
    connect_retry_counter: u32,
    /// Started (manually or automatically) and not manually stopped: restart automatically after failures.
    started: bool,
    negotiated: Option<Negotiated>,
    jitter: Jitter,
}

impl std::fmt::Debug for Fsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fsm")
            .field("state", &self.state)
            .field("connect_retry_counter", &self.connect_retry_counter)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Fsm {
    /// A new FSM in Idle.
    pub fn new(config: FsmConfig, jitter: Jitter) -> Self {
        Fsm {
            config,
            state: State::Idle,
            connect_retry_counter: 0,
            started: false,
            negotiated: None,
            jitter,
        }
    }

    /// An FSM for a second, incoming connection that arrived while another one is in progress (§6.8): it starts in
    /// Active, started, waiting only for `TcpConnectionConfirmed`.
    pub fn new_for_incoming(config: FsmConfig, jitter: Jitter) -> Self {
        Fsm {
            config,
            state: State::Active,
            connect_retry_counter: 0,
            started: true,
            negotiated: None,
            jitter,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    /// Replaces the configuration; takes effect at the next OPEN (a running session is not reset by this).
    pub fn set_config(&mut self, config: FsmConfig) {
        self.config = config;
    }

    /// What the OPEN exchange agreed on, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The peer's BGP identifier, once its OPEN was accepted.
    pub fn peer_id(&self) -> Option<Ipv4Addr> {
        self.negotiated.as_ref().map(|n| n.peer_id)
    }

    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// Whether the session restarts by itself after a failure.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The backoff delay for the current counter, with jitter.
    fn retry_delay(&mut self) -> Duration {
        let exp = self.connect_retry_counter.min(16);
        let base = self
            .config
            .connect_retry_time
            .saturating_mul(1u32 << exp)
            .min(self.config.connect_retry_max);
        let factor = (self.jitter)().clamp(0.75, 1.0);
        base.mul_f64(factor)
    }

    fn keepalive_delay(&mut self, keepalive_time: u16) -> Duration {
        let factor = (self.jitter)().clamp(0.75, 1.0);
        Duration::from_secs(u64::from(keepalive_time)).mul_f64(factor)
    }

    /// Feeds one event; returns what to do, in order.
    pub fn process(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Idle => self.idle(event, &mut out),
            State::Connect | State::Active => self.connect_or_active(event, &mut out),
            State::OpenSent => self.open_sent(event, &mut out),
            State::OpenConfirm => self.open_confirm(event, &mut out),
            State::Established => self.established(event, &mut out),
        }
        out
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        self.started = true;
        self.negotiated = None;
        out.push(Action::StopTimer(Timer::IdleHold));
        if self.config.passive {
            // Passive peers wait for the peer in Active and never time out into Connect.
            self.state = State::Active;
        } else {
            let delay = self.retry_delay();
            out.push(Action::StartTimer(Timer::ConnectRetry, delay));
            out.push(Action::ConnectTcp);
            self.state = State::Connect;
        }
    }

    fn idle(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart => {
                self.connect_retry_counter = 0;
                self.start(out);
            }
            Event::AutomaticStart => self.start(out),
            Event::IdleHoldTimerExpires if self.started => self.start(out),
            // Idle refuses connections.
            Event::TcpConnectionConfirmed | Event::TcpCrAcked => out.push(Action::DropTcp),
            Event::ManualStop => {
                self.started = false;
                self.connect_retry_counter = 0;
                out.push(Action::StopTimer(Timer::IdleHold));
            }
            // RFC 4271: any other event is ignored in Idle.
            _ => {}
        }
    }

    /// Leaves for Idle after a failure: stops every timer, and schedules the automatic restart if started.
    fn enter_idle(&mut self, out: &mut Vec<Action>, count_failure: bool) {
        if count_failure {
            self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        }
        for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
            out.push(Action::StopTimer(t));
        }
        self.state = State::Idle;
        if self.started {
            let delay = self.retry_delay();
            out.push(Action::StartTimer(Timer::IdleHold, delay));
        }
    }

    fn manual_stop(&mut self, out: &mut Vec<Action>) {
        if matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            out.push(Action::SendNotification(cease(
                code::cease::ADMINISTRATIVE_SHUTDOWN,
            )));
        }
        out.push(Action::DropTcp);
        if self.state == State::Established {
            out.push(Action::SessionDown(SessionDown {
                reason: DownReason::ManualStop,
                graceful_restart: None,
            }));
        }
        self.started = false;
        self.connect_retry_counter = 0;
        self.enter_idle(out, false);
    }

    fn connect_or_active(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::IdleHoldTimerExpires => {}
            Event::ManualStop => self.manual_stop(out),
            Event::ConnectRetryTimerExpires => {
                // Connect: the attempt hangs, start over; Active: try our own connection now.
                out.push(Action::DropTcp);
                let delay = self.retry_delay();
                out.push(Action::StartTimer(Timer::ConnectRetry, delay));
                out.push(Action::ConnectTcp);
                self.state = State::Connect;
            }
            Event::TcpCrAcked | Event::TcpConnectionConfirmed => {
                out.push(Action::StopTimer(Timer::ConnectRetry));
                out.push(Action::SendOpen(build_open(&self.config)));
                out.push(Action::StartTimer(Timer::Hold, LARGE_HOLD_TIME));
                self.state = State::OpenSent;
            }
            Event::TcpConnectionFails => {
                out.push(Action::DropTcp);
                self.enter_idle(out, true);
            }
            // No connection exists in these states, so any message or other timer is out of place: start over.
            _ => {
                out.push(Action::DropTcp);
                self.enter_idle(out, true);
            }
        }
    }

    /// Sends `notification`, drops the connection, goes Idle counting a failure.
    fn fail_with(&mut self, notification: NotificationMsg, out: &mut Vec<Action>) {
        let established = self.state == State::Established;
        out.push(Action::SendNotification(notification.clone()));
        out.push(Action::DropTcp);
        if established {
            let reason = DownReason::NotificationSent(notification);
            out.push(Action::SessionDown(SessionDown {
                reason,
                graceful_restart: None,
            }));
        }
        self.enter_idle(out, true);
    }

    /// Drops the connection without a NOTIFICATION (the peer closed it or sent one).
    fn fail_silently(&mut self, reason: DownReason, count_failure: bool, out: &mut Vec<Action>) {
        out.push(Action::DropTcp);
        if self.state == State::Established {
            let graceful_restart = self.graceful_restart_on(&reason);
            out.push(Action::SessionDown(SessionDown {
                reason,
                graceful_restart,
            }));
        }
        self.enter_idle(out, count_failure);
    }

    /// RFC 4724 §4.2: keep routes as stale when the TCP session simply went away (not after a NOTIFICATION).
    fn graceful_restart_on(&self, reason: &DownReason) -> Option<(Duration, Vec<Family>)> {
        if !matches!(
            reason,
            DownReason::TcpConnectionFails | DownReason::HoldTimerExpired
        ) {
            return None;
        }
        let gr = self.negotiated.as_ref()?.graceful_restart.as_ref()?;
        Some((
            Duration::from_secs(u64::from(gr.restart_time)),
            gr.forwarding.keys().copied().collect(),
        ))
    }

    fn open_sent(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::IdleHoldTimerExpires => {}
            // A second connection: tracked by the driver as a collision, not by this FSM.
            Event::TcpCrAcked | Event::TcpConnectionConfirmed => {}
            Event::ManualStop => self.manual_stop(out),
            Event::AutomaticStop(sub) => self.fail_with(cease(sub), out),
            Event::HoldTimerExpires => {
                self.fail_with(notification(code::HOLD_TIMER_EXPIRED, 0), out)
            }
            Event::TcpConnectionFails => {
                // RFC 4271: close, restart ConnectRetry and listen in Active.
                out.push(Action::DropTcp);
                out.push(Action::StopTimer(Timer::Hold));
                if !self.config.passive {
                    let delay = self.retry_delay();
                    out.push(Action::StartTimer(Timer::ConnectRetry, delay));
                }
                self.state = State::Active;
            }
            Event::BgpOpen(open) => match negotiate(&self.config, &open) {
                Ok(neg) => {
                    out.push(Action::StopTimer(Timer::ConnectRetry));
                    out.push(Action::SendKeepalive);
                    if neg.hold_time == 0 {
                        out.push(Action::StopTimer(Timer::Hold));
                    } else {
                        let ka = self.keepalive_delay(neg.keepalive_time);
                        out.push(Action::StartTimer(Timer::Keepalive, ka));
                        out.push(Action::StartTimer(Timer::Hold, hold(&neg)));
                    }
                    self.negotiated = Some(neg);
                    self.state = State::OpenConfirm;
                }
                Err(e) => self.fail_with(e.notification(), out),
            },
            Event::BgpHeaderErr(n) | Event::BgpOpenMsgErr(n) => self.fail_with(n, out),
            Event::OpenCollisionDump => {
                self.fail_with(cease(code::cease::CONNECTION_COLLISION_RESOLUTION), out)
            }
            Event::NotifMsgVerErr(_) => {
                self.fail_silently(DownReason::TcpConnectionFails, false, out)
            }
            // Answering a NOTIFICATION with one is pointless: the peer has closed already.
            Event::NotifMsg(n) => {
                self.fail_silently(DownReason::NotificationReceived(n), true, out)
            }
            Event::ConnectRetryTimerExpires
            | Event::KeepaliveTimerExpires
            | Event::KeepAliveMsg
            | Event::UpdateMsg(_)
            | Event::UpdateMsgErr(_)
            | Event::RouteRefreshMsg(_) => self.fail_with(
                notification(code::FSM, code::fsm::UNEXPECTED_IN_OPEN_SENT),
                out,
            ),
        }
    }

    fn open_confirm(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::IdleHoldTimerExpires => {}
            Event::TcpCrAcked | Event::TcpConnectionConfirmed => {}
            Event::ManualStop => self.manual_stop(out),
            Event::AutomaticStop(sub) => self.fail_with(cease(sub), out),
            Event::HoldTimerExpires => {
                self.fail_with(notification(code::HOLD_TIMER_EXPIRED, 0), out)
            }
            Event::KeepaliveTimerExpires => {
                out.push(Action::SendKeepalive);
                let ka = self.keepalive_time();
                let d = self.keepalive_delay(ka);
                out.push(Action::StartTimer(Timer::Keepalive, d));
            }
            Event::TcpConnectionFails => {
                self.fail_silently(DownReason::TcpConnectionFails, true, out)
            }
            Event::NotifMsg(n) => {
                self.fail_silently(DownReason::NotificationReceived(n), true, out)
            }
            Event::NotifMsgVerErr(_) => {
                self.fail_silently(DownReason::TcpConnectionFails, false, out)
            }
            Event::BgpHeaderErr(n) | Event::BgpOpenMsgErr(n) => self.fail_with(n, out),
            Event::OpenCollisionDump => {
                self.fail_with(cease(code::cease::CONNECTION_COLLISION_RESOLUTION), out)
            }
            Event::KeepAliveMsg => {
                let neg = self
                    .negotiated
                    .clone()
                    .expect("OpenConfirm is entered only with a negotiated OPEN");
                if neg.hold_time != 0 {
                    out.push(Action::StartTimer(Timer::Hold, hold(&neg)));
                }
                self.connect_retry_counter = 0;
                self.state = State::Established;
                out.push(Action::SessionEstablished(Box::new(neg)));
            }
            Event::ConnectRetryTimerExpires
            | Event::BgpOpen(_)
            | Event::UpdateMsg(_)
            | Event::UpdateMsgErr(_)
            | Event::RouteRefreshMsg(_) => self.fail_with(
                notification(code::FSM, code::fsm::UNEXPECTED_IN_OPEN_CONFIRM),
                out,
            ),
        }
    }

    fn keepalive_time(&self) -> u16 {
        self.negotiated.as_ref().map_or(0, |n| n.keepalive_time)
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if let Some(neg) = &self.negotiated
            && neg.hold_time != 0
        {
            out.push(Action::StartTimer(Timer::Hold, hold(neg)));
        }
    }

    fn established(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::IdleHoldTimerExpires => {}
            // RFC 4271 §6.8: a collision with an Established session is resolved for the existing one.
            Event::TcpCrAcked | Event::TcpConnectionConfirmed => {}
            Event::ManualStop => self.manual_stop(out),
            Event::AutomaticStop(sub) => self.fail_with(cease(sub), out),
            Event::HoldTimerExpires => {
                let n = notification(code::HOLD_TIMER_EXPIRED, 0);
                out.push(Action::SendNotification(n));
                self.fail_silently(DownReason::HoldTimerExpired, true, out);
            }
            Event::KeepaliveTimerExpires => {
                out.push(Action::SendKeepalive);
                let ka = self.keepalive_time();
                let d = self.keepalive_delay(ka);
                out.push(Action::StartTimer(Timer::Keepalive, d));
            }
            Event::TcpConnectionFails => {
                self.fail_silently(DownReason::TcpConnectionFails, true, out)
            }
            Event::NotifMsg(n) | Event::NotifMsgVerErr(n) => {
                self.fail_silently(DownReason::NotificationReceived(n), true, out)
            }
            Event::KeepAliveMsg => self.restart_hold(out),
            Event::UpdateMsg(u) => {
                self.restart_hold(out);
                out.push(Action::DeliverUpdate(u));
            }
            Event::RouteRefreshMsg(f) => {
                self.restart_hold(out);
                out.push(Action::DeliverRouteRefresh(f));
            }
            Event::UpdateMsgErr(n) | Event::BgpHeaderErr(n) | Event::BgpOpenMsgErr(n) => {
                self.fail_with(n, out)
            }
            Event::OpenCollisionDump => {
                out.push(Action::SendNotification(cease(
                    code::cease::CONNECTION_COLLISION_RESOLUTION,
                )));
                self.fail_silently(DownReason::CollisionDump, true, out);
            }
            Event::ConnectRetryTimerExpires | Event::BgpOpen(_) => self.fail_with(
                notification(code::FSM, code::fsm::UNEXPECTED_IN_ESTABLISHED),
                out,
            ),
        }
    }
}

fn hold(neg: &Negotiated) -> Duration {
    Duration::from_secs(u64::from(neg.hold_time))
}

/// A NOTIFICATION without data.
pub fn notification(code: u8, subcode: u8) -> NotificationMsg {
    NotificationMsg {
        code,
        subcode,
        data: Vec::new(),
    }
}

/// A Cease NOTIFICATION (RFC 4486 subcode).
pub fn cease(subcode: u8) -> NotificationMsg {
    notification(code::CEASE, subcode)
}

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionOrigin {
    /// We connected to the peer.
    Outgoing,
    /// The peer connected to us.
    Incoming,
}

/// RFC 4271 §6.8: of two connections to the same peer, the one initiated by the speaker with the higher BGP
/// identifier survives (the higher AS number when the identifiers are equal, RFC 6286 §2.3). Returns the origin
/// of the connection to keep.
pub fn collision_winner(
    local_id: Ipv4Addr,
    local_as: u32,
    remote_id: Ipv4Addr,
    remote_as: u32,
) -> ConnectionOrigin {
    let (l, r) = (u32::from(local_id), u32::from(remote_id));
    if l > r || (l == r && local_as > remote_as) {
        ConnectionOrigin::Outgoing
    } else {
        ConnectionOrigin::Incoming
    }
}

/// Collision detection on receipt of an OPEN (RFC 4271 §6.8, checked before the OPEN is processed): `receiving`
/// got `open` while `other` is in OpenSent, OpenConfirm or Established. Returns the origin of the connection that
/// must get [`Event::OpenCollisionDump`] (for `receiving`, instead of the OPEN), `None` when there is no collision
/// or the OPEN is invalid anyway (the FSM then answers it with its own NOTIFICATION).
pub fn collision_on_open(
    receiving: (&Fsm, ConnectionOrigin),
    other: (&Fsm, ConnectionOrigin),
    open: &OpenMsg,
) -> Option<ConnectionOrigin> {
    let st = other.0.state();
    if receiving.1 == other.1
        || receiving.0.state() != State::OpenSent
        || !matches!(
            st,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    {
        return None;
    }
    if st == State::Established {
        return Some(receiving.1);
    }
    let cfg = receiving.0.config();
    let neg = negotiate(cfg, open).ok()?;
    let winner = collision_winner(cfg.router_id, cfg.local_as, neg.peer_id, neg.peer_as);
    Some(if winner == ConnectionOrigin::Outgoing {
        ConnectionOrigin::Incoming
    } else {
        ConnectionOrigin::Outgoing
    })
}

/// Collision detection between two connections to one peer, each with its FSM: once the peer's identifier is known
/// (either connection got its OPEN) and both are in OpenSent or OpenConfirm (or one is Established), returns the
/// origin of the one that must get [`Event::OpenCollisionDump`].
pub fn collision_loser(
    a: (&Fsm, ConnectionOrigin),
    b: (&Fsm, ConnectionOrigin),
) -> Option<ConnectionOrigin> {
    let in_open = |s: State| matches!(s, State::OpenSent | State::OpenConfirm);
    let (sa, sb) = (a.0.state(), b.0.state());
    // An Established session always survives a new connection.
    if sa == State::Established && in_open(sb) {
        return Some(b.1);
    }
    if sb == State::Established && in_open(sa) {
        return Some(a.1);
    }
    if !(in_open(sa) && in_open(sb)) || a.1 == b.1 {
        return None;
    }
    let remote = a.0.negotiated().or(b.0.negotiated())?;
    let cfg = a.0.config();
    let winner = collision_winner(cfg.router_id, cfg.local_as, remote.peer_id, remote.peer_as);
    Some(if winner == ConnectionOrigin::Outgoing {
        ConnectionOrigin::Incoming
    } else {
        ConnectionOrigin::Outgoing
    })
}
