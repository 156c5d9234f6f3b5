//! EndpointSlices -> endpoints per Service port and family, and kube-proxy's choice among them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::service::{LABEL_HEADLESS, LABEL_SERVICE_PROXY_NAME, PortInfo, ServiceInfo};
use super::types::{IpFamily, NodeContext, ObjectRef, Protocol, ServiceRef, Warning};

/// The label naming an EndpointSlice's Service.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// One endpoint of one port, with the conditions as kube-proxy reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    /// `conditions.ready`; unset means ready.
    pub ready: bool,
    /// `conditions.serving`; unset means serving.
    pub serving: bool,
    /// `conditions.terminating`; unset means not terminating.
    pub terminating: bool,
    /// `nodeName` is this node.
    pub local: bool,
    pub zone_hints: BTreeSet<String>,
    pub node_hints: BTreeSet<String>,
}

impl Endpoint {
    fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    fn serving_terminating(&self) -> bool {
        self.serving && self.terminating
    }
}

/// kube-proxy's `ServicePortName` plus the family: endpoints match a ServicePort by name and protocol.
type PortKey = (ServiceRef, String, Protocol, IpFamily);

/// All endpoints, by Service port and family.
#[derive(Debug, Default)]
pub(crate) struct EndpointIndex {
    ports: BTreeMap<PortKey, BTreeMap<SocketAddr, Endpoint>>,
}

impl EndpointIndex {
    pub fn build<'a>(
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node_name: &str,
        warnings: &mut Vec<Warning>,
    ) -> Self {
        let mut slices: Vec<&EndpointSlice> = slices.into_iter().collect();
        // Sorted so that duplicates across slices resolve the same way every time.
        slices.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let mut index = Self::default();
        for slice in slices {
            index.add_slice(slice, node_name, warnings);
        }
        index
    }

    fn add_slice(&mut self, slice: &EndpointSlice, node_name: &str, warnings: &mut Vec<Warning>) {
        let meta = &slice.metadata;
        let labels = meta.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key));
        if label(LABEL_SERVICE_PROXY_NAME).is_some() || label(LABEL_HEADLESS).is_some() {
            return;
        }
        let Some(service_name) = label(LABEL_SERVICE_NAME) else {
            return;
        };
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let object = ObjectRef {
            kind: "EndpointSlice",
            namespace: namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        };
        let mut warn = |field: &'static str, value: String| {
            warnings.push(Warning::InvalidEndpointSlice {
                slice: object.clone(),
                field,
                value,
            });
        };
        let family = match slice.address_type.as_str() {
            "IPv4" => IpFamily::Ipv4,
            "IPv6" => IpFamily::Ipv6,
            // FQDN slices carry names, not addresses: nothing a proxy can program.
            "FQDN" => return,
            other => {
                warn("addressType", other.to_owned());
                return;
            }
        };
        let service = ServiceRef {
            namespace,
            name: service_name.clone(),
        };

        let mut ports: Vec<(String, Protocol, u16)> = Vec::new();
        for p in slice.ports.iter().flatten() {
            let Some(protocol) = Protocol::from_kubernetes(p.protocol.as_deref()) else {
                warn("ports.protocol", p.protocol.clone().unwrap_or_default());
                continue;
            };
            let Some(port) = p
                .port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n != 0)
            else {
                warn(
                    "ports.port",
                    p.port.map(|n| n.to_string()).unwrap_or_default(),
                );
                continue;
            };
            // An unset name is "", as the API server defaults it, matching an unnamed ServicePort.
            ports.push((p.name.clone().unwrap_or_default(), protocol, port));
        }

        for ep in &slice.endpoints {
            // kube-proxy uses the first address only; the API guarantees at least one.
            let Some(value) = ep.addresses.first() else {
                continue;
            };
            let address = match value.parse::<IpAddr>() {
                Ok(a) if IpFamily::of(&a) == family => a,
                _ => {
                    warn("endpoints.addresses", value.clone());
                    continue;
                }
            };
            let conditions = ep.conditions.clone().unwrap_or_default();
            let hints = ep.hints.as_ref();
            let local = ep.node_name.as_deref() == Some(node_name);
            for (name, protocol, port) in &ports {
                let endpoint = Endpoint {
                    address,
                    port: *port,
                    ready: conditions.ready.unwrap_or(true),
                    serving: conditions.serving.unwrap_or(true),
                    terminating: conditions.terminating.unwrap_or(false),
                    local,
                    zone_hints: hints
                        .and_then(|h| h.for_zones.as_ref())
                        .into_iter()
                        .flatten()
                        .map(|z| z.name.clone())
                        .collect(),
                    node_hints: hints
                        .and_then(|h| h.for_nodes.as_ref())
                        .into_iter()
                        .flatten()
                        .map(|n| n.name.clone())
                        .collect(),
                };
                let entries = self
                    .ports
                    .entry((service.clone(), name.clone(), *protocol, family))
                    .or_default();
                // The same address and port in two slices (during a slice split): the first wins unless a later
                // one is local, as kube-proxy's endpointSliceCache dedups.
                match entries.get(&endpoint.socket()) {
                    Some(_) if !local => {}
                    _ => {
                        entries.insert(endpoint.socket(), endpoint);
                    }
                }
            }
        }
    }

    fn endpoints(&self, key: &PortKey) -> impl Iterator<Item = &Endpoint> + Clone {
        self.ports.get(key).into_iter().flat_map(|m| m.values())
    }

    /// Distinct ready addresses on this node over all ports of the Service in one family: the health check count.
    pub fn local_ready_addresses(&self, service: &ServiceRef, family: IpFamily) -> usize {
        // Keys sort by Service first: one range holds all its ports.
        let start = (
            service.clone(),
            String::new(),
            Protocol::Tcp,
            IpFamily::Ipv4,
        );
        self.ports
            .range(start..)
            .take_while(|((s, _, _, _), _)| s == service)
            .filter(|((_, _, _, f), _)| *f == family)
            .flat_map(|(_, eps)| eps.values())
            .filter(|ep| ep.local && ep.ready)
            .map(|ep| ep.address)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// Which hints narrow the cluster-wide endpoints (kube-proxy's topology mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopologyMode {
    /// No narrowing.
    None,
    /// `hints.forNodes` names this node.
    SameNode,
    /// `hints.forZones` names this node's zone.
    SameZone,
}

/// Hints count only when every ready endpoint has one (else some traffic would have no owner) and at least one is
/// for this node / zone (else this node would have nowhere to send). Node hints are preferred.
///
/// Differences from kube-proxy 1.33, on purpose: kube-proxy no longer looks at the Service here (it trusts the
/// EndpointSlice controller to add hints only when asked) while fairlead also requires the Service to ask
/// (`topology-mode: Auto` or a `trafficDistribution`); and kube-proxy reads `forNodes` only behind the alpha
/// `PreferSameTrafficDistribution` gate, which fairlead treats as on.
fn topology_mode<'a>(
    endpoints: impl Iterator<Item = &'a Endpoint> + Clone,
    node: &NodeContext,
) -> TopologyMode {
    let ready = endpoints.filter(|ep| ep.ready);
    if ready.clone().next().is_none() {
        return TopologyMode::None;
    }
    let all_node_hints = ready.clone().all(|ep| !ep.node_hints.is_empty());
    if all_node_hints && ready.clone().any(|ep| ep.node_hints.contains(&node.name)) {
        return TopologyMode::SameNode;
    }
    let all_zone_hints = ready.clone().all(|ep| !ep.zone_hints.is_empty());
    let zone_hinted = node
        .zone
        .as_ref()
        .is_some_and(|zone| ready.clone().any(|ep| ep.zone_hints.contains(zone)));
    if all_zone_hints && zone_hinted {
        return TopologyMode::SameZone;
    }
    TopologyMode::None
}

/// The cluster-wide and node-local destinations of one Service port in one family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EndpointSets {
    pub cluster: BTreeSet<SocketAddr>,
    pub local: BTreeSet<SocketAddr>,
}

impl EndpointSets {
    /// (ClusterIP destinations, NodePort/ExternalIP/LoadBalancer destinations).
    pub fn destinations(&self, info: &ServiceInfo) -> (BTreeSet<SocketAddr>, BTreeSet<SocketAddr>) {
        let internal = if info.internal_policy_local {
            &self.local
        } else {
            &self.cluster
        };
        let external = if info.external_policy_local {
            &self.local
        } else {
            &self.cluster
        };
        (internal.clone(), external.clone())
    }
}

/// kube-proxy's `CategorizeEndpoints`: each set takes ready endpoints, and only when it has none, the serving and
/// terminating ones (so connections drain onto pods that are shutting down rather than fail). The two sets decide
/// this separately: the node-local set falls back when this node has no ready endpoint, even if other nodes do.
pub(crate) fn categorize(
    info: &ServiceInfo,
    port: &PortInfo,
    family: IpFamily,
    index: &EndpointIndex,
    node: &NodeContext,
) -> EndpointSets {
    let key = (
        info.service.clone(),
        port.name.clone(),
        port.protocol,
        family,
    );
    let endpoints = || index.endpoints(&key);

    let mode = if info.topology_aware {
        topology_mode(endpoints(), node)
    } else {
        TopologyMode::None
    };
    let for_this_node = |ep: &Endpoint| match mode {
        TopologyMode::None => true,
        TopologyMode::SameNode => ep.node_hints.contains(&node.name),
        TopologyMode::SameZone => node
            .zone
            .as_ref()
            .is_some_and(|z| ep.zone_hints.contains(z)),
    };
    let mut cluster: BTreeSet<SocketAddr> = endpoints()
        .filter(|ep| ep.ready && for_this_node(ep))
        .map(Endpoint::socket)
        .collect();
    if cluster.is_empty() {
        cluster = endpoints()
            .filter(|ep| ep.serving_terminating())
            .map(Endpoint::socket)
            .collect();
    }

    let mut local: BTreeSet<SocketAddr> = endpoints()
        .filter(|ep| ep.local && ep.ready)
        .map(Endpoint::socket)
        .collect();
    if local.is_empty() {
        local = endpoints()
            .filter(|ep| ep.local && ep.serving_terminating())
            .map(Endpoint::socket)
            .collect();
    }
    EndpointSets { cluster, local }
}
