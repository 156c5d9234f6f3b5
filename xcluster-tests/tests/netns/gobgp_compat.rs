//! GoBGP compatibility end to end: the stock `gobgp` CLI gives the same tables against fairlead's `bgpd` as
//! against a real gobgpd configured identically and fed the same routes, and `fairlead neighbor` /
//! `fairlead global rib -a ipv6` print the same rows as `gobgp` against the same `bgpd`.
//!
//! Topology (dual-stack, IPv6 primary): BIRD peers r1 (AS 65011) and r2 (AS 65012), each announcing one IPv4
//! and one IPv6 prefix, and a DUT router (AS 65001) peering with both over IPv6 carrying both families (IPv4
//! with RFC 8950 next hops), accepting everything. The DUT runs `bgpd` first, then, in the same namespace with
//! the same addresses, router-id and neighbours, gobgpd; the same commands run against each.
//!
//! Masked everywhere: elapsed time only, every `HH:MM:SS` token (the `Age` and `Up/Down` columns, the `up for`
//! of `gobgp neighbor ADDR`) becomes `<time>`. In `gobgp neighbor ADDR` alone, the known differences listed at
//! [`without_known_differences`] are taken out (and printed); every capability either side advertised or
//! received is compared, except the hostname capability gobgpd advertises.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use xcluster_tests::bgp::{AfiSafi, Bird, Gobgp, Neighbor, RouterSpec};
use xcluster_tests::{
    AddressPlan, Family, Router, TopologyBuilder, exec_in, require_root_and_tools, wait_until,
};

use super::bgpd_common::{Bgpd, BgpdConfig, BgpdNeighbor, SESSION_TIMEOUT, require_bgpd};
use super::e2e_router::fairlead_bin;

/// Both DUT daemons serve their gRPC API on this loopback port of the DUT namespace.
const API_PORT: u16 = 50051;
const DUT_ASN: u32 = 65001;
const PLAN: AddressPlan = AddressPlan::DualStackV6Primary;

/// Each BIRD peer's own AS.
fn peer_asn(r: &Router) -> u32 {
    65010 + u32::from(r.index)
}

/// The prefix `gobgp global rib -a ipv6 add/del` installs and removes.
const ADDED: &str = "fd00:98::/48";

/// Router `index`'s announced prefixes: one IPv6, one IPv4.
fn prefixes(index: u8) -> Vec<IpNet> {
    vec![
        format!("fd00:97:{index}::/48").parse().unwrap(),
        format!("198.18.{}.0/24", 170 + index).parse().unwrap(),
    ]
}

fn addr(r: &Router, family: Family) -> IpAddr {
    r.address(family).expect("router address")
}

/// Replaces elapsed-time tokens (`00:00:12`; a test never lives a day, so no `Nd` prefix) with `<time>`.
fn mask_times(text: &str) -> String {
    let is_time = |w: &str| {
        let parts: Vec<&str> = w.split(':').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    text.lines()
        .map(|line| {
            let mut out = String::new();
            let mut rest = line;
            // Walk token by token, keeping the exact whitespace between tokens.
            while !rest.is_empty() {
                let ws = rest.len() - rest.trim_start().len();
                out.push_str(&rest[..ws]);
                rest = &rest[ws..];
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let word = &rest[..end];
                let trimmed = word.trim_end_matches(',');
                if is_time(trimmed) {
                    out.push_str("<time>");
                    out.push_str(&word[trimmed.len()..]);
                } else {
                    out.push_str(word);
                }
                rest = &rest[end..];
            }
            out.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Capabilities gobgpd advertises and fairlead's bgpd, by design, does not: `fqdn` is GoBGP's own hostname
/// capability (draft-walton-bgp-hostname-capability), which fairlead does not implement. Only the advertised
/// side is a known difference: if the peer sent it, bgpd reports it as received, as gobgpd does.
const GOBGPD_ONLY_ADVERTISED: &[&str] = &["fqdn"];

/// `gobgp neighbor ADDR` with its known differences taken out, each listed in `notes`: the advertised side of
/// [`GOBGPD_ONLY_ADVERTISED`] (an `advertised` block is dropped; `advertised and received` becomes
/// `received` without its `Local:` lines); the Keepalives and Total message counts (they grow with elapsed
/// time, like the uptime); and the Sent count of Updates (bgpd sends an End-of-RIB per family, RFC 4724
/// section 2, which gobgpd sends only when graceful restart is negotiated).
fn without_known_differences(text: &str, notes: &mut Vec<String>) -> String {
    let mut out = Vec::new();
    // While inside a masked capability block: its indent, and whether only its `Local:` part is dropped.
    let mut masking: Option<(usize, bool)> = None;
    let mut in_local = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some((level, local_only)) = masking {
            if indent > level {
                let t = line.trim();
                if local_only {
                    if t.starts_with("Local:") {
                        in_local = true;
                    } else if t.starts_with("Remote:") {
                        in_local = false;
                    }
                    if !in_local {
                        out.push(line.to_owned());
                        continue;
                    }
                }
                notes.push(format!("dropped: {t}"));
                continue;
            }
            masking = None;
            in_local = false;
        }
        let (name, support) = line.trim().split_once(":\t").unwrap_or_default();
        if GOBGPD_ONLY_ADVERTISED.contains(&name) {
            match support {
                "advertised" => {
                    notes.push(format!("dropped: {}", line.trim()));
                    masking = Some((indent, false));
                    continue;
                }
                "advertised and received" => {
                    notes.push(format!("advertised masked: {}", line.trim()));
                    out.push(format!("{}{name}:\treceived", &line[..indent]));
                    masking = Some((indent, true));
                    continue;
                }
                _ => {}
            }
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        match cols.as_slice() {
            ["Keepalives:" | "Total:", ..] => {
                notes.push(format!("counts masked: {}", line.trim()));
                out.push(format!("{}{} <n> <n>", &line[..indent], cols[0]));
            }
            ["Updates:", _sent, rcvd] => {
                notes.push(format!("sent count masked: {}", line.trim()));
                out.push(format!("{}Updates: <n> {rcvd}", &line[..indent]));
            }
            _ => out.push(line.to_owned()),
        }
    }
    out.join("\n")
}

/// Both outputs side by side, one line each, `!` marking differing lines.
fn side_by_side(left: &str, right: &str) -> String {
    let (l, r): (Vec<&str>, Vec<&str>) = (left.lines().collect(), right.lines().collect());
    let width = l.iter().map(|s| s.len()).max().unwrap_or(0).max(10);
    let mut out = String::new();
    for i in 0..l.len().max(r.len()) {
        let (a, b) = (
            l.get(i).copied().unwrap_or(""),
            r.get(i).copied().unwrap_or(""),
        );
        let mark = if a == b { ' ' } else { '!' };
        out.push_str(&format!("{mark} {a:<width$} | {b}\n"));
    }
    out
}

/// `None` when the rows agree (elapsed times masked), else both outputs side by side.
fn differ(
    what: &str,
    left_name: &str,
    left: &str,
    right_name: &str,
    right: &str,
) -> Option<String> {
    let (l, r) = (mask_times(left), mask_times(right));
    (l != r).then(|| {
        format!(
            "{what}: rows differ (elapsed times masked)\n  {left_name} | {right_name}\n{}",
            side_by_side(&l, &r)
        )
    })
}

fn gobgp(netns: &str, args: &[&str]) -> String {
    let port = API_PORT.to_string();
    let mut cmd = vec!["gobgp", "-u", "127.0.0.1", "-p", &port];
    cmd.extend_from_slice(args);
    exec_in(netns, &cmd).unwrap_or_else(|e| panic!("gobgp {args:?}: {e}"))
}

fn fairlead(netns: &str, args: &[&str]) -> String {
    let bin = fairlead_bin();
    let bin = bin.to_string_lossy();
    let api = format!("127.0.0.1:{API_PORT}");
    let mut cmd = vec![bin.as_ref()];
    cmd.extend_from_slice(args);
    cmd.extend_from_slice(&["--api-address", &api]);
    exec_in(netns, &cmd).unwrap_or_else(|e| panic!("fairlead {args:?}: {e}"))
}

/// Prefixes in the DUT's Loc-RIB of `afi` as `gobgp -j` reports them.
fn rib_prefixes(netns: &str, afi: &str) -> Vec<String> {
    let port = API_PORT.to_string();
    let out = exec_in(
        netns,
        &[
            "gobgp",
            "-u",
            "127.0.0.1",
            "-p",
            &port,
            "-j",
            "global",
            "rib",
            "-a",
            afi,
        ],
    )
    .unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&out) {
        Ok(serde_json::Value::Object(m)) => {
            let mut v: Vec<String> = m.keys().cloned().collect();
            v.sort();
            v
        }
        _ => Vec::new(),
    }
}

/// Waits until both sessions are up and the DUT holds every peer prefix, checked with `gobgp` itself.
fn wait_converged(netns: &str, peers: &[&Router], what: &str) {
    let mut want: Vec<String> = peers
        .iter()
        .flat_map(|p| prefixes(p.index))
        .map(|p| p.to_string())
        .collect();
    want.sort();
    let mut last = String::new();
    wait_until(
        &format!("{what}: both sessions up, all peer prefixes in the RIB"),
        SESSION_TIMEOUT,
        Duration::from_millis(250),
        || {
            let mut got = rib_prefixes(netns, "ipv6");
            got.extend(rib_prefixes(netns, "ipv4"));
            got.sort();
            let port = API_PORT.to_string();
            let neigh = exec_in(
                netns,
                &["gobgp", "-u", "127.0.0.1", "-p", &port, "neighbor"],
            )
            .unwrap_or_default();
            last = format!("{got:?}\n{neigh}");
            got == want && neigh.matches("Establ").count() == peers.len()
        },
    )
    .unwrap_or_else(|e| panic!("{e}; last: {last}"));
}

/// The outputs of every compared command against the daemon in `netns`, in order, keyed by the command line.
fn collect(netns: &str, peer: IpAddr) -> Vec<(String, String)> {
    let p = peer.to_string();
    let reads: Vec<Vec<&str>> = vec![
        vec!["global"],
        vec!["neighbor"],
        vec!["neighbor", &p],
        vec!["global", "rib", "-a", "ipv4"],
        vec!["global", "rib", "-a", "ipv6"],
        vec!["neighbor", &p, "adj-in", "-a", "ipv6"],
    ];
    let mut out: Vec<(String, String)> = reads
        .iter()
        .map(|a| (a.join(" "), gobgp(netns, a)))
        .collect();
    // add, then the RIB with it; del, then the RIB without it.
    let add = ["global", "rib", "-a", "ipv6", "add", ADDED];
    out.push((add.join(" "), gobgp(netns, &add)));
    let mut with = String::new();
    wait_until(
        &format!("{ADDED} in the RIB after add"),
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            with = gobgp(netns, &["global", "rib", "-a", "ipv6"]);
            with.contains(ADDED)
        },
    )
    .unwrap_or_else(|e| panic!("{e}; last: {with}"));
    out.push(("global rib -a ipv6 (after add)".into(), with));
    let del = ["global", "rib", "-a", "ipv6", "del", ADDED];
    out.push((del.join(" "), gobgp(netns, &del)));
    let mut without = String::new();
    wait_until(
        &format!("{ADDED} gone after del"),
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            without = gobgp(netns, &["global", "rib", "-a", "ipv6"]);
            !without.contains(ADDED)
        },
    )
    .unwrap_or_else(|e| panic!("{e}; last: {without}"));
    out.push(("global rib -a ipv6 (after del)".into(), without));
    out
}

#[test]
fn gobgp_cli_same_rows_against_bgpd_and_gobgpd() {
    if !require_root_and_tools(&["ip", "bird", "birdc", "gobgpd", "gobgp"])
        || require_bgpd().is_none()
    {
        return;
    }
    let topo = TopologyBuilder::new(PLAN)
        .router("r1", &[1])
        .router("r2", &[1])
        .router("dut", &[1])
        .build()
        .expect("build topology");
    let g = topo.guard();
    let (r1, r2, dut) = (
        topo.router("r1").unwrap(),
        topo.router("r2").unwrap(),
        topo.router("dut").unwrap(),
    );
    let families = [AfiSafi::Ipv4Unicast, AfiSafi::Ipv6Unicast];
    let _birds: Vec<Bird> = [r1, r2]
        .iter()
        .map(|r| {
            let mut s = RouterSpec::new(r.router_id, peer_asn(r))
                .listen(addr(r, Family::V6))
                .listen(addr(r, Family::V4))
                .neighbor(
                    Neighbor::new(addr(dut, Family::V6), DUT_ASN)
                        .families(&families)
                        .extended_next_hop(),
                );
            for p in prefixes(r.index) {
                s = s.announce(p);
            }
            Bird::start(g, &r.netns, &format!("bird-{}", r.name), &s).expect("start bird")
        })
        .collect();
    let peer1 = addr(r1, Family::V6);

    // 1. fairlead's bgpd on the DUT.
    let neighbors = [r1, r2]
        .iter()
        .map(|r| {
            let mut n = BgpdNeighbor::new(
                addr(r, Family::V6),
                peer_asn(r),
                &["ipv4-unicast", "ipv6-unicast"],
            );
            n.extended_next_hop = true;
            n
        })
        .collect();
    let config = BgpdConfig {
        asn: DUT_ASN,
        router_id: dut.router_id,
        listen: vec![addr(dut, Family::V6), addr(dut, Family::V4)],
        neighbors,
        originate: Vec::new(),
        grpc_port: Some(API_PORT),
    };
    let bgpd = Bgpd::start(g, &dut.netns, "bgpd-dut", &config);
    wait_converged(&dut.netns, &[r1, r2], "bgpd");
    // Let ages tick so the time columns are not all zero.
    std::thread::sleep(Duration::from_secs(2));
    let from_bgpd = collect(&dut.netns, peer1);

    // fairlead's own CLI against the same bgpd.
    let mut failures = Vec::new();
    let p1 = peer1.to_string();
    for (fl_args, gb_args) in [
        (vec!["neighbor"], vec!["neighbor"]),
        (vec!["neighbor", p1.as_str()], vec!["neighbor", p1.as_str()]),
        (
            vec!["global", "rib", "-a", "ipv6"],
            vec!["global", "rib", "-a", "ipv6"],
        ),
    ] {
        let (mut fl, mut gb) = (fairlead(&dut.netns, &fl_args), gobgp(&dut.netns, &gb_args));
        if fl_args.len() == 2 {
            // Same daemon: only the counters that tick between the two calls are masked.
            fl = without_known_differences(&fl, &mut Vec::new());
            gb = without_known_differences(&gb, &mut Vec::new());
        }
        let what = format!("fairlead {} vs gobgp against bgpd", fl_args.join(" "));
        match differ(&what, "fairlead", &fl, "gobgp", &gb) {
            Some(d) => failures.push(d),
            None => eprintln!("{what}: same rows ({} lines)", gb.lines().count()),
        }
    }

    // 2. gobgpd, configured the same, in the same namespace (same addresses), fed by the same BIRDs.
    g.stop(bgpd.pid).expect("stop bgpd");
    let mut spec = RouterSpec::new(dut.router_id, DUT_ASN)
        .listen(addr(dut, Family::V6))
        .listen(addr(dut, Family::V4));
    for r in [r1, r2] {
        spec = spec.neighbor(
            Neighbor::new(addr(r, Family::V6), peer_asn(r))
                .families(&families)
                .extended_next_hop(),
        );
    }
    let _gobgpd = Gobgp::start(g, &dut.netns, "gobgpd-dut", &spec).expect("start gobgpd");
    wait_converged(&dut.netns, &[r1, r2], "gobgpd");
    std::thread::sleep(Duration::from_secs(2));
    let from_gobgpd = collect(&dut.netns, peer1);

    assert_eq!(from_bgpd.len(), from_gobgpd.len());
    for ((cmd, b), (_, gd)) in from_bgpd.iter().zip(&from_gobgpd) {
        if *cmd == format!("neighbor {peer1}") {
            continue; // compared below, its known differences taken out
        }
        let what = format!("gobgp {cmd}: bgpd vs gobgpd");
        // `add` and `del` print nothing on success (a failure is a non-zero exit, caught by `gobgp()`).
        let silent = cmd.contains(" add ") || cmd.contains(" del ");
        if silent != b.trim().is_empty() {
            failures.push(format!("{what}: unexpected output from bgpd: {b:?}"));
        }
        match differ(&what, "fairlead bgpd", b, "gobgpd", gd) {
            Some(d) => failures.push(d),
            None => eprintln!("{what}: same rows ({} lines)", b.lines().count()),
        }
    }
    // `gobgp neighbor ADDR`: the same rows once the known differences are out.
    let detail = |v: &[(String, String)]| {
        v.iter()
            .find(|(c, _)| *c == format!("neighbor {peer1}"))
            .map(|(_, o)| o.clone())
            .expect("neighbor ADDR output")
    };
    // What BIRD sends and bgpd once did not report: present in bgpd's own output, not only equal to gobgpd's.
    let bgpd_detail = detail(&from_bgpd);
    for want in [
        "extended-nexthop:\tadvertised and received",
        "Local:  nlri: ipv4-unicast, nexthop: ipv6",
        "Remote: nlri: ipv4-unicast, nexthop: ipv6",
        "graceful-restart:\treceived",
        "enhanced-route-refresh:\treceived",
        "long-lived-graceful-restart:\treceived",
        "4-octet-as:\tadvertised and received",
        "route-refresh:\tadvertised and received",
    ] {
        if !bgpd_detail.contains(want) {
            failures.push(format!(
                "gobgp neighbor {peer1} against bgpd lacks {want:?}:\n{bgpd_detail}"
            ));
        }
    }
    let (mut notes_b, mut notes_g) = (Vec::new(), Vec::new());
    let b = without_known_differences(&detail(&from_bgpd), &mut notes_b);
    let gd = without_known_differences(&detail(&from_gobgpd), &mut notes_g);
    let what = format!("gobgp neighbor {peer1}: bgpd vs gobgpd (known differences out)");
    match differ(&what, "fairlead bgpd", &b, "gobgpd", &gd) {
        Some(d) => failures.push(d),
        None => eprintln!(
            "{what}: same rows ({} lines)\n  bgpd: {notes_b:?}\n  gobgpd: {notes_g:?}",
            b.lines().count()
        ),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
