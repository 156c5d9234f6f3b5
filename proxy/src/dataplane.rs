//! Applies the proxy's desired state to the kernel and reads it back: IPVS virtual servers (generic netlink),
//! VIPs on the dummy interface `fairlead-vip` (rtnetlink), and the `inet fairlead-proxy` nftables table.
//!
//! # What fairlead owns (IPVS has no owner tag)
//! An IPVS virtual server is fairlead's when its key is in the desired state, or its address is on
//! `fairlead-vip` (now, or wanted there), or its address is one of the node's addresses and its port is in the
//! NodePort range. Every other virtual server (another tool's, a firewall-mark service) is never read into the
//! diff, so never changed or deleted. The rule survives restarts because the dummy interface is kernel state:
//! a new process reads the same VIPs back. Addresses on `fairlead-vip` are all fairlead's (it made the interface).
//!
//! # One pass ([`ProxyDataplane::apply`])
//! sysctls -> VIPs added -> nftables table replaced -> IPVS read back and diffed -> operations applied one by one
//! (an error is recorded and the pass goes on, so one bad virtual server does not block the others) -> drained
//! destinations swept -> VIPs no longer wanted removed. A restart is the same pass with nothing remembered:
//! it reads back and diffs, it never flushes.

pub mod conntrack;
pub mod convert;
pub mod nft;
pub mod vip;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::ipvs::{IpvsError, IpvsHandle};
use crate::model::{DesiredState, IpvsState, Operation, VirtualServerKey, diff};

pub use conntrack::ConntrackError;
pub use nft::{NFT_TABLE, NftError, NftState};
pub use vip::{VIP_INTERFACE, VipError};

/// How the dataplane behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// The NodePort range (`--service-node-port-range`): virtual servers on node addresses in it are fairlead's.
    pub node_port_range: RangeInclusive<u16>,
    /// How long a drained destination (weight 0) may keep connections before it is deleted anyway.
    pub drain_grace: Duration,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            node_port_range: 30000..=32767,
            drain_grace: Duration::from_secs(60),
        }
    }
}

/// Something the dataplane could not do. Errors of one pass are collected in [`ApplyReport::errors`].
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Talking to IPVS failed outside a single operation (opening the socket, reading the table back).
    #[error("IPVS: {0}")]
    Ipvs(#[from] IpvsError),
    /// One IPVS operation failed; the others of the pass were still applied.
    #[error("IPVS {operation:?}: {source}")]
    Operation {
        /// The operation.
        operation: Operation,
        /// The kernel's answer.
        #[source]
        source: IpvsError,
    },
    /// The dummy interface or one of its addresses.
    #[error(transparent)]
    Vip(#[from] VipError),
    /// The nftables table.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// Flushing UDP conntrack entries.
    #[error(transparent)]
    Conntrack(#[from] ConntrackError),
    /// A sysctl IPVS needs could not be set.
    #[error("sysctl {path}: {source}")]
    Sysctl {
        /// The `/proc/sys` path.
        path: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The private runtime that drives rtnetlink could not be built.
    #[error("runtime for rtnetlink: {0}")]
    Runtime(io::Error),
}

impl DataplaneError {
    /// A short label for metrics (failures are counted per variant).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Ipvs(_) => "ipvs",
            Self::Operation { .. } => "ipvs_operation",
            Self::Vip(_) => "vip",
            Self::Nft(_) => "nftables",
            Self::Conntrack(_) => "conntrack",
            Self::Sysctl { .. } => "sysctl",
            Self::Runtime(_) => "runtime",
        }
    }
}

/// The owned part of the kernel's IPVS table, read back.
#[derive(Clone, Debug, Default)]
pub struct ActualIpvs {
    /// The table in the model's terms.
    pub state: IpvsState,
    /// Virtual servers whose kernel settings the model cannot express (they get an update when wanted).
    pub inexact: BTreeSet<VirtualServerKey>,
    /// Active and inactive connection counts per destination.
    pub connections: BTreeMap<DestinationId, (u32, u32)>,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// IPVS operations applied successfully.
    pub operations: usize,
    /// VIPs added to `fairlead-vip`.
    pub vips_added: usize,
    /// VIPs deleted.
    pub vips_deleted: usize,
    /// Drained destinations deleted (no connections left, or grace period over).
    pub drained_deleted: usize,
    /// UDP conntrack entries flushed.
    pub conntrack_deleted: usize,
    /// Everything that failed; the rest was applied.
    pub errors: Vec<DataplaneError>,
}

/// The proxy's kernel state in one network namespace: IPVS, the VIP interface and the nftables table.
///
/// Blocking: create and call it on a plain thread (or `spawn_blocking`), in the network namespace it serves;
/// its sockets stay in the namespace they were opened in. It drives rtnetlink on a private current-thread runtime,
/// so it must not be dropped inside an async context.
pub struct ProxyDataplane {
    config: DataplaneConfig,
    ipvs: IpvsHandle,
    rtnl: rtnetlink::Handle,
    runtime: tokio::runtime::Runtime,
    /// When each destination was first seen drained (weight 0, not wanted); restarts begin a new grace period.
    draining: BTreeMap<DestinationId, Instant>,
}

/// Kernel errnos (asm-generic/errno-base.h) the IPVS commands answer with.
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EEXIST: i32 = 17;

/// Sysctls IPVS needs, as kube-proxy sets them: conntrack entries for IPVS connections (the nftables
/// masquerade needs them), drop connections whose destination is gone, and expire persistence templates of
/// drained destinations.
const REQUIRED_SYSCTLS: [&str; 3] = [
    "/proc/sys/net/ipv4/vs/conntrack",
    "/proc/sys/net/ipv4/vs/expire_nodest_conn",
    "/proc/sys/net/ipv4/vs/expire_quiescent_template",
];
/// Bridged pod-to-pod replies must pass IPVS to be un-NATed (a client and its endpoint on one bridge); set when
/// `br_netfilter` is loaded, skipped otherwise.
const BRIDGE_SYSCTLS: [&str; 2] = [
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
];

impl ProxyDataplane {
    /// Opens IPVS and rtnetlink in the calling thread's network namespace. Changes nothing yet.
    pub fn new(config: DataplaneConfig) -> Result<Self, DataplaneError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DataplaneError::Runtime)?;
        let (connection, rtnl, _) = {
            let _entered = runtime.enter();
            rtnetlink::new_connection().map_err(DataplaneError::Runtime)?
        };
        runtime.spawn(connection);
        let ipvs = IpvsHandle::new()?;
        Ok(Self {
            config,
            ipvs,
            rtnl,
            runtime,
            draining: BTreeMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DataplaneConfig {
        &self.config
    }

    /// The IPVS handle (for read-only inspection by callers and tests).
    pub fn ipvs(&mut self) -> &mut IpvsHandle {
        &mut self.ipvs
    }

    /// The addresses now on `fairlead-vip` (empty when the interface does not exist).
    pub fn vips(&mut self) -> Result<BTreeSet<IpAddr>, VipError> {
        let rtnl = self.rtnl.clone();
        self.runtime.block_on(async move {
            match vip::interface_index(&rtnl).await? {
                Some(index) => Ok(vip::addresses(&rtnl, index)
                    .await?
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect()),
                None => Ok(BTreeSet::new()),
            }
        })
    }

    /// Reads back the virtual servers `owned` accepts, with their destinations and connection counts.
    pub fn read_ipvs(
        &mut self,
        owned: impl Fn(&VirtualServerKey) -> bool,
    ) -> Result<ActualIpvs, IpvsError> {
        let mut actual = ActualIpvs::default();
        for entry in self.ipvs.services()? {
            let Some(key) = convert::virtual_server_key(&entry.service.key) else {
                continue;
            };
            if !owned(&key) {
                continue;
            }
            let dests = self.ipvs.destinations(&entry.service.key)?;
            let (vs, exact) = convert::virtual_server(&entry.service, &dests);
            for d in &dests {
                actual.connections.insert(
                    (key, SocketAddr::new(d.destination.addr, d.destination.port)),
                    (d.active_conns, d.inactive_conns),
                );
            }
            if !exact {
                actual.inexact.insert(key);
            }
            actual.state.virtual_servers.insert(key, vs);
        }
        Ok(actual)
    }

    /// One full pass: makes the kernel match `desired` and `nft`; `node_addresses` are the node's own
    /// addresses (for ownership of NodePort virtual servers). Never stops at the first error.
    pub fn apply(
        &mut self,
        desired: &DesiredState,
        nft: &NftState,
        node_addresses: &[IpAddr],
    ) -> ApplyReport {
        let mut report = ApplyReport::default();
        self.ensure_sysctls(&mut report);

        let wanted_vips: BTreeSet<IpAddr> = desired.vips.iter().collect();
        let rtnl = self.rtnl.clone();
        let vip_state = self.runtime.block_on(async {
            let index = vip::ensure_interface(&rtnl).await?;
            let actual = vip::addresses(&rtnl, index).await?;
            Ok::<_, VipError>((index, actual))
        });
        let (vip_index, actual_vips) = match vip_state {
            Ok((index, actual)) => (Some(index), actual),
            Err(e) => {
                report.errors.push(e.into());
                (None, Vec::new())
            }
        };
        let actual_vip_set: BTreeSet<IpAddr> = actual_vips.iter().map(|(a, _)| *a).collect();
        let (to_add, to_delete) = vip::vip_changes(&wanted_vips, &actual_vip_set);
        if let Some(index) = vip_index {
            for addr in to_add {
                match self.runtime.block_on(vip::add(&rtnl, index, addr)) {
                    Ok(()) => report.vips_added += 1,
                    Err(e) => report.errors.push(e.into()),
                }
            }
        }

        if let Err(e) = nft::apply(nft) {
            report.errors.push(e.into());
        }

        let config = self.config.clone();
        let owned =
            |key: &VirtualServerKey| owns(&config, key, desired, &actual_vip_set, node_addresses);
        let actual = match self.read_ipvs(owned) {
            Ok(actual) => actual,
            Err(e) => {
                report.errors.push(e.into());
                return report;
            }
        };
        let mut ops = Vec::new();
        for key in &actual.inexact {
            if let Some(want) = desired.ipvs.virtual_servers.get(key) {
                ops.push(Operation::UpdateVirtualServer {
                    key: *key,
                    scheduler: want.scheduler,
                    persistence: want.persistence,
                });
            }
        }
        ops.extend(
            diff(&desired.ipvs, &actual.state)
                .into_iter()
                .filter(|op| !matches!(op, Operation::UpdateVirtualServer { key, .. } if actual.inexact.contains(key))),
        );
        for op in ops {
            self.apply_operation(op, &mut report);
        }
        self.sweep_drained(desired, &actual, &mut report);

        for addr in to_delete {
            let Some((_, message)) = actual_vips.iter().find(|(a, _)| *a == addr) else {
                continue;
            };
            match self
                .runtime
                .block_on(vip::delete(&rtnl, addr, message.clone()))
            {
                Ok(()) => report.vips_deleted += 1,
                Err(e) => report.errors.push(e.into()),
            }
        }
        report
    }

    fn ensure_sysctls(&self, report: &mut ApplyReport) {
        let set = |path: &'static str, report: &mut ApplyReport| {
            if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
                return;
            }
            if let Err(source) = std::fs::write(path, "1") {
                report.errors.push(DataplaneError::Sysctl { path, source });
            }
        };
        for path in REQUIRED_SYSCTLS {
            set(path, report);
        }
        for path in BRIDGE_SYSCTLS {
            if std::path::Path::new(path).exists() {
                set(path, report);
            }
        }
    }

    fn apply_operation(&mut self, op: Operation, report: &mut ApplyReport) {
        tracing::debug!(?op, "IPVS operation");
        let result = match &op {
            Operation::AddVirtualServer {
                key,
                scheduler,
                persistence,
            } => {
                let service = convert::ipvs_service(key, *scheduler, *persistence);
                match self.ipvs.new_service(&service) {
                    Err(e) if e.errno() == Some(EEXIST) => self.ipvs.set_service(&service),
                    other => other,
                }
            }
            Operation::UpdateVirtualServer {
                key,
                scheduler,
                persistence,
            } => self
                .ipvs
                .set_service(&convert::ipvs_service(key, *scheduler, *persistence)),
            Operation::DeleteVirtualServer { key } => {
                let r = ignore_missing(self.ipvs.del_service(&convert::service_key(key)));
                if r.is_ok() && !key.protocol.drains_removed_destinations() {
                    self.flush_conntrack(key, None, report);
                }
                self.draining.retain(|(k, _), _| k != key);
                r
            }
            Operation::AddDestination {
                key,
                destination,
                weight,
            } => {
                let service = convert::service_key(key);
                let dest = convert::ipvs_destination(*destination, *weight);
                match self.ipvs.new_destination(&service, &dest) {
                    Err(e) if e.errno() == Some(EEXIST) => {
                        self.ipvs.set_destination(&service, &dest)
                    }
                    other => other,
                }
            }
            Operation::UpdateDestination {
                key,
                destination,
                weight,
            } => {
                self.draining.remove(&(*key, *destination));
                self.ipvs.set_destination(
                    &convert::service_key(key),
                    &convert::ipvs_destination(*destination, *weight),
                )
            }
            Operation::DrainDestination { key, destination } => {
                self.draining.insert((*key, *destination), Instant::now());
                self.ipvs.set_destination(
                    &convert::service_key(key),
                    &convert::ipvs_destination(*destination, 0),
                )
            }
            Operation::DeleteDestination { key, destination } => {
                let r = ignore_missing(self.ipvs.del_destination(
                    &convert::service_key(key),
                    destination.ip(),
                    destination.port(),
                ));
                if r.is_ok() && !key.protocol.drains_removed_destinations() {
                    self.flush_conntrack(key, Some(*destination), report);
                }
                r
            }
        };
        match result {
            Ok(()) => report.operations += 1,
            Err(source) => {
                tracing::warn!(?op, error = %source, "IPVS operation failed");
                report.errors.push(DataplaneError::Operation {
                    operation: op,
                    source,
                });
            }
        }
    }

    fn flush_conntrack(
        &mut self,
        key: &VirtualServerKey,
        endpoint: Option<SocketAddr>,
        report: &mut ApplyReport,
    ) {
        match conntrack::delete(conntrack::delete_args(key, endpoint)) {
            Ok(n) => report.conntrack_deleted += n,
            Err(e) => report.errors.push(e.into()),
        }
    }

    /// Deletes destinations drained in an earlier pass (weight 0 in the kernel, not wanted) once they have no
    /// active or inactive connection, or their grace period is over. Destinations drained in this pass are
    /// left alone (their weight in `actual` is still the old one): a new connection may have just reached them.
    fn sweep_drained(
        &mut self,
        desired: &DesiredState,
        actual: &ActualIpvs,
        report: &mut ApplyReport,
    ) {
        let expired = drain_sweep(
            &desired.ipvs,
            actual,
            &mut self.draining,
            Instant::now(),
            self.config.drain_grace,
        );
        for (key, destination) in expired {
            let result = ignore_missing(self.ipvs.del_destination(
                &convert::service_key(&key),
                destination.ip(),
                destination.port(),
            ));
            match result {
                Ok(()) => report.drained_deleted += 1,
                Err(source) => report.errors.push(DataplaneError::Operation {
                    operation: Operation::DeleteDestination { key, destination },
                    source,
                }),
            }
        }
    }
}

/// A destination of a virtual server.
pub type DestinationId = (VirtualServerKey, SocketAddr);

/// The drained destinations to delete now: weight 0 in `actual`, not wanted by `desired`, and without active or
/// inactive connections or drained for longer than `grace`. Updates `draining` (when each was first seen
/// drained): starts timers for newly seen ones, forgets deleted ones and ones no longer drained, and keeps the
/// ones drained in this pass (still at their old weight in `actual`, and already in `draining`).
pub fn drain_sweep(
    desired: &IpvsState,
    actual: &ActualIpvs,
    draining: &mut BTreeMap<DestinationId, Instant>,
    now: Instant,
    grace: Duration,
) -> Vec<DestinationId> {
    let mut expired = Vec::new();
    let mut still_draining = BTreeSet::new();
    for (key, have) in &actual.state.virtual_servers {
        let Some(want) = desired.virtual_servers.get(key) else {
            continue;
        };
        for (&destination, &weight) in &have.destinations {
            if weight != 0 || want.destinations.contains_key(&destination) {
                continue;
            }
            let id = (*key, destination);
            let since = *draining.entry(id).or_insert(now);
            let (active, inactive) = actual.connections.get(&id).copied().unwrap_or((0, 0));
            if active + inactive > 0 && now.duration_since(since) < grace {
                still_draining.insert(id);
            } else {
                expired.push(id);
            }
        }
    }
    draining.retain(|id, _| {
        let drained_this_pass = actual
            .state
            .virtual_servers
            .get(&id.0)
            .and_then(|vs| vs.destinations.get(&id.1))
            .is_some_and(|&w| w != 0);
        still_draining.contains(id) || drained_this_pass
    });
    expired
}

/// Whether a virtual server is fairlead's: wanted now, on an address of `fairlead-vip` (now or wanted there),
/// or on a node address with a port in the NodePort range.
pub fn owns(
    config: &DataplaneConfig,
    key: &VirtualServerKey,
    desired: &DesiredState,
    vips: &BTreeSet<IpAddr>,
    node_addresses: &[IpAddr],
) -> bool {
    desired.ipvs.virtual_servers.contains_key(key)
        || vips.contains(&key.address)
        || desired.vips.contains(&key.address)
        || (node_addresses.contains(&key.address) && config.node_port_range.contains(&key.port))
}

/// A delete of something already gone is done (ESRCH: no such service; ENOENT: no such destination).
fn ignore_missing(result: Result<(), IpvsError>) -> Result<(), IpvsError> {
    match result {
        Err(e) if matches!(e.errno(), Some(ESRCH) | Some(ENOENT)) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, Scheduler, VirtualServer};

    fn key(port: u16) -> VirtualServerKey {
        VirtualServerKey::new("fd00:10:96::10".parse().unwrap(), port, Protocol::Tcp)
    }

    fn dest(last: u8) -> SocketAddr {
        SocketAddr::new(format!("fd00:10:244:1::{last}").parse().unwrap(), 8080)
    }

    fn table(dests: &[(u8, u32)]) -> IpvsState {
        let mut state = IpvsState::default();
        state.virtual_servers.insert(
            key(80),
            VirtualServer {
                scheduler: Scheduler::RoundRobin,
                persistence: None,
                destinations: dests.iter().map(|&(d, w)| (dest(d), w)).collect(),
            },
        );
        state
    }

    fn actual(dests: &[(u8, u32, (u32, u32))]) -> ActualIpvs {
        let mut a = ActualIpvs {
            state: table(&dests.iter().map(|&(d, w, _)| (d, w)).collect::<Vec<_>>()),
            ..ActualIpvs::default()
        };
        for &(d, _, conns) in dests {
            a.connections.insert((key(80), dest(d)), conns);
        }
        a
    }

    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn a_drained_destination_waits_for_its_connections_or_the_grace_period() {
        let desired = table(&[(1, 1)]);
        let now = Instant::now();
        let mut draining = BTreeMap::new();
        // Drained with one active connection: kept, timer started.
        let busy = actual(&[(1, 1, (0, 0)), (2, 0, (1, 0))]);
        assert!(drain_sweep(&desired, &busy, &mut draining, now, GRACE).is_empty());
        assert_eq!(draining.get(&(key(80), dest(2))), Some(&now));
        // Inactive connections (FIN_WAIT, TIME_WAIT) count too.
        let closing = actual(&[(1, 1, (0, 0)), (2, 0, (0, 3))]);
        assert!(drain_sweep(&desired, &closing, &mut draining, now + GRACE / 2, GRACE).is_empty());
        // Grace period over: deleted although connections remain, and forgotten.
        assert_eq!(
            drain_sweep(&desired, &busy, &mut draining, now + GRACE, GRACE),
            vec![(key(80), dest(2))]
        );
        assert!(draining.is_empty());
        // No connections: deleted at once.
        let idle = actual(&[(1, 1, (0, 0)), (2, 0, (0, 0))]);
        assert_eq!(
            drain_sweep(&desired, &idle, &mut draining, now, GRACE),
            vec![(key(80), dest(2))]
        );
    }

    #[test]
    fn wanted_and_just_drained_destinations_are_not_swept() {
        let now = Instant::now();
        let mut draining = BTreeMap::new();
        // Wanted again while at weight 0 (the diff raises its weight): not deleted.
        let desired = table(&[(1, 1), (2, 1)]);
        let a = actual(&[(1, 1, (0, 0)), (2, 0, (0, 0))]);
        assert!(drain_sweep(&desired, &a, &mut draining, now, GRACE).is_empty());
        // Drained in this pass: still weight 1 in the read-back; its timer (set by the pass) is kept.
        let desired = table(&[(1, 1)]);
        draining.insert((key(80), dest(2)), now);
        let a = actual(&[(1, 1, (0, 0)), (2, 1, (0, 0))]);
        assert!(drain_sweep(&desired, &a, &mut draining, now, GRACE).is_empty());
        assert!(draining.contains_key(&(key(80), dest(2))));
        // A virtual server no longer wanted is deleted whole by the diff, not swept.
        let a = actual(&[(2, 0, (0, 0))]);
        assert!(drain_sweep(&IpvsState::default(), &a, &mut draining, now, GRACE).is_empty());
        assert!(
            draining.is_empty(),
            "timers of destinations that are gone are forgotten"
        );
    }

    #[test]
    fn ownership_rule() {
        let config = DataplaneConfig::default();
        let mut desired = DesiredState {
            ipvs: table(&[(1, 1)]),
            ..DesiredState::default()
        };
        let node: Vec<IpAddr> = vec!["fd00:0:0:1::1".parse().unwrap()];
        let on_dummy: BTreeSet<IpAddr> = ["fd00:10:96::20".parse().unwrap()].into();
        let vs =
            |addr: &str, port| VirtualServerKey::new(addr.parse().unwrap(), port, Protocol::Tcp);
        // Wanted.
        assert!(owns(&config, &key(80), &desired, &on_dummy, &node));
        // Another port on a VIP fairlead wants (not yet on the interface).
        assert!(!owns(&config, &key(443), &desired, &on_dummy, &node));
        desired.vips.insert("fd00:10:96::10".parse().unwrap());
        assert!(owns(&config, &key(443), &desired, &on_dummy, &node));
        // A stale VIP still on the dummy interface.
        assert!(owns(
            &config,
            &vs("fd00:10:96::20", 53),
            &desired,
            &on_dummy,
            &node
        ));
        // A NodePort on a node address: in the range yes, outside no.
        assert!(owns(
            &config,
            &vs("fd00:0:0:1::1", 30080),
            &desired,
            &on_dummy,
            &node
        ));
        assert!(!owns(
            &config,
            &vs("fd00:0:0:1::1", 8443),
            &desired,
            &on_dummy,
            &node
        ));
        // Someone else's address.
        assert!(!owns(
            &config,
            &vs("fd00:99::1", 80),
            &desired,
            &on_dummy,
            &node
        ));
    }
}
