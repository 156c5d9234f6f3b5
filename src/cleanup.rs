//! `fairlead cleanup`: removes every piece of kernel and file state `fairlead run` makes on this node.
//!
//! What goes: kernel routes of route protocol 44 (both families, all tables), the IPVS virtual services the proxy
//! owns (when the kernel has IPVS) and its `fairlead-vip` interface, the nftables tables `inet fairlead-firewall`,
//! `inet fairlead-proxy` and `inet fairlead-egress`, the NDP proxy entries on `--ndp-proxy-interface`, and the CNI
//! conflist. Each step runs even when an earlier one failed; the command fails if any did.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{RouteMessage, RouteProtocol};
use tracing::{info, warn};

/// `fairlead cleanup` flags (the same names and environment variables as `fairlead run`'s).
#[derive(Debug, clap::Args)]
pub struct CleanupFlags {
    /// The interface whose NDP proxy entries fairlead made.
    #[arg(long, env = "FAIRLEAD_NDP_PROXY_INTERFACE")]
    pub ndp_proxy_interface: Option<String>,
    /// The node's CNI config file fairlead wrote.
    #[arg(
        long,
        env = "FAIRLEAD_CNI_CONF_FILE",
        default_value = "/etc/cni/net.d/10-fairlead.conflist"
    )]
    pub cni_conf_file: PathBuf,
}

/// fairlead's nftables tables, all of family `inet`.
pub(crate) fn nft_tables() -> [&'static str; 3] {
    [
        firewall::model::TABLE_NAME,
        proxy::dataplane::nft::NFT_TABLE,
        routecontroller::dataplane::EGRESS_TABLE,
    ]
}

/// Runs every step; `Err` lists the ones that failed.
pub async fn run(flags: CleanupFlags) -> anyhow::Result<()> {
    let mut failed: Vec<String> = Vec::new();
    let mut step = |what: &str, result: anyhow::Result<()>| {
        if let Err(e) = result {
            warn!(error = %format!("{e:#}"), "{what}");
            failed.push(format!("{what}: {e:#}"));
        }
    };
    step(
        "IPVS services",
        tokio::task::spawn_blocking(remove_ipvs)
            .await
            .map_err(|e| anyhow!("{e}"))
            .and_then(|r| r),
    );
    let handle = routecontroller::dataplane::rtnetlink_handle().context("opening rtnetlink")?;
    step("routes", remove_routes(&handle).await);
    step("VIP interface", remove_vip_interface(&handle).await);
    for table in nft_tables() {
        step(table, remove_nft_table(table));
    }
    if let Some(interface) = &flags.ndp_proxy_interface {
        step(
            "NDP proxy entries",
            remove_ndp_proxies(&handle, interface).await,
        );
    }
    step("CNI conflist", remove_file(&flags.cni_conf_file));
    if failed.is_empty() {
        info!("cleanup done");
        Ok(())
    } else {
        Err(anyhow!("cleanup incomplete: {}", failed.join("; ")))
    }
}

/// Empties what the proxy owns through its own dataplane (an empty desired state removes its virtual services
/// and VIPs). A kernel without IPVS has none to remove.
fn remove_ipvs() -> anyhow::Result<()> {
    use proxy::dataplane::{DataplaneConfig, DataplaneError, NftState, ProxyDataplane};
    use proxy::ipvs::IpvsError;
    let mut dataplane = match ProxyDataplane::new(DataplaneConfig::default()) {
        Ok(d) => d,
        Err(DataplaneError::Ipvs(IpvsError::FamilyNotFound)) => {
            info!("no IPVS in this kernel: no virtual service to remove");
            return Ok(());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("opening IPVS")),
    };
    let empty = proxy::model::DesiredState::default();
    let nft = NftState::from_desired(&empty, &BTreeSet::new(), &[]);
    let report = dataplane.apply(&empty, &nft, &crate::daemon::node_addresses());
    if let Some(e) = report.errors.first() {
        return Err(anyhow!("{} errors, the first: {e}", report.errors.len()));
    }
    info!(
        operations = report.operations,
        "IPVS virtual services removed"
    );
    Ok(())
}

/// Deletes every route of protocol 44 in every table, both families.
async fn remove_routes(handle: &rtnetlink::Handle) -> anyhow::Result<()> {
    let ours = RouteProtocol::from(routecontroller::dataplane::ROUTE_PROTOCOL);
    let mut removed = 0usize;
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        let found: Vec<RouteMessage> = handle
            .route()
            .get(query)
            .execute()
            .try_filter(|m| futures::future::ready(m.header.protocol == ours))
            .try_collect()
            .await
            .context("dumping routes")?;
        for route in found {
            handle
                .route()
                .del(route)
                .execute()
                .await
                .context("deleting a route")?;
            removed += 1;
        }
    }
    info!(removed, "routes of protocol 44 removed");
    Ok(())
}

async fn remove_vip_interface(handle: &rtnetlink::Handle) -> anyhow::Result<()> {
    let name = proxy::dataplane::VIP_INTERFACE;
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(link)) => {
            handle
                .link()
                .del(link.header.index)
                .execute()
                .await
                .with_context(|| format!("deleting {name}"))?;
            info!(interface = name, "interface removed");
            Ok(())
        }
        Ok(None) => Ok(()),
        // No such device.
        Err(rtnetlink::Error::NetlinkError(e))
            if e.code.map(|c| -c.get()) == Some(libc_enodev()) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("looking {name} up"))),
    }
}

const fn libc_enodev() -> i32 {
    // ENODEV on Linux.
    19
}

fn remove_nft_table(table: &str) -> anyhow::Result<()> {
    let listed = std::process::Command::new("nft")
        .args(["list", "tables", "inet"])
        .output()
        .context("running nft")?;
    if !listed.status.success() {
        return Err(anyhow!(
            "nft list tables: {}",
            String::from_utf8_lossy(&listed.stderr).trim()
        ));
    }
    let present = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.trim() == format!("table inet {table}"));
    if !present {
        return Ok(());
    }
    let out = std::process::Command::new("nft")
        .args(["delete", "table", "inet", table])
        .output()
        .context("running nft")?;
    if !out.status.success() {
        return Err(anyhow!(
            "nft delete table inet {table}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    info!(table, "nftables table removed");
    Ok(())
}

async fn remove_ndp_proxies(handle: &rtnetlink::Handle, interface: &str) -> anyhow::Result<()> {
    let ndp = routecontroller::dataplane::NdpProxy::new(handle.clone(), interface)
        .await
        .with_context(|| format!("opening the NDP proxy on {interface}"))?;
    let report = ndp.apply(&BTreeSet::new()).await?;
    info!(interface, ?report, "NDP proxy entries removed");
    Ok(())
}

fn remove_file(path: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            info!(path = %path.display(), "CNI conflist removed");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("removing {}", path.display()))),
    }
}
