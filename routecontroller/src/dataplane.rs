//! Desired state -> kernel: routes over rtnetlink, NDP proxy entries, the pod egress nftables table; read back + diff.
//!
//! Brief overview: [`RouteDataplane`] owns the kernel routes tagged [`ROUTE_PROTOCOL`] in one table
//! ([`RouteDataplane::read_back`], [`RouteDataplane::apply`], diff in [`diff_routes`]); [`NdpProxy`] owns the
//! proxy neighbour entries on one interface (`--ndp-proxy-interface`); [`PodEgress`] owns the `inet
//! fairlead-egress` nftables table (`--enable-pod-egress`). Each works in the network namespace of the thread
//! that creates its netlink socket (or runs `nft`), so tests run them inside namespaces they made.

mod egress;
mod ndp;
mod routes;

pub use egress::{EGRESS_TABLE, EgressConfig, EgressError, PodEgress, render_egress};
pub use ndp::{NdpError, NdpProxy, NdpReport};
pub use routes::{
    ApplyReport, InstalledRoute, ROUTE_PROTOCOL, RouteDataplane, RouteDataplaneConfig,
    RouteDataplaneError, RouteError, RouteOp, diff_routes,
};

/// Opens an rtnetlink connection in the calling thread's network namespace and spawns its driver on the
/// current tokio runtime.
pub fn rtnetlink_handle() -> std::io::Result<rtnetlink::Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The errno of a kernel answer, if it was one (rtnetlink reports it negated).
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}
