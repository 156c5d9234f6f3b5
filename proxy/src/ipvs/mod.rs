//! IPVS over generic netlink (family "IPVS"): typed requests and replies.
//!
//! - [`types`]: services, destinations, stats, timeouts, version, as plain data.
//! - [`codec`]: Sans-IO encoding of requests and decoding of replies (unit-tested on bytes).
//! - [`IpvsHandle`]: a blocking socket that sends requests and returns typed replies.
//!
//! Hand-written on the rust-netlink packet crates; see docs/decisions/0003-ipvs-netlink.md.

pub mod codec;
mod error;
mod handle;
pub mod types;
mod uapi;

pub use codec::Command;
pub use error::{DecodeError, IpvsError};
pub use handle::IpvsHandle;
pub use types::*;

#[cfg(test)]
mod tests;
