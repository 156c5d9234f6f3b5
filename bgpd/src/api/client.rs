//! A GoBGP v3 API client returning the backend's plain types (used by fairlead's CLI and by tests).

use std::net::IpAddr;

use tonic::transport::{Channel, Endpoint};

use super::backend::{Destination, GlobalInfo, PeerInfo, PrefixMatch, TableKind};
use super::convert::{self, ConvertError};
use super::proto::v3;
use crate::packet::Afi;

/// Failures of an API call, worded for an operator.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid API address {0:?}")]
    BadEndpoint(String),
    #[error("cannot reach the API at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("unexpected answer from the API: {0}")]
    Convert(#[from] ConvertError),
    #[error("not found neighbor {0}")]
    NeighborNotFound(IpAddr),
}

/// A connected v3 client.
pub struct ApiClient {
    inner: v3::gobgp_api_client::GobgpApiClient<Channel>,
}

pub use tonic::Code;

/// The innermost cause of an error, which is what tells an operator "connection refused".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    loop {
        if let Some(io) = cur.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::TimedOut => "timed out".to_string(),
                _ => io.to_string(),
            };
        }
        match cur.source() {
            Some(next) => cur = next,
            None => return cur.to_string(),
        }
    }
}

impl ApiClient {
    /// Connects to `addr` (`host:port`, IPv6 in brackets), within `timeout`.
    pub async fn connect(
        addr: &str,
        timeout: std::time::Duration,
    ) -> Result<ApiClient, ClientError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| ClientError::BadEndpoint(addr.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Unreachable {
                addr: addr.to_string(),
                reason: root_cause(&e),
            })?;
        Ok(ApiClient {
            inner: v3::gobgp_api_client::GobgpApiClient::new(channel),
        })
    }

    /// GetBgp.
    pub async fn global(&mut self) -> Result<GlobalInfo, ClientError> {
        let g = self
            .inner
            .get_bgp(v3::GetBgpRequest {})
            .await?
            .into_inner()
            .global;
        Ok(convert::global_from_v3(&g.unwrap_or_default())?)
    }

    /// ListPeer; with an address, an unknown neighbour is an error (as in gobgp).
    pub async fn peers(&mut self, address: Option<IpAddr>) -> Result<Vec<PeerInfo>, ClientError> {
        let req = v3::ListPeerRequest {
            address: address.map(|a| a.to_string()).unwrap_or_default(),
            enable_advertised: address.is_some(),
        };
        let mut stream = self.inner.list_peer(req).await?.into_inner();
        let mut peers = Vec::new();
        while let Some(r) = stream.message().await? {
            if let Some(p) = r.peer {
                peers.push(convert::peer_from_v3(&p)?);
            }
        }
        if let Some(a) = address
            && peers.is_empty()
        {
            return Err(ClientError::NeighborNotFound(a));
        }
        Ok(peers)
    }

    /// ListPath of one table and family, optionally for one prefix or address.
    pub async fn paths(
        &mut self,
        table: TableKind,
        afi: Afi,
        prefix: Option<(&str, PrefixMatch)>,
    ) -> Result<Vec<Destination>, ClientError> {
        let (table_type, name) = match table {
            TableKind::Global => (v3::TableType::Global, String::new()),
            TableKind::AdjIn(a) => (v3::TableType::AdjIn, a.to_string()),
            TableKind::AdjOut(a) => (v3::TableType::AdjOut, a.to_string()),
        };
        let prefixes = prefix
            .map(|(p, kind)| {
                use v3::table_lookup_prefix::Type as L;
                let r#type = match kind {
                    PrefixMatch::Exact => L::Exact,
                    PrefixMatch::Longer => L::Longer,
                    PrefixMatch::Shorter => L::Shorter,
                } as i32;
                vec![v3::TableLookupPrefix {
                    prefix: p.to_string(),
                    r#type,
                }]
            })
            .unwrap_or_default();
        let req = v3::ListPathRequest {
            table_type: table_type as i32,
            name,
            family: Some(convert::family_to_v3(afi)),
            prefixes,
            sort_type: v3::list_path_request::SortType::Prefix as i32,
            ..Default::default()
        };
        let mut stream = self.inner.list_path(req).await?.into_inner();
        let mut dests = Vec::new();
        while let Some(r) = stream.message().await? {
            if let Some(d) = r.destination {
                dests.push(convert::destination_from_v3(&d)?);
            }
        }
        Ok(dests)
    }
}
