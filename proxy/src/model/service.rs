//! A Service -> the facts the model needs (addresses per family, ports, policies), validated once.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::types::{IpFamily, Persistence, Protocol, Scheduler, ServiceRef, Warning};

/// Label that hands a Service (and its EndpointSlices) to another proxy; kube-proxy ignores such objects.
pub(crate) const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// Label the EndpointSlice controller puts on slices of headless Services; kube-proxy ignores such slices.
pub(crate) const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// fairlead's per-Service IPVS scheduler.
pub const ANNOTATION_SCHEDULER: &str = "fairlead.io/service.scheduler";
/// Topology-aware routing, current name.
pub const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
/// Topology-aware routing, the deprecated name still honoured by the EndpointSlice controller.
pub const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
/// The session affinity timeout when `sessionAffinityConfig` leaves it out (the API server's default).
pub const DEFAULT_SESSION_AFFINITY_TIMEOUT: u32 = 10800;
/// The largest session affinity timeout the API server accepts (one day).
const MAX_SESSION_AFFINITY_TIMEOUT: i32 = 86400;

/// A validated ServicePort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortInfo {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
}

/// A validated Service that the proxy serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceInfo {
    pub service: ServiceRef,
    /// At most one per family.
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
    pub ports: Vec<PortInfo>,
    pub scheduler: Scheduler,
    pub persistence: Option<Persistence>,
    pub internal_policy_local: bool,
    pub external_policy_local: bool,
    pub health_check_node_port: Option<u16>,
    pub topology_aware: bool,
}

impl ServiceInfo {
    pub fn cluster_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.cluster_ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }
}

/// Validates a Service; `None` when the proxy does not serve it (headless, ExternalName, another proxy's) or it is
/// unusable (a warning says why).
pub(crate) fn parse_service(svc: &Service, warnings: &mut Vec<Warning>) -> Option<ServiceInfo> {
    let meta = &svc.metadata;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let Some(name) = meta.name.clone() else {
        warnings.push(Warning::UnnamedService { namespace });
        return None;
    };
    let service = ServiceRef { namespace, name };
    if meta
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(LABEL_SERVICE_PROXY_NAME))
    {
        return None;
    }
    let spec = svc.spec.as_ref()?;
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if type_ == "ExternalName" {
        return None;
    }

    let cluster_ips = cluster_ips(&service, spec, warnings);
    if cluster_ips.is_empty() {
        // Headless (`None`), not yet allocated, or only invalid values (warned above).
        return None;
    }

    let external_ips = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|value| parse_ip(&service, "spec.externalIPs", value, warnings))
        .collect::<Vec<_>>();
    let load_balancer_ips = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        // `ipMode: Proxy`: the load balancer sends traffic to the node address and NodePort, not to its IP.
        .filter(|ingress| ingress.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|ingress| ingress.ip.as_deref())
        .filter_map(|value| parse_ip(&service, "status.loadBalancer.ingress.ip", value, warnings))
        .collect::<Vec<_>>();

    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port_name = p.name.clone().unwrap_or_default();
            let invalid = |reason: String| Warning::InvalidServicePort {
                service: service.clone(),
                port_name: port_name.clone(),
                reason,
            };
            let Some(protocol) = Protocol::from_kubernetes(p.protocol.as_deref()) else {
                warnings.push(invalid(format!(
                    "unknown protocol {:?}",
                    p.protocol.as_deref().unwrap_or_default()
                )));
                return None;
            };
            let Some(port) = u16::try_from(p.port).ok().filter(|&n| n != 0) else {
                warnings.push(invalid(format!("port {} out of range", p.port)));
                return None;
            };
            let node_port = match p.node_port {
                None | Some(0) => None,
                Some(n) => match u16::try_from(n) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        warnings.push(invalid(format!("nodePort {n} out of range")));
                        return None;
                    }
                },
            };
            Some(PortInfo {
                name: port_name,
                protocol,
                port,
                node_port,
            })
        })
        .collect::<Vec<_>>();

    let scheduler = match meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SCHEDULER))
    {
        None => Scheduler::default(),
        Some(value) => value.parse().unwrap_or_else(|()| {
            warnings.push(Warning::InvalidScheduler {
                service: service.clone(),
                value: value.clone(),
            });
            Scheduler::default()
        }),
    };

    let persistence = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds);
        let timeout_seconds = match timeout {
            None => DEFAULT_SESSION_AFFINITY_TIMEOUT,
            Some(t) if (1..=MAX_SESSION_AFFINITY_TIMEOUT).contains(&t) => t.unsigned_abs(),
            Some(t) => {
                warnings.push(Warning::InvalidSessionAffinityTimeout {
                    service: service.clone(),
                    value: t,
                });
                DEFAULT_SESSION_AFFINITY_TIMEOUT
            }
        };
        Persistence { timeout_seconds }
    });

    // apiservice.ExternallyAccessible: only these types (or a ClusterIP with ExternalIPs) take outside traffic,
    // and only for them does externalTrafficPolicy mean anything.
    let externally_accessible_type = matches!(type_, "LoadBalancer" | "NodePort")
        || (type_ == "ClusterIP" && !external_ips.is_empty());
    let external_policy_local =
        externally_accessible_type && spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let health_check_node_port = if type_ == "LoadBalancer" && external_policy_local {
        match spec.health_check_node_port {
            None | Some(0) => None,
            Some(n) => match u16::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    warnings.push(Warning::InvalidServicePort {
                        service: service.clone(),
                        port_name: String::new(),
                        reason: format!("healthCheckNodePort {n} out of range"),
                    });
                    None
                }
            },
        }
    } else {
        None
    };

    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key));
    let topology_aware = [ANNOTATION_TOPOLOGY_MODE, ANNOTATION_TOPOLOGY_AWARE_HINTS]
        .into_iter()
        .filter_map(annotation)
        .any(|v| v == "Auto" || v == "auto")
        || matches!(
            spec.traffic_distribution.as_deref(),
            Some("PreferClose" | "PreferSameZone" | "PreferSameNode")
        );

    Some(ServiceInfo {
        service,
        cluster_ips,
        external_ips,
        load_balancer_ips,
        ports,
        scheduler,
        persistence,
        internal_policy_local,
        external_policy_local,
        health_check_node_port,
        topology_aware,
    })
}

/// `spec.clusterIPs` (or `spec.clusterIP` when the list is empty), one per family; `None` and "" mean headless /
/// unallocated. With `ipFamilies` set, an address whose family disagrees with its index is rejected.
fn cluster_ips(
    service: &ServiceRef,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    warnings: &mut Vec<Warning>,
) -> Vec<IpAddr> {
    let values: Vec<&str> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        if value.is_empty() || value == "None" {
            continue;
        }
        let Some(ip) = parse_ip(service, "spec.clusterIPs", value, warnings) else {
            continue;
        };
        let declared = spec
            .ip_families
            .as_ref()
            .and_then(|f| f.get(i))
            .and_then(|f| IpFamily::from_kubernetes(f));
        let duplicate_family = out.iter().any(|o| IpFamily::of(o) == IpFamily::of(&ip));
        if declared.is_some_and(|f| f != IpFamily::of(&ip)) || duplicate_family {
            warnings.push(Warning::InvalidServiceAddress {
                service: service.clone(),
                field: "spec.clusterIPs",
                value: value.to_owned(),
            });
            continue;
        }
        out.push(ip);
    }
    out
}

fn parse_ip(
    service: &ServiceRef,
    field: &'static str,
    value: &str,
    warnings: &mut Vec<Warning>,
) -> Option<IpAddr> {
    match value.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            warnings.push(Warning::InvalidServiceAddress {
                service: service.clone(),
                field,
                value: value.to_owned(),
            });
            None
        }
    }
}
