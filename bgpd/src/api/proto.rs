//! Code generated from `bgpd/proto/*.proto` by tonic-prost-build.

/// GoBGP v3 (`package apipb`, service `GobgpApi`), what Debian's `gobgp` 3.x CLI speaks.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v3 {
    tonic::include_proto!("apipb");
}

/// GoBGP v4 (`package api`, service `GoBgpService`), what kube-router 2.7+ speaks.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v4 {
    tonic::include_proto!("api");
}
