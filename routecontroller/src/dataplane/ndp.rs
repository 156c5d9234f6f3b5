//! NDP proxy entries (`ip -6 neigh add proxy ADDR dev IF`) on `--ndp-proxy-interface`, diffed against read-back.
//!
//! Why: when pods take addresses from the uplink's own /64 (no routed pod prefix on the upstream router), the
//! router resolves a pod address with Neighbour Solicitations on the uplink; the node must answer them for its
//! pods, which the kernel does for addresses in its proxy table when `proxy_ndp` and forwarding are on.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use rtnetlink::Handle;

/// errno of a delete of an entry that is already gone.
const ENOENT: i32 = 2;

/// Errors of the NDP proxy.
#[derive(Debug, thiserror::Error)]
pub enum NdpError {
    /// The interface does not exist (in this network namespace).
    #[error("interface {0} not found")]
    NoSuchInterface(String),
    /// An interface name that cannot be a sysctl path component.
    #[error("invalid interface name {0:?}")]
    InvalidInterfaceName(String),
    /// A netlink request failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// Writing a sysctl failed.
    #[error("sysctl {path}: {source}")]
    Sysctl {
        /// The /proc/sys path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What [`NdpProxy::apply`] did.
#[derive(Debug, Default)]
pub struct NdpReport {
    /// Entries created.
    pub added: usize,
    /// Entries removed.
    pub removed: usize,
    /// Entries that failed, with the address.
    pub errors: Vec<(Ipv6Addr, NdpError)>,
}

/// The proxy neighbour entries on one interface.
#[derive(Clone, Debug)]
pub struct NdpProxy {
    handle: Handle,
    interface: String,
    ifindex: u32,
}

impl NdpProxy {
    /// Looks `interface` up and turns on `net.ipv6.conf.IF.proxy_ndp` and IPv6 forwarding (`all` and IF: the
    /// kernel answers for proxy entries only on a forwarding interface). Existing entries are kept.
    pub async fn new(handle: Handle, interface: &str) -> Result<Self, NdpError> {
        if interface.is_empty()
            || interface.len() > 15
            || interface.contains(['/', '\0'])
            || interface == "."
            || interface == ".."
        {
            return Err(NdpError::InvalidInterfaceName(interface.to_string()));
        }
        let mut links = handle
            .link()
            .get()
            .match_name(interface.to_string())
            .execute();
        let link = match links.try_next().await {
            Ok(Some(link)) => link,
            Ok(None) => return Err(NdpError::NoSuchInterface(interface.to_string())),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| -c.get()) == Some(19 /* ENODEV */) =>
            {
                return Err(NdpError::NoSuchInterface(interface.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        for path in [
            format!("/proc/sys/net/ipv6/conf/{interface}/proxy_ndp"),
            "/proc/sys/net/ipv6/conf/all/forwarding".to_string(),
            format!("/proc/sys/net/ipv6/conf/{interface}/forwarding"),
        ] {
            std::fs::write(&path, "1\n").map_err(|source| NdpError::Sysctl { path, source })?;
        }
        Ok(Self {
            handle,
            interface: interface.to_string(),
            ifindex: link.header.index,
        })
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The IPv6 proxy entries on the interface (`ip -6 neigh show proxy dev IF`).
    pub async fn read_back(&self) -> Result<BTreeSet<Ipv6Addr>, NdpError> {
        let mut dump = self
            .handle
            .neighbours()
            .get()
            .proxies()
            .set_address_family(AddressFamily::Inet6)
            .execute();
        let mut out = BTreeSet::new();
        while let Some(msg) = dump.try_next().await? {
            if msg.header.ifindex != self.ifindex
                || !msg.header.flags.contains(NeighbourFlags::Proxy)
            {
                continue;
            }
            for attr in &msg.attributes {
                if let NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) = attr {
                    out.insert(*a);
                }
            }
        }
        Ok(out)
    }

    /// Makes the interface's proxy entries exactly `desired`: adds the missing, removes the others; one bad entry
    /// does not stop the rest. `Err` only when the read-back fails.
    pub async fn apply(&self, desired: &BTreeSet<Ipv6Addr>) -> Result<NdpReport, NdpError> {
        let current = self.read_back().await?;
        let mut report = NdpReport::default();
        for addr in desired.difference(&current) {
            let res = self
                .handle
                .neighbours()
                .add(self.ifindex, IpAddr::V6(*addr))
                .flags(NeighbourFlags::Proxy)
                .execute()
                .await;
            match res {
                Ok(()) => report.added += 1,
                Err(e) => report.errors.push((*addr, e.into())),
            }
        }
        for addr in current.difference(desired) {
            let mut msg = NeighbourMessage::default();
            msg.header.family = AddressFamily::Inet6;
            msg.header.ifindex = self.ifindex;
            msg.header.flags = NeighbourFlags::Proxy;
            msg.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(
                    *addr,
                )));
            match self.handle.neighbours().del(msg).execute().await {
                Ok(()) => report.removed += 1,
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.code.map(|c| -c.get()) == Some(ENOENT) =>
                {
                    report.removed += 1;
                }
                Err(e) => report.errors.push((*addr, e.into())),
            }
        }
        for (addr, err) in &report.errors {
            tracing::warn!(interface = %self.interface, %addr, error = %err, "NDP proxy entry change failed");
        }
        Ok(report)
    }
}
