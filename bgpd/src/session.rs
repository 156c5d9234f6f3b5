//! The session driver: a tokio task per peer that owns its TCP connections and performs what the FSM decides.
//!
//! ```text
//!              SessionCommand (start/stop/reset/updates)            PeerEvent (state, UPDATEs, ...)
//!  speaker ───────────────────────────────────────► session task ─────────────────────────────────► speaker
//!                                                     │   ▲  ▲
//!              Listener (one socket per family) ──────┘   │  └── reader task per connection (frames octets)
//!              accepts, matches the remote address,       └───── connect task per outgoing attempt
//!              hands the stream over as Incoming
//! ```
//! The task holds one [`Fsm`] per connection (two during a collision, RFC 4271 §6.8), the timers as deadlines,
//! and the codec contexts negotiated for the Established connection.

pub mod sockopt;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::fsm::{
    Action, ConnectionOrigin, Event, Fsm, FsmConfig, Negotiated, SessionDown, State, Timer, code,
    collision_loser, collision_on_open, random_jitter,
};
use crate::packet::iana::{Family, FamilySet};
use crate::packet::{
    DecodeCxt, DecodeError, EncodeCxt, Message, NotificationMsg, UpdateMsg, frame_len,
};

pub use sockopt::SockOptError;

/// The BGP port (RFC 4271).
pub const BGP_PORT: u16 = 179;
/// How long a write may block before the connection counts as failed (a peer that stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// TTL handling of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TtlMode {
    /// The kernel's default TTL, no check on receipt.
    #[default]
    Default,
    /// Multihop eBGP: send with this TTL.
    Multihop(u8),
    /// GTSM (RFC 5082) for a peer `hops` hops away: send with 255, accept only >= 256 - hops.
    Gtsm { hops: u8 },
}

/// How to reach one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub fsm: FsmConfig,
    /// The peer's address.
    pub remote: IpAddr,
    /// Interface index for a link-local IPv6 peer (the scope id); `None` otherwise.
    pub scope_id: Option<u32>,
    /// The peer's port (179 unless testing).
    pub remote_port: u16,
    /// Source address of outgoing connections; the source port is always chosen by the kernel (ephemeral).
    pub local_addr: Option<IpAddr>,
    /// TCP-MD5 key (RFC 2385).
    pub md5_key: Option<Vec<u8>>,
    pub ttl: TtlMode,
    /// Bound on a single outgoing connection attempt.
    pub connect_timeout: Duration,
}

impl SessionConfig {
    /// A peer at `remote` on port 179 with default options.
    pub fn new(fsm: FsmConfig, remote: IpAddr) -> Self {
        SessionConfig {
            fsm,
            remote,
            scope_id: None,
            remote_port: BGP_PORT,
            local_addr: None,
            md5_key: None,
            ttl: TtlMode::Default,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Checks the settings (the FSM's, and the socket options').
    pub fn validate(&self) -> Result<(), SessionError> {
        self.fsm.validate()?;
        if let Some(key) = &self.md5_key
            && key.len() > sockopt::MD5_MAX_KEY_LEN
        {
            return Err(SockOptError::Md5KeyTooLong(key.len()).into());
        }
        if let IpAddr::V6(a) = self.remote
            && a.is_unicast_link_local()
            && self.scope_id.unwrap_or(0) == 0
        {
            return Err(SessionError::MissingScope(a));
        }
        if matches!(self.ttl, TtlMode::Gtsm { hops: 0 } | TtlMode::Multihop(0)) {
            return Err(SessionError::Ttl);
        }
        Ok(())
    }

    /// The key under which the listener finds this peer.
    pub fn peer_key(&self) -> PeerKey {
        PeerKey::new(self.remote, self.scope_id.unwrap_or(0))
    }

    fn remote_socket_addr(&self) -> SocketAddr {
        match self.remote {
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(
                a,
                self.remote_port,
                0,
                self.scope_id.unwrap_or(0),
            )),
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), self.remote_port),
        }
    }
}

/// A peer's identity as seen by the listener: address, and interface for link-local IPv6 addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub addr: IpAddr,
    /// Non-zero only for link-local IPv6 addresses.
    pub scope_id: u32,
}

impl PeerKey {
    pub fn new(addr: IpAddr, scope_id: u32) -> Self {
        // IPv4-mapped IPv6 is the IPv4 peer; the scope matters only for link-local addresses.
        let addr = match addr {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            a => a,
        };
        let scope_id = match addr {
            IpAddr::V6(a) if a.is_unicast_link_local() => scope_id,
            _ => 0,
        };
        PeerKey { addr, scope_id }
    }

    fn from_socket_addr(sa: SocketAddr) -> Self {
        match sa {
            SocketAddr::V6(s) => PeerKey::new(IpAddr::V6(*s.ip()), s.scope_id()),
            SocketAddr::V4(s) => PeerKey::new(IpAddr::V4(*s.ip()), 0),
        }
    }
}

/// Errors of the session layer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    SockOpt(#[from] SockOptError),
    #[error("peer {0:?} is already registered with the listener")]
    DuplicatePeer(PeerKey),
    #[error("the session task has ended")]
    Closed,
    #[error(transparent)]
    Config(#[from] crate::fsm::ConfigError),
    #[error("link-local peer {0} needs an interface (scope id)")]
    MissingScope(Ipv6Addr),
    #[error("TTL / GTSM hop count must be at least 1")]
    Ttl,
}

/// Inputs of a session task.
#[derive(Debug)]
pub enum SessionCommand {
    /// ManualStart.
    Start,
    /// ManualStop: Cease / Administrative Shutdown, no automatic restart.
    Stop,
    /// Cease / Administrative Reset, then start again at once.
    Reset,
    /// Ask the peer to resend a family (ROUTE-REFRESH, RFC 2918), when negotiated.
    SoftResetIn(Family),
    /// UPDATEs to send; dropped unless Established (the speaker sends the full table on establishment).
    SendUpdates(Vec<UpdateMsg>),
    /// A connection the listener accepted from this peer.
    Incoming(TcpStream),
    /// AutomaticStop: Cease with this subcode (e.g. 1, maximum number of prefixes), then restart after backoff.
    AutomaticStop(u8),
    /// Stop (Cease / Peer De-configured) and end the task.
    Shutdown,
}

/// What a session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    StateChanged {
        from: State,
        to: State,
    },
    Established {
        negotiated: Box<Negotiated>,
        /// Our end of the connection (its address is our next hop towards this peer).
        local: Option<SocketAddr>,
    },
    /// The Established session ended: withdraw or stale the peer's routes.
    Down(SessionDown),
    Update(Box<UpdateMsg>),
    RouteRefresh(Family),
    NotificationSent(NotificationMsg),
    NotificationReceived(NotificationMsg),
}

/// A [`SessionEvent`] tagged with its peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEvent {
    pub peer: PeerKey,
    pub event: SessionEvent,
}

/// The handle of a session task. The task ends on [`SessionHandle::shutdown`], or once this handle and every
/// sender taken from it (the listener's) are dropped.
#[derive(Debug)]
pub struct SessionHandle {
    peer: PeerKey,
    tx: mpsc::UnboundedSender<SessionCommand>,
    task: JoinHandle<()>,
    stats: Arc<Stats>,
}

impl SessionHandle {
    /// Messages sent and received so far.
    pub fn stats(&self) -> MessageStats {
        MessageStats {
            sent: self.stats.sent.snapshot(),
            received: self.stats.received.snapshot(),
        }
    }

    pub fn peer(&self) -> PeerKey {
        self.peer
    }

    /// Sends a command to the task.
    pub fn send(&self, cmd: SessionCommand) -> Result<(), SessionError> {
        self.tx.send(cmd).map_err(|_| SessionError::Closed)
    }

    /// A sender the listener uses to hand over incoming connections.
    pub fn sender(&self) -> mpsc::UnboundedSender<SessionCommand> {
        self.tx.clone()
    }

    /// Stops the session (NOTIFICATION Cease / Peer De-configured) and waits for the task to end.
    pub async fn shutdown(self) {
        let _ = self.tx.send(SessionCommand::Shutdown);
        let _ = self.task.await;
    }
}

/// Starts the task of one peer; it waits in Idle for [`SessionCommand::Start`].
pub fn spawn(config: SessionConfig, events: mpsc::UnboundedSender<PeerEvent>) -> SessionHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let peer = config.peer_key();
    let (itx, irx) = mpsc::unbounded_channel();
    let primary = Slot::new(
        Fsm::new(config.fsm.clone(), random_jitter()),
        ConnectionOrigin::Outgoing,
    );
    let stats = Arc::new(Stats::default());
    let driver = Driver {
        stats: stats.clone(),
        config,
        peer,
        events,
        internal_tx: itx,
        primary,
        secondary: None,
        next_id: 1,
        reported: State::Idle,
        secondary_established: None,
    };
    let task = tokio::spawn(driver.run(rx, irx));
    SessionHandle {
        peer,
        tx,
        task,
        stats,
    }
}

/// Messages from the helper tasks of a connection to the session task.
enum Internal {
    Connected {
        id: u64,
        result: io::Result<TcpStream>,
    },
    Frame {
        id: u64,
        frame: Bytes,
    },
    FrameError {
        id: u64,
        error: DecodeError,
    },
    Closed {
        id: u64,
    },
}

struct Conn {
    id: u64,
    local: Option<SocketAddr>,
    writer: OwnedWriteHalf,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// One FSM and what it owns: its connection (or attempt), its timers, its codec contexts.
struct Slot {
    fsm: Fsm,
    origin: ConnectionOrigin,
    conn: Option<Conn>,
    connecting: Option<(u64, JoinHandle<()>)>,
    timers: HashMap<Timer, Instant>,
    decode: DecodeCxt,
    encode: EncodeCxt,
}

impl Slot {
    fn new(fsm: Fsm, origin: ConnectionOrigin) -> Self {
        Slot {
            fsm,
            origin,
            conn: None,
            connecting: None,
            timers: HashMap::new(),
            decode: DecodeCxt::default(),
            encode: EncodeCxt::default(),
        }
    }

    fn drop_tcp(&mut self) {
        if let Some((_, task)) = self.connecting.take() {
            task.abort();
        }
        self.conn = None;
    }

    fn owns(&self, id: u64) -> bool {
        self.conn.as_ref().is_some_and(|c| c.id == id)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.drop_tcp();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Primary,
    Secondary,
}

struct Driver {
    stats: Arc<Stats>,
    config: SessionConfig,
    peer: PeerKey,
    events: mpsc::UnboundedSender<PeerEvent>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    primary: Slot,
    /// A second connection during a collision.
    secondary: Option<Slot>,
    next_id: u64,
    /// The state last reported to the speaker.
    reported: State,
    /// The secondary reached Established before being promoted (reported on promotion).
    secondary_established: Option<(Box<Negotiated>, Option<SocketAddr>)>,
}

/// The codec contexts for what was negotiated.
pub fn codec_contexts(neg: &Negotiated) -> (DecodeCxt, EncodeCxt) {
    let receive: FamilySet = neg
        .add_path
        .iter()
        .filter(|(_, m)| m.receive)
        .map(|(f, _)| *f)
        .collect();
    let send: FamilySet = neg
        .add_path
        .iter()
        .filter(|(_, m)| m.send)
        .map(|(f, _)| *f)
        .collect();
    let enh: FamilySet = neg
        .extended_next_hop
        .iter()
        .map(|&(afi, safi, _)| (afi, safi))
        .collect();
    (
        DecodeCxt {
            four_octet_as: neg.four_octet_as,
            add_path: receive,
            extended_next_hop: enh,
        },
        EncodeCxt {
            four_octet_as: neg.four_octet_as,
            add_path: send,
            extended_next_hop: enh,
        },
    )
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<SessionCommand>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(SessionCommand::Shutdown) | None => {
                        self.shutdown().await;
                        return;
                    }
                    Some(cmd) => self.command(cmd).await,
                },
                Some(msg) = internal.recv() => self.internal(msg).await,
                _ = sleep_until(deadline), if deadline.is_some() => self.fire_timers().await,
            }
            self.reconcile().await;
        }
    }

    fn slot(&mut self, which: Which) -> Option<&mut Slot> {
        match which {
            Which::Primary => Some(&mut self.primary),
            Which::Secondary => self.secondary.as_mut(),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let p = self.primary.timers.values().min().copied();
        let s = self
            .secondary
            .as_ref()
            .and_then(|s| s.timers.values().min().copied());
        match (p, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn fire_timers(&mut self) {
        let now = Instant::now();
        for which in [Which::Primary, Which::Secondary] {
            let Some(slot) = self.slot(which) else {
                continue;
            };
            let mut due: Vec<Timer> = slot
                .timers
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(t, _)| *t)
                .collect();
            due.sort();
            for t in &due {
                slot.timers.remove(t);
            }
            for t in due {
                self.feed(which, t.expiry_event()).await;
            }
        }
    }

    fn emit(&self, event: SessionEvent) {
        let _ = self.events.send(PeerEvent {
            peer: self.peer,
            event,
        });
    }

    async fn command(&mut self, cmd: SessionCommand) {
        match cmd {
            SessionCommand::Start => self.feed(Which::Primary, Event::ManualStart).await,
            SessionCommand::Stop => {
                if self.secondary.is_some() {
                    self.feed(Which::Secondary, Event::ManualStop).await;
                    self.secondary = None;
                }
                self.feed(Which::Primary, Event::ManualStop).await;
            }
            SessionCommand::Reset => {
                self.secondary = None;
                if self.primary.fsm.state() == State::Idle {
                    self.feed(Which::Primary, Event::ManualStart).await;
                } else {
                    self.feed(
                        Which::Primary,
                        Event::AutomaticStop(code::cease::ADMINISTRATIVE_RESET),
                    )
                    .await;
                    self.feed(Which::Primary, Event::IdleHoldTimerExpires).await;
                }
            }
            SessionCommand::SoftResetIn(family) => {
                let ok = self.primary.fsm.state() == State::Established
                    && self
                        .primary
                        .fsm
                        .negotiated()
                        .is_some_and(|n| n.route_refresh && n.families.contains(&family));
                if ok {
                    let msg = Message::RouteRefresh {
                        afi: family.0,
                        safi: family.1,
                    };
                    self.send_messages(Which::Primary, &[msg]).await;
                } else {
                    debug!(peer = ?self.peer, ?family, "route refresh not negotiated or session not established");
                }
            }
            SessionCommand::SendUpdates(updates) => {
                if self.primary.fsm.state() == State::Established {
                    let msgs: Vec<Message> = updates.into_iter().map(Message::Update).collect();
                    self.send_messages(Which::Primary, &msgs).await;
                }
            }
            SessionCommand::Incoming(stream) => self.incoming(stream).await,
            SessionCommand::AutomaticStop(subcode) => {
                self.feed(Which::Primary, Event::AutomaticStop(subcode))
                    .await;
            }
            SessionCommand::Shutdown => {}
        }
    }

    async fn shutdown(&mut self) {
        if let Some(mut s) = self.secondary.take() {
            let n = crate::fsm::cease(code::cease::PEER_DECONFIGURED);
            send_on(&mut s, &[Message::Notification(n)], &self.stats).await;
        }
        if matches!(
            self.primary.fsm.state(),
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            let n = crate::fsm::cease(code::cease::PEER_DECONFIGURED);
            self.feed(Which::Primary, Event::AutomaticStop(n.subcode))
                .await;
        }
        self.feed(Which::Primary, Event::ManualStop).await;
        self.reconcile().await;
    }

    fn apply_socket_options(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        with_md5: bool,
    ) -> Result<(), SockOptError> {
        let ipv6 = self.config.remote.is_ipv6();
        if with_md5 && let Some(key) = &self.config.md5_key {
            sockopt::set_tcp_md5sig(fd, self.config.remote, Some(key))?;
        }
        match self.config.ttl {
            TtlMode::Default => Ok(()),
            TtlMode::Multihop(ttl) => sockopt::set_ttl(fd, ipv6, ttl),
            TtlMode::Gtsm { hops } => sockopt::set_gtsm(fd, ipv6, hops),
        }
    }

    async fn incoming(&mut self, stream: TcpStream) {
        // The listener has MD5 per peer already; TTL settings apply to what we send on this connection.
        if let Err(e) = self.apply_socket_options(stream.as_fd(), false) {
            warn!(peer = ?self.peer, error = %e, "incoming connection refused: socket options");
            return;
        }
        if self.primary.fsm.state() == State::Idle && self.primary.fsm.is_started() {
            // Waiting to restart after a failure: the peer is back first, so restart now instead of refusing it
            // until the backoff ends (AutomaticStart with passive TCP establishment, RFC 4271 event 5).
            self.feed(Which::Primary, Event::IdleHoldTimerExpires).await;
        }
        match self.primary.fsm.state() {
            State::Idle => debug!(peer = ?self.peer, "incoming connection refused in Idle"),
            State::Connect | State::Active => {
                self.primary.drop_tcp();
                let id = self.attach(stream, Which::Primary, ConnectionOrigin::Incoming);
                debug!(peer = ?self.peer, id, "incoming connection");
                self.feed(Which::Primary, Event::TcpConnectionConfirmed)
                    .await;
            }
            state @ (State::OpenSent | State::OpenConfirm | State::Established)
                if self.secondary.is_none()
                    && (state != State::Established || self.peer_may_restart()) =>
            {
                let fsm = Fsm::new_for_incoming(self.config.fsm.clone(), random_jitter());
                self.secondary = Some(Slot::new(fsm, ConnectionOrigin::Incoming));
                let id = self.attach(stream, Which::Secondary, ConnectionOrigin::Incoming);
                debug!(peer = ?self.peer, id, "second connection: collision detection");
                self.feed(Which::Secondary, Event::TcpConnectionConfirmed)
                    .await;
            }
            // Established without graceful restart, or a third connection: the existing ones win (RFC 4271
            // §6.8); a peer that really restarted is let in once our hold timer has closed the old session.
            _ => debug!(peer = ?self.peer, "incoming connection refused: session in progress"),
        }
    }

    /// Gives `stream` to a slot: a reader task frames what arrives.
    fn attach(&mut self, stream: TcpStream, which: Which, origin: ConnectionOrigin) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let (mut rd, writer) = stream.into_split();
        let tx = self.internal_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(8192);
            loop {
                loop {
                    match frame_len(&buf) {
                        Ok(Some(len)) => {
                            let frame = buf.split_to(len).freeze();
                            if tx.send(Internal::Frame { id, frame }).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            let _ = tx.send(Internal::FrameError { id, error });
                            return;
                        }
                    }
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Internal::Closed { id });
                        return;
                    }
                    Ok(_) => {}
                }
            }
        });
        if let Some(slot) = self.slot(which) {
            slot.origin = origin;
            slot.conn = Some(Conn {
                id,
                local,
                writer,
                reader,
            });
        }
        id
    }

    /// RFC 4271 §6.8 on receipt of an OPEN on `which` while the other connection exists.
    fn collision_on_open(
        &self,
        which: Which,
        open: &crate::packet::OpenMsg,
    ) -> Option<ConnectionOrigin> {
        let sec = self.secondary.as_ref()?;
        let (p, s) = (
            (&self.primary.fsm, self.primary.origin),
            (&sec.fsm, sec.origin),
        );
        match which {
            Which::Primary => collision_on_open(p, s, open),
            Which::Secondary => collision_on_open(s, p, open),
        }
    }

    /// Both sides of the Established session advertised graceful restart: a new connection from the peer means
    /// it restarted.
    fn peer_may_restart(&self) -> bool {
        self.primary
            .fsm
            .negotiated()
            .is_some_and(|n| n.graceful_restart.is_some())
    }

    fn which_owns(&self, id: u64) -> Option<Which> {
        if self.primary.owns(id) {
            Some(Which::Primary)
        } else if self.secondary.as_ref().is_some_and(|s| s.owns(id)) {
            Some(Which::Secondary)
        } else {
            None
        }
    }

    async fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Connected { id, result } => {
                if self.primary.connecting.as_ref().map(|(i, _)| *i) != Some(id) {
                    return; // an abandoned attempt
                }
                self.primary.connecting = None;
                match result {
                    Ok(stream) => {
                        self.attach(stream, Which::Primary, ConnectionOrigin::Outgoing);
                        self.feed(Which::Primary, Event::TcpCrAcked).await;
                    }
                    Err(e) => {
                        debug!(peer = ?self.peer, error = %e, "connect failed");
                        self.feed(Which::Primary, Event::TcpConnectionFails).await;
                    }
                }
            }
            Internal::Frame { id, frame } => {
                let Some(which) = self.which_owns(id) else {
                    return;
                };
                let slot = self.slot(which).expect("owner exists");
                let event = match Message::decode(&frame, &slot.decode) {
                    Ok(msg) => {
                        self.stats.received.count(&msg);
                        if let Message::Notification(n) = &msg {
                            self.emit(SessionEvent::NotificationReceived(n.clone()));
                        }
                        Event::from_message(msg)
                    }
                    Err(e) if e.is_ignorable() => {
                        debug!(peer = ?self.peer, error = %e, "ignored message");
                        return;
                    }
                    Err(e) => {
                        warn!(peer = ?self.peer, error = %e, "bad message");
                        decode_error_event(&e)
                    }
                };
                if which == Which::Secondary
                    && matches!(event, Event::BgpOpen(_))
                    && self.primary.fsm.state() == State::Established
                    && self.peer_may_restart()
                {
                    // RFC 4724 §4.2: an OPEN from a peer we have an Established session with, both sides having
                    // advertised graceful restart: the peer restarted. The old session ends as a TCP failure
                    // (routes kept stale); the new connection carries on and reconcile() promotes it.
                    info!(peer = ?self.peer, "peer restarted (new OPEN while Established): closing the old session");
                    self.feed(Which::Primary, Event::TcpConnectionFails).await;
                } else if let Event::BgpOpen(open) = &event
                    && let Some(loser) = self.collision_on_open(which, open)
                {
                    let this = self.slot(which).map(|s| s.origin);
                    if this == Some(loser) {
                        info!(peer = ?self.peer, ?loser, "collision: dropping the connection that got the OPEN");
                        self.feed(which, Event::OpenCollisionDump).await;
                        return;
                    }
                    let other = if which == Which::Primary {
                        Which::Secondary
                    } else {
                        Which::Primary
                    };
                    info!(peer = ?self.peer, ?loser, "collision: dropping the other connection");
                    self.feed(other, Event::OpenCollisionDump).await;
                }
                self.feed(which, event).await;
            }
            Internal::FrameError { id, error } => {
                let Some(which) = self.which_owns(id) else {
                    return;
                };
                warn!(peer = ?self.peer, %error, "bad message header");
                self.feed(which, Event::BgpHeaderErr(NotificationMsg::from(&error)))
                    .await;
            }
            Internal::Closed { id } => {
                if let Some(which) = self.which_owns(id) {
                    self.feed(which, Event::TcpConnectionFails).await;
                }
            }
        }
    }

    /// Feeds an event to one FSM and performs its actions; events those actions cause (a failed write) follow.
    async fn feed(&mut self, which: Which, event: Event) {
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let Some(slot) = self.slot(which) else { return };
            let actions = slot.fsm.process(event);
            for action in actions {
                if let Some(follow) = self.perform(which, action).await {
                    queue.push(follow);
                }
            }
        }
    }

    async fn perform(&mut self, which: Which, action: Action) -> Option<Event> {
        match action {
            Action::ConnectTcp => {
                if which == Which::Primary {
                    self.connect();
                }
                None
            }
            Action::DropTcp => {
                self.slot(which)?.drop_tcp();
                None
            }
            Action::SendOpen(open) => self.send_messages(which, &[Message::Open(open)]).await,
            Action::SendKeepalive => self.send_messages(which, &[Message::Keepalive]).await,
            Action::SendNotification(n) => {
                self.emit(SessionEvent::NotificationSent(n.clone()));
                // The connection is dropped right after: a failure to write here changes nothing.
                let stats = self.stats.clone();
                let slot = self.slot(which)?;
                send_on(slot, &[Message::Notification(n)], &stats).await;
                None
            }
            Action::StartTimer(t, d) => {
                self.slot(which)?.timers.insert(t, Instant::now() + d);
                None
            }
            Action::StopTimer(t) => {
                self.slot(which)?.timers.remove(&t);
                None
            }
            Action::SessionEstablished(neg) => {
                let slot = self.slot(which)?;
                (slot.decode, slot.encode) = codec_contexts(&neg);
                let local = slot.conn.as_ref().and_then(|c| c.local);
                info!(peer = ?self.peer, peer_as = neg.peer_as, peer_id = %neg.peer_id, hold = neg.hold_time,
                      "session established");
                if which == Which::Primary {
                    self.report_state();
                    self.emit(SessionEvent::Established {
                        negotiated: neg,
                        local,
                    });
                } else {
                    // Reported when reconcile() promotes the secondary.
                    self.secondary_established = Some((neg, local));
                }
                None
            }
            Action::SessionDown(down) => {
                let slot = self.slot(which)?;
                slot.decode = DecodeCxt::default();
                slot.encode = EncodeCxt::default();
                info!(peer = ?self.peer, reason = ?down.reason, "session down");
                self.emit(SessionEvent::Down(down));
                None
            }
            Action::DeliverUpdate(u) => {
                self.emit(SessionEvent::Update(u));
                None
            }
            Action::DeliverRouteRefresh(f) => {
                self.emit(SessionEvent::RouteRefresh(f));
                None
            }
        }
    }

    /// Writes messages on a slot's connection; a failure is the FSM's TcpConnectionFails.
    async fn send_messages(&mut self, which: Which, msgs: &[Message]) -> Option<Event> {
        let stats = self.stats.clone();
        let slot = self.slot(which)?;
        if send_on(slot, msgs, &stats).await {
            None
        } else {
            Some(Event::TcpConnectionFails)
        }
    }

    /// Starts an outgoing connection attempt for the primary slot.
    fn connect(&mut self) {
        self.primary.drop_tcp();
        let id = self.next_id;
        self.next_id += 1;
        let tx = self.internal_tx.clone();
        let config = self.config.clone();
        let prepared = self.prepare_socket();
        let task = tokio::spawn(async move {
            let result = match prepared {
                Ok(sock) => {
                    match tokio::time::timeout(
                        config.connect_timeout,
                        sock.connect(config.remote_socket_addr()),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
                    }
                }
                Err(e) => Err(io::Error::other(e)),
            };
            let _ = tx.send(Internal::Connected { id, result });
        });
        self.primary.connecting = Some((id, task));
    }

    fn prepare_socket(&self) -> Result<TcpSocket, SessionError> {
        let remote = self.config.remote_socket_addr();
        let sock = if remote.is_ipv6() {
            TcpSocket::new_v6()
        } else {
            TcpSocket::new_v4()
        }
        .map_err(|source| SessionError::Bind {
            addr: remote,
            source,
        })?;
        if let Some(local) = self.config.local_addr {
            let scope = if remote.is_ipv6() {
                self.config.scope_id.unwrap_or(0)
            } else {
                0
            };
            let addr = match local {
                IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope)),
                a => SocketAddr::new(a, 0),
            };
            sock.bind(addr)
                .map_err(|source| SessionError::Bind { addr, source })?;
        }
        self.apply_socket_options(sock.as_fd(), true)?;
        Ok(sock)
    }

    /// After every input: settles collisions, promotes or discards the second connection, reports state.
    async fn reconcile(&mut self) {
        while let Some(sec) = &self.secondary {
            if sec.fsm.state() == State::Idle {
                self.secondary = None;
                break;
            }
            if self.primary.fsm.state() == State::Established
                && sec.fsm.state() == State::OpenSent
                && self.peer_may_restart()
            {
                break; // the OPEN on the new connection decides (graceful restart)
            }
            let loser = collision_loser(
                (&self.primary.fsm, self.primary.origin),
                (&sec.fsm, sec.origin),
            );
            match loser {
                Some(origin) if origin == self.primary.origin => {
                    info!(peer = ?self.peer, "collision: keeping the incoming connection");
                    self.feed(Which::Primary, Event::OpenCollisionDump).await;
                    self.promote();
                }
                Some(_) => {
                    info!(peer = ?self.peer, "collision: keeping our connection");
                    self.feed(Which::Secondary, Event::OpenCollisionDump).await;
                    self.secondary = None;
                }
                None if matches!(
                    self.primary.fsm.state(),
                    State::Idle | State::Connect | State::Active
                ) =>
                {
                    // Our own connection failed or never came up: the peer's connection carries on alone.
                    self.promote();
                }
                None => break,
            }
        }
        self.report_state();
    }

    /// The second connection becomes the session.
    fn promote(&mut self) {
        if let Some(sec) = self.secondary.take() {
            // Dropping the old primary slot closes whatever it still had.
            self.primary = sec;
            if let Some((negotiated, local)) = self.secondary_established.take() {
                self.report_state();
                self.emit(SessionEvent::Established { negotiated, local });
            }
        }
    }

    fn report_state(&mut self) {
        let now = self.primary.fsm.state();
        if now != self.reported {
            debug!(peer = ?self.peer, from = %self.reported, to = %now, "state");
            self.emit(SessionEvent::StateChanged {
                from: self.reported,
                to: now,
            });
            self.reported = now;
        }
    }
}

/// Writes messages on a slot's connection; false when there is none or the write failed.
async fn send_on(slot: &mut Slot, msgs: &[Message], stats: &Stats) -> bool {
    let Some(conn) = slot.conn.as_mut() else {
        return false;
    };
    let mut buf = BytesMut::new();
    let mut encoded = Vec::with_capacity(msgs.len());
    for m in msgs {
        match m.encode(&slot.encode, &mut buf) {
            Ok(()) => encoded.push(m),
            // An UPDATE we cannot encode is a bug on our side or an unnegotiated feature: skip that one message.
            Err(e) => warn!(error = %e, "message not sent: cannot encode"),
        }
    }
    let ok = matches!(
        tokio::time::timeout(WRITE_TIMEOUT, conn.writer.write_all(&buf)).await,
        Ok(Ok(()))
    );
    if ok {
        for m in encoded {
            stats.sent.count(m);
        }
    }
    ok
}

/// Per-type message counters of one direction.
#[derive(Debug, Default)]
struct Counters {
    open: AtomicU64,
    update: AtomicU64,
    notification: AtomicU64,
    keepalive: AtomicU64,
    route_refresh: AtomicU64,
}

impl Counters {
    fn count(&self, m: &Message) {
        let c = match m {
            Message::Open(_) => &self.open,
            Message::Update(_) => &self.update,
            Message::Notification(_) => &self.notification,
            Message::Keepalive => &self.keepalive,
            Message::RouteRefresh { .. } => &self.route_refresh,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MessageCounts {
        MessageCounts {
            open: self.open.load(Ordering::Relaxed),
            update: self.update.load(Ordering::Relaxed),
            notification: self.notification.load(Ordering::Relaxed),
            keepalive: self.keepalive.load(Ordering::Relaxed),
            route_refresh: self.route_refresh.load(Ordering::Relaxed),
        }
    }
}

/// The session task's counters, shared with its handle.
#[derive(Debug, Default)]
struct Stats {
    sent: Counters,
    received: Counters,
}

/// Messages of each type, counted over the life of a session task (all its connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub route_refresh: u64,
}

impl MessageCounts {
    pub fn total(&self) -> u64 {
        self.open + self.update + self.notification + self.keepalive + self.route_refresh
    }
}

/// Messages sent (written to the socket) and received (decoded) by one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageStats {
    pub sent: MessageCounts,
    pub received: MessageCounts,
}

/// The FSM event for a message that did not decode.
fn decode_error_event(e: &DecodeError) -> Event {
    let n = NotificationMsg::from(e);
    match e {
        DecodeError::Header(_) => Event::BgpHeaderErr(n),
        DecodeError::Open(_) => Event::BgpOpenMsgErr(n),
        _ => Event::UpdateMsgErr(n),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The listening sockets (one per family) shared by all sessions; incoming connections go to the session whose
/// peer address matches, others are closed.
pub struct Listener {
    sockets: Vec<Arc<TcpListener>>,
    peers: Arc<Mutex<HashMap<PeerKey, mpsc::UnboundedSender<SessionCommand>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addrs", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Binds each address (e.g. `[::]:179` and `0.0.0.0:179`); IPv6 sockets are IPV6_V6ONLY so both can share
    /// the port. Must be called within a tokio runtime.
    pub fn bind(addrs: &[SocketAddr]) -> Result<Listener, SessionError> {
        let peers: Arc<Mutex<HashMap<PeerKey, mpsc::UnboundedSender<SessionCommand>>>> =
            Arc::default();
        let mut sockets = Vec::new();
        let mut tasks = Vec::new();
        for &addr in addrs {
            let err = |source| SessionError::Bind { addr, source };
            let domain = if addr.is_ipv6() {
                socket2::Domain::IPV6
            } else {
                socket2::Domain::IPV4
            };
            let s =
                socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
                    .map_err(err)?;
            if addr.is_ipv6() {
                s.set_only_v6(true).map_err(err)?;
            }
            s.set_reuse_address(true).map_err(err)?;
            s.set_nonblocking(true).map_err(err)?;
            s.bind(&addr.into()).map_err(err)?;
            s.listen(128).map_err(err)?;
            let listener =
                Arc::new(TcpListener::from_std(std::net::TcpListener::from(s)).map_err(err)?);
            let (l, p) = (listener.clone(), peers.clone());
            tasks.push(tokio::spawn(accept_loop(l, p)));
            sockets.push(listener);
        }
        Ok(Listener {
            sockets,
            peers,
            tasks,
        })
    }

    /// The bound addresses (with the actual port when bound to 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Routes connections from this peer to its session, and installs its TCP-MD5 key on the listening socket(s)
    /// of its family.
    pub fn register(
        &self,
        config: &SessionConfig,
        session: &SessionHandle,
    ) -> Result<(), SessionError> {
        let key = config.peer_key();
        for s in self.sockets_of(config.remote) {
            if let Some(md5) = &config.md5_key {
                sockopt::set_tcp_md5sig(s.as_fd(), config.remote, Some(md5))?;
            }
            // A GTSM peer drops our SYN-ACK unless it leaves with TTL 255; the minimum on receipt is set on the
            // accepted connection, since the listening socket is shared with peers that may not use GTSM.
            if let TtlMode::Gtsm { .. } = config.ttl {
                sockopt::set_ttl(s.as_fd(), config.remote.is_ipv6(), 255)?;
            }
        }
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.contains_key(&key) {
            return Err(SessionError::DuplicatePeer(key));
        }
        peers.insert(key, session.sender());
        Ok(())
    }

    /// Forgets a peer and removes its TCP-MD5 key.
    pub fn unregister(&self, config: &SessionConfig) -> Result<(), SessionError> {
        let key = config.peer_key();
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        if config.md5_key.is_some() {
            for s in self.sockets_of(config.remote) {
                sockopt::set_tcp_md5sig(s.as_fd(), config.remote, None)?;
            }
        }
        Ok(())
    }

    fn sockets_of(&self, remote: IpAddr) -> impl Iterator<Item = &Arc<TcpListener>> {
        self.sockets.iter().filter(move |s| {
            s.local_addr()
                .is_ok_and(|a| a.is_ipv6() == remote.is_ipv6())
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(
    listener: Arc<TcpListener>,
    peers: Arc<Mutex<HashMap<PeerKey, mpsc::UnboundedSender<SessionCommand>>>>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let key = PeerKey::from_socket_addr(remote);
        let target = peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        match target {
            Some(tx) => {
                let _ = tx.send(SessionCommand::Incoming(stream));
            }
            None => debug!(%remote, "connection from an unknown peer closed"),
        }
    }
}

/// `[::]:port` and `0.0.0.0:port`, the usual pair of listening addresses.
pub fn any_addrs(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port),
    ]
}

#[cfg(test)]
pub(crate) mod tests;
