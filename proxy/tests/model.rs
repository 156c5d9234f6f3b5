//! proxy::model on YAML fixtures: one test (or more) per kube-proxy rule, each family layout, and the diff.
//!
//! Fixtures are `fixtures/model/*.yaml`; goldens `fixtures/model/*.golden` (`FAIRLEAD_BLESS=1` rewrites them).
//! Every test states its key facts explicitly; goldens only catch the rest.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::*;
use ipnet::IpNet;
use proxy::model::{
    DesiredState, IpFamily, IpvsState, NodePortAddresses, Operation, Persistence, Protocol,
    Scheduler, VirtualServerKind, Warning, diff,
};

/// The virtual servers of the families fixture in one family: ClusterIP, ExternalIP, LB and NodePort (all three
/// protocols), each with only that family's endpoints (the ports translated by name).
fn assert_family(state: &DesiredState, v: &Family) {
    for (port, proto, target) in [
        (80, Protocol::Tcp, 8080),
        (53, Protocol::Udp, 5353),
        (9000, Protocol::Sctp, 9000),
    ] {
        let all: Vec<String> = [v.a1, v.a2, v.b1]
            .iter()
            .map(|a| sa_of(a, target))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for address in [v.cluster_ip, v.external_ip, v.lb_ip] {
            assert_eq!(
                dests(state, &key(address, port, proto)),
                all,
                "{address} {proto}"
            );
        }
        let node_port = match proto {
            Protocol::Tcp => 30080,
            Protocol::Udp => 30053,
            Protocol::Sctp => 30900,
        };
        assert_eq!(dests(state, &key(v.node, node_port, proto)), all);
    }
    for address in [v.cluster_ip, v.external_ip, v.lb_ip] {
        assert!(state.vips.contains(&ip(address)), "{address} not a VIP");
    }
    assert!(!state.vips.contains(&ip(v.node)));
    assert!(state.node_port_addresses.contains(&ip(v.node)));
    let kind = state.origins[&tcp(v.lb_ip, 80)].kind;
    assert_eq!(kind, VirtualServerKind::LoadBalancer);
    assert_eq!(
        state.origins[&tcp(v.node, 30080)].kind,
        VirtualServerKind::NodePort
    );
}

/// No virtual server, VIP or NodePort address of the family.
fn assert_no_family(state: &DesiredState, family: IpFamily) {
    assert!(
        state
            .ipvs
            .virtual_servers
            .keys()
            .all(|k| k.family() != family),
        "{family:?} virtual servers present:\n{}",
        render(state)
    );
    match family {
        IpFamily::Ipv4 => {
            assert!(state.vips.ipv4.is_empty());
            assert!(state.node_port_addresses.ipv4.is_empty());
        }
        IpFamily::Ipv6 => {
            assert!(state.vips.ipv6.is_empty());
            assert!(state.node_port_addresses.ipv6.is_empty());
        }
    }
}

struct Family {
    cluster_ip: &'static str,
    external_ip: &'static str,
    lb_ip: &'static str,
    node: &'static str,
    a1: &'static str,
    a2: &'static str,
    b1: &'static str,
}

const V6: Family = Family {
    cluster_ip: "fd00:96::10",
    external_ip: "fd00:ee::1",
    lb_ip: "fd00:1b::1",
    node: "fd00:1::a",
    a1: "fd00:244:a::5",
    a2: "fd00:244:a::6",
    b1: "fd00:244:b::5",
};

const V4: Family = Family {
    cluster_ip: "198.19.96.10",
    external_ip: "198.19.200.1",
    lb_ip: "198.19.250.1",
    node: "198.19.1.10",
    a1: "198.18.10.5",
    a2: "198.18.10.6",
    b1: "198.18.11.5",
};

fn sa_of(address: &str, port: u16) -> String {
    std::net::SocketAddr::new(ip(address), port).to_string()
}

mod families {
    use super::*;

    #[test]
    fn dual_stack_ipv6_primary() {
        let state = load("families-ipv6-primary").desired(&node_dual());
        assert_family(&state, &V6);
        assert_family(&state, &V4);
        // 3 ports x (ClusterIP, ExternalIP, LB, NodePort) x 2 families.
        assert_eq!(state.ipvs.virtual_servers.len(), 24);
        assert!(state.warnings.is_empty(), "{:?}", state.warnings);
        golden("families-ipv6-primary", &render(&state));
    }

    #[test]
    fn dual_stack_ipv4_primary() {
        let state = load("families-ipv4-primary").desired(&node_dual());
        assert_family(&state, &V4);
        assert_family(&state, &V6);
        assert_eq!(state.ipvs.virtual_servers.len(), 24);
        // The primary family changes nothing but the order of clusterIPs: the same state as IPv6-primary.
        let other = load("families-ipv6-primary").desired(&node_dual());
        assert_eq!(state, other);
        golden("families-ipv4-primary", &render(&state));
    }

    #[test]
    fn ipv6_only() {
        let state = load("families-ipv6-only").desired(&node_dual());
        assert_family(&state, &V6);
        // The IPv4 slice of the same Service is ignored, and no IPv4 NodePort is opened.
        assert_no_family(&state, IpFamily::Ipv4);
        assert_eq!(state.ipvs.virtual_servers.len(), 12);
        // On an IPv6-only node the same.
        assert_eq!(load("families-ipv6-only").desired(&node_ipv6()), state);
        golden("families-ipv6-only", &render(&state));
    }

    #[test]
    fn ipv4_only() {
        let state = load("families-ipv4-only").desired(&node_dual());
        assert_family(&state, &V4);
        assert_no_family(&state, IpFamily::Ipv6);
        assert_eq!(state.ipvs.virtual_servers.len(), 12);
        assert_eq!(load("families-ipv4-only").desired(&node_ipv4()), state);
        golden("families-ipv4-only", &render(&state));
    }

    #[test]
    fn dual_stack_service_on_single_stack_node_has_no_node_ports_of_the_missing_family() {
        let state = load("families-ipv6-primary").desired(&node_ipv6());
        // ClusterIPs of both families are still served (pods of both families may use them).
        assert!(state.vips.contains(&ip(V4.cluster_ip)));
        assert!(state.node_port_addresses.ipv4.is_empty());
        assert!(
            !state
                .ipvs
                .virtual_servers
                .keys()
                .any(|k| k.family() == IpFamily::Ipv4 && k.port == 30080)
        );
    }

    #[test]
    fn endpoints_of_the_other_family_never_reach_a_virtual_server() {
        for fixture in [
            "families-ipv6-primary",
            "families-ipv4-primary",
            "families-ipv6-only",
            "families-ipv4-only",
        ] {
            let state = load(fixture).desired(&node_dual());
            for (key, server) in &state.ipvs.virtual_servers {
                for destination in server.destinations.keys() {
                    assert_eq!(
                        destination.is_ipv6(),
                        key.address.is_ipv6(),
                        "{fixture}: {key} -> {destination}"
                    );
                }
            }
        }
    }
}

mod node_ports {
    use super::*;

    fn node_with(filters: &[&str]) -> proxy::model::NodeContext {
        let mut n = node(&[
            "fd00:1::a",
            "fd00:2::a",
            "198.19.1.10",
            "198.19.2.10",
            // A VIP fairlead already put on its dummy interface, read back with the node's addresses.
            "fd00:96::10",
        ]);
        n.node_port_addresses =
            NodePortAddresses::only(filters.iter().map(|f| f.parse::<IpNet>().unwrap()));
        n
    }

    fn node_port_hosts(state: &DesiredState) -> Vec<String> {
        state
            .ipvs
            .virtual_servers
            .keys()
            .filter(|k| k.port == 30080)
            .map(|k| k.address.to_string())
            .collect()
    }

    #[test]
    fn all_addresses_but_the_dummy_vips_when_unfiltered() {
        let state = load("families-ipv6-primary").desired(&node_with(&[]));
        assert_eq!(
            node_port_hosts(&state),
            ["198.19.1.10", "198.19.2.10", "fd00:1::a", "fd00:2::a"]
        );
    }

    #[test]
    fn filters_are_per_family() {
        // Only an IPv4 filter: IPv4 is filtered, IPv6 still takes all addresses (kube-proxy's per-family rule).
        let state = load("families-ipv6-primary").desired(&node_with(&["198.19.2.0/24"]));
        assert_eq!(
            node_port_hosts(&state),
            ["198.19.2.10", "fd00:1::a", "fd00:2::a"]
        );
        assert_eq!(
            state
                .node_port_addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            ["198.19.2.10", "fd00:1::a", "fd00:2::a"]
        );
    }

    #[test]
    fn single_address_filters() {
        let filters = [IpNet::from(ip("fd00:2::a")), IpNet::from(ip("198.19.1.10"))];
        let mut n = node_with(&[]);
        n.node_port_addresses = NodePortAddresses::only(filters);
        let state = load("families-ipv6-primary").desired(&n);
        assert_eq!(node_port_hosts(&state), ["198.19.1.10", "fd00:2::a"]);
    }

    #[test]
    fn filter_matching_nothing_opens_no_node_ports_of_that_family() {
        let state = load("families-ipv6-primary").desired(&node_with(&["fd00:99::/64"]));
        assert_eq!(node_port_hosts(&state), ["198.19.1.10", "198.19.2.10"]);
        assert!(state.node_port_addresses.ipv6.is_empty());
    }

    #[test]
    fn a_filter_naming_a_vip_is_honoured() {
        let state = load("families-ipv6-primary").desired(&node_with(&["fd00:96::/64"]));
        assert_eq!(
            node_port_hosts(&state),
            ["198.19.1.10", "198.19.2.10", "fd00:96::10"]
        );
    }
}

mod endpoint_conditions {
    use super::*;

    #[test]
    fn ready_when_unset_and_ready_only_when_any_is_ready() {
        let state = load("endpoints").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("fd00:96::20", 80)),
            ["[fd00:244:a::5]:8080", "[fd00:244:b::1]:8080"]
        );
        golden("endpoints", &render(&state));
    }

    #[test]
    fn serving_terminating_fallback_when_nothing_is_ready() {
        let state = load("endpoints").desired(&node_dual());
        // Serving and terminating ones only; not the non-serving nor the not-ready-not-terminating one.
        assert_eq!(
            dests(&state, &tcp("fd00:96::21", 80)),
            ["[fd00:244:a::12]:8080", "[fd00:244:b::11]:8080"]
        );
    }

    #[test]
    fn cluster_and_local_sets_fall_back_separately() {
        // ETP Local: this node only has a terminating endpoint, another node a ready one. The ClusterIP uses the
        // ready one; the external addresses use the local terminating one rather than nothing.
        let state = load("policies").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("fd00:96::43", 80)),
            ["[fd00:244:b::9]:8080"]
        );
        assert_eq!(
            dests(&state, &tcp("fd00:1b::43", 80)),
            ["[fd00:244:a::9]:8080"]
        );
        assert_eq!(
            dests(&state, &tcp("fd00:1::a", 30043)),
            ["[fd00:244:a::9]:8080"]
        );
    }

    #[test]
    fn ports_match_by_name_and_protocol() {
        let state = load("endpoints").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("198.19.96.22", 80)),
            ["198.18.11.1:8080"]
        );
        // Unset protocol on both sides is TCP.
        assert_eq!(
            dests(&state, &tcp("198.19.96.22", 9090)),
            ["198.18.11.1:9100"]
        );
        // The slice's `dns` port is TCP, the Service's UDP: no destination, but the virtual server exists.
        assert!(dests(&state, &key("198.19.96.22", 53, Protocol::Udp)).is_empty());
        assert!(
            !state
                .ipvs
                .virtual_servers
                .contains_key(&tcp("198.19.96.22", 53))
        );
        // The slice's `admin` port has no ServicePort: nothing listens for it.
        assert!(
            state
                .ipvs
                .virtual_servers
                .values()
                .all(|vs| vs.destinations.keys().all(|d| d.port() != 7000))
        );
        // Unnamed ServicePort and unnamed EndpointPort match ("" == "").
        assert_eq!(
            dests(&state, &tcp("198.19.96.23", 80)),
            ["198.18.11.2:8080"]
        );
    }

    #[test]
    fn fqdn_slices_are_ignored_without_warning() {
        let state = load("endpoints").desired(&node_dual());
        assert!(
            !state
                .warnings
                .iter()
                .any(|w| w.to_string().contains("ports-fqdn"))
        );
        assert_eq!(dests(&state, &tcp("198.19.96.22", 80)).len(), 1);
    }

    #[test]
    fn duplicates_across_slices_and_first_address_only() {
        let state = load("endpoints").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("fd00:96::24", 80)),
            [
                "[fd00:244:b::21]:8080",
                "[fd00:244:b::22]:8080",
                "[fd00:244:b::23]:8080"
            ]
        );
    }

    #[test]
    fn invalid_data_is_skipped_with_a_warning_naming_the_object() {
        let state = load("endpoints").desired(&node_dual());
        // The valid endpoint of the slice survives its invalid neighbours.
        assert_eq!(
            dests(&state, &tcp("fd00:96::25", 80)),
            ["[fd00:244:b::31]:8080"]
        );
        let warnings: Vec<String> = state.warnings.iter().map(ToString::to_string).collect();
        let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
        assert!(
            has("EndpointSlice app/invalid-1: invalid endpoints.addresses \"not-an-address\""),
            "{warnings:#?}"
        );
        assert!(
            has("EndpointSlice app/invalid-1: invalid endpoints.addresses \"198.18.11.3\""),
            "{warnings:#?}"
        );
        assert!(
            has("EndpointSlice app/invalid-1: invalid ports.port \"0\""),
            "{warnings:#?}"
        );
        assert!(
            has("service app/invalid: invalid port \"ping\""),
            "{warnings:#?}"
        );
        assert!(
            has("service app/bad-cluster-ip: invalid spec.clusterIPs \"fd00:96::zz\""),
            "{warnings:#?}"
        );
        // clusterIPs disagreeing with ipFamilies by index: both rejected, the Service is not served.
        assert!(
            has("service app/wrong-family: invalid spec.clusterIPs \"198.19.96.26\""),
            "{warnings:#?}"
        );
        assert!(!state.vips.contains(&ip("fd00:96::26")));
        assert_eq!(state.warnings.len(), 7, "{warnings:#?}");
    }
}

mod topology {
    use super::*;

    #[test]
    fn zone_hints_with_topology_mode_auto() {
        let state = load("topology").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("fd00:96::30", 80)),
            ["[fd00:244:b::1]:8080", "[fd00:244:d::3]:8080"]
        );
        golden("topology", &render(&state));
    }

    #[test]
    fn zone_hints_with_traffic_distribution_prefer_close() {
        let state = load("topology").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("198.19.96.31", 80)),
            ["198.18.11.1:8080"]
        );
    }

    #[test]
    fn hints_ignored_when_the_service_does_not_enable_them() {
        let state = load("topology").desired(&node_dual());
        assert_eq!(dests(&state, &tcp("fd00:96::32", 80)).len(), 2);
    }

    #[test]
    fn hints_ignored_when_a_ready_endpoint_has_none() {
        let state = load("topology").desired(&node_dual());
        assert_eq!(dests(&state, &tcp("fd00:96::33", 80)).len(), 2);
    }

    #[test]
    fn hints_ignored_when_none_is_for_this_zone() {
        let state = load("topology").desired(&node_dual());
        assert_eq!(dests(&state, &tcp("fd00:96::34", 80)).len(), 2);
    }

    #[test]
    fn hints_ignored_when_the_node_has_no_zone() {
        let mut n = node_dual();
        n.zone = None;
        let state = load("topology").desired(&n);
        assert_eq!(dests(&state, &tcp("fd00:96::30", 80)).len(), 3);
        assert_eq!(dests(&state, &tcp("198.19.96.31", 80)).len(), 2);
    }

    #[test]
    fn node_hints_first_then_zone_hints_per_family() {
        let state = load("topology").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("fd00:96::35", 80)),
            ["[fd00:244:a::1]:8080"]
        );
        // No IPv4 endpoint is hinted for node-a: the zone hints decide.
        assert_eq!(
            dests(&state, &tcp("198.19.96.35", 80)),
            ["198.18.11.1:8080"]
        );
    }

    #[test]
    fn hints_do_not_narrow_the_node_local_set() {
        // internalTrafficPolicy: Local on `zonal`, and this node's endpoint is hinted for another zone: local
        // endpoints are local whatever their hints.
        let mut objects = load("topology");
        objects
            .service_mut("zonal")
            .spec
            .as_mut()
            .unwrap()
            .internal_traffic_policy = Some("Local".into());
        let slice = objects.slice_mut("zonal-1");
        let mut mine = slice.endpoints[1].clone();
        mine.addresses = vec!["fd00:244:a::7".into()];
        mine.node_name = Some("node-a".into());
        slice.endpoints.push(mine);
        let state = objects.desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("fd00:96::30", 80)),
            ["[fd00:244:a::7]:8080"]
        );
    }

    #[test]
    fn terminating_fallback_ignores_hints() {
        // Make every endpoint of `zonal` terminating: the fallback takes them all, hinted for us or not.
        let mut objects = load("topology");
        for ep in &mut objects.slice_mut("zonal-1").endpoints {
            ep.conditions = Some(k8s_openapi::api::discovery::v1::EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(true),
            });
        }
        let state = objects.desired(&node_dual());
        assert_eq!(dests(&state, &tcp("fd00:96::30", 80)).len(), 4);
    }
}

mod traffic_policies {
    use super::*;

    #[test]
    fn internal_local_uses_local_endpoints_only() {
        let state = load("policies").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("fd00:96::40", 80)),
            ["[fd00:244:a::1]:8080"]
        );
        // No IPv4 endpoint on this node: the virtual server exists and has no destinations (traffic dropped).
        assert!(dests(&state, &tcp("198.19.96.40", 80)).is_empty());
        golden("policies", &render(&state));
    }

    #[test]
    fn external_local_uses_local_endpoints_for_external_addresses_only() {
        let state = load("policies").desired(&node_dual());
        let local6 = ["[fd00:244:a::1]:8080", "[fd00:244:a::2]:8080"];
        for external in [
            tcp("fd00:ee::41", 80),
            tcp("fd00:1b::41", 80),
            tcp("fd00:1::a", 30041),
        ] {
            assert_eq!(dests(&state, &external), local6, "{external}");
        }
        assert_eq!(
            dests(&state, &tcp("198.19.250.41", 80)),
            ["198.18.10.1:8080"]
        );
        assert_eq!(
            dests(&state, &tcp("198.19.1.10", 30041)),
            ["198.18.10.1:8080"]
        );
        // The ClusterIP keeps the whole cluster's ready endpoints.
        assert_eq!(
            dests(&state, &tcp("fd00:96::41", 80)),
            [
                "[fd00:244:a::1]:8080",
                "[fd00:244:a::2]:8080",
                "[fd00:244:b::1]:8080"
            ]
        );
        assert_eq!(
            dests(&state, &tcp("198.19.96.41", 80)),
            ["198.18.10.1:8080", "198.18.11.1:8080"]
        );
    }

    #[test]
    fn external_local_without_local_endpoints_keeps_empty_virtual_servers() {
        let state = load("policies").desired(&node_dual());
        assert!(dests(&state, &tcp("198.19.250.42", 80)).is_empty());
        assert!(dests(&state, &tcp("198.19.1.10", 30042)).is_empty());
        assert_eq!(
            dests(&state, &tcp("198.19.96.42", 80)),
            ["198.18.11.2:8080"]
        );
    }

    #[test]
    fn health_check_node_ports_count_local_ready_addresses() {
        let state = load("policies").desired(&node_dual());
        let counts: BTreeMap<u16, (String, usize)> = state
            .health_check_node_ports
            .iter()
            .map(|(p, h)| (*p, (h.service.to_string(), h.local_endpoints)))
            .collect();
        assert_eq!(
            counts,
            BTreeMap::from([
                // Two ready IPv6 addresses on this node, each behind two ports: 2, not 4; the terminating one
                // does not count.
                (32001, ("pol/etp-local".to_string(), 2)),
                (32002, ("pol/etp-local-none".to_string(), 0)),
                (32003, ("pol/etp-local-terminating".to_string(), 0)),
            ])
        );
    }

    #[test]
    fn external_local_applies_to_external_ips_of_a_cluster_ip_service() {
        let state = load("policies").desired(&node_dual());
        assert_eq!(
            dests(&state, &tcp("198.19.200.45", 80)),
            ["198.18.10.45:8080"]
        );
        assert_eq!(dests(&state, &tcp("198.19.96.45", 80)).len(), 2);
        assert!(
            !state
                .health_check_node_ports
                .values()
                .any(|h| h.service.name == "etp-local-external-ip")
        );
    }

    #[test]
    fn node_port_service_with_external_local_has_no_health_check() {
        let state = load("policies").desired(&node_dual());
        assert!(
            !state
                .health_check_node_ports
                .values()
                .any(|h| h.service.name == "etp-local-nodeport")
        );
        assert_eq!(
            dests(&state, &tcp("fd00:1::a", 30044)),
            ["[fd00:244:a::4]:8080"]
        );
        assert_eq!(dests(&state, &tcp("fd00:96::44", 80)).len(), 2);
    }
}

mod settings {
    use super::*;

    fn persistence(state: &DesiredState, key: &proxy::model::VirtualServerKey) -> Option<u32> {
        vs(state, key).persistence.map(|p| p.timeout_seconds)
    }

    #[test]
    fn client_ip_affinity_is_persistence() {
        let state = load("settings").desired(&node_dual());
        assert_eq!(persistence(&state, &tcp("fd00:96::50", 80)), Some(10800));
        assert_eq!(persistence(&state, &tcp("198.19.96.51", 80)), Some(600));
        assert_eq!(persistence(&state, &tcp("fd00:96::53", 80)), None);
        golden("settings", &render(&state));
    }

    #[test]
    fn invalid_affinity_timeout_warns_and_uses_the_default() {
        let state = load("settings").desired(&node_dual());
        assert_eq!(persistence(&state, &tcp("fd00:96::52", 80)), Some(10800));
        assert!(
            state
                .warnings
                .contains(&Warning::InvalidSessionAffinityTimeout {
                    service: service_ref("cfg", "sticky-invalid"),
                    value: 0,
                })
        );
    }

    #[test]
    fn scheduler_annotation() {
        let state = load("settings").desired(&node_dual());
        assert_eq!(
            vs(&state, &tcp("fd00:96::54", 80)).scheduler,
            Scheduler::MaglevHashing
        );
        assert_eq!(
            vs(&state, &tcp("198.19.96.54", 80)).scheduler,
            Scheduler::MaglevHashing
        );
        assert_eq!(
            vs(&state, &tcp("fd00:96::55", 80)).scheduler,
            Scheduler::LeastConnection
        );
        assert_eq!(
            vs(&state, &tcp("fd00:96::50", 80)).scheduler,
            Scheduler::RoundRobin
        );
    }

    #[test]
    fn invalid_scheduler_warns_and_falls_back_to_rr() {
        let state = load("settings").desired(&node_dual());
        assert_eq!(
            vs(&state, &tcp("fd00:96::56", 80)).scheduler,
            Scheduler::RoundRobin
        );
        let warning = Warning::InvalidScheduler {
            service: service_ref("cfg", "bad-scheduler"),
            value: "fastest".into(),
        };
        assert!(state.warnings.contains(&warning), "{:?}", state.warnings);
        assert!(warning.to_string().contains("cfg/bad-scheduler"));
    }

    #[test]
    fn every_scheduler_name_parses() {
        for (name, scheduler) in [
            ("rr", Scheduler::RoundRobin),
            ("wrr", Scheduler::WeightedRoundRobin),
            ("lc", Scheduler::LeastConnection),
            ("sh", Scheduler::SourceHashing),
            ("mh", Scheduler::MaglevHashing),
        ] {
            assert_eq!(name.parse::<Scheduler>(), Ok(scheduler));
            assert_eq!(scheduler.name(), name);
        }
        assert!("RR".parse::<Scheduler>().is_err());
    }

    #[test]
    fn skipped_services() {
        let state = load("settings").desired(&node_dual());
        let served: std::collections::BTreeSet<String> = state
            .origins
            .values()
            .map(|o| o.service_port.service.name.clone())
            .collect();
        for skipped in ["headless", "external-name", "other-proxy"] {
            assert!(!served.contains(skipped), "{skipped} is served");
        }
        assert!(!state.vips.contains(&ip("fd00:96::57")));
        assert!(!state.vips.contains(&ip("fd00:96::58")));
        // Endpoints in a slice handed to another proxy are not this Service's.
        assert!(dests(&state, &tcp("fd00:96::59", 80)).is_empty());
    }

    #[test]
    fn load_balancer_ingress_ip_mode_proxy_is_skipped() {
        let state = load("settings").desired(&node_dual());
        for vip in ["fd00:1b::5a", "198.19.250.90"] {
            assert!(state.vips.contains(&ip(vip)), "{vip}");
            assert_eq!(
                state.origins[&tcp(vip, 80)].kind,
                VirtualServerKind::LoadBalancer
            );
        }
        for proxied in ["fd00:1b::5b", "198.19.250.91"] {
            assert!(!state.vips.contains(&ip(proxied)), "{proxied}");
            assert!(!state.ipvs.virtual_servers.contains_key(&tcp(proxied, 80)));
        }
        // The NodePort still carries the traffic an ipMode: Proxy balancer sends.
        assert!(
            state
                .ipvs
                .virtual_servers
                .contains_key(&tcp("fd00:1::a", 30090))
        );
    }

    #[test]
    fn conflicting_virtual_servers_keep_the_first_service_and_warn() {
        let state = load("settings").desired(&node_dual());
        let key = tcp("fd00:ee::5c", 80);
        assert_eq!(state.origins[&key].service_port.service.name, "conflict-a");
        assert!(state.warnings.iter().any(|w| matches!(
            w,
            Warning::VirtualServerConflict { virtual_server, dropped, .. }
                if *virtual_server == key && dropped.service_port.service.name == "conflict-b"
        )));
        // conflict-b keeps its ClusterIP.
        assert!(
            state
                .ipvs
                .virtual_servers
                .contains_key(&tcp("fd00:96::5d", 80))
        );
        assert_eq!(state.warnings.len(), 3, "{:?}", state.warnings);
    }

    #[test]
    fn model_is_deterministic_whatever_the_input_order() {
        let mut objects = load("settings");
        let forward = objects.desired(&node_dual());
        objects.services.reverse();
        objects.slices.reverse();
        assert_eq!(objects.desired(&node_dual()), forward);
    }
}

fn service_ref(namespace: &str, name: &str) -> proxy::model::ServiceRef {
    proxy::model::ServiceRef {
        namespace: namespace.into(),
        name: name.into(),
    }
}

mod diffs {
    use super::*;

    fn ipvs(objects: &Objects) -> IpvsState {
        objects.desired(&node_dual()).ipvs
    }

    /// Applies operations to a table the way the kernel would, so a diff can be checked by its result.
    fn apply(state: &mut IpvsState, ops: &[Operation]) {
        for op in ops {
            match *op {
                Operation::AddVirtualServer {
                    key,
                    scheduler,
                    persistence,
                } => {
                    let old = state.virtual_servers.insert(
                        key,
                        proxy::model::VirtualServer {
                            scheduler,
                            persistence,
                            destinations: BTreeMap::new(),
                        },
                    );
                    assert!(old.is_none(), "{key} added twice");
                }
                Operation::UpdateVirtualServer {
                    key,
                    scheduler,
                    persistence,
                } => {
                    let vs = state
                        .virtual_servers
                        .get_mut(&key)
                        .expect("update of a missing vs");
                    vs.scheduler = scheduler;
                    vs.persistence = persistence;
                }
                Operation::DeleteVirtualServer { key } => {
                    state
                        .virtual_servers
                        .remove(&key)
                        .expect("delete of a missing vs");
                }
                Operation::AddDestination {
                    key,
                    destination,
                    weight,
                } => {
                    let vs = state
                        .virtual_servers
                        .get_mut(&key)
                        .expect("dest of a missing vs");
                    assert!(vs.destinations.insert(destination, weight).is_none());
                }
                Operation::UpdateDestination {
                    key,
                    destination,
                    weight,
                } => {
                    let vs = state
                        .virtual_servers
                        .get_mut(&key)
                        .expect("dest of a missing vs");
                    *vs.destinations.get_mut(&destination).expect("missing dest") = weight;
                }
                Operation::DrainDestination { key, destination } => {
                    let vs = state
                        .virtual_servers
                        .get_mut(&key)
                        .expect("dest of a missing vs");
                    *vs.destinations.get_mut(&destination).expect("missing dest") = 0;
                }
                Operation::DeleteDestination { key, destination } => {
                    let vs = state
                        .virtual_servers
                        .get_mut(&key)
                        .expect("dest of a missing vs");
                    vs.destinations.remove(&destination).expect("missing dest");
                }
            }
        }
    }

    #[test]
    fn from_empty_adds_everything_and_converges() {
        let desired = ipvs(&load("families-ipv6-primary"));
        let ops = diff(&desired, &IpvsState::default());
        let adds = ops
            .iter()
            .filter(|o| matches!(o, Operation::AddVirtualServer { .. }))
            .count();
        assert_eq!(adds, 24);
        assert_eq!(ops.len(), 24 + 24 * 3);
        // Every virtual server is added before its destinations.
        let first = ops
            .iter()
            .position(|o| o.key() == &tcp("fd00:96::10", 80))
            .unwrap();
        assert!(matches!(ops[first], Operation::AddVirtualServer { .. }));
        let mut actual = IpvsState::default();
        apply(&mut actual, &ops);
        assert_eq!(actual, desired);
        assert!(diff(&desired, &actual).is_empty());
    }

    #[test]
    fn to_empty_deletes_virtual_servers_only() {
        let actual = ipvs(&load("families-ipv4-only"));
        let ops = diff(&IpvsState::default(), &actual);
        assert_eq!(ops.len(), 12);
        assert!(
            ops.iter()
                .all(|o| matches!(o, Operation::DeleteVirtualServer { .. }))
        );
    }

    #[test]
    fn one_slice_change_touches_only_its_service_destinations() {
        for (fixture, slice, vip) in [
            ("policies", "etp-local-v6", "fd00:96::41"),
            ("policies", "etp-local-v4", "198.19.96.41"),
        ] {
            let mut objects = load(fixture);
            let before = ipvs(&objects);
            // A new ready endpoint on another node.
            let mut added = objects.slice_mut(slice).endpoints[0].clone();
            added.addresses = vec![if vip.contains(':') {
                "fd00:244:c::77".into()
            } else {
                "198.18.12.77".into()
            }];
            added.node_name = Some("node-c".into());
            objects.slice_mut(slice).endpoints.push(added);
            let after = ipvs(&objects);
            let ops = diff(&after, &before);
            // The ClusterIP of that family only (external addresses use local endpoints), both ports.
            assert_eq!(ops.len(), 2, "{ops:#?}");
            for op in &ops {
                assert!(
                    matches!(op, Operation::AddDestination { weight: 1, .. }),
                    "{op:?}"
                );
                assert_eq!(op.key().address, ip(vip));
            }
        }
    }

    #[test]
    fn removed_tcp_and_sctp_destinations_drain_udp_ones_are_deleted() {
        let mut objects = load("families-ipv6-only");
        let before = ipvs(&objects);
        objects.slice_mut("web-ipv6").endpoints.remove(0);
        let after = ipvs(&objects);
        let ops = diff(&after, &before);
        let gone: SocketAddr = "[fd00:244:a::5]:0".parse().unwrap();
        // 4 virtual servers (ClusterIP, ExternalIP, LB, one NodePort) per protocol.
        assert_eq!(ops.len(), 12, "{ops:#?}");
        for op in &ops {
            match op {
                Operation::DrainDestination { key, destination } => {
                    assert!(
                        matches!(key.protocol, Protocol::Tcp | Protocol::Sctp),
                        "{op:?}"
                    );
                    assert_eq!(destination.ip(), gone.ip());
                }
                Operation::DeleteDestination { key, destination } => {
                    assert_eq!(key.protocol, Protocol::Udp, "{op:?}");
                    assert_eq!(destination.ip(), gone.ip());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let drains = ops
            .iter()
            .filter(|o| matches!(o, Operation::DrainDestination { .. }))
            .count();
        assert_eq!(drains, 8);
        // Once drained, the diff leaves it to the controller: nothing more to do.
        let mut actual = before.clone();
        apply(&mut actual, &ops);
        assert!(diff(&after, &actual).is_empty());
        // And when the endpoint comes back, the draining destination is weighted up again, not re-added.
        let back = diff(&before, &actual);
        assert_eq!(back.len(), 8 + 4, "{back:#?}");
        assert!(back.iter().all(|o| matches!(
            o,
            Operation::UpdateDestination { weight: 1, .. }
                | Operation::AddDestination { weight: 1, .. }
        )));
        apply(&mut actual, &back);
        assert_eq!(actual, before);
    }

    #[test]
    fn drain_policy_per_protocol() {
        assert!(Protocol::Tcp.drains_removed_destinations());
        assert!(Protocol::Sctp.drains_removed_destinations());
        assert!(!Protocol::Udp.drains_removed_destinations());
    }

    #[test]
    fn scheduler_and_persistence_changes_update_the_virtual_server_only() {
        let mut objects = load("settings");
        let before = ipvs(&objects);
        let svc = objects.service_mut("least-conn");
        svc.metadata
            .annotations
            .get_or_insert_default()
            .insert("fairlead.io/service.scheduler".into(), "sh".into());
        let spec = svc.spec.as_mut().unwrap();
        spec.session_affinity = Some("ClientIP".into());
        let after = ipvs(&objects);
        let ops = diff(&after, &before);
        assert_eq!(
            ops,
            [Operation::UpdateVirtualServer {
                key: tcp("fd00:96::55", 80),
                scheduler: Scheduler::SourceHashing,
                persistence: Some(Persistence {
                    timeout_seconds: 10800
                }),
            }]
        );
    }

    #[test]
    fn deleted_service_is_removed_last_after_additions() {
        let mut objects = load("policies");
        let before = ipvs(&objects);
        objects
            .services
            .retain(|s| s.metadata.name.as_deref() != Some("etp-local-none"));
        let mut extra = objects.service_mut("itp-local").clone();
        extra.metadata.name = Some("itp-copy".into());
        extra.spec.as_mut().unwrap().cluster_ips =
            Some(vec!["fd00:96::4f".into(), "198.19.96.79".into()]);
        objects.services.push(extra);
        let after = ipvs(&objects);
        let ops = diff(&after, &before);
        let first_delete = ops
            .iter()
            .position(|o| matches!(o, Operation::DeleteVirtualServer { .. }))
            .unwrap();
        assert!(
            ops[first_delete..]
                .iter()
                .all(|o| matches!(o, Operation::DeleteVirtualServer { .. }))
        );
        let deleted: Vec<String> = ops[first_delete..]
            .iter()
            .map(|o| o.key().to_string())
            .collect();
        assert_eq!(
            deleted,
            [
                "TCP 198.19.1.10:30042",
                "TCP 198.19.96.42:80",
                "TCP 198.19.250.42:80"
            ]
        );
        // The copy has no EndpointSlices of its own: its virtual servers come without destinations.
        let added: Vec<String> = ops[..first_delete]
            .iter()
            .map(|o| match o {
                Operation::AddVirtualServer { key, .. } => key.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(added, ["TCP 198.19.96.79:80", "TCP [fd00:96::4f]:80"]);
    }

    #[test]
    fn equal_states_need_nothing() {
        for fixture in [
            "families-ipv6-primary",
            "endpoints",
            "topology",
            "policies",
            "settings",
        ] {
            let state = ipvs(&load(fixture));
            assert!(diff(&state, &state.clone()).is_empty(), "{fixture}");
        }
    }

    #[test]
    fn weight_changes_are_updates() {
        let desired = ipvs(&load("endpoints"));
        let mut actual = desired.clone();
        let key = tcp("fd00:96::20", 80);
        let d = sa("[fd00:244:b::1]:8080");
        actual
            .virtual_servers
            .get_mut(&key)
            .unwrap()
            .destinations
            .insert(d, 5);
        assert_eq!(
            diff(&desired, &actual),
            [Operation::UpdateDestination {
                key,
                destination: d,
                weight: 1
            }]
        );
    }
}

mod malformed_objects {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    #[test]
    fn objects_missing_fields_are_skipped_without_panic() {
        let unnamed = Service::default();
        let mut no_spec = Service::default();
        no_spec.metadata.name = Some("no-spec".into());
        let mut bare_slice = EndpointSlice::default();
        bare_slice.metadata.name = Some("bare".into());
        bare_slice.metadata.labels = Some(BTreeMap::from([(
            "kubernetes.io/service-name".into(),
            "no-spec".into(),
        )]));
        bare_slice.address_type = "IPv7".into();
        let state = proxy::model::desired_state([&unnamed, &no_spec], [&bare_slice], &node_dual());
        assert!(state.ipvs.virtual_servers.is_empty());
        assert!(state.vips.is_empty());
        assert_eq!(
            state.warnings,
            [
                Warning::UnnamedService {
                    namespace: "default".into()
                },
                Warning::InvalidEndpointSlice {
                    slice: proxy::model::ObjectRef {
                        kind: "EndpointSlice",
                        namespace: "default".into(),
                        name: "bare".into(),
                    },
                    field: "addressType",
                    value: "IPv7".into(),
                },
            ]
        );
    }
}
