//! The v4 service (`api.GoBgpService`, what kube-router 2.7+ speaks): a tonic client generated from fairlead's
//! v4 proto sees the same neighbours and paths as the v3 one, and can add, delete and reset.

mod api_common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api_common::{MemoryBackend, peer, v4 as ipv4};
use bgpd::api::convert;
use bgpd::api::proto::{v3, v4};
use bgpd::api::{ApiServer, FamilyState, GlobalInfo, PeerInfo, ResetKind, RoutePath, SessionState};
use bgpd::packet::{Afi, AsPathSegment, PathAttributes};
use tonic::transport::Channel;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn route(prefix: &str, nh: &str, from: &PeerInfo) -> RoutePath {
    RoutePath {
        prefix: prefix.parse().unwrap(),
        attrs: PathAttributes {
            as_path: vec![AsPathSegment::Sequence(vec![from.peer_asn])],
            next_hop: Some(ip(nh)),
            med: Some(10),
            ..Default::default()
        },
        best: false,
        age: SystemTime::now() - Duration::from_secs(60),
        neighbor: Some(from.address),
        source_asn: from.peer_asn,
        source_id: from.remote_router_id,
        is_from_external: true,
        filtered: false,
        stale: false,
        path_id: 0,
        local_path_id: 0,
        uuid: vec![],
    }
}

fn backend() -> MemoryBackend {
    let b = MemoryBackend::new(GlobalInfo {
        asn: 65001,
        router_id: ipv4("198.18.0.1"),
        listen_port: Some(179),
        listen_addresses: vec![ip("fd00:1::1")],
        families: vec![Afi::Ipv6, Afi::Ipv4],
        use_multiple_paths: true,
    });
    let mut p6 = peer(ip("fd00:1::2"), 65002, 65001, SessionState::Established);
    p6.uptime = Some(SystemTime::now() - Duration::from_secs(600));
    p6.remote_router_id = Some(ipv4("198.18.0.2"));
    p6.families = vec![
        FamilyState {
            afi: Afi::Ipv6,
            enabled: true,
            received: 1,
            accepted: 1,
            advertised: 0,
            max_prefixes: None,
        },
        FamilyState {
            afi: Afi::Ipv4,
            enabled: true,
            received: 1,
            accepted: 1,
            advertised: 0,
            max_prefixes: None,
        },
    ];
    let p4 = peer(ip("198.18.0.3"), 65003, 65001, SessionState::Connect);
    {
        let mut s = b.state.lock().unwrap();
        // Dual-stack over one IPv6 session: an IPv4 route with an IPv6 next hop (RFC 8950) too.
        s.adj_in.insert(
            p6.address,
            vec![
                route("fd00:10::/64", "fd00:1::2", &p6),
                route("198.18.10.0/24", "fd00:1::2", &p6),
            ],
        );
        s.peers = vec![p6, p4];
    }
    b
}

async fn clients(
    port: u16,
) -> (
    v3::gobgp_api_client::GobgpApiClient<Channel>,
    v4::go_bgp_service_client::GoBgpServiceClient<Channel>,
) {
    let url = format!("http://[::1]:{port}");
    (
        v3::gobgp_api_client::GobgpApiClient::connect(url.clone())
            .await
            .unwrap(),
        v4::go_bgp_service_client::GoBgpServiceClient::connect(url)
            .await
            .unwrap(),
    )
}

async fn v3_paths(
    c: &mut v3::gobgp_api_client::GobgpApiClient<Channel>,
    afi: Afi,
) -> Vec<bgpd::api::Destination> {
    let req = v3::ListPathRequest {
        table_type: v3::TableType::Global as i32,
        family: Some(convert::family_to_v3(afi)),
        ..Default::default()
    };
    let mut s = c.list_path(req).await.unwrap().into_inner();
    let mut v = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        v.push(convert::destination_from_v3(&m.destination.unwrap()).unwrap());
    }
    v
}

async fn v4_paths(
    c: &mut v4::go_bgp_service_client::GoBgpServiceClient<Channel>,
    table: v4::TableType,
    name: &str,
    afi: Afi,
) -> Result<Vec<bgpd::api::Destination>, tonic::Status> {
    let req = v4::ListPathRequest {
        table_type: table as i32,
        name: name.into(),
        family: Some(convert::family_to_v4(afi)),
        ..Default::default()
    };
    let mut s = c.list_path(req).await?.into_inner();
    let mut v = Vec::new();
    while let Some(m) = s.message().await? {
        v.push(convert::destination_from_v4(&m.destination.unwrap()).unwrap());
    }
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_client_sees_what_v3_sees_and_can_change_it() {
    let b = Arc::new(backend());
    let server = ApiServer::bind_ephemeral().await.unwrap();
    let port = server.local_addrs()[0].port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(server.serve(b.clone(), async move {
        let _ = stop_rx.await;
    }));
    let (mut c3, mut c4) = clients(port).await;

    // GetBgp
    let g4 = c4
        .get_bgp(v4::GetBgpRequest {})
        .await
        .unwrap()
        .into_inner()
        .global
        .unwrap();
    let g3 = c3
        .get_bgp(v3::GetBgpRequest {})
        .await
        .unwrap()
        .into_inner()
        .global
        .unwrap();
    assert_eq!(
        convert::global_from_v4(&g4).unwrap(),
        convert::global_from_v3(&g3).unwrap()
    );
    assert_eq!(
        (g4.asn, g4.router_id.as_str(), g4.families.as_slice()),
        (65001, "198.18.0.1", &[131073, 65537][..])
    );

    // ListPeer: same neighbours, v4 enum numbering on the wire.
    let mut s = c4
        .list_peer(v4::ListPeerRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut peers4 = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        peers4.push(m.peer.unwrap());
    }
    let mut s = c3
        .list_peer(v3::ListPeerRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut peers3 = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        peers3.push(convert::peer_from_v3(&m.peer.unwrap()).unwrap());
    }
    assert_eq!(peers4.len(), 2);
    let from4: Vec<PeerInfo> = peers4
        .iter()
        .map(|p| convert::peer_from_v4(p).unwrap())
        .collect();
    assert_eq!(from4, peers3);
    assert_eq!(from4, b.state.lock().unwrap().peers);
    let st = peers4[0].state.as_ref().unwrap();
    assert_eq!(
        (st.session_state, st.admin_state),
        (
            v4::peer_state::SessionState::Established as i32,
            v4::peer_state::AdminState::Up as i32
        )
    );
    assert_eq!(
        peers4[1].state.as_ref().unwrap().session_state,
        v4::peer_state::SessionState::Connect as i32
    );

    // ListPath: both families, same destinations through both versions; oneof attributes in v4.
    for afi in [Afi::Ipv6, Afi::Ipv4] {
        let p4 = v4_paths(&mut c4, v4::TableType::Global, "", afi)
            .await
            .unwrap();
        assert_eq!(p4.len(), 1, "{afi:?}");
        assert_eq!(p4, v3_paths(&mut c3, afi).await, "{afi:?}");
        assert!(p4[0].paths[0].best);
    }
    let raw = {
        let req = v4::ListPathRequest {
            table_type: v4::TableType::Global as i32,
            family: Some(convert::family_to_v4(Afi::Ipv4)),
            ..Default::default()
        };
        c4.list_path(req)
            .await
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .unwrap()
            .destination
            .unwrap()
    };
    let mp = raw.paths[0].pattrs.iter().find_map(|a| match &a.attr {
        Some(v4::attribute::Attr::MpReach(m)) => Some(m.clone()),
        _ => None,
    });
    assert_eq!(
        mp.expect("IPv4 over IPv6 next hop travels in MP_REACH")
            .next_hops,
        ["fd00:1::2"]
    );
    let adj_in = v4_paths(&mut c4, v4::TableType::AdjIn, "fd00:1::2", Afi::Ipv6)
        .await
        .unwrap();
    assert_eq!(adj_in[0].prefix.to_string(), "fd00:10::/64");
    let missing = v4_paths(&mut c4, v4::TableType::AdjIn, "fd00:1::99", Afi::Ipv6)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // AddPath over v4 (IPv6 route, MP_REACH), visible over v3; DeletePath by the returned UUID.
    let nlri = v4::Nlri {
        nlri: Some(v4::nlri::Nlri::Prefix(v4::IpAddressPrefix {
            prefix_len: 64,
            prefix: "fd00:20::".into(),
        })),
    };
    let path = v4::Path {
        nlri: Some(nlri.clone()),
        family: Some(convert::family_to_v4(Afi::Ipv6)),
        pattrs: vec![
            v4::Attribute {
                attr: Some(v4::attribute::Attr::Origin(v4::OriginAttribute {
                    origin: 0,
                })),
            },
            v4::Attribute {
                attr: Some(v4::attribute::Attr::MpReach(v4::MpReachNlriAttribute {
                    family: Some(convert::family_to_v4(Afi::Ipv6)),
                    next_hops: vec!["fd00:1::1".into()],
                    nlris: vec![nlri],
                })),
            },
        ],
        ..Default::default()
    };
    let uuid = c4
        .add_path(v4::AddPathRequest {
            table_type: v4::TableType::Global as i32,
            vrf_id: String::new(),
            path: Some(path),
        })
        .await
        .unwrap()
        .into_inner()
        .uuid;
    assert_eq!(uuid.len(), 16);
    let after = v3_paths(&mut c3, Afi::Ipv6).await;
    let added = after
        .iter()
        .find(|d| d.prefix.to_string() == "fd00:20::/64")
        .expect("added path listed");
    assert_eq!(added.paths[0].attrs.next_hop, Some(ip("fd00:1::1")));
    assert_eq!(added.paths[0].uuid, uuid);
    c4.delete_path(v4::DeletePathRequest {
        table_type: v4::TableType::Global as i32,
        uuid,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(v3_paths(&mut c3, Afi::Ipv6).await.len(), 1);
    // A path in a table fairlead does not serve is refused as unimplemented.
    let vrf = c4
        .add_path(v4::AddPathRequest {
            table_type: v4::TableType::Vrf as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(vrf.code(), tonic::Code::Unimplemented);

    // ResetPeer directions (v4 numbering), Enable/Disable, Add/DeletePeer.
    for d in [
        v4::reset_peer_request::Direction::In,
        v4::reset_peer_request::Direction::Out,
        v4::reset_peer_request::Direction::Both,
    ] {
        c4.reset_peer(v4::ResetPeerRequest {
            address: "fd00:1::2".into(),
            soft: true,
            direction: d as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    c4.reset_peer(v4::ResetPeerRequest {
        address: "all".into(),
        communication: "maintenance".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        b.state.lock().unwrap().resets,
        vec![
            (Some(ip("fd00:1::2")), ResetKind::SoftIn),
            (Some(ip("fd00:1::2")), ResetKind::SoftOut),
            (Some(ip("fd00:1::2")), ResetKind::SoftBoth),
            (
                None,
                ResetKind::Hard {
                    communication: "maintenance".into()
                }
            ),
        ]
    );
    let bad = c4
        .reset_peer(v4::ResetPeerRequest {
            address: "not-an-ip".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    c4.disable_peer(v4::DisablePeerRequest {
        address: "198.18.0.3".into(),
        communication: String::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        b.state.lock().unwrap().peers[1].admin_state,
        bgpd::api::AdminState::Down
    );
    c4.enable_peer(v4::EnablePeerRequest {
        address: "198.18.0.3".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        b.state.lock().unwrap().peers[1].admin_state,
        bgpd::api::AdminState::Up
    );
    let new_peer = v4::Peer {
        conf: Some(v4::PeerConf {
            neighbor_address: "fd00:1::50".into(),
            peer_asn: 65050,
            ..Default::default()
        }),
        ..Default::default()
    };
    c4.add_peer(v4::AddPeerRequest {
        peer: Some(new_peer.clone()),
    })
    .await
    .unwrap();
    let dup = c4
        .add_peer(v4::AddPeerRequest {
            peer: Some(new_peer),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    c4.delete_peer(v4::DeletePeerRequest {
        address: "fd00:1::50".into(),
        interface: String::new(),
    })
    .await
    .unwrap();
    let gone = c4
        .delete_peer(v4::DeletePeerRequest {
            address: "fd00:1::50".into(),
            interface: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);

    stop_tx.send(()).unwrap();
    srv.await.unwrap().unwrap();
}
