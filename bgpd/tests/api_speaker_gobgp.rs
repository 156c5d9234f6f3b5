//! End to end: fairlead's `Speaker` behind the API (`SpeakerBackend`), a real gobgpd peering with it over IPv4 and
//! IPv6, and the stock `gobgp` CLI reading and changing the speaker through the API.

mod api_common;

use std::sync::Arc;
use std::time::Duration;

use api_common::{Netns, need_root, spawn_in_netns, stdout, v4, veth, wait_for};
use bgpd::api::{ApiServer, SpeakerBackend};
use bgpd::session::any_addrs;
use bgpd::speaker::{Neighbor, Speaker, SpeakerConfig};

const CONF_B: &str = r#"
[global.config]
  as = 65002
  router-id = "198.18.0.2"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.0.1"
    peer-as = 65001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00:1::1"
    peer-as = 65001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#;

#[test]
fn stock_gobgp_cli_against_the_speaker() {
    if !need_root("stock_gobgp_cli_against_the_speaker") {
        return;
    }
    let a = Netns::create("flapi-spk-a");
    let b = Netns::create("flapi-spk-b");
    veth(
        &a,
        &b,
        &["198.18.0.1/24", "fd00:1::1/64"],
        &["198.18.0.2/24", "fd00:1::2/64"],
    );
    let dir = std::env::temp_dir().join(format!("flapi-spk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("b.toml");
    std::fs::write(&conf, CONF_B).unwrap();
    let conf_s = conf.display().to_string();
    let _gobgpd = b.spawn(
        "gobgpd",
        &[
            "-f",
            &conf_s,
            "--api-hosts=127.0.0.1:50051",
            "--pprof-disable",
            "-l",
            "warn",
        ],
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let speaker = spawn_in_netns(&a.name, move || {
        Box::pin(async move {
            let config = SpeakerConfig {
                asn: 65001,
                router_id: v4("198.18.0.1"),
                cluster_id: None,
                listen: any_addrs(179).to_vec(),
            };
            let (speaker, task) = Speaker::start(config.clone()).unwrap();
            for (addr, asn) in [("198.18.0.2", 65002), ("fd00:1::2", 65002)] {
                speaker
                    .add_peer(Neighbor::new(&config, addr.parse().unwrap(), asn))
                    .await
                    .unwrap();
            }
            let backend = Arc::new(SpeakerBackend::new(speaker.clone(), config));
            let server = ApiServer::bind(bgpd::api::DEFAULT_API_PORT)
                .await
                .unwrap()
                .unwrap();
            ready_tx.send(()).unwrap();
            server
                .serve(backend, async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            speaker.shutdown().await.unwrap();
            task.await.unwrap();
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("speaker and API up");
    let gobgp_a = |args: &[&str]| a.exec("gobgp", args);
    let gobgp_b = |args: &[&str]| b.exec("gobgp", args);

    // Both sessions come up, as the stock CLI shows them through fairlead's API.
    let peers = wait_for(
        Duration::from_secs(60),
        "two Establ rows from fairlead's API",
        || {
            let t = String::from_utf8_lossy(&gobgp_a(&["neighbor"]).stdout).to_string();
            (t.matches(" Establ ").count() == 2).then_some(t)
        },
    );
    let lines: Vec<&str> = peers.lines().collect();
    assert_eq!(
        lines[0], "Peer          AS  Up/Down State       |#Received  Accepted",
        "{peers}"
    );
    assert!(
        lines[1].starts_with("198.18.0.2 65002 ") && lines[2].starts_with("fd00:1::2  65002 "),
        "{peers}"
    );

    // gobgpd announces a path of each family; the speaker's Loc-RIB shows them as best.
    stdout(
        gobgp_b(&["global", "rib", "add", "198.18.10.0/24", "med", "10"]),
        "gobgp b add v4",
    );
    stdout(
        gobgp_b(&[
            "global",
            "rib",
            "-a",
            "ipv6",
            "add",
            "fd00:10::/64",
            "community",
            "65002:10",
        ]),
        "gobgp b add v6",
    );
    let v6 = wait_for(
        Duration::from_secs(30),
        "the IPv6 path in fairlead's Loc-RIB",
        || {
            let t = String::from_utf8_lossy(&gobgp_a(&["global", "rib", "-a", "ipv6"]).stdout)
                .to_string();
            t.contains("fd00:10::/64").then_some(t)
        },
    );
    let row = v6.lines().find(|l| l.contains("fd00:10::/64")).unwrap();
    assert!(
        row.starts_with("*> fd00:10::/64         fd00:1::2            65002 "),
        "{v6}"
    );
    assert!(
        row.ends_with("[{Origin: ?} {Communities: 65002:10}]"),
        "{v6}"
    );
    let v4rib = wait_for(
        Duration::from_secs(30),
        "the IPv4 path in fairlead's Loc-RIB",
        || {
            let t = String::from_utf8_lossy(&gobgp_a(&["global", "rib"]).stdout).to_string();
            t.contains("198.18.10.0/24").then_some(t)
        },
    );
    assert!(
        v4rib
            .lines()
            .any(|l| l.starts_with("*> 198.18.10.0/24       198.18.0.2           65002 ")),
        "{v4rib}"
    );
    let peers = stdout(gobgp_a(&["neighbor"]), "neighbor");
    assert!(
        peers
            .lines()
            .any(|l| l.starts_with("fd00:1::2") && l.ends_with("|        1         1")),
        "{peers}"
    );

    // The stock CLI originates an IPv6 path on the speaker; gobgpd receives it over the IPv6 session.
    stdout(
        gobgp_a(&[
            "global",
            "rib",
            "-a",
            "ipv6",
            "add",
            "fd00:20::/64",
            "nexthop",
            "fd00:1::1",
        ]),
        "gobgp a add",
    );
    let at_b = wait_for(Duration::from_secs(30), "fd00:20::/64 at gobgpd", || {
        let t =
            String::from_utf8_lossy(&gobgp_b(&["global", "rib", "-a", "ipv6"]).stdout).to_string();
        t.contains("fd00:20::/64").then_some(t)
    });
    assert!(
        at_b.lines()
            .any(|l| l.starts_with("*> fd00:20::/64         fd00:1::1            65001 ")),
        "{at_b}"
    );
    // And withdraws it again.
    stdout(
        gobgp_a(&["global", "rib", "-a", "ipv6", "del", "fd00:20::/64"]),
        "gobgp a del",
    );
    wait_for(
        Duration::from_secs(30),
        "fd00:20::/64 withdrawn at gobgpd",
        || {
            let t = String::from_utf8_lossy(&gobgp_b(&["global", "rib", "-a", "ipv6"]).stdout)
                .to_string();
            (!t.contains("fd00:20::/64")).then_some(())
        },
    );
    // A soft reset goes through; the neighbour's Adj-RIB-In and Adj-RIB-Out list through the API.
    stdout(
        gobgp_a(&["neighbor", "fd00:1::2", "softresetin"]),
        "softresetin",
    );
    let adj_in = stdout(
        gobgp_a(&["neighbor", "fd00:1::2", "adj-in", "-a", "ipv6"]),
        "adj-in",
    );
    assert!(
        adj_in
            .lines()
            .any(|l| l.contains("fd00:10::/64") && l.contains("fd00:1::2")),
        "{adj_in}"
    );
    stdout(
        gobgp_a(&[
            "global",
            "rib",
            "-a",
            "ipv6",
            "add",
            "fd00:21::/64",
            "nexthop",
            "fd00:1::1",
        ]),
        "gobgp a add fd00:21::/64",
    );
    let adj_out = wait_for(Duration::from_secs(30), "fd00:21::/64 in adj-out", || {
        let t = stdout(
            gobgp_a(&["neighbor", "fd00:1::2", "adj-out", "-a", "ipv6"]),
            "adj-out",
        );
        t.contains("fd00:21::/64").then_some(t)
    });
    assert!(
        !adj_out.contains("fd00:10::/64"),
        "not sent back: {adj_out}"
    );
    // Disable and enable through the API: the session goes down, gobgpd loses the path, and comes back.
    stdout(gobgp_a(&["neighbor", "fd00:1::2", "disable"]), "disable");
    wait_for(
        Duration::from_secs(30),
        "fd00:21::/64 gone at gobgpd",
        || {
            let t = String::from_utf8_lossy(&gobgp_b(&["global", "rib", "-a", "ipv6"]).stdout)
                .to_string();
            (!t.contains("fd00:21::/64")).then_some(())
        },
    );
    stdout(gobgp_a(&["neighbor", "fd00:1::2", "enable"]), "enable");
    wait_for(
        Duration::from_secs(60),
        "fd00:21::/64 back at gobgpd",
        || {
            let t = String::from_utf8_lossy(&gobgp_b(&["global", "rib", "-a", "ipv6"]).stdout)
                .to_string();
            t.contains("fd00:21::/64").then_some(())
        },
    );

    stop_tx.send(()).unwrap();
    speaker.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
