//! IPVS through fairlead's generic netlink module, against Debian's kernel in the VM.

use std::net::IpAddr;

use proxy::ipvs::{
    Destination, DestinationEntry, FwdMethod, IpvsError, IpvsHandle, Protocol, Scheduler, Service,
    ServiceEntry, ServiceFlags, ServiceKey, Timeouts, Version,
};

use crate::support::{Netns, require_vm, run};

const ESRCH: i32 = 3;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// ip_vs is loaded, and GET_INFO answers with the version and table size /proc/net/ip_vs shows.
#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn ip_vs_is_loaded_and_get_info_answers() {
    require_vm();
    let modules = std::fs::read_to_string("/proc/modules").expect("read /proc/modules");
    assert!(
        modules.lines().any(|l| l.starts_with("ip_vs ")),
        "ip_vs is not loaded:\n{modules}"
    );

    let mut ipvs = IpvsHandle::new().expect("open IPVS generic netlink");
    assert!(ipvs.family_id() >= 0x10, "family id {}", ipvs.family_id());
    let info = ipvs.info().expect("IPVS_CMD_GET_INFO");
    eprintln!(
        "IPVS {} (conn table size {})",
        info.version, info.conn_table_size
    );
    assert!(
        info.version
            >= Version {
                major: 1,
                minor: 2,
                patch: 0
            },
        "IPVS version {} is older than 1.2.0",
        info.version
    );
    assert!(info.conn_table_size > 0);

    // The kernel's own rendering of the same two numbers.
    let proc = std::fs::read_to_string("/proc/net/ip_vs").expect("read /proc/net/ip_vs");
    let first = proc.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "IP Virtual Server version {} (size={})",
            info.version, info.conn_table_size
        )
    );
}

/// One service of the plan with its two destinations.
struct Case {
    service: Service,
    dests: [Destination; 2],
    /// What `ipvsadm -Ln` prints for the service and its destinations, whitespace collapsed.
    ipvsadm: [&'static str; 3],
}

fn ipv6_case() -> Case {
    Case {
        service: Service::new(
            ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: ip("fd00:5::10"),
                port: 80,
            },
            Scheduler::Rr,
        ),
        dests: [
            Destination::masquerade(ip("fd00:6::1"), 8080, 1),
            Destination::masquerade(ip("fd00:6::2"), 8080, 2),
        ],
        ipvsadm: [
            "TCP [fd00:5::10]:80 rr",
            "-> [fd00:6::1]:8080 Masq 1 0 0",
            "-> [fd00:6::2]:8080 Masq 2 0 0",
        ],
    }
}

fn ipv4_case() -> Case {
    let mut service = Service::new(
        ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: ip("198.18.5.10"),
            port: 53,
        },
        Scheduler::Wrr,
    );
    service.flags = ServiceFlags::PERSISTENT;
    service.timeout = 300;
    service.netmask = 24;
    let mut second = Destination::masquerade(ip("198.18.6.2"), 5353, 3);
    second.upper_threshold = 100;
    second.lower_threshold = 10;
    Case {
        service,
        dests: [Destination::masquerade(ip("198.18.6.1"), 5353, 1), second],
        ipvsadm: [
            "UDP 198.18.5.10:53 wrr persistent 300 mask 255.255.255.0",
            "-> 198.18.6.1:5353 Masq 1 0 0",
            "-> 198.18.6.2:5353 Masq 3 0 0",
        ],
    }
}

/// `ipvsadm -Ln` of the namespace, one whitespace-collapsed line each.
fn ipvsadm_lines(ns: &Netns) -> Vec<String> {
    ns.exec("ipvsadm", &["-Ln"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn sorted_services(ipvs: &mut IpvsHandle) -> Vec<ServiceEntry> {
    let mut s = ipvs.services().expect("GET_SERVICE dump");
    s.sort_by_key(|e| e.service.key);
    s
}

fn sorted_dests(ipvs: &mut IpvsHandle, key: &ServiceKey) -> Vec<DestinationEntry> {
    let mut d = ipvs.destinations(key).expect("GET_DEST dump");
    d.sort_by_key(|e| (e.destination.addr, e.destination.port));
    d
}

fn kernel_errno(r: Result<(), IpvsError>) -> i32 {
    match r {
        Err(e) => e
            .errno()
            .unwrap_or_else(|| panic!("expected a kernel error, got {e}")),
        Ok(()) => panic!("expected a kernel error, got success"),
    }
}

/// Adds every case's service and destinations through the module, reads them back through the module and
/// through ipvsadm, changes them, deletes them and checks they are gone. IPVS state is per network namespace:
/// all of it happens in one the test made, and the root namespace must not see it.
fn round_trip(test: &str, cases: Vec<Case>) {
    require_vm();
    let ns = Netns::create(test);

    ns.enter(|| {
        let mut ipvs = IpvsHandle::new().expect("open IPVS in the namespace");
        assert!(
            ipvs.services().expect("dump").is_empty(),
            "new namespace has services"
        );
        for case in &cases {
            ipvs.new_service(&case.service)
                .expect("IPVS_CMD_NEW_SERVICE");
            for d in &case.dests {
                ipvs.new_destination(&case.service.key, d)
                    .expect("IPVS_CMD_NEW_DEST");
            }
        }

        // Read back: exactly what was asked for, no traffic so no connections.
        let mut want: Vec<Service> = cases.iter().map(|c| c.service.clone()).collect();
        want.sort_by_key(|s| s.key);
        let got = sorted_services(&mut ipvs);
        assert_eq!(
            got.iter().map(|e| e.service.clone()).collect::<Vec<_>>(),
            want
        );
        assert!(got.iter().all(|e| e.stats.conns == 0));
        for case in &cases {
            let got = sorted_dests(&mut ipvs, &case.service.key);
            assert_eq!(
                got.iter()
                    .map(|e| e.destination.clone())
                    .collect::<Vec<_>>(),
                case.dests.to_vec()
            );
            assert!(
                got.iter()
                    .all(|e| e.active_conns == 0 && e.inactive_conns == 0)
            );
            assert_eq!(
                ipvs.service(&case.service.key)
                    .expect("GET_SERVICE")
                    .service,
                case.service
            );
        }

        // The kernel's typed refusals keep their errno.
        let first = &cases[0];
        assert_eq!(kernel_errno(ipvs.new_service(&first.service)), EEXIST);
        assert_eq!(
            kernel_errno(ipvs.new_destination(&first.service.key, &first.dests[0])),
            EEXIST
        );
    });

    // Observation from outside: ipvsadm in the namespace lists them, the root namespace does not.
    let lines = ipvsadm_lines(&ns);
    for case in &cases {
        for expected in case.ipvsadm {
            assert!(
                lines.iter().any(|l| l == expected),
                "ipvsadm -Ln lacks {expected:?}:\n{}",
                lines.join("\n")
            );
        }
    }
    let root = run("ipvsadm", &["-Ln"]);
    for case in &cases {
        let service_line = case.ipvsadm[0].split(' ').nth(1).expect("address");
        assert!(
            !root.contains(service_line),
            "root namespace sees {service_line}:\n{root}"
        );
    }

    ns.enter(|| {
        let mut ipvs = IpvsHandle::new().expect("open IPVS in the namespace");
        // SET_SERVICE / SET_DEST change what they should and nothing else.
        for case in &cases {
            let mut changed = case.service.clone();
            changed.scheduler = Scheduler::Wlc;
            ipvs.set_service(&changed).expect("IPVS_CMD_SET_SERVICE");
            assert_eq!(
                ipvs.service(&changed.key).expect("GET_SERVICE").service,
                changed
            );

            let mut dest = case.dests[1].clone();
            dest.weight = 9;
            ipvs.set_destination(&changed.key, &dest)
                .expect("IPVS_CMD_SET_DEST");
            let got = sorted_dests(&mut ipvs, &changed.key);
            assert_eq!(got[1].destination, dest);
            assert_eq!(got[0].destination, case.dests[0]);

            // Delete one destination, then the service.
            ipvs.del_destination(&changed.key, dest.addr, dest.port)
                .expect("IPVS_CMD_DEL_DEST");
            let left = sorted_dests(&mut ipvs, &changed.key);
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].destination, case.dests[0]);
            assert_eq!(
                kernel_errno(ipvs.del_destination(&changed.key, dest.addr, dest.port)),
                ENOENT
            );
            ipvs.del_service(&changed.key)
                .expect("IPVS_CMD_DEL_SERVICE");
            assert_eq!(kernel_errno(ipvs.del_service(&changed.key)), ESRCH);
        }
        assert!(ipvs.services().expect("dump").is_empty());
    });

    let lines = ipvsadm_lines(&ns);
    assert!(
        lines.len() == 3, // the version line and the two header lines
        "ipvsadm still lists entries:\n{}",
        lines.join("\n")
    );
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn round_trip_ipv6_only() {
    round_trip("rt6", vec![ipv6_case()]);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn round_trip_ipv4_only() {
    round_trip("rt4", vec![ipv4_case()]);
}

#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn round_trip_dual_stack() {
    round_trip("rtds", vec![ipv6_case(), ipv4_case()]);
}

/// Connection timeouts (per namespace) and FLUSH, which only tests use.
#[test]
#[ignore = "vm tier: run by xcluster-tests/vm/run-tests"]
fn config_timeouts_and_flush() {
    require_vm();
    let ns = Netns::create("cfg");
    ns.enter(|| {
        let mut ipvs = IpvsHandle::new().expect("open IPVS in the namespace");
        let want = Timeouts {
            tcp: 901,
            tcp_fin: 121,
            udp: 301,
        };
        ipvs.set_config(want).expect("IPVS_CMD_SET_CONFIG");
        assert_eq!(ipvs.config().expect("IPVS_CMD_GET_CONFIG"), want);
        // A 0 leaves the kernel's value as it was.
        ipvs.set_config(Timeouts {
            tcp: 0,
            tcp_fin: 0,
            udp: 302,
        })
        .expect("IPVS_CMD_SET_CONFIG");
        assert_eq!(
            ipvs.config().expect("IPVS_CMD_GET_CONFIG"),
            Timeouts { udp: 302, ..want }
        );

        let fwmark = ServiceKey::Fwmark {
            family: proxy::ipvs::AddressFamily::Inet6,
            mark: 7,
        };
        ipvs.new_service(&Service::new(fwmark, Scheduler::Sh))
            .expect("fwmark service");
        let mut dest = Destination::masquerade(ip("fd00:6::7"), 0, 1);
        dest.fwd_method = FwdMethod::DirectRoute;
        ipvs.new_destination(&fwmark, &dest).expect("droute dest");
        assert_eq!(
            ipvs.destinations(&fwmark).expect("dump")[0].destination,
            dest
        );
        for case in [ipv6_case(), ipv4_case()] {
            ipvs.new_service(&case.service).expect("new service");
        }
        assert_eq!(ipvs.services().expect("dump").len(), 3);
        ipvs.flush().expect("IPVS_CMD_FLUSH");
        assert!(ipvs.services().expect("dump").is_empty());
    });
    assert_eq!(
        ns.exec("ipvsadm", &["-Ln", "--timeout"]).trim(),
        "Timeout (tcp tcpfin udp): 901 121 302"
    );
}
