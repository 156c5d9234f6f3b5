//! Model <-> IPVS types: desired virtual servers to IPVS requests, IPVS dumps back to the model's table.

use std::net::SocketAddr;

use crate::ipvs::{self, Destination, ServiceFlags, ServiceKey};
use crate::model::{Persistence, Protocol, Scheduler, VirtualServer, VirtualServerKey};

/// The IPVS key of a virtual server.
pub fn service_key(key: &VirtualServerKey) -> ServiceKey {
    ServiceKey::Addr {
        protocol: match key.protocol {
            Protocol::Tcp => ipvs::Protocol::Tcp,
            Protocol::Udp => ipvs::Protocol::Udp,
            Protocol::Sctp => ipvs::Protocol::Sctp,
        },
        addr: key.address,
        port: key.port,
    }
}

/// The model key of an IPVS service; `None` for firewall-mark services, which fairlead never makes.
pub fn virtual_server_key(key: &ServiceKey) -> Option<VirtualServerKey> {
    match *key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => Some(VirtualServerKey::new(
            addr,
            port,
            match protocol {
                ipvs::Protocol::Tcp => Protocol::Tcp,
                ipvs::Protocol::Udp => Protocol::Udp,
                ipvs::Protocol::Sctp => Protocol::Sctp,
            },
        )),
        ServiceKey::Fwmark { .. } => None,
    }
}

/// The IPVS service for a virtual server: NAT destinations, persistence per client address.
pub fn ipvs_service(
    key: &VirtualServerKey,
    scheduler: Scheduler,
    persistence: Option<Persistence>,
) -> ipvs::Service {
    let sched = match scheduler {
        Scheduler::RoundRobin => ipvs::Scheduler::Rr,
        Scheduler::WeightedRoundRobin => ipvs::Scheduler::Wrr,
        Scheduler::LeastConnection => ipvs::Scheduler::Lc,
        Scheduler::SourceHashing => ipvs::Scheduler::Sh,
        Scheduler::MaglevHashing => ipvs::Scheduler::Mh,
    };
    let mut service = ipvs::Service::new(service_key(key), sched);
    if let Some(p) = persistence {
        service.flags = ServiceFlags::PERSISTENT;
        service.timeout = p.timeout_seconds;
    }
    service
}

/// A masqueraded (NAT) destination: the only forwarding method that works for pods behind a node.
pub fn ipvs_destination(destination: SocketAddr, weight: u32) -> Destination {
    Destination::masquerade(destination.ip(), destination.port(), weight)
}

/// An IPVS service and its destinations as the model's [`VirtualServer`]. The second value is false when the
/// kernel's settings cannot be said in the model's terms (a scheduler fairlead never picks, another netmask or
/// flags, a destination that is not NAT): the caller then updates the service even if the model compares equal.
pub fn virtual_server(
    service: &ipvs::Service,
    destinations: &[ipvs::DestinationEntry],
) -> (VirtualServer, bool) {
    let scheduler = service.scheduler.name().parse::<Scheduler>();
    let persistent = service.flags.contains(ServiceFlags::PERSISTENT);
    let expected_flags = if persistent {
        ServiceFlags::PERSISTENT
    } else {
        ServiceFlags::empty()
    };
    let exact = scheduler.is_ok()
        && service.flags == expected_flags
        && service.netmask == service.key.family().max_prefix_len()
        && destinations
            .iter()
            .all(|d| d.destination.fwd_method == ipvs::FwdMethod::Masquerade);
    let vs = VirtualServer {
        scheduler: scheduler.unwrap_or_default(),
        persistence: persistent.then_some(Persistence {
            timeout_seconds: service.timeout,
        }),
        destinations: destinations
            .iter()
            .map(|d| {
                (
                    SocketAddr::new(d.destination.addr, d.destination.port),
                    d.destination.weight,
                )
            })
            .collect(),
    };
    (vs, exact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::{DestinationEntry, Stats};

    fn key() -> VirtualServerKey {
        VirtualServerKey::new("fd00:10:96::10".parse().unwrap(), 80, Protocol::Tcp)
    }

    fn entry(addr: &str, weight: u32, fwd: ipvs::FwdMethod) -> DestinationEntry {
        let mut destination = Destination::masquerade(addr.parse().unwrap(), 8080, weight);
        destination.fwd_method = fwd;
        DestinationEntry {
            destination,
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            stats: Stats::default(),
        }
    }

    #[test]
    fn a_service_made_by_fairlead_reads_back_equal() {
        for persistence in [
            None,
            Some(Persistence {
                timeout_seconds: 10800,
            }),
        ] {
            for scheduler in [
                Scheduler::RoundRobin,
                Scheduler::WeightedRoundRobin,
                Scheduler::LeastConnection,
                Scheduler::SourceHashing,
                Scheduler::MaglevHashing,
            ] {
                let service = ipvs_service(&key(), scheduler, persistence);
                let dests = [entry("fd00:10:244:1::5", 1, ipvs::FwdMethod::Masquerade)];
                let (vs, exact) = virtual_server(&service, &dests);
                assert!(exact);
                assert_eq!(vs.scheduler, scheduler);
                assert_eq!(vs.persistence, persistence);
                assert_eq!(
                    vs.destinations.into_iter().collect::<Vec<_>>(),
                    vec![("[fd00:10:244:1::5]:8080".parse().unwrap(), 1)]
                );
            }
        }
        assert_eq!(
            virtual_server_key(&service_key(&key())),
            Some(key()),
            "key round trip"
        );
    }

    #[test]
    fn foreign_settings_are_not_exact() {
        let mut service = ipvs_service(&key(), Scheduler::RoundRobin, None);
        service.scheduler = ipvs::Scheduler::Wlc;
        assert!(!virtual_server(&service, &[]).1, "scheduler wlc");
        let mut service = ipvs_service(&key(), Scheduler::RoundRobin, None);
        service.netmask = 64;
        assert!(!virtual_server(&service, &[]).1, "netmask");
        let service = ipvs_service(&key(), Scheduler::RoundRobin, None);
        let dests = [entry("fd00:10:244:1::5", 1, ipvs::FwdMethod::DirectRoute)];
        assert!(!virtual_server(&service, &dests).1, "direct routing");
        let fwmark = ServiceKey::Fwmark {
            family: ipvs::AddressFamily::Inet,
            mark: 1,
        };
        assert_eq!(virtual_server_key(&fwmark), None);
    }
}
