//! Services + EndpointSlices + this node -> the desired IPVS virtual servers (pure).
//!
//! Brief overview:
//! - [`desired_state`] takes Services, EndpointSlices and a [`NodeContext`] and returns a [`DesiredState`]:
//!   the IPVS table ([`IpvsState`]), where each virtual server came from ([`VirtualServerOrigin`]), the VIPs for
//!   the dummy interface, the NodePort addresses, the health-check node ports and the [`Warning`]s about bad input.
//! - [`diff`] compares a desired [`IpvsState`] with the one read back from the kernel and returns the ordered
//!   [`Operation`]s that turn one into the other (removed destinations are drained, not deleted, where
//!   connections deserve a graceful end).
//!
//! The rules are kube-proxy's IPVS mode (one pass per IP family, as kube-proxy runs one proxier per family);
//! where fairlead differs it says so next to the code.

mod diff;
mod endpoints;
mod service;
mod types;

pub use diff::{Operation, diff};
pub use types::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use endpoints::{EndpointIndex, categorize};
use service::{ServiceInfo, parse_service};

/// Computes the desired IPVS state of this node from the cluster's Services and EndpointSlices.
///
/// Never fails: invalid objects (or invalid parts of them) are skipped and reported in
/// [`DesiredState::warnings`], naming the object.
pub fn desired_state<'a, S, E>(services: S, slices: E, node: &NodeContext) -> DesiredState
where
    S: IntoIterator<Item = &'a Service>,
    E: IntoIterator<Item = &'a EndpointSlice>,
{
    let mut warnings = Vec::new();
    // Sorted so that conflicts between Services resolve, and warnings come out, the same way on every run and
    // every node whatever order the store yields.
    let mut services: Vec<&Service> = services.into_iter().collect();
    services.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let infos: Vec<ServiceInfo> = services
        .into_iter()
        .filter_map(|svc| parse_service(svc, &mut warnings))
        .collect();
    let index = EndpointIndex::build(slices, &node.name, &mut warnings);

    let mut builder = Builder {
        state: DesiredState::default(),
    };
    for info in &infos {
        builder.add_service(info, &index, node, &mut warnings);
    }

    // NodePort virtual servers are made last, once the VIPs are known: with no filter for a family every
    // address of the node matches, except the ones fairlead itself put on the dummy interface.
    let node_port_addresses = node
        .node_port_addresses
        .select(&node.addresses, &builder.state.vips);
    for info in &infos {
        builder.add_node_ports(info, &index, node, &node_port_addresses, &mut warnings);
    }
    builder.state.warnings = warnings;
    builder.state
}

struct Builder {
    state: DesiredState,
}

impl Builder {
    fn add_service(
        &mut self,
        info: &ServiceInfo,
        index: &EndpointIndex,
        node: &NodeContext,
        warnings: &mut Vec<Warning>,
    ) {
        for family in [IpFamily::Ipv4, IpFamily::Ipv6] {
            let Some(cluster_ip) = info.cluster_ip(family) else {
                // kube-proxy's proxier of this family does not see the Service at all.
                continue;
            };
            for port in &info.ports {
                let sets = categorize(info, port, family, index, node);
                let (internal, external) = sets.destinations(info);
                self.insert(
                    VirtualServerKey::new(cluster_ip, port.port, port.protocol),
                    info,
                    port,
                    VirtualServerKind::ClusterIp,
                    &internal,
                    warnings,
                );
                for &ip in info
                    .external_ips
                    .iter()
                    .filter(|ip| IpFamily::of(ip) == family)
                {
                    self.insert(
                        VirtualServerKey::new(ip, port.port, port.protocol),
                        info,
                        port,
                        VirtualServerKind::ExternalIp,
                        &external,
                        warnings,
                    );
                }
                for &ip in info
                    .load_balancer_ips
                    .iter()
                    .filter(|ip| IpFamily::of(ip) == family)
                {
                    self.insert(
                        VirtualServerKey::new(ip, port.port, port.protocol),
                        info,
                        port,
                        VirtualServerKind::LoadBalancer,
                        &external,
                        warnings,
                    );
                }
            }
        }
        if let Some(port) = info.health_check_node_port {
            let local_endpoints = [IpFamily::Ipv4, IpFamily::Ipv6]
                .into_iter()
                .filter(|&family| info.cluster_ip(family).is_some())
                .map(|family| index.local_ready_addresses(&info.service, family))
                .max()
                .unwrap_or(0);
            if let Some(previous) = self.state.health_check_node_ports.get(&port) {
                warnings.push(Warning::HealthCheckNodePortConflict {
                    port,
                    kept: previous.service.clone(),
                    dropped: info.service.clone(),
                });
            } else {
                self.state.health_check_node_ports.insert(
                    port,
                    HealthCheck {
                        service: info.service.clone(),
                        local_endpoints,
                    },
                );
            }
        }
    }

    fn add_node_ports(
        &mut self,
        info: &ServiceInfo,
        index: &EndpointIndex,
        node: &NodeContext,
        addresses: &FamilyAddresses,
        warnings: &mut Vec<Warning>,
    ) {
        for family in [IpFamily::Ipv4, IpFamily::Ipv6] {
            if info.cluster_ip(family).is_none() {
                continue;
            }
            for port in &info.ports {
                let Some(node_port) = port.node_port else {
                    continue;
                };
                let sets = categorize(info, port, family, index, node);
                let (_, external) = sets.destinations(info);
                for ip in addresses.iter().filter(|ip| IpFamily::of(ip) == family) {
                    self.insert(
                        VirtualServerKey::new(ip, node_port, port.protocol),
                        info,
                        port,
                        VirtualServerKind::NodePort,
                        &external,
                        warnings,
                    );
                    self.state.node_port_addresses.insert(ip);
                }
            }
        }
    }

    fn insert(
        &mut self,
        key: VirtualServerKey,
        info: &ServiceInfo,
        port: &service::PortInfo,
        kind: VirtualServerKind,
        destinations: &BTreeSet<SocketAddr>,
        warnings: &mut Vec<Warning>,
    ) {
        let origin = VirtualServerOrigin {
            service_port: ServicePortRef {
                service: info.service.clone(),
                port_name: port.name.clone(),
                protocol: port.protocol,
            },
            kind,
        };
        if let Some(kept) = self.state.origins.get(&key) {
            // kube-proxy lets the last writer win in map order; fairlead keeps the first (sorted) owner so the
            // outcome is the same on every node, and says so.
            warnings.push(Warning::VirtualServerConflict {
                virtual_server: key,
                kept: kept.clone(),
                dropped: origin,
            });
            return;
        }
        if kind != VirtualServerKind::NodePort {
            self.state.vips.insert(key.address);
        }
        let virtual_server = VirtualServer {
            scheduler: info.scheduler,
            persistence: info.persistence,
            destinations: destinations
                .iter()
                .map(|&d| (d, DESTINATION_WEIGHT))
                .collect::<BTreeMap<_, _>>(),
        };
        self.state.origins.insert(key, origin);
        self.state.ipvs.virtual_servers.insert(key, virtual_server);
    }
}

/// The weight of every wanted destination; kube-proxy gives each endpoint weight 1 whatever the scheduler, and
/// weight 0 marks a destination being drained.
pub const DESTINATION_WEIGHT: u32 = 1;
