//! The dummy interface `fairlead-vip` and its VIPs (/32, /128 with nodad), over rtnetlink.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::{Handle, LinkDummy, LinkUnspec};

/// The name of fairlead's dummy interface; every address on it is a VIP fairlead owns.
pub const VIP_INTERFACE: &str = "fairlead-vip";

/// An rtnetlink failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct VipError {
    /// What fairlead tried (names the interface or address).
    pub action: String,
    /// The netlink error (kernel errno inside).
    #[source]
    pub source: rtnetlink::Error,
}

fn err(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> VipError {
    let action = action.into();
    move |source| VipError { action, source }
}

/// The interface index of `fairlead-vip`, creating the interface (up) when missing.
pub async fn ensure_interface(handle: &Handle) -> Result<u32, VipError> {
    if let Some(index) = interface_index(handle).await? {
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(err(format!("set {VIP_INTERFACE} up")))?;
        return Ok(index);
    }
    handle
        .link()
        .add(LinkDummy::new(VIP_INTERFACE).up().build())
        .execute()
        .await
        .map_err(err(format!("add dummy interface {VIP_INTERFACE}")))?;
    interface_index(handle).await?.ok_or_else(|| VipError {
        action: format!("find {VIP_INTERFACE} after creating it"),
        source: rtnetlink::Error::RequestFailed,
    })
}

/// The index of `fairlead-vip`, if it exists.
pub async fn interface_index(handle: &Handle) -> Result<Option<u32>, VipError> {
    let mut links = handle
        .link()
        .get()
        .match_name(VIP_INTERFACE.to_owned())
        .execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        // ENODEV: no such interface.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(err(format!("get link {VIP_INTERFACE}"))(e)),
    }
}

/// The addresses on `fairlead-vip` (their address messages, kept for deletion).
pub async fn addresses(
    handle: &Handle,
    index: u32,
) -> Result<Vec<(IpAddr, AddressMessage)>, VipError> {
    let mut out = Vec::new();
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(err(format!("list addresses of {VIP_INTERFACE}")))?
    {
        if msg.header.index != index {
            continue;
        }
        let addr = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = addr {
            // IPv6 link-local addresses are the kernel's own, not VIPs.
            if matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80) {
                continue;
            }
            out.push((ip, msg));
        }
    }
    Ok(out)
}

/// Adds one VIP as a host prefix; IPv6 with `nodad` (a VIP must be usable at once, and no one else on a link
/// could answer for it: the dummy interface has no link).
pub async fn add(handle: &Handle, index: u32, vip: IpAddr) -> Result<(), VipError> {
    let prefix_len = match vip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let mut request = handle.address().add(index, vip, prefix_len);
    if vip.is_ipv6() {
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    request
        .replace()
        .execute()
        .await
        .map_err(err(format!("add VIP {vip} to {VIP_INTERFACE}")))
}

/// Deletes one address from the interface.
pub async fn delete(handle: &Handle, vip: IpAddr, message: AddressMessage) -> Result<(), VipError> {
    handle
        .address()
        .del(message)
        .execute()
        .await
        .map_err(err(format!("delete VIP {vip} from {VIP_INTERFACE}")))
}

/// The VIPs to add and to delete.
pub fn vip_changes(
    desired: &BTreeSet<IpAddr>,
    actual: &BTreeSet<IpAddr>,
) -> (Vec<IpAddr>, Vec<IpAddr>) {
    (
        desired.difference(actual).copied().collect(),
        actual.difference(desired).copied().collect(),
    )
}
