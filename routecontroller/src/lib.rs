//! routecontroller: Node objects -> BGP peers and originated pod CIDRs;
//! BGP best paths -> kernel routes through rtnetlink;
//! and the node's CNI conflist (bridge + host-local).

pub mod cni;
pub mod controller;
pub mod dataplane;
pub mod model;
