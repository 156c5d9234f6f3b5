//! Node objects -> BGP peers, originated pod CIDRs, import filters and the CNI conflist (pure).
//!
//! Brief overview: [`Config::from_flags`] validates the flags; [`desired_routing`] turns the Node list into a
//! [`DesiredRouting`] (router-id, [`DesiredPeer`]s with their [`ImportPolicy`], [`Announcement`]s and the
//! [`ModelWarning`]s found on the way); [`desired_kernel_routes`] turns best paths into [`KernelRoute`]s;
//! [`cni_conflist`] / [`merge_conflist`] produce the CNI config. Nothing here does I/O.

mod annotations;
mod config;
mod conflist;
mod kernel;
mod routing;
mod types;
mod warning;

pub use annotations::*;
pub use config::{
    BGP_PORT, Config, ConfigError, DEFAULT_CLUSTER_ASN, Flags, PeerSpec, RouterIdMode,
    parse_canonical_cidr,
};
pub use conflist::{
    CNI_VERSION, CONFLIST_FILE_NAME, ConflistError, ConflistParams, cni_conflist, merge_conflist,
    render_conflist,
};
pub use kernel::{BestPath, KernelNextHop, KernelRoute, KernelRoutes, desired_kernel_routes};
pub use routing::{
    Announcement, DesiredPeer, DesiredRouting, FilterAction, ImportPolicy, ModelError, PeerKind,
    PeerSource, PrefixMatch, PrefixRule, RouterIdSource, desired_routing, external_import_policy,
    hashed_router_id, node_import_policy,
};
pub use types::*;
pub use warning::ModelWarning;
