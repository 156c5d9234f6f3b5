//! The tonic server: both GoBGP services over one [`ApiBackend`], listening on loopback only.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Request, Response, Status};

use super::backend::{
    ApiBackend, ApiError, PathDeletion, PathQuery, PrefixMatch, ResetKind, TableKind, afi_of,
};
use super::convert::{self, ConvertError};
use super::proto::{v3, v4};
use crate::packet::Afi;

/// GoBGP's default API port.
pub const DEFAULT_API_PORT: u16 = 50051;

/// Failure to start the API server.
#[derive(Debug, thiserror::Error)]
pub enum ApiServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let msg = e.to_string();
        match e {
            ApiError::PeerNotFound(_) => Status::not_found(msg),
            ApiError::PeerExists(_) => Status::already_exists(msg),
            ApiError::InvalidArgument(_) => Status::invalid_argument(msg),
            ApiError::Unsupported(_) => Status::unimplemented(msg),
            ApiError::Internal(_) => Status::internal(msg),
        }
    }
}

impl From<ConvertError> for Status {
    fn from(e: ConvertError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

/// The API's listening sockets, bound before serving so a caller knows the ports (and a test can use port 0).
pub struct ApiServer {
    listeners: Vec<TcpListener>,
}

impl ApiServer {
    /// Binds `127.0.0.1:port` and `[::1]:port`. `port == 0` disables the API (returns `None`), as the
    /// daemon's flag documents. A host without IPv6 loopback gets the IPv4 listener alone.
    pub async fn bind(port: u16) -> Result<Option<ApiServer>, ApiServeError> {
        if port == 0 {
            return Ok(None);
        }
        Self::bind_loopback(port).await.map(Some)
    }

    /// Binds an ephemeral port on both loopback addresses (the IPv6 one on the same port number when free).
    pub async fn bind_ephemeral() -> Result<ApiServer, ApiServeError> {
        Self::bind_loopback(0).await
    }

    async fn bind_loopback(port: u16) -> Result<ApiServer, ApiServeError> {
        let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let l4 = TcpListener::bind(v4)
            .await
            .map_err(|source| ApiServeError::Bind { addr: v4, source })?;
        let port = l4
            .local_addr()
            .map_err(|source| ApiServeError::Bind { addr: v4, source })?
            .port();
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        let mut listeners = vec![l4];
        match TcpListener::bind(v6).await {
            Ok(l6) => listeners.push(l6),
            Err(e) => tracing::warn!(addr = %v6, error = %e, "API not listening on IPv6 loopback"),
        }
        Ok(ApiServer { listeners })
    }

    /// The addresses the API listens on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves both GoBGP services until `shutdown` completes.
    pub async fn serve<B: ApiBackend>(
        self,
        backend: Arc<B>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ApiServeError> {
        tracing::info!(addrs = ?self.local_addrs(), "GoBGP-compatible API listening");
        let incoming = stream::select_all(self.listeners.into_iter().map(|l| {
            stream::unfold(l, |l| async move {
                let conn: std::io::Result<TcpStream> = l.accept().await.map(|(s, _)| s);
                Some((conn, l))
            })
            .boxed()
        }));
        tonic::transport::Server::builder()
            .add_service(v3::gobgp_api_server::GobgpApiServer::new(V3Service {
                backend: backend.clone(),
            }))
            .add_service(v4::go_bgp_service_server::GoBgpServiceServer::new(
                V4Service { backend },
            ))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn stream_of<T: Send + 'static>(items: Vec<T>) -> BoxStream<T> {
    Box::pin(stream::iter(items.into_iter().map(Ok)))
}

fn parse_address(s: &str) -> Result<IpAddr, Status> {
    s.parse()
        .map_err(|_| Status::invalid_argument(format!("invalid neighbor address {s:?}")))
}

fn optional_address(s: &str) -> Result<Option<IpAddr>, Status> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_address(s).map(Some)
    }
}

/// `ResetPeer` accepts "all" (the gobgp CLI's `neighbor all softreset`).
fn reset_target(s: &str) -> Result<Option<IpAddr>, Status> {
    if s == "all" {
        Ok(None)
    } else {
        parse_address(s).map(Some)
    }
}

/// The table a `ListPath` asks for; VRF and LOCAL (route-server) tables are not served.
fn table_kind(global: bool, adj_in: bool, adj_out: bool, name: &str) -> Result<TableKind, Status> {
    if global {
        Ok(TableKind::Global)
    } else if adj_in || adj_out {
        let addr = parse_address(name)?;
        Ok(if adj_in {
            TableKind::AdjIn(addr)
        } else {
            TableKind::AdjOut(addr)
        })
    } else {
        Err(Status::unimplemented(
            "only the global, adj-in and adj-out tables are served",
        ))
    }
}

/// The family of a `ListPath`: given, else (like GoBGP) the neighbour's address family, else IPv4.
fn query_afi(family: Option<Afi>, table: TableKind) -> Afi {
    family.unwrap_or(match table {
        TableKind::AdjIn(a) | TableKind::AdjOut(a) => afi_of(a),
        TableKind::Global => Afi::Ipv4,
    })
}

struct V3Service<B> {
    backend: Arc<B>,
}

#[tonic::async_trait]
impl<B: ApiBackend> v3::gobgp_api_server::GobgpApi for V3Service<B> {
    async fn get_bgp(
        &self,
        _: Request<v3::GetBgpRequest>,
    ) -> Result<Response<v3::GetBgpResponse>, Status> {
        let g = self.backend.global().await?;
        Ok(Response::new(v3::GetBgpResponse {
            global: Some(convert::global_to_v3(&g)),
        }))
    }

    async fn add_peer(&self, req: Request<v3::AddPeerRequest>) -> Result<Response<()>, Status> {
        let peer = req
            .into_inner()
            .peer
            .ok_or_else(|| Status::invalid_argument("missing peer"))?;
        self.backend
            .add_peer(convert::peer_config_from_v3(&peer)?)
            .await?;
        Ok(Response::new(()))
    }

    async fn delete_peer(
        &self,
        req: Request<v3::DeletePeerRequest>,
    ) -> Result<Response<()>, Status> {
        self.backend
            .delete_peer(parse_address(&req.into_inner().address)?)
            .await?;
        Ok(Response::new(()))
    }

    type ListPeerStream = BoxStream<v3::ListPeerResponse>;

    async fn list_peer(
        &self,
        req: Request<v3::ListPeerRequest>,
    ) -> Result<Response<Self::ListPeerStream>, Status> {
        let address = optional_address(&req.into_inner().address)?;
        let peers = self.backend.peers(address).await?;
        let items = peers
            .iter()
            .map(|p| v3::ListPeerResponse {
                peer: Some(convert::peer_to_v3(p)),
            })
            .collect();
        Ok(Response::new(stream_of(items)))
    }

    async fn reset_peer(&self, req: Request<v3::ResetPeerRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        use v3::reset_peer_request::SoftResetDirection as D;
        let kind = if !r.soft {
            ResetKind::Hard {
                communication: r.communication,
            }
        } else {
            match D::try_from(r.direction).unwrap_or(D::Both) {
                D::In => ResetKind::SoftIn,
                D::Out => ResetKind::SoftOut,
                D::Both => ResetKind::SoftBoth,
            }
        };
        self.backend
            .reset_peer(reset_target(&r.address)?, kind)
            .await?;
        Ok(Response::new(()))
    }

    async fn enable_peer(
        &self,
        req: Request<v3::EnablePeerRequest>,
    ) -> Result<Response<()>, Status> {
        self.backend
            .enable_peer(parse_address(&req.into_inner().address)?)
            .await?;
        Ok(Response::new(()))
    }

    async fn disable_peer(
        &self,
        req: Request<v3::DisablePeerRequest>,
    ) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.backend
            .disable_peer(parse_address(&r.address)?, r.communication)
            .await?;
        Ok(Response::new(()))
    }

    async fn add_path(
        &self,
        req: Request<v3::AddPathRequest>,
    ) -> Result<Response<v3::AddPathResponse>, Status> {
        let r = req.into_inner();
        if r.table_type != v3::TableType::Global as i32 {
            return Err(Status::unimplemented(
                "paths can be added to the global table only",
            ));
        }
        let path = r
            .path
            .ok_or_else(|| Status::invalid_argument("missing path"))?;
        let uuid = self
            .backend
            .add_path(convert::new_path_from_v3(&path)?)
            .await?;
        Ok(Response::new(v3::AddPathResponse { uuid }))
    }

    async fn delete_path(
        &self,
        req: Request<v3::DeletePathRequest>,
    ) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        if r.table_type != v3::TableType::Global as i32 {
            return Err(Status::unimplemented(
                "paths can be deleted from the global table only",
            ));
        }
        let deletion = if !r.uuid.is_empty() {
            PathDeletion::Uuid(r.uuid)
        } else if let Some(path) = &r.path {
            PathDeletion::Path(convert::new_path_from_v3(path)?)
        } else if let Some(f) = &r.family {
            PathDeletion::AllOfFamily(convert::family_from_v3(f)?)
        } else {
            return Err(Status::invalid_argument(
                "DeletePath needs a uuid, a path or a family",
            ));
        };
        self.backend.delete_path(deletion).await?;
        Ok(Response::new(()))
    }

    type ListPathStream = BoxStream<v3::ListPathResponse>;

    async fn list_path(
        &self,
        req: Request<v3::ListPathRequest>,
    ) -> Result<Response<Self::ListPathStream>, Status> {
        let r = req.into_inner();
        use v3::TableType as T;
        let t = T::try_from(r.table_type).unwrap_or(T::Vrf);
        let table = table_kind(t == T::Global, t == T::AdjIn, t == T::AdjOut, &r.name)?;
        let family = r.family.as_ref().map(convert::family_from_v3).transpose()?;
        let mut prefixes = Vec::with_capacity(r.prefixes.len());
        for p in &r.prefixes {
            use v3::table_lookup_prefix::Type as L;
            let kind = match L::try_from(p.r#type).unwrap_or(L::Exact) {
                L::Exact => PrefixMatch::Exact,
                L::Longer => PrefixMatch::Longer,
                L::Shorter => PrefixMatch::Shorter,
            };
            prefixes.push(convert::parse_prefix_filter(&p.prefix, kind)?);
        }
        let query = PathQuery {
            table,
            afi: query_afi(family, table),
            prefixes,
        };
        let dests = self.backend.paths(query).await?;
        let items = dests
            .iter()
            .map(|d| v3::ListPathResponse {
                destination: Some(convert::destination_to_v3(d)),
            })
            .collect();
        Ok(Response::new(stream_of(items)))
    }
}

struct V4Service<B> {
    backend: Arc<B>,
}

#[tonic::async_trait]
impl<B: ApiBackend> v4::go_bgp_service_server::GoBgpService for V4Service<B> {
    async fn get_bgp(
        &self,
        _: Request<v4::GetBgpRequest>,
    ) -> Result<Response<v4::GetBgpResponse>, Status> {
        let g = self.backend.global().await?;
        Ok(Response::new(v4::GetBgpResponse {
            global: Some(convert::global_to_v4(&g)),
        }))
    }

    async fn add_peer(
        &self,
        req: Request<v4::AddPeerRequest>,
    ) -> Result<Response<v4::AddPeerResponse>, Status> {
        let peer = req
            .into_inner()
            .peer
            .ok_or_else(|| Status::invalid_argument("missing peer"))?;
        self.backend
            .add_peer(convert::peer_config_from_v4(&peer)?)
            .await?;
        Ok(Response::new(v4::AddPeerResponse {}))
    }

    async fn delete_peer(
        &self,
        req: Request<v4::DeletePeerRequest>,
    ) -> Result<Response<v4::DeletePeerResponse>, Status> {
        self.backend
            .delete_peer(parse_address(&req.into_inner().address)?)
            .await?;
        Ok(Response::new(v4::DeletePeerResponse {}))
    }

    type ListPeerStream = BoxStream<v4::ListPeerResponse>;

    async fn list_peer(
        &self,
        req: Request<v4::ListPeerRequest>,
    ) -> Result<Response<Self::ListPeerStream>, Status> {
        let address = optional_address(&req.into_inner().address)?;
        let peers = self.backend.peers(address).await?;
        let items = peers
            .iter()
            .map(|p| v4::ListPeerResponse {
                peer: Some(convert::peer_to_v4(p)),
            })
            .collect();
        Ok(Response::new(stream_of(items)))
    }

    async fn reset_peer(
        &self,
        req: Request<v4::ResetPeerRequest>,
    ) -> Result<Response<v4::ResetPeerResponse>, Status> {
        let r = req.into_inner();
        use v4::reset_peer_request::Direction as D;
        let kind = if !r.soft {
            ResetKind::Hard {
                communication: r.communication,
            }
        } else {
            match D::try_from(r.direction).unwrap_or(D::Both) {
                D::In => ResetKind::SoftIn,
                D::Out => ResetKind::SoftOut,
                D::Both | D::Unspecified => ResetKind::SoftBoth,
            }
        };
        self.backend
            .reset_peer(reset_target(&r.address)?, kind)
            .await?;
        Ok(Response::new(v4::ResetPeerResponse {}))
    }

    async fn enable_peer(
        &self,
        req: Request<v4::EnablePeerRequest>,
    ) -> Result<Response<v4::EnablePeerResponse>, Status> {
        self.backend
            .enable_peer(parse_address(&req.into_inner().address)?)
            .await?;
        Ok(Response::new(v4::EnablePeerResponse {}))
    }

    async fn disable_peer(
        &self,
        req: Request<v4::DisablePeerRequest>,
    ) -> Result<Response<v4::DisablePeerResponse>, Status> {
        let r = req.into_inner();
        self.backend
            .disable_peer(parse_address(&r.address)?, r.communication)
            .await?;
        Ok(Response::new(v4::DisablePeerResponse {}))
    }

    async fn add_path(
        &self,
        req: Request<v4::AddPathRequest>,
    ) -> Result<Response<v4::AddPathResponse>, Status> {
        let r = req.into_inner();
        if r.table_type != v4::TableType::Global as i32 {
            return Err(Status::unimplemented(
                "paths can be added to the global table only",
            ));
        }
        let path = r
            .path
            .ok_or_else(|| Status::invalid_argument("missing path"))?;
        let uuid = self
            .backend
            .add_path(convert::new_path_from_v4(&path)?)
            .await?;
        Ok(Response::new(v4::AddPathResponse { uuid }))
    }

    async fn delete_path(
        &self,
        req: Request<v4::DeletePathRequest>,
    ) -> Result<Response<v4::DeletePathResponse>, Status> {
        let r = req.into_inner();
        if r.table_type != v4::TableType::Global as i32 {
            return Err(Status::unimplemented(
                "paths can be deleted from the global table only",
            ));
        }
        let deletion = if !r.uuid.is_empty() {
            PathDeletion::Uuid(r.uuid)
        } else if let Some(path) = &r.path {
            PathDeletion::Path(convert::new_path_from_v4(path)?)
        } else if let Some(f) = &r.family {
            PathDeletion::AllOfFamily(convert::family_from_v4(f)?)
        } else {
            return Err(Status::invalid_argument(
                "DeletePath needs a uuid, a path or a family",
            ));
        };
        self.backend.delete_path(deletion).await?;
        Ok(Response::new(v4::DeletePathResponse {}))
    }

    type ListPathStream = BoxStream<v4::ListPathResponse>;

    async fn list_path(
        &self,
        req: Request<v4::ListPathRequest>,
    ) -> Result<Response<Self::ListPathStream>, Status> {
        let r = req.into_inner();
        use v4::TableType as T;
        let t = T::try_from(r.table_type).unwrap_or(T::Unspecified);
        let table = table_kind(t == T::Global, t == T::AdjIn, t == T::AdjOut, &r.name)?;
        let family = r.family.as_ref().map(convert::family_from_v4).transpose()?;
        let mut prefixes = Vec::with_capacity(r.prefixes.len());
        for p in &r.prefixes {
            use v4::table_lookup_prefix::Type as L;
            let kind = match L::try_from(p.r#type).unwrap_or(L::Exact) {
                L::Exact | L::Unspecified => PrefixMatch::Exact,
                L::Longer => PrefixMatch::Longer,
                L::Shorter => PrefixMatch::Shorter,
            };
            prefixes.push(convert::parse_prefix_filter(&p.prefix, kind)?);
        }
        let query = PathQuery {
            table,
            afi: query_afi(family, table),
            prefixes,
        };
        let dests = self.backend.paths(query).await?;
        let items = dests
            .iter()
            .map(|d| v4::ListPathResponse {
                destination: Some(convert::destination_to_v4(d)),
            })
            .collect();
        Ok(Response::new(stream_of(items)))
    }
}
