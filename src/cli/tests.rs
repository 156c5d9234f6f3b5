//! The CLI end to end against an in-process API server: argument parsing, tables, JSON and error wording.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bgpd::api::{
    AdminState, ApiBackend, ApiError, ApiServer, Destination, FamilyState, GlobalInfo, NewPath,
    PathDeletion, PathQuery, PeerConfig, PeerInfo, PeerTimers, ResetKind, RoutePath, SessionState,
    TableKind, filter_destinations,
};
use bgpd::packet::{Afi, AsPathSegment, PathAttributes};
use clap::Parser;

use super::{CliCommand, render};

#[derive(clap::Parser)]
struct Top {
    #[command(subcommand)]
    cmd: CliCommand,
}

fn parse(args: &[&str]) -> CliCommand {
    Top::try_parse_from(std::iter::once("fairlead").chain(args.iter().copied()))
        .unwrap()
        .cmd
}

const NOW: u64 = 1_700_000_000;

fn at(secs_ago: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW - secs_ago)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn peer(addr: &str, asn: u32, state: SessionState, afi: Afi, n: u64) -> PeerInfo {
    PeerInfo {
        address: ip(addr),
        peer_asn: asn,
        local_asn: 65001,
        description: String::new(),
        remote_router_id: Some("198.18.0.2".parse().unwrap()),
        session_state: state,
        admin_state: AdminState::Up,
        uptime: (state == SessionState::Established).then(|| at(3_725)),
        downtime: None,
        flops: 0,
        timers: PeerTimers {
            hold_time: 90,
            keepalive_interval: 30,
            ..Default::default()
        },
        sent: Default::default(),
        received: Default::default(),
        families: vec![FamilyState {
            afi,
            enabled: true,
            received: n,
            accepted: n,
            advertised: 0,
            max_prefixes: None,
        }],
        route_reflector_client: false,
        cluster_id: None,
        passive: false,
        multihop_ttl: None,
        local_address: None,
        local_port: 0,
        remote_port: 179,
        local_capabilities: vec![],
        remote_capabilities: vec![],
    }
}

fn path(prefix: &str, nh: &str) -> RoutePath {
    RoutePath {
        prefix: prefix.parse().unwrap(),
        attrs: PathAttributes {
            as_path: vec![AsPathSegment::Sequence(vec![65002])],
            next_hop: Some(ip(nh)),
            ..Default::default()
        },
        best: true,
        age: at(61),
        neighbor: Some(ip(nh)),
        source_asn: 65002,
        source_id: None,
        is_from_external: true,
        filtered: false,
        stale: false,
        path_id: 0,
        local_path_id: 0,
        uuid: vec![],
    }
}

/// Fixed data: a neighbour per family, a path per family; adj-in of the IPv6 neighbour.
struct Fixed;

impl ApiBackend for Fixed {
    async fn global(&self) -> Result<GlobalInfo, ApiError> {
        Ok(GlobalInfo {
            asn: 65001,
            router_id: "198.18.0.1".parse().unwrap(),
            listen_port: Some(179),
            listen_addresses: vec![ip("::")],
            families: vec![Afi::Ipv6],
            use_multiple_paths: false,
        })
    }
    async fn peers(&self, address: Option<IpAddr>) -> Result<Vec<PeerInfo>, ApiError> {
        let all = vec![
            peer("fd00:1::2", 65002, SessionState::Established, Afi::Ipv6, 1),
            peer("198.18.0.2", 65002, SessionState::Active, Afi::Ipv4, 0),
        ];
        Ok(all
            .into_iter()
            .filter(|p| address.is_none_or(|a| a == p.address))
            .collect())
    }
    async fn paths(&self, q: PathQuery) -> Result<Vec<Destination>, ApiError> {
        let d = |p: RoutePath| Destination {
            prefix: p.prefix,
            paths: vec![p],
        };
        let dests = match (q.table, q.afi) {
            (TableKind::Global, Afi::Ipv6) => vec![d(path("fd00:10::/64", "fd00:1::2"))],
            (TableKind::Global, Afi::Ipv4) => vec![d(path("198.18.10.0/24", "198.18.0.2"))],
            (TableKind::AdjIn(a), Afi::Ipv6) if a == ip("fd00:1::2") => {
                vec![d(path("fd00:10::/64", "fd00:1::2"))]
            }
            (TableKind::AdjIn(a) | TableKind::AdjOut(a), _)
                if a != ip("fd00:1::2") && a != ip("198.18.0.2") =>
            {
                return Err(ApiError::PeerNotFound(a));
            }
            _ => vec![],
        };
        Ok(filter_destinations(dests, &q.prefixes))
    }
    async fn add_path(&self, _: NewPath) -> Result<Vec<u8>, ApiError> {
        Err(ApiError::Unsupported("test".into()))
    }
    async fn delete_path(&self, _: PathDeletion) -> Result<(), ApiError> {
        Err(ApiError::Unsupported("test".into()))
    }
    async fn add_peer(&self, _: PeerConfig) -> Result<(), ApiError> {
        Err(ApiError::Unsupported("test".into()))
    }
    async fn delete_peer(&self, _: IpAddr) -> Result<(), ApiError> {
        Err(ApiError::Unsupported("test".into()))
    }
    async fn enable_peer(&self, _: IpAddr) -> Result<(), ApiError> {
        Err(ApiError::Unsupported("test".into()))
    }
    async fn disable_peer(&self, _: IpAddr, _: String) -> Result<(), ApiError> {
        Err(ApiError::Unsupported("test".into()))
    }
    async fn reset_peer(&self, _: Option<IpAddr>, _: ResetKind) -> Result<(), ApiError> {
        Err(ApiError::Unsupported("test".into()))
    }
}

#[tokio::test]
async fn tables_json_and_errors_over_the_api() {
    let server = ApiServer::bind_ephemeral().await.unwrap();
    let v6 = server
        .local_addrs()
        .into_iter()
        .find(|a| a.is_ipv6())
        .expect("::1 listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(server.serve(Arc::new(Fixed), async move {
        let _ = stopped.await;
    }));
    let api = format!("--api-address=[::1]:{}", v6.port());
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let run = |args: Vec<&str>| {
        let cmd = parse(&args);
        async move { render(cmd, now).await }
    };

    assert_eq!(
        run(vec!["global", &api]).await.unwrap(),
        "AS:        65001\nRouter-ID: 198.18.0.1\nListening Port: 179, Addresses: ::\n"
    );
    assert_eq!(
        run(vec!["neighbor", &api]).await.unwrap(),
        "Peer          AS  Up/Down State       |#Received  Accepted\n\
         198.18.0.2 65002    never Active      |        0         0\n\
         fd00:1::2  65002 01:02:05 Establ      |        1         1\n"
    );
    let rib6 = "   Network              Next Hop             AS_PATH              Age        Attrs\n\
                *> fd00:10::/64         fd00:1::2            65002                00:01:01   [{Origin: i}]\n";
    assert_eq!(
        run(vec!["global", &api, "rib", "-a", "ipv6"])
            .await
            .unwrap(),
        rib6
    );
    assert_eq!(
        run(vec!["global", "rib", "-a", "ipv6", "fd00:10::1", &api])
            .await
            .unwrap(),
        rib6
    );
    assert_eq!(
        run(vec!["global", "rib", "-a", "ipv6", "fd00:99::/64", &api])
            .await
            .unwrap(),
        "Network not in table\n"
    );
    assert!(
        run(vec!["global", "rib", &api])
            .await
            .unwrap()
            .contains("\n*> 198.18.10.0/24       198.18.0.2 ")
    );
    // adj-in defaults to the neighbour's family and shows the ID column.
    assert_eq!(
        run(vec!["neighbor", "fd00:1::2", "adj-in", &api])
            .await
            .unwrap(),
        "   ID  Network              Next Hop             AS_PATH              Age        Attrs\n   \
         0   fd00:10::/64         fd00:1::2            65002                00:01:01   [{Origin: i}]\n"
    );
    let detail = run(vec!["neighbor", "fd00:1::2", &api]).await.unwrap();
    assert!(
        detail.starts_with("BGP neighbor is fd00:1::2, remote AS 65002\n"),
        "{detail}"
    );

    // JSON
    let j: serde_json::Value =
        serde_json::from_str(&run(vec!["neighbor", "-j", &api]).await.unwrap()).unwrap();
    assert_eq!(j[0]["state"]["session_state"], "ESTABLISHED");
    assert_eq!(j[1]["conf"]["neighbor_address"], "198.18.0.2");
    let j: serde_json::Value = serde_json::from_str(
        &run(vec!["global", "rib", "-a", "ipv6", "-j", &api])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(j["fd00:10::/64"][0]["best"], true);
    assert_eq!(j["fd00:10::/64"][0]["attrs"][2]["type"], 14);

    // Errors: a wrong neighbour, a family mismatch, an empty table of a neighbour that is not up.
    let e = run(vec!["neighbor", "fd00:1::77", &api])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "not found neighbor fd00:1::77");
    let e = run(vec!["neighbor", "fd00:1::77", "adj-in", &api])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "neighbor fd00:1::77 not found");
    let e = run(vec!["global", "rib", "fd00:10::/64", &api])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not an ipv4 prefix"), "{e}");
    let e = run(vec!["neighbor", "198.18.0.2", "adj-out", &api])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "neighbor 198.18.0.2's BGP session is not established");

    stop.send(()).unwrap();
    srv.await.unwrap().unwrap();
}

#[tokio::test]
async fn unreachable_daemon_says_what_to_start() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = format!("--api-address=127.0.0.1:{port}");
    let e = render(parse(&["neighbor", &api]), SystemTime::now())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "cannot reach fairlead's API at 127.0.0.1:{port}: connection refused — is `fairlead run` or `bgpd` running?"
        )
    );
}

#[test]
fn arguments() {
    assert!(Top::try_parse_from(["fairlead", "neighbor", "not-an-ip"]).is_err());
    assert!(Top::try_parse_from(["fairlead", "neighbor", "fd00::1", "adj-sideways"]).is_err());
    assert!(Top::try_parse_from(["fairlead", "global", "rib", "-a", "ipv5"]).is_err());
    let CliCommand::Neighbor(n) = parse(&["neighbor", "fd00::1", "adj-out", "-a", "ipv4", "-j"])
    else {
        panic!()
    };
    assert_eq!(
        (n.address, n.table, n.family, n.opts.json),
        (
            Some(ip("fd00::1")),
            Some(super::NeighborTable::AdjOut),
            Some(super::FamilyArg::Ipv4),
            true
        )
    );
    assert_eq!(n.opts.api_address, "127.0.0.1:50051");
}
