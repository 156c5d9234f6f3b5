//! proxy: the Service proxy on IPVS.
//! Services + EndpointSlices -> desired virtual servers (model) -> IPVS over generic netlink
//! and VIPs on fairlead's dummy interface (dataplane), kept in sync by the controller.

pub mod controller;
pub mod dataplane;
pub mod ipvs;
pub mod model;
