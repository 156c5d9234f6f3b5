//! The API listens on loopback only: reachable on 127.0.0.1 and ::1 inside its namespace, refused on the
//! namespace's own IPv4 and IPv6 addresses from a neighbouring namespace; port 0 disables it.

mod api_common;

use std::sync::Arc;
use std::time::Duration;

use api_common::{MemoryBackend, Netns, in_netns, need_root, spawn_in_netns, v4, veth};
use bgpd::api::proto::v3;
use bgpd::api::{ApiServer, GlobalInfo};

/// Calls GetBgp at `addr`; Ok(asn) or the connection error's text.
async fn get_bgp(addr: String) -> Result<u32, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3));
    let ch = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let mut c = v3::gobgp_api_client::GobgpApiClient::new(ch);
    let r = c
        .get_bgp(v3::GetBgpRequest {})
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.into_inner().global.unwrap().asn)
}

#[tokio::test]
async fn port_zero_disables_the_api() {
    assert!(ApiServer::bind(0).await.unwrap().is_none());
}

#[test]
fn api_is_unreachable_from_another_namespace() {
    if !need_root("api_is_unreachable_from_another_namespace") {
        return;
    }
    let a = Netns::create("flapi-lo-a");
    let b = Netns::create("flapi-lo-b");
    veth(
        &a,
        &b,
        &["198.18.0.1/24", "fd00:1::1/64"],
        &["198.18.0.2/24", "fd00:1::2/64"],
    );
    let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = spawn_in_netns(&a.name, move || {
        Box::pin(async move {
            let backend = Arc::new(MemoryBackend::new(GlobalInfo {
                asn: 65001,
                router_id: v4("198.18.0.1"),
                listen_port: Some(179),
                listen_addresses: vec![],
                families: vec![],
                use_multiple_paths: false,
            }));
            let s = ApiServer::bind(bgpd::api::DEFAULT_API_PORT)
                .await
                .unwrap()
                .unwrap();
            addrs_tx.send(s.local_addrs()).unwrap();
            s.serve(backend, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        })
    });
    let addrs = addrs_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server bound");
    let mut ips: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    ips.sort();
    assert_eq!(ips, ["127.0.0.1:50051", "[::1]:50051"]);

    // Inside its namespace, both loopback addresses answer.
    let local = in_netns(&a.name, || {
        Box::pin(async {
            (
                get_bgp("127.0.0.1:50051".into()).await,
                get_bgp("[::1]:50051".into()).await,
            )
        })
    });
    assert_eq!(local, (Ok(65001), Ok(65001)));
    // Its namespace's own addresses do not, even from inside it: nothing listens there.
    let own = in_netns(&a.name, || {
        Box::pin(async { get_bgp("198.18.0.1:50051".into()).await })
    });
    assert!(own.is_err(), "{own:?}");
    // From the neighbouring namespace, over the link that reaches it: refused on both families.
    let remote = in_netns(&b.name, || {
        Box::pin(async {
            (
                get_bgp("198.18.0.1:50051".into()).await,
                get_bgp("[fd00:1::1]:50051".into()).await,
            )
        })
    });
    for r in [&remote.0, &remote.1] {
        let e = r
            .as_ref()
            .expect_err("API reachable from another namespace");
        assert!(
            e.contains("ConnectionRefused") || e.contains("Connection refused"),
            "{e}"
        );
    }
    // The link itself works (so the refusals above are the listener's doing, not a dead link).
    let ping = b.exec("ping", &["-c", "1", "-W", "2", "198.18.0.1"]);
    assert!(ping.status.success(), "veth link down");
    stop_tx.send(()).unwrap();
    server.join().unwrap();
}
