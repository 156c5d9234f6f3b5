//! bgpd: fairlead's BGP speaker as a library.
//! Sessions (RFC 4271 FSM), a dual-family RIB keyed by (AFI, SAFI), policy and route reflection,
//! and the GoBGP-compatible gRPC API; it knows nothing of Kubernetes.

pub mod api;
pub mod config;
pub mod fsm;
pub mod packet;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
