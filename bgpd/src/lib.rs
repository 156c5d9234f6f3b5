//! bgpd: fairlead's BGP speaker as a library.
//! Sessions (RFC 4271 FSM), a dual-family RIB keyed by (AFI, SAFI), policy and route reflection,
//! and the GoBGP-compatible gRPC API; it knows nothing of Kubernetes.

pub mod packet;
pub mod fsm;
pub mod policy;
pub mod rib;
pub mod speaker;
pub mod session;
pub mod api;
pub mod config;
