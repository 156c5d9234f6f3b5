//! The GoBGP-compatible gRPC API (v3 `apipb.GobgpApi`, v4 `api.GoBgpService`) over an [`ApiBackend`].
//!
//! `backend` holds the trait the speaker implements and its plain types, `convert` the message
//! conversions both ways (the CLI uses them too), `server` the loopback-only tonic server.

pub mod backend;
pub mod client;
pub mod convert;
pub mod proto;
pub mod server;
pub mod speaker_impl;
pub mod table;

pub use backend::{
    AdminState, ApiBackend, ApiError, Capability, Destination, FamilyState, GlobalInfo,
    MessageCounters, NewPath, PathDeletion, PathQuery, PeerConfig, PeerInfo, PeerTimers,
    PrefixFilter, PrefixMatch, ResetKind, RoutePath, SessionState, TableKind, afi_of,
    filter_destinations,
};
pub use server::{ApiServeError, ApiServer, DEFAULT_API_PORT};
pub use speaker_impl::SpeakerBackend;
