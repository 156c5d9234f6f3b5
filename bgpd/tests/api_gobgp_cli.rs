//! Wire compatibility: the stock `gobgp` 3.x CLI against fairlead's API server (over an in-memory backend),
//! checked row by row against gobgp's layout and against fairlead's own table renderer.

mod api_common;

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_common::{MemoryBackend, peer, v4};
use bgpd::api::table::{self, RibView};
use bgpd::api::{
    AdminState, ApiServer, FamilyState, GlobalInfo, PeerInfo, ResetKind, RoutePath, SessionState,
    TableKind,
};
use bgpd::packet::{Afi, AsPathSegment, Community, PathAttributes};

const HOUR: u64 = 3600;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn received(
    prefix: &str,
    nh: &str,
    as_path: &[u32],
    med: Option<u32>,
    comms: &[u32],
    from: &PeerInfo,
    age: SystemTime,
) -> RoutePath {
    RoutePath {
        prefix: prefix.parse().unwrap(),
        attrs: PathAttributes {
            as_path: vec![AsPathSegment::Sequence(as_path.to_vec())],
            next_hop: Some(ip(nh)),
            med,
            communities: comms.iter().copied().map(Community).collect(),
            ..Default::default()
        },
        best: false,
        age,
        neighbor: Some(from.address),
        source_asn: from.peer_asn,
        source_id: from.remote_router_id,
        is_from_external: true,
        filtered: false,
        stale: false,
        path_id: 0,
        local_path_id: 0,
        uuid: Vec::new(),
    }
}

/// Two established neighbours (one per family) with two paths each, one never-connected, one disabled.
fn backend(now: SystemTime) -> MemoryBackend {
    let b = MemoryBackend::new(GlobalInfo {
        asn: 65001,
        router_id: v4("198.18.0.1"),
        listen_port: Some(179),
        listen_addresses: vec![ip("198.18.0.1"), ip("fd00:1::1")],
        families: vec![Afi::Ipv4, Afi::Ipv6],
        use_multiple_paths: false,
    });
    let up = now - Duration::from_secs(HOUR + 5 * 60);
    let mut p4 = peer(ip("198.18.0.2"), 65002, 65001, SessionState::Established);
    p4.uptime = Some(up);
    p4.remote_router_id = Some(v4("198.18.0.2"));
    p4.families = vec![FamilyState {
        afi: Afi::Ipv4,
        enabled: true,
        received: 2,
        accepted: 2,
        advertised: 1,
        max_prefixes: None,
    }];
    p4.sent.open = 1;
    p4.received.open = 1;
    p4.received.update = 2;
    let mut p6 = peer(ip("fd00:1::2"), 65002, 65001, SessionState::Established);
    p6.uptime = Some(up);
    p6.remote_router_id = Some(v4("198.18.0.2"));
    p6.families = vec![FamilyState {
        afi: Afi::Ipv6,
        enabled: true,
        received: 2,
        accepted: 2,
        advertised: 1,
        max_prefixes: None,
    }];
    let never = peer(ip("198.18.0.9"), 4_200_000_009, 65001, SessionState::Active);
    let mut down = peer(ip("fd00:1::9"), 65009, 65001, SessionState::Idle);
    down.admin_state = AdminState::Down;
    let age = now - Duration::from_secs(HOUR);
    {
        let mut s = b.state.lock().unwrap();
        s.adj_in.insert(
            p4.address,
            vec![
                received(
                    "198.18.10.0/24",
                    "198.18.0.2",
                    &[65002],
                    Some(10),
                    &[65002 << 16 | 10],
                    &p4,
                    age,
                ),
                received(
                    "198.18.11.0/24",
                    "198.18.0.2",
                    &[65002, 65010],
                    None,
                    &[0xffff_ff01],
                    &p4,
                    age,
                ),
            ],
        );
        s.adj_in.insert(
            p6.address,
            vec![
                received(
                    "fd00:10::/64",
                    "fd00:1::2",
                    &[65002],
                    Some(10),
                    &[],
                    &p6,
                    age,
                ),
                received(
                    "fd00:11::/64",
                    "fd00:1::2",
                    &[65002, 65010],
                    None,
                    &[],
                    &p6,
                    age,
                ),
            ],
        );
        let mut out = received(
            "198.18.20.0/24",
            "198.18.0.1",
            &[65001],
            None,
            &[],
            &p4,
            age,
        );
        out.neighbor = None;
        s.adj_out.insert(p4.address, vec![out]);
        s.peers = vec![p6, never, p4, down];
    }
    b
}

struct Cli {
    port: u16,
}

impl Cli {
    /// Runs `gobgp -u 127.0.0.1 -p PORT ARGS`; returns (success, stdout+stderr, unix second before, after).
    fn run(&self, args: &[&str]) -> (bool, String, u64, u64) {
        let before = secs(SystemTime::now());
        let out = Command::new("gobgp")
            .args(["-u", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run gobgp (Debian package gobgpd)");
        let after = secs(SystemTime::now());
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text, before, after)
    }

    fn ok(&self, args: &[&str]) -> (String, u64, u64) {
        let (ok, text, b, a) = self.run(args);
        assert!(ok, "gobgp {args:?} failed: {text}");
        (text, b, a)
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn hms(d: u64) -> String {
    format!("{:02}:{:02}:{:02}", d / 3600, (d / 60) % 60, d % 60)
}

/// Asserts `out` equals `expect(now)` for some whole second `now` during which gobgp ran.
fn assert_for_some_second(out: &str, before: u64, after: u64, expect: impl Fn(u64) -> String) {
    let candidates: Vec<String> = (before..=after).map(&expect).collect();
    assert!(
        candidates.iter().any(|c| c == out),
        "gobgp printed:\n{out}\nexpected one of:\n{}",
        candidates.join("\n--\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_gobgp_cli_against_fairlead_api() {
    let now = SystemTime::now();
    let t0 = secs(now);
    let b = Arc::new(backend(now));
    let server = ApiServer::bind_ephemeral().await.unwrap();
    let addrs = server.local_addrs();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    let port = addrs[0].port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(server.serve(b.clone(), async move {
        let _ = stop_rx.await;
    }));
    let cli = Cli { port };
    tokio::task::spawn_blocking(move || check_cli(&cli, t0, &b))
        .await
        .unwrap();
    stop_tx.send(()).unwrap();
    srv.await.unwrap().unwrap();
}

fn check_cli(cli: &Cli, t0: u64, b: &MemoryBackend) {
    // gobgp global
    let (out, _, _) = cli.ok(&["global"]);
    assert_eq!(
        out,
        "AS:        65001\nRouter-ID: 198.18.0.1\nListening Port: 179, Addresses: 198.18.0.1, fd00:1::1\n"
    );

    // gobgp neighbor: IPv4 first, then IPv6; widths from the longest address and AS.
    let (out, before, after) = cli.ok(&["neighbor"]);
    assert_for_some_second(&out, before, after, |now| {
        let up = hms(now - (t0 - HOUR - 300));
        format!(
            "Peer               AS  Up/Down State       |#Received  Accepted\n\
             198.18.0.2      65002 {up:>8} Establ      |        2         2\n\
             198.18.0.9 4200000009    never Active      |        0         0\n\
             fd00:1::2       65002 {up:>8} Establ      |        2         2\n\
             fd00:1::9       65009    never Idle(Admin) |        0         0\n"
        )
    });
    // fairlead's renderer prints the same for the same data.
    let peers = b.state.lock().unwrap().peers.clone();
    assert_for_some_second(&out, before, after, |now| {
        table::neighbors_table(&peers, None, UNIX_EPOCH + Duration::from_secs(now))
    });

    // gobgp global rib (IPv4 by default) and -a ipv6.
    let header =
        "   Network              Next Hop             AS_PATH              Age        Attrs\n";
    let (out, before, after) = cli.ok(&["global", "rib"]);
    assert_for_some_second(&out, before, after, |now| {
        let age = hms(now - (t0 - HOUR));
        format!(
            "{header}*> 198.18.10.0/24       198.18.0.2           65002                {age:<10} [{{Origin: i}} {{Med: 10}} {{Communities: 65002:10}}]\n\
             *> 198.18.11.0/24       198.18.0.2           65002 65010          {age:<10} [{{Origin: i}} {{Communities: no-export}}]\n"
        )
    });
    let (out, before, after) = cli.ok(&["global", "rib", "-a", "ipv6"]);
    assert_for_some_second(&out, before, after, |now| {
        let age = hms(now - (t0 - HOUR));
        format!(
            "{header}*> fd00:10::/64         fd00:1::2            65002                {age:<10} [{{Origin: i}} {{Med: 10}}]\n\
             *> fd00:11::/64         fd00:1::2            65002 65010          {age:<10} [{{Origin: i}}]\n"
        )
    });
    let dests = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use bgpd::api::ApiBackend;
        b.paths(bgpd::api::PathQuery {
            table: TableKind::Global,
            afi: Afi::Ipv6,
            prefixes: vec![],
        })
        .await
        .unwrap()
    });
    assert_for_some_second(&out, before, after, |now| {
        table::rib_table(
            &dests,
            RibView::GLOBAL,
            UNIX_EPOCH + Duration::from_secs(now),
        )
    });

    // A prefix filter, and a prefix that is not there.
    let (out, _, _) = cli.ok(&["global", "rib", "-a", "ipv6", "fd00:11::/64"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines().nth(1).unwrap().starts_with("*> fd00:11::/64 "),
        "{out}"
    );
    let (out, _, _) = cli.ok(&["global", "rib", "198.18.10.77"]);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("*> 198.18.10.0/24 "),
        "longest match: {out}"
    );
    let (out, _, _) = cli.ok(&["global", "rib", "-a", "ipv6", "fd00:99::/64"]);
    assert_eq!(out, "Network not in table\n");

    // Adding and deleting an IPv6 path: MP_REACH with NLRI and next hop on the wire, shown back as best.
    cli.ok(&[
        "global",
        "rib",
        "-a",
        "ipv6",
        "add",
        "fd00:20::/64",
        "nexthop",
        "fd00:1::1",
        "med",
        "5",
        "community",
        "65001:20",
    ]);
    let (out, _, _) = cli.ok(&["global", "rib", "-a", "ipv6"]);
    let row = out
        .lines()
        .find(|l| l.contains("fd00:20::/64"))
        .unwrap_or_else(|| panic!("added path missing:\n{out}"));
    assert!(
        row.starts_with(
            "*> fd00:20::/64         fd00:1::1                                 00:00:0"
        ),
        "{row}"
    );
    // gobgp sends ORIGIN incomplete when the command names none.
    assert!(
        row.ends_with("[{Origin: ?} {Med: 5} {Communities: 65001:20}]"),
        "{row}"
    );
    cli.ok(&["global", "rib", "-a", "ipv6", "del", "fd00:20::/64"]);
    let (out, _, _) = cli.ok(&["global", "rib", "-a", "ipv6"]);
    assert!(
        !out.contains("fd00:20::/64"),
        "deleted path still shown:\n{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    // IPv4 add with the classic NEXT_HOP.
    cli.ok(&[
        "global",
        "rib",
        "add",
        "198.18.20.0/24",
        "nexthop",
        "198.18.0.1",
    ]);
    let (out, _, _) = cli.ok(&["global", "rib", "198.18.20.0/24"]);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("*> 198.18.20.0/24       198.18.0.1    "),
        "{out}"
    );

    // Adj-RIB-In with the ID column, Adj-RIB-Out without Age.
    let (out, before, after) = cli.ok(&["neighbor", "198.18.0.2", "adj-in"]);
    assert_for_some_second(&out, before, after, |now| {
        let age = hms(now - (t0 - HOUR));
        format!(
            "   ID  Network              Next Hop             AS_PATH              Age        Attrs\n   \
             0   198.18.10.0/24       198.18.0.2           65002                {age:<10} [{{Origin: i}} {{Med: 10}} {{Communities: 65002:10}}]\n   \
             0   198.18.11.0/24       198.18.0.2           65002 65010          {age:<10} [{{Origin: i}} {{Communities: no-export}}]\n"
        )
    });
    let (out, _, _) = cli.ok(&["neighbor", "198.18.0.2", "adj-out"]);
    assert_eq!(
        out,
        "   ID  Network              Next Hop             AS_PATH              Attrs\n   \
         0   198.18.20.0/24       198.18.0.1           65001                [{Origin: i}]\n"
    );

    // The detailed view reads state, timers and counters.
    let (out, _, _) = cli.ok(&["neighbor", "198.18.0.2"]);
    assert!(out.starts_with("BGP neighbor is 198.18.0.2, remote AS 65002\n  BGP version 4, remote router ID 198.18.0.2\n  BGP state = ESTABLISHED, up for 01:05:"), "{out}");
    assert!(
        out.contains("  Configured hold time is 90, keepalive interval is 30 seconds\n"),
        "{out}"
    );
    assert!(
        out.contains("    Opens:                  1          1\n"),
        "{out}"
    );
    assert!(
        out.contains("    Updates:                0          2\n"),
        "{out}"
    );
    assert!(out.contains("    Advertised:             1\n    Received:               2\n    Accepted:               2\n"), "{out}");

    // Unknown neighbour.
    let (ok, out, _, _) = cli.run(&["neighbor", "198.18.0.77"]);
    assert!(
        !ok && out.contains("not found neighbor 198.18.0.77"),
        "{out}"
    );

    // Neighbour management.
    cli.ok(&["neighbor", "198.18.0.2", "softresetin"]);
    cli.ok(&["neighbor", "fd00:1::2", "softresetout"]);
    cli.ok(&["neighbor", "fd00:1::2", "reset"]);
    assert_eq!(
        b.state.lock().unwrap().resets,
        vec![
            (Some(ip("198.18.0.2")), ResetKind::SoftIn),
            (Some(ip("fd00:1::2")), ResetKind::SoftOut),
            (
                Some(ip("fd00:1::2")),
                ResetKind::Hard {
                    communication: String::new()
                }
            ),
        ]
    );
    cli.ok(&["neighbor", "fd00:1::9", "enable"]);
    let (out, _, _) = cli.ok(&["neighbor"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("fd00:1::9") && l.contains(" Idle        |")),
        "{out}"
    );
    cli.ok(&["neighbor", "198.18.0.9", "disable"]);
    let (out, _, _) = cli.ok(&["neighbor"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("198.18.0.9") && l.contains(" Idle(Admin) |")),
        "{out}"
    );
    cli.ok(&["neighbor", "add", "fd00:1::50", "as", "65050"]);
    let (out, _, _) = cli.ok(&["neighbor"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("fd00:1::50") && l.contains("65050") && l.contains("Active")),
        "{out}"
    );
    cli.ok(&["neighbor", "del", "fd00:1::50"]);
    let (out, _, _) = cli.ok(&["neighbor"]);
    assert!(!out.contains("fd00:1::50"), "{out}");

    // A method fairlead does not serve answers UNIMPLEMENTED rather than something wrong.
    let (ok, out, _, _) = cli.run(&["vrf"]);
    assert!(!ok && out.to_lowercase().contains("unimplemented"), "{out}");
}
