//! Desired vs actual IPVS table -> the ordered operations that make the actual one desired.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::types::{IpvsState, Persistence, Scheduler, VirtualServer, VirtualServerKey};

/// One change to the kernel's IPVS table, named after the generic-netlink commands that perform it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `IPVS_CMD_NEW_SERVICE`.
    AddVirtualServer {
        /// The virtual server.
        key: VirtualServerKey,
        /// Its scheduler.
        scheduler: Scheduler,
        /// Its persistence.
        persistence: Option<Persistence>,
    },
    /// `IPVS_CMD_SET_SERVICE`: scheduler or persistence changed.
    UpdateVirtualServer {
        /// The virtual server.
        key: VirtualServerKey,
        /// The new scheduler.
        scheduler: Scheduler,
        /// The new persistence.
        persistence: Option<Persistence>,
    },
    /// `IPVS_CMD_DEL_SERVICE` (its destinations go with it).
    DeleteVirtualServer {
        /// The virtual server.
        key: VirtualServerKey,
    },
    /// `IPVS_CMD_NEW_DEST`.
    AddDestination {
        /// The virtual server.
        key: VirtualServerKey,
        /// The destination.
        destination: SocketAddr,
        /// Its weight.
        weight: u32,
    },
    /// `IPVS_CMD_SET_DEST`: a weight changed, or a draining destination is wanted again.
    UpdateDestination {
        /// The virtual server.
        key: VirtualServerKey,
        /// The destination.
        destination: SocketAddr,
        /// The new weight.
        weight: u32,
    },
    /// `IPVS_CMD_SET_DEST` with weight 0: no new connections, existing ones finish. The controller deletes the
    /// destination once it has no connections or its grace period is over.
    DrainDestination {
        /// The virtual server.
        key: VirtualServerKey,
        /// The destination.
        destination: SocketAddr,
    },
    /// `IPVS_CMD_DEL_DEST`.
    DeleteDestination {
        /// The virtual server.
        key: VirtualServerKey,
        /// The destination.
        destination: SocketAddr,
    },
}

impl Operation {
    /// The virtual server the operation is about.
    pub fn key(&self) -> &VirtualServerKey {
        match self {
            Self::AddVirtualServer { key, .. }
            | Self::UpdateVirtualServer { key, .. }
            | Self::DeleteVirtualServer { key }
            | Self::AddDestination { key, .. }
            | Self::UpdateDestination { key, .. }
            | Self::DrainDestination { key, .. }
            | Self::DeleteDestination { key, .. } => key,
        }
    }
}

/// The operations that turn `actual` into `desired`, in the order to apply them: virtual servers in key order,
/// each added or updated before its destinations change; wanted destinations are added before unwanted ones are
/// drained or deleted (so a virtual server does not go empty in between); virtual servers no longer wanted are
/// deleted last. Nothing is emitted for a virtual server whose state already matches, so a change to one Service's
/// endpoints touches only that Service's virtual servers.
///
/// A destination that is no longer wanted is drained where [`super::Protocol::drains_removed_destinations`] says
/// so and deleted otherwise; one already at weight 0 is left for the controller to delete.
pub fn diff(desired: &IpvsState, actual: &IpvsState) -> Vec<Operation> {
    let mut ops = Vec::new();
    let keys: BTreeSet<&VirtualServerKey> = desired
        .virtual_servers
        .keys()
        .chain(actual.virtual_servers.keys())
        .collect();
    let mut deletions = Vec::new();
    for key in keys {
        match (
            desired.virtual_servers.get(key),
            actual.virtual_servers.get(key),
        ) {
            (Some(want), None) => {
                ops.push(Operation::AddVirtualServer {
                    key: *key,
                    scheduler: want.scheduler,
                    persistence: want.persistence,
                });
                for (&destination, &weight) in &want.destinations {
                    ops.push(Operation::AddDestination {
                        key: *key,
                        destination,
                        weight,
                    });
                }
            }
            (Some(want), Some(have)) => diff_virtual_server(*key, want, have, &mut ops),
            (None, Some(_)) => deletions.push(Operation::DeleteVirtualServer { key: *key }),
            (None, None) => {}
        }
    }
    ops.extend(deletions);
    ops
}

fn diff_virtual_server(
    key: VirtualServerKey,
    want: &VirtualServer,
    have: &VirtualServer,
    ops: &mut Vec<Operation>,
) {
    if want.scheduler != have.scheduler || want.persistence != have.persistence {
        ops.push(Operation::UpdateVirtualServer {
            key,
            scheduler: want.scheduler,
            persistence: want.persistence,
        });
    }
    for (&destination, &weight) in &want.destinations {
        match have.destinations.get(&destination) {
            None => ops.push(Operation::AddDestination {
                key,
                destination,
                weight,
            }),
            Some(&current) if current != weight => ops.push(Operation::UpdateDestination {
                key,
                destination,
                weight,
            }),
            Some(_) => {}
        }
    }
    for (&destination, &weight) in &have.destinations {
        if want.destinations.contains_key(&destination) {
            continue;
        }
        if !key.protocol.drains_removed_destinations() {
            ops.push(Operation::DeleteDestination { key, destination });
        } else if weight != 0 {
            ops.push(Operation::DrainDestination { key, destination });
        }
    }
}
