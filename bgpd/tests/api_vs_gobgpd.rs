//! fairlead's table renderer against a real `gobgpd` 3.x: both read the same daemon over the v3 API and must
//! print the same tables. Two gobgpd instances in namespaces of this test peer over IPv4 and IPv6 and exchange
//! paths of both families. With `FAIRLEAD_UPDATE_FIXTURES=1` the captures (gobgp's output, the raw API answers
//! and the second they were taken) are written to `tests/fixtures/gobgpd/` for the offline test `api_table_fixtures`.

mod api_common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_common::{Netns, in_netns, need_root, render, stdout, veth, wait_for};
use bgpd::api::convert;
use bgpd::api::proto::v3;
use bgpd::api::table::RibView;
use prost::Message as _;

const CONF_A: &str = r#"
[global.config]
  as = 65001
  router-id = "198.18.0.1"
  local-address-list = ["198.18.0.1", "fd00:1::1"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.0.2"
    peer-as = 65002
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00:1::2"
    peer-as = 65002
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.0.9"
    peer-as = 4200000009
  [neighbors.transport.config]
    passive-mode = true
"#;

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

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gobgpd")
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// One capture: the gobgp command, the API call that feeds fairlead's renderer, and the renderer.
enum Query {
    Global,
    Peers,
    Detail(&'static str),
    Paths {
        table: i32,
        name: &'static str,
        afi: bgpd::packet::Afi,
        prefix: Option<&'static str>,
        view: RibView,
    },
}

/// The raw v3 answers of a query, as length-delimited messages (what the fixtures hold).
fn fetch(ns: &str, q: &Query) -> Vec<u8> {
    let q = match q {
        Query::Global => (0, String::new(), 0, bgpd::packet::Afi::Ipv4, None),
        Query::Peers => (1, String::new(), 0, bgpd::packet::Afi::Ipv4, None),
        Query::Detail(a) => (1, a.to_string(), 0, bgpd::packet::Afi::Ipv4, None),
        Query::Paths {
            table,
            name,
            afi,
            prefix,
            ..
        } => (2, name.to_string(), *table, *afi, prefix.map(String::from)),
    };
    in_netns(ns, move || {
        Box::pin(async move {
            let mut c = v3::gobgp_api_client::GobgpApiClient::connect("http://127.0.0.1:50051")
                .await
                .unwrap();
            let mut buf = Vec::new();
            match q.0 {
                0 => {
                    let r = c.get_bgp(v3::GetBgpRequest {}).await.unwrap().into_inner();
                    r.encode_length_delimited(&mut buf).unwrap();
                }
                1 => {
                    // gobgp asks for advertised counts in the detailed view only.
                    let enable_advertised = !q.1.is_empty();
                    let req = v3::ListPeerRequest {
                        address: q.1,
                        enable_advertised,
                    };
                    let mut s = c.list_peer(req).await.unwrap().into_inner();
                    while let Some(m) = s.message().await.unwrap() {
                        m.encode_length_delimited(&mut buf).unwrap();
                    }
                }
                _ => {
                    let prefixes =
                        q.4.map(|p| {
                            vec![v3::TableLookupPrefix {
                                prefix: p,
                                r#type: 0,
                            }]
                        })
                        .unwrap_or_default();
                    let req = v3::ListPathRequest {
                        table_type: q.2,
                        name: q.1,
                        family: Some(convert::family_to_v3(q.3)),
                        prefixes,
                        sort_type: 1,
                        ..Default::default()
                    };
                    let mut s = c.list_path(req).await.unwrap().into_inner();
                    while let Some(m) = s.message().await.unwrap() {
                        m.encode_length_delimited(&mut buf).unwrap();
                    }
                }
            }
            buf
        })
    })
}

#[test]
fn table_renderer_matches_gobgp_against_real_gobgpd() {
    if !need_root("table_renderer_matches_gobgp_against_real_gobgpd") {
        return;
    }
    let a = Netns::create("flapi-cap-a");
    let b = Netns::create("flapi-cap-b");
    veth(
        &a,
        &b,
        &["198.18.0.1/24", "fd00:1::1/64"],
        &["198.18.0.2/24", "fd00:1::2/64"],
    );
    let dir = std::env::temp_dir().join(format!("flapi-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cb) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(&ca, CONF_A).unwrap();
    std::fs::write(&cb, CONF_B).unwrap();
    let args = |c: &PathBuf| {
        vec![
            "-f".to_string(),
            c.display().to_string(),
            "--api-hosts=127.0.0.1:50051".into(),
            "--pprof-disable".into(),
            "-l".into(),
            "warn".into(),
        ]
    };
    let aa = args(&ca);
    let ab = args(&cb);
    let _ga = a.spawn("gobgpd", &aa.iter().map(String::as_str).collect::<Vec<_>>());
    let _gb = b.spawn("gobgpd", &ab.iter().map(String::as_str).collect::<Vec<_>>());
    let gobgp = |ns: &Netns, args: &[&str]| ns.exec("gobgp", args);

    wait_for(Duration::from_secs(60), "two established sessions", || {
        let o = gobgp(&a, &["neighbor"]);
        let t = String::from_utf8_lossy(&o.stdout).to_string();
        (t.matches("Establ").count() == 2).then_some(())
    });
    for args in [
        vec![
            "global",
            "rib",
            "add",
            "198.18.10.0/24",
            "med",
            "10",
            "community",
            "65002:10",
        ],
        vec![
            "global",
            "rib",
            "add",
            "198.18.11.0/24",
            "community",
            "no-export",
            "aspath",
            "65010",
        ],
        vec![
            "global",
            "rib",
            "-a",
            "ipv6",
            "add",
            "fd00:10::/64",
            "med",
            "10",
        ],
        vec![
            "global",
            "rib",
            "-a",
            "ipv6",
            "add",
            "fd00:11::/64",
            "origin",
            "egp",
        ],
    ] {
        stdout(gobgp(&b, &args), "gobgp on b");
    }
    for args in [
        vec!["global", "rib", "add", "198.18.20.0/24", "origin", "igp"],
        vec![
            "global",
            "rib",
            "-a",
            "ipv6",
            "add",
            "fd00:20::/64",
            "nexthop",
            "fd00:1::1",
            "origin",
            "igp",
            "local-pref",
            "200",
        ],
    ] {
        stdout(gobgp(&a, &args), "gobgp on a");
    }
    wait_for(
        Duration::from_secs(30),
        "received paths of both families",
        || {
            let v4 = stdout(gobgp(&a, &["global", "rib"]), "rib");
            let v6 = stdout(gobgp(&a, &["global", "rib", "-a", "ipv6"]), "rib");
            (v4.lines().count() == 4 && v6.lines().count() == 4).then_some(())
        },
    );

    let cases: Vec<(&str, Vec<&str>, Query)> = vec![
        ("global", vec!["global"], Query::Global),
        ("neighbor", vec!["neighbor"], Query::Peers),
        (
            "neighbor_detail_v4",
            vec!["neighbor", "198.18.0.2"],
            Query::Detail("198.18.0.2"),
        ),
        (
            "global_rib_ipv4",
            vec!["global", "rib"],
            Query::Paths {
                table: 0,
                name: "",
                afi: bgpd::packet::Afi::Ipv4,
                prefix: None,
                view: RibView::GLOBAL,
            },
        ),
        (
            "global_rib_ipv6",
            vec!["global", "rib", "-a", "ipv6"],
            Query::Paths {
                table: 0,
                name: "",
                afi: bgpd::packet::Afi::Ipv6,
                prefix: None,
                view: RibView::GLOBAL,
            },
        ),
        (
            "global_rib_ipv6_prefix",
            vec!["global", "rib", "-a", "ipv6", "fd00:10::/64"],
            Query::Paths {
                table: 0,
                name: "",
                afi: bgpd::packet::Afi::Ipv6,
                prefix: Some("fd00:10::/64"),
                view: RibView::GLOBAL,
            },
        ),
        (
            "adj_in_ipv4",
            vec!["neighbor", "198.18.0.2", "adj-in"],
            Query::Paths {
                table: 2,
                name: "198.18.0.2",
                afi: bgpd::packet::Afi::Ipv4,
                prefix: None,
                view: RibView::ADJ_IN,
            },
        ),
        (
            "adj_out_ipv6",
            vec!["neighbor", "fd00:1::2", "adj-out"],
            Query::Paths {
                table: 3,
                name: "fd00:1::2",
                afi: bgpd::packet::Afi::Ipv6,
                prefix: None,
                view: RibView::ADJ_OUT,
            },
        ),
        (
            "neighbor_detail_v6",
            vec!["neighbor", "fd00:1::2"],
            Query::Detail("fd00:1::2"),
        ),
        (
            "adj_in_ipv6",
            vec!["neighbor", "fd00:1::2", "adj-in"],
            Query::Paths {
                table: 2,
                name: "fd00:1::2",
                afi: bgpd::packet::Afi::Ipv6,
                prefix: None,
                view: RibView::ADJ_IN,
            },
        ),
        (
            "adj_out_ipv4",
            vec!["neighbor", "198.18.0.2", "adj-out"],
            Query::Paths {
                table: 3,
                name: "198.18.0.2",
                afi: bgpd::packet::Afi::Ipv4,
                prefix: None,
                view: RibView::ADJ_OUT,
            },
        ),
    ];
    // Let uptimes and ages tick so the time columns are not all zero.
    std::thread::sleep(Duration::from_secs(3));
    let update = std::env::var_os("FAIRLEAD_UPDATE_FIXTURES").is_some();
    for (name, args, query) in &cases {
        let mut last = String::new();
        let mut matched = None;
        // The same second on both sides, or a state that moved between the two reads: try again, bounded.
        for _ in 0..5 {
            let before = secs(SystemTime::now());
            let text = stdout(gobgp(&a, args), name);
            let raw = fetch(&a.name, query);
            let after = secs(SystemTime::now());
            let kind = render::kind_of(query_kind(query));
            if let Some(now) = (before..=after)
                .find(|n| render::render(kind, &raw, *n) == render::comparable(kind, &text))
            {
                matched = Some((text, raw, now));
                break;
            }
            last = format!(
                "gobgp:\n{text}\nfairlead:\n{}",
                render::render(kind, &raw, after)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let (text, raw, now) = matched.unwrap_or_else(|| panic!("{name}: outputs differ\n{last}"));
        if update {
            let d = fixtures_dir();
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{name}.txt")), &text).unwrap();
            std::fs::write(d.join(format!("{name}.pb")), &raw).unwrap();
            std::fs::write(d.join(format!("{name}.now")), format!("{now}\n")).unwrap();
        }
        eprintln!(
            "{name}: gobgp and fairlead agree ({} lines)",
            text.lines().count()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn query_kind(q: &Query) -> &'static str {
    match q {
        Query::Global => "global",
        Query::Peers => "neighbor",
        Query::Detail(_) => "detail",
        Query::Paths { view, .. } if *view == RibView::GLOBAL => "rib_global",
        Query::Paths { view, .. } if *view == RibView::ADJ_IN => "rib_adj_in",
        Query::Paths { .. } => "rib_adj_out",
    }
}
