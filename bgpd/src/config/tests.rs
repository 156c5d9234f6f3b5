//! Config parsing and validation: every key, and errors naming key and line.

use super::*;

const FULL: &str = r#"
[global]
asn = 65001
router_id = "198.18.0.1"
listen_addresses = ["fd00::1", "198.18.0.1"]
listen_port = 1179
cluster_id = "198.18.0.100"
log_format = "json"

[[neighbor]]
address = "fd00::2"
remote_asn = 65002
families = ["ipv6-unicast", "ipv4-unicast"]
extended_next_hop = true
password = "s3cret"
ttl_security = 1
hold_time = 30
graceful_restart = { restart_time = 90 }
local_address = "fd00::1"
next_hop_ipv4 = "198.18.0.1"

[neighbor.import]
max_prefix = 1000
max_prefix_action = "warn"
[[neighbor.import.statement]]
action = "deny"
prefixes = [{ prefix = "fd00:99::/32", ge = 48, le = 64 }]
[[neighbor.import.statement]]
communities_any = ["65000:1"]
local_pref = 200

[neighbor.export]
default = "deny"
[[neighbor.export.statement]]
family = "ipv4-unicast"
prefixes = [{ prefix = "198.18.160.0/19", le = 32 }]
add_communities = ["65001:7"]
prepend = 2

[[neighbor]]
address = "fe80::2%eth0"
remote_asn = 65001
passive = true
route_reflector_client = true
next_hop_self = true
multihop_ttl = 3
families = ["ipv6-unicast"]

[[originate]]
prefix = "fd00:99:1::/48"
communities = ["65001:100"]

[[originate]]
prefix = "198.18.161.0/24"
next_hop = "fd00::1"
"#;

#[test]
fn full_example_parses_into_typed_values() {
    let c = Config::parse(FULL).unwrap();
    assert_eq!(c.global.asn, Asn(65001));
    assert_eq!(c.global.listen_port, 1179);
    assert_eq!(c.global.log_format, LogFormat::Json);
    assert_eq!(c.speaker_config().listen.len(), 2);
    let n = &c.neighbors[0];
    assert_eq!(n.ttl, TtlMode::Gtsm { hops: 1 });
    assert_eq!(n.graceful_restart, Some(90));
    assert_eq!(n.line, 10);
    assert_eq!(n.import.statements.len(), 2);
    assert_eq!(n.export.default_action, Action::Deny);
    assert_eq!(n.max_prefix.unwrap().action, MaxPrefixAction::Warn);
    let m = &c.neighbors[1];
    assert_eq!(m.address.interface.as_deref(), Some("eth0"));
    assert_eq!(m.ttl, TtlMode::Multihop(3));
    assert_eq!(
        c.originate[0].communities,
        vec![Community(65001 << 16 | 100)]
    );

    let neighbor = n.to_neighbor(&c.speaker_config(), None);
    assert_eq!(neighbor.session.fsm.hold_time, 30);
    assert_eq!(
        neighbor.session.fsm.extended_next_hop,
        vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]
    );
    assert_eq!(neighbor.session.md5_key.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!(neighbor.local_ipv4, Some("198.18.0.1".parse().unwrap()));
    let ll = m.to_neighbor(&c.speaker_config(), Some(7));
    assert_eq!(ll.id().scope_id, 7);
    assert!(ll.rib.route_reflector_client && ll.rib.next_hop_self && ll.session.fsm.passive);
}

#[test]
fn defaults() {
    let c = Config::parse(
        "[global]\nasn = 4200000000\nrouter_id = \"198.18.0.1\"\n[[neighbor]]\naddress = \"198.18.0.2\"\nremote_asn = 65002\n",
    )
    .unwrap();
    assert_eq!(c.global.listen_port, 179);
    assert_eq!(c.global.listen_addresses.len(), 2);
    let n = &c.neighbors[0];
    assert_eq!(n.hold_time, 90);
    assert_eq!(
        n.families,
        vec![AddressFamily::Ipv6Unicast, AddressFamily::Ipv4Unicast]
    );
    assert_eq!(n.import, Policy::default());
}

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

const G: &str = "[global]\nasn = 65001\nrouter_id = \"198.18.0.1\"\n";

#[test]
fn errors_name_key_and_line() {
    // Wrong forms are reported by the TOML parser with line and the key's value.
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::zz\"\nremote_asn = 1\n"
    ));
    assert!(
        e.contains("line 5") && e.contains("not an IP address"),
        "{e}"
    );
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fe80::1\"\nremote_asn = 1\n"
    ));
    assert!(e.contains("name its interface"), "{e}");
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::1%eth0\"\nremote_asn = 1\n"
    ));
    assert!(e.contains("only meaningful for a link-local"), "{e}");
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 0\n"
    ));
    assert!(e.contains("line 6") && e.contains("reserved"), "{e}");
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 2\nfoo = 1\n"
    ));
    assert!(e.contains("unknown field") && e.contains("foo"), "{e}");
    let e = err(&format!(
        "{G}[[originate]]\nprefix = \"fd00::/8\"\ncommunities = [\"1:70000\"]\n"
    ));
    assert!(e.contains("community"), "{e}");
    let e = err("[global]\nasn = 65001\n");
    assert!(e.contains("router_id"), "{e}");
    // Semantic errors carry key and line of their table.
    let e = err(&format!(
        "{G}\n[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 2\nhold_time = 2\n"
    ));
    assert_eq!(
        e,
        "line 5: neighbor[0].hold_time: 2: must be 0 or at least 3 (RFC 4271 section 4.2)"
    );
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 2\n[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 3\n"
    ));
    assert!(e.starts_with("line 7: neighbor[1].address:"), "{e}");
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 2\nmultihop_ttl = 2\nttl_security = 1\n"
    ));
    assert!(e.contains("neighbor[0].ttl_security"), "{e}");
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"198.18.0.2\"\nremote_asn = 2\nextended_next_hop = true\n"
    ));
    assert!(e.contains("neighbor[0].extended_next_hop"), "{e}");
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 2\n[[neighbor.import.statement]]\nprefixes = [{{ prefix = \"fd00::/16\", ge = 8 }}]\n"
    ));
    assert!(
        e.contains("neighbor[0].import.statement[0].prefixes[0]"),
        "{e}"
    );
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 2\n[neighbor.import]\nmax_prefix = 0\n"
    ));
    assert!(e.contains("neighbor[0].import.max_prefix"), "{e}");
    let e = err(&format!("{G}[[originate]]\nprefix = \"fd00::1/64\"\n"));
    assert!(
        e.starts_with("line 4: originate[0].prefix") && e.contains("host bits"),
        "{e}"
    );
    let e = err(&format!(
        "{G}[[originate]]\nprefix = \"fd00::/64\"\nnext_hop = \"198.18.0.1\"\n"
    ));
    assert!(e.contains("never gets an IPv4 next hop"), "{e}");
    let e = err(&format!(
        "{G}[[neighbor]]\naddress = \"fd00::1\"\nremote_asn = 2\nlocal_address = \"198.18.0.1\"\n"
    ));
    assert!(e.contains("neighbor[0].local_address"), "{e}");
}

#[test]
fn examples_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "examples missing");
}
