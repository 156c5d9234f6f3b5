//! firewall: NetworkPolicy on nftables.
//! NetworkPolicies + Pods + Namespaces -> one `inet` ruleset of fairlead's own (model),
//! applied as one atomic batch and kept in sync by the controller.

pub mod controller;
pub mod dataplane;
pub mod model;
pub mod render;
