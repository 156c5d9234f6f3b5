//! NetworkPolicies + Pods + Namespaces -> the desired nftables ruleset (pure).
//!
//! Layout of the generated table (one `inet` table, both families):
//! - `forward` (base chain, hook forward): established/related, essential ICMP/ICMPv6 and traffic
//!   from the node's own addresses are accepted first; a packet from an egress-isolated pod jumps to
//!   `egress`, then a packet to an ingress-isolated pod jumps to `ingress`; the chain policy accepts.
//! - `egress`: one rule per (policy, rule, peer, port, family) that `return`s when the traffic is
//!   allowed; the end of the chain drops. `ingress`: the same with `accept`.
//! - `output` (base chain, hook output): the same two checks for locally sent packets with a pod
//!   source, i.e. service traffic that IPVS forwards after DNAT.
//! - Every pod address lives in sets only; rules name sets, never pods, so a pod change is a pure
//!   set-element change (see [`delta`]).

pub mod delta;
pub mod eval;
pub mod ruleset;
pub mod selector;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use ruleset::*;
use selector::Selector;

/// Default table name of fairlead's own `inet` table.
pub const TABLE_NAME: &str = "fairlead-firewall";
/// Chain names.
pub const FORWARD_CHAIN: &str = "forward";
pub const INGRESS_CHAIN: &str = "ingress";
pub const EGRESS_CHAIN: &str = "egress";
pub const OUTPUT_CHAIN: &str = "output";
/// Label the API server puts on every namespace; added here when a Namespace object lacks it.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// nftables keeps at most 128 bytes of rule comment.
const MAX_COMMENT: usize = 120;

/// Invalid data in a Kubernetes object; the object is skipped and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("label selector: {0}")]
    Selector(String),
    #[error("ipBlock cidr {0:?} is not an IP prefix")]
    Cidr(String),
    #[error("ipBlock except {except} is not inside cidr {cidr}")]
    ExceptOutsideCidr { cidr: IpNet, except: IpNet },
    #[error("protocol {0:?} is not TCP, UDP or SCTP")]
    Protocol(String),
    #[error("port {0} is out of 1..=65535")]
    Port(i32),
    #[error("endPort {end} is below port {port}")]
    EndPortBelowPort { port: u16, end: i32 },
    #[error("endPort needs a numeric port")]
    EndPortWithoutNumericPort,
    #[error("policyTypes entry {0:?} is not Ingress or Egress")]
    PolicyType(String),
    #[error("peer has none of podSelector, namespaceSelector, ipBlock")]
    EmptyPeer,
    #[error("peer combines ipBlock with a selector")]
    IpBlockWithSelector,
    #[error("pod IP {0:?} is not an IP address")]
    PodIp(String),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

/// An object the model left out, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub error: ModelError,
}

/// Everything the model needs besides the cluster objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub table: String,
    /// This node's own addresses: traffic from them to pods (kubelet probes) is always allowed.
    pub node_addresses: Vec<IpAddr>,
    /// Log dropped packets, rate limited.
    pub log_drops: Option<LogRate>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            table: TABLE_NAME.to_string(),
            node_addresses: Vec::new(),
            log_drops: None,
        }
    }
}

/// The cluster objects the ruleset is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub policies: &'a [NetworkPolicy],
    pub pods: &'a [Pod],
    pub namespaces: &'a [Namespace],
}

/// The model's output: the ruleset, and what was skipped as invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub ruleset: Ruleset,
    pub skipped: Vec<Skipped>,
}

/// Policy direction, with the Kubernetes spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn short(self) -> &'static str {
        match self {
            Direction::Ingress => "in",
            Direction::Egress => "eg",
        }
    }
    /// Which packet address is the selected pod's.
    fn target_field(self) -> AddrField {
        match self {
            Direction::Ingress => AddrField::Daddr,
            Direction::Egress => AddrField::Saddr,
        }
    }
    fn peer_field(self) -> AddrField {
        match self {
            Direction::Ingress => AddrField::Saddr,
            Direction::Egress => AddrField::Daddr,
        }
    }
    fn chain(self) -> &'static str {
        match self {
            Direction::Ingress => INGRESS_CHAIN,
            Direction::Egress => EGRESS_CHAIN,
        }
    }
    fn isolated_set(self, family: Family) -> String {
        format!("{}_isolated_{}", self.chain(), family.suffix())
    }
}

/// A pod as the firewall sees it: only pods that policies act on (see [`pod_view`]).
#[derive(Debug, Clone)]
struct PodView {
    namespace: String,
    labels: BTreeMap<String, String>,
    ips: Vec<IpAddr>,
    /// Named container ports: (name, protocol, port).
    named_ports: Vec<(String, Protocol, u16)>,
}

/// Where a peer's pods may live.
#[derive(Debug, Clone)]
enum NamespaceScope {
    /// The policy's own namespace (no namespaceSelector).
    Own,
    Selected(Selector),
}

#[derive(Debug, Clone)]
enum Peer {
    Pods {
        namespaces: NamespaceScope,
        pods: Selector,
    },
    /// The ipBlock cidr minus its excepts, as prefixes.
    Block { family: Family, nets: Vec<IpNet> },
}

#[derive(Debug, Clone)]
enum Port {
    /// Every port of the protocol.
    Protocol(Protocol),
    Range(Protocol, u16, u16),
    Named(Protocol, String),
}

#[derive(Debug, Clone)]
struct PolicyRule {
    /// Empty: every peer (any address).
    peers: Vec<Peer>,
    /// Empty: every port and protocol.
    ports: Vec<Port>,
}

#[derive(Debug, Clone)]
struct Policy {
    namespace: String,
    name: String,
    target: Selector,
    /// One entry per direction in the (defaulted) policyTypes.
    directions: Vec<(Direction, Vec<PolicyRule>)>,
}

/// Computes the ruleset. Invalid objects are skipped (and logged), never fatal.
pub fn build(input: Input<'_>, options: &Options) -> Built {
    let mut skipped = Vec::new();

    let namespaces = namespace_labels(input.namespaces);
    let mut pods = Vec::new();
    for pod in input.pods {
        match pod_view(pod) {
            Ok(Some(p)) => pods.push(p),
            Ok(None) => {}
            Err(error) => skipped.push(skip("Pod", &pod.metadata, error)),
        }
    }

    let mut policies = Vec::new();
    for np in input.policies {
        match compile_policy(np) {
            Ok(p) => policies.push(p),
            Err(error) => skipped.push(skip("NetworkPolicy", &np.metadata, error)),
        }
    }
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    for s in &skipped {
        tracing::warn!(kind = s.kind, namespace = %s.namespace, name = %s.name, error = %s.error,
            "skipping invalid object");
    }

    let mut b = Builder {
        sets: BTreeMap::new(),
        pods: &pods,
        namespaces: &namespaces,
        named_port_sets: BTreeMap::new(),
        selector_sets: BTreeMap::new(),
    };
    let ruleset = b.ruleset(&policies, options);
    Built { ruleset, skipped }
}

fn skip(
    kind: &'static str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    error: ModelError,
) -> Skipped {
    Skipped {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        error,
    }
}

fn namespace_labels(namespaces: &[Namespace]) -> BTreeMap<String, BTreeMap<String, String>> {
    namespaces
        .iter()
        .filter_map(|ns| {
            let name = ns.metadata.name.clone()?;
            let mut labels = ns.metadata.labels.clone().unwrap_or_default();
            labels
                .entry(NAMESPACE_NAME_LABEL.to_string())
                .or_insert_with(|| name.clone());
            Some((name, labels))
        })
        .collect()
}

/// The pods policies act on. hostNetwork pods share the node's addresses and are not isolated
/// (upstream); finished pods (Succeeded/Failed) may have their IP reused and are left out;
/// pods without an IP yet have nothing to program. Pending pods with an IP are included so a
/// starting pod is isolated from its first packet.
fn pod_view(pod: &Pod) -> Result<Option<PodView>, ModelError> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return Ok(None);
    }
    let Some(status) = pod.status.as_ref() else {
        return Ok(None);
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Ok(None);
    }
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .ok_or(ModelError::MissingField("metadata.namespace"))?;
    let mut raw: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .collect();
    if raw.is_empty()
        && let Some(ip) = status.pod_ip.as_deref()
    {
        raw.push(ip);
    }
    let mut ips = Vec::new();
    for r in raw {
        let ip: IpAddr = r.parse().map_err(|_| ModelError::PodIp(r.to_string()))?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return Ok(None);
    }
    let mut named_ports = Vec::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        for p in c.ports.iter().flatten() {
            let Some(name) = p.name.clone() else { continue };
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let protocol =
                Protocol::from_k8s(proto).ok_or_else(|| ModelError::Protocol(proto.into()))?;
            let port =
                u16::try_from(p.container_port).map_err(|_| ModelError::Port(p.container_port))?;
            if port == 0 {
                return Err(ModelError::Port(0));
            }
            named_ports.push((name, protocol, port));
        }
    }
    Ok(Some(PodView {
        namespace,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ips,
        named_ports,
    }))
}

fn compile_policy(np: &NetworkPolicy) -> Result<Policy, ModelError> {
    let namespace = np
        .metadata
        .namespace
        .clone()
        .ok_or(ModelError::MissingField("metadata.namespace"))?;
    let name = np
        .metadata
        .name
        .clone()
        .ok_or(ModelError::MissingField("metadata.name"))?;
    let default_spec = NetworkPolicySpec::default();
    let spec = np.spec.as_ref().unwrap_or(&default_spec);
    let target = match &spec.pod_selector {
        Some(s) => Selector::parse(s)?,
        None => Selector::default(),
    };
    // Upstream defaulting: an empty policyTypes means Ingress, plus Egress when egress rules exist.
    let types: Vec<Direction> = match spec.policy_types.as_deref() {
        Some(t) if !t.is_empty() => {
            let mut v = Vec::new();
            for s in t {
                let d = match s.as_str() {
                    "Ingress" => Direction::Ingress,
                    "Egress" => Direction::Egress,
                    other => return Err(ModelError::PolicyType(other.into())),
                };
                if !v.contains(&d) {
                    v.push(d);
                }
            }
            v.sort();
            v
        }
        _ => {
            let mut v = vec![Direction::Ingress];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                v.push(Direction::Egress);
            }
            v
        }
    };
    let mut directions = Vec::new();
    for d in types {
        let rules = match d {
            Direction::Ingress => spec
                .ingress
                .iter()
                .flatten()
                .map(|r| compile_rule(r.from.as_deref(), r.ports.as_deref()))
                .collect::<Result<Vec<_>, _>>()?,
            Direction::Egress => spec
                .egress
                .iter()
                .flatten()
                .map(|r| compile_rule(r.to.as_deref(), r.ports.as_deref()))
                .collect::<Result<Vec<_>, _>>()?,
        };
        directions.push((d, rules));
    }
    Ok(Policy {
        namespace,
        name,
        target,
        directions,
    })
}

fn compile_rule(
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) -> Result<PolicyRule, ModelError> {
    let peers = peers
        .unwrap_or_default()
        .iter()
        .map(compile_peer)
        .collect::<Result<Vec<_>, _>>()?;
    let ports = ports
        .unwrap_or_default()
        .iter()
        .map(compile_port)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PolicyRule { peers, ports })
}

fn compile_peer(peer: &NetworkPolicyPeer) -> Result<Peer, ModelError> {
    match (&peer.ip_block, &peer.namespace_selector, &peer.pod_selector) {
        (Some(block), None, None) => {
            let cidr: IpNet = block
                .cidr
                .parse()
                .map_err(|_| ModelError::Cidr(block.cidr.clone()))?;
            let cidr = cidr.trunc();
            let mut excepts = Vec::new();
            for e in block.except.iter().flatten() {
                let except: IpNet = e.parse().map_err(|_| ModelError::Cidr(e.clone()))?;
                let except = except.trunc();
                if !cidr.contains(&except) {
                    return Err(ModelError::ExceptOutsideCidr { cidr, except });
                }
                excepts.push(except);
            }
            Ok(Peer::Block {
                family: Family::of_net(&cidr),
                nets: subtract(cidr, &excepts),
            })
        }
        (Some(_), _, _) => Err(ModelError::IpBlockWithSelector),
        (None, None, None) => Err(ModelError::EmptyPeer),
        (None, ns, pods) => Ok(Peer::Pods {
            namespaces: match ns {
                Some(s) => NamespaceScope::Selected(Selector::parse(s)?),
                None => NamespaceScope::Own,
            },
            pods: match pods {
                Some(s) => Selector::parse(s)?,
                None => Selector::default(),
            },
        }),
    }
}

fn compile_port(port: &NetworkPolicyPort) -> Result<Port, ModelError> {
    let proto = port.protocol.as_deref().unwrap_or("TCP");
    let protocol = Protocol::from_k8s(proto).ok_or_else(|| ModelError::Protocol(proto.into()))?;
    match (&port.port, port.end_port) {
        (None, None) => Ok(Port::Protocol(protocol)),
        (None, Some(_)) | (Some(IntOrString::String(_)), Some(_)) => {
            Err(ModelError::EndPortWithoutNumericPort)
        }
        (Some(IntOrString::String(name)), None) => {
            // A numeric string is a port number in upstream's IntOrString handling.
            match name.parse::<i32>() {
                Ok(n) => Ok(Port::Range(protocol, valid_port(n)?, valid_port(n)?)),
                Err(_) => Ok(Port::Named(protocol, name.clone())),
            }
        }
        (Some(IntOrString::Int(n)), end) => {
            let first = valid_port(*n)?;
            let last = match end {
                None => first,
                Some(e) if e < *n => {
                    return Err(ModelError::EndPortBelowPort {
                        port: first,
                        end: e,
                    });
                }
                Some(e) => valid_port(e)?,
            };
            Ok(Port::Range(protocol, first, last))
        }
    }
}

fn valid_port(n: i32) -> Result<u16, ModelError> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ModelError::Port(n)),
    }
}

/// `cidr` minus `excepts`, as a minimal-ish list of prefixes (interval set elements).
pub fn subtract(cidr: IpNet, excepts: &[IpNet]) -> Vec<IpNet> {
    if excepts.iter().any(|e| e.contains(&cidr)) {
        return Vec::new();
    }
    if !excepts.iter().any(|e| cidr.contains(e)) {
        return vec![cidr];
    }
    let half = cidr.prefix_len() + 1;
    match cidr.subnets(half) {
        Ok(subnets) => subnets.flat_map(|s| subtract(s, excepts)).collect(),
        // Unreachable: an except strictly inside cidr means cidr is not a host prefix.
        Err(_) => Vec::new(),
    }
}

struct Builder<'a> {
    sets: BTreeMap<String, Set>,
    pods: &'a [PodView],
    namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Port name -> set name prefix.
    named_port_sets: BTreeMap<String, String>,
    /// Pod selection -> set name prefix: equal selections share one pair of sets.
    selector_sets: BTreeMap<PodSelection, String>,
}

/// Which pods a podSelector (and namespace scope) selects; the key of a shared pod-address set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PodSelection {
    /// Pods of one namespace matching the selector (a policy's podSelector, or a peer without
    /// namespaceSelector).
    InNamespace(String, Selector),
    /// Pods matching the second selector in namespaces matching the first.
    InNamespaces(Selector, Selector),
}

/// One alternative of a rule's peer list, per family: the set to match, or none (any address).
enum PeerMatch {
    Any,
    Set(String),
}

impl Builder<'_> {
    fn ruleset(&mut self, policies: &[Policy], options: &Options) -> Ruleset {
        for d in [Direction::Ingress, Direction::Egress] {
            for f in Family::ALL {
                self.add_set(
                    d.isolated_set(f),
                    Set::new(f, SetKind::Addr, format!("pods isolated for {}", d.chain())),
                );
            }
        }
        for f in Family::ALL {
            let mut set = Set::new(f, SetKind::Addr, "this node's addresses");
            set.elements.extend(
                options
                    .node_addresses
                    .iter()
                    .filter(|a| Family::of(a) == f)
                    .map(|a| SetElement::Addr(*a)),
            );
            self.add_set(node_set(f), set);
        }

        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        for (i, policy) in policies.iter().enumerate() {
            let target = self.selection_sets(PodSelection::InNamespace(
                policy.namespace.clone(),
                policy.target.clone(),
            ));
            for (d, rules) in &policy.directions {
                for f in Family::ALL {
                    let elements = self.sets[&format!("{target}_{}", f.suffix())]
                        .elements
                        .clone();
                    self.sets
                        .get_mut(&d.isolated_set(f))
                        .expect("isolated sets are created above")
                        .elements
                        .extend(elements);
                }
                let out = match d {
                    Direction::Ingress => &mut ingress,
                    Direction::Egress => &mut egress,
                };
                for (r, rule) in rules.iter().enumerate() {
                    let comment = truncate(format!(
                        "{}/{} {} rule {r}",
                        policy.namespace,
                        policy.name,
                        d.short()
                    ));
                    self.rules(i, policy, *d, &target, r, rule, comment, out);
                }
            }
        }

        let mut chains = Vec::new();
        for (d, mut rules) in [(Direction::Egress, egress), (Direction::Ingress, ingress)] {
            if let Some(rate) = options.log_drops {
                rules.push(Rule {
                    matches: vec![],
                    action: Action::Log {
                        prefix: format!("fairlead-{}-drop: ", d.short()),
                        rate,
                    },
                    comment: None,
                });
            }
            rules.push(Rule {
                matches: vec![],
                action: Action::Drop,
                comment: Some(format!("{d:?} default deny of selected pods")),
            });
            chains.push(Chain {
                name: d.chain().to_string(),
                base: None,
                rules,
            });
        }
        chains.push(forward_chain());
        chains.push(output_chain());

        Ruleset {
            table: options.table.clone(),
            sets: std::mem::take(&mut self.sets),
            chains,
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// Set and rule names are derived from the policy's index `i` (policies are sorted by
    /// namespace/name) and from selections, so they depend on policies only, never on pods.
    #[allow(clippy::too_many_arguments)]
    fn rules(
        &mut self,
        i: usize,
        policy: &Policy,
        d: Direction,
        target: &str,
        r: usize,
        rule: &PolicyRule,
        comment: String,
        out: &mut Vec<Rule>,
    ) {
        let action = match d {
            Direction::Ingress => Action::Accept,
            Direction::Egress => Action::Return,
        };
        // Peer alternatives per family; an ipBlock only exists in its own family.
        let mut peers: Vec<(Family, PeerMatch)> = Vec::new();
        if rule.peers.is_empty() {
            for f in Family::ALL {
                peers.push((f, PeerMatch::Any));
            }
        }
        for (k, peer) in rule.peers.iter().enumerate() {
            let base = format!("p{i}_{}{r}_peer{k}", d.short());
            match peer {
                Peer::Pods { namespaces, pods } => {
                    let selection = match namespaces {
                        NamespaceScope::Own => {
                            PodSelection::InNamespace(policy.namespace.clone(), pods.clone())
                        }
                        NamespaceScope::Selected(ns) => {
                            PodSelection::InNamespaces(ns.clone(), pods.clone())
                        }
                    };
                    let prefix = self.selection_sets(selection);
                    for f in Family::ALL {
                        peers.push((f, PeerMatch::Set(format!("{prefix}_{}", f.suffix()))));
                    }
                }
                Peer::Block { family, nets } => {
                    let name = format!("{base}_{}", family.suffix());
                    let mut set = Set::new(
                        *family,
                        SetKind::Interval,
                        truncate(format!("{comment} peer {k} ipBlock")),
                    );
                    set.elements
                        .extend(nets.iter().map(|n| SetElement::Net(*n)));
                    self.add_set(name.clone(), set);
                    peers.push((*family, PeerMatch::Set(name)));
                }
            }
        }
        // Family-major order keeps the rendered chain readable.
        peers.sort_by_key(|(f, _)| *f);
        for (f, peer) in &peers {
            let mut port_alts: Vec<Vec<Match>> = Vec::new();
            if rule.ports.is_empty() {
                port_alts.push(vec![]);
            }
            for port in &rule.ports {
                port_alts.push(match port {
                    Port::Protocol(p) => vec![Match::Protocol(*p)],
                    Port::Range(p, first, last) => vec![
                        Match::Protocol(*p),
                        Match::DestPort {
                            first: *first,
                            last: *last,
                        },
                    ],
                    Port::Named(p, name) => {
                        let set = self.named_port_set(name, *f);
                        vec![Match::Protocol(*p), Match::NamedPort { family: *f, set }]
                    }
                });
            }
            for port_matches in port_alts {
                let mut matches = vec![Match::Addr {
                    field: d.target_field(),
                    family: *f,
                    set: format!("{target}_{}", f.suffix()),
                }];
                if let PeerMatch::Set(set) = peer {
                    matches.push(Match::Addr {
                        field: d.peer_field(),
                        family: *f,
                        set: set.clone(),
                    });
                }
                matches.extend(port_matches);
                out.push(Rule {
                    matches,
                    action: action.clone(),
                    comment: Some(comment.clone()),
                });
            }
        }
    }

    /// The pair of address sets (`<prefix>_v4`, `<prefix>_v6`) of a pod selection, created on
    /// first use and shared by every policy that selects the same pods the same way.
    fn selection_sets(&mut self, selection: PodSelection) -> String {
        if let Some(prefix) = self.selector_sets.get(&selection) {
            return prefix.clone();
        }
        let comment = match &selection {
            PodSelection::InNamespace(ns, sel) => format!("pods in {ns} where {sel}"),
            PodSelection::InNamespaces(ns_sel, sel) if sel.requirements.is_empty() => {
                format!("pods in namespaces where {ns_sel}")
            }
            PodSelection::InNamespaces(ns_sel, sel) => {
                format!("pods where {sel} in namespaces where {ns_sel}")
            }
        };
        let prefix = format!("sel{}", self.selector_sets.len());
        let members: Vec<&PodView> = self
            .pods
            .iter()
            .filter(|p| match &selection {
                PodSelection::InNamespace(ns, sel) => p.namespace == *ns && sel.matches(&p.labels),
                PodSelection::InNamespaces(ns_sel, sel) => {
                    self.namespaces
                        .get(&p.namespace)
                        .is_some_and(|l| ns_sel.matches(l))
                        && sel.matches(&p.labels)
                }
            })
            .collect();
        for f in Family::ALL {
            let set = self.pod_set(f, comment.clone(), &members);
            self.add_set(format!("{prefix}_{}", f.suffix()), set);
        }
        self.selector_sets.insert(selection, prefix.clone());
        prefix
    }

    /// The set of (pod IP, protocol, port) for every pod that has a container port `name`.
    /// Named ports resolve on the destination pod: the selected pod for ingress, the peer for egress.
    fn named_port_set(&mut self, name: &str, family: Family) -> String {
        let next = self.named_port_sets.len();
        let prefix = self
            .named_port_sets
            .entry(name.to_string())
            .or_insert_with(|| format!("np{next}"))
            .clone();
        let set_name = format!("{prefix}_{}", family.suffix());
        if !self.sets.contains_key(&set_name) {
            let mut set = Set::new(
                family,
                SetKind::AddrProtoPort,
                truncate(format!("named port {name}")),
            );
            for pod in self.pods {
                for (n, proto, port) in &pod.named_ports {
                    if n == name {
                        set.elements.extend(
                            pod.ips
                                .iter()
                                .filter(|a| Family::of(a) == family)
                                .map(|a| SetElement::AddrProtoPort(*a, *proto, *port)),
                        );
                    }
                }
            }
            self.add_set(set_name.clone(), set);
        }
        set_name
    }

    fn pod_set(&self, family: Family, comment: String, pods: &[&PodView]) -> Set {
        let mut set = Set::new(family, SetKind::Addr, truncate(comment));
        for p in pods {
            set.elements.extend(
                p.ips
                    .iter()
                    .filter(|a| Family::of(a) == family)
                    .map(|a| SetElement::Addr(*a)),
            );
        }
        set
    }

    fn add_set(&mut self, name: String, set: Set) {
        self.sets.insert(name, set);
    }
}

/// Name of the node-address set of a family.
pub fn node_set(family: Family) -> String {
    format!("node_{}", family.suffix())
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_COMMENT {
        let mut cut = MAX_COMMENT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn accept_rule(matches: Vec<Match>, comment: &str) -> Rule {
    Rule {
        matches,
        action: Action::Accept,
        comment: Some(comment.to_string()),
    }
}

/// What every base chain accepts first: established flows, and ICMP that must never be dropped.
fn always_allowed() -> Vec<Rule> {
    vec![
        accept_rule(
            vec![Match::CtState(BTreeSet::from([
                CtState::Established,
                CtState::Related,
            ]))],
            "replies and related flows of allowed connections",
        ),
        accept_rule(
            vec![Match::Icmp(BTreeSet::from([
                IcmpType::DestinationUnreachable,
                IcmpType::TimeExceeded,
                IcmpType::ParameterProblem,
            ]))],
            "ICMP errors (PMTU)",
        ),
        accept_rule(
            vec![Match::Icmpv6(BTreeSet::from([
                Icmpv6Type::DestinationUnreachable,
                Icmpv6Type::PacketTooBig,
                Icmpv6Type::TimeExceeded,
                Icmpv6Type::ParameterProblem,
                Icmpv6Type::RouterSolicitation,
                Icmpv6Type::RouterAdvertisement,
                Icmpv6Type::NeighborSolicitation,
                Icmpv6Type::NeighborAdvertisement,
                Icmpv6Type::Redirect,
            ]))],
            "ICMPv6 errors (PMTU), neighbour discovery, router messages",
        ),
    ]
}

fn base(name: &str, hook: Hook, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.to_string(),
        base: Some(BaseChain {
            hook,
            priority: 0,
            policy: ChainPolicy::Accept,
        }),
        rules,
    }
}

/// Pod traffic routed or bridged (br_netfilter) by the node: what is always allowed, traffic
/// from the node's own addresses, then the egress and ingress isolation checks.
fn forward_chain() -> Chain {
    let mut rules = always_allowed();
    for f in Family::ALL {
        rules.push(accept_rule(
            vec![Match::Addr {
                field: AddrField::Saddr,
                family: f,
                set: node_set(f),
            }],
            "from this node (kubelet probes)",
        ));
    }
    for d in [Direction::Egress, Direction::Ingress] {
        for f in Family::ALL {
            rules.push(Rule {
                matches: vec![Match::Addr {
                    field: d.target_field(),
                    family: f,
                    set: d.isolated_set(f),
                }],
                action: Action::Jump(d.chain().to_string()),
                comment: None,
            });
        }
    }
    base(FORWARD_CHAIN, Hook::Forward, rules)
}

/// Locally sent packets that the node did not originate: service traffic IPVS forwards after
/// DNAT (source: the client pod or an external client) never crosses the forward hook. Packets
/// with a local source address (`fib`, so every address of every interface counts, not only
/// the configured node addresses) are the node's own and pass.
fn output_chain() -> Chain {
    let mut rules = always_allowed();
    rules.push(accept_rule(
        vec![Match::SourceIsLocal],
        "sent by the node itself (kubelet probes, hostNetwork pods)",
    ));
    for f in Family::ALL {
        rules.push(Rule {
            matches: vec![Match::Addr {
                field: AddrField::Saddr,
                family: f,
                set: Direction::Egress.isolated_set(f),
            }],
            action: Action::Jump(EGRESS_CHAIN.to_string()),
            comment: Some("proxied traffic of a pod".to_string()),
        });
    }
    for f in Family::ALL {
        rules.push(Rule {
            matches: vec![Match::Addr {
                field: AddrField::Daddr,
                family: f,
                set: Direction::Ingress.isolated_set(f),
            }],
            action: Action::Jump(INGRESS_CHAIN.to_string()),
            comment: Some("proxied traffic to a pod".to_string()),
        });
    }
    base(OUTPUT_CHAIN, Hook::Output, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn subtract_except() {
        assert_eq!(
            subtract(net("198.18.1.0/24"), &[net("198.18.1.0/25")]),
            vec![net("198.18.1.128/25")]
        );
        assert_eq!(
            subtract(net("198.18.1.0/30"), &[net("198.18.1.1/32")]),
            vec![net("198.18.1.0/32"), net("198.18.1.2/31")]
        );
        assert_eq!(
            subtract(net("fd00:0:0:1::/64"), &[net("fd00:0:0:1::/64")]),
            vec![]
        );
        assert_eq!(subtract(net("fd00::/8"), &[]), vec![net("fd00::/8")]);
        // Coverage check on a small v6 block: every address is either kept or excepted.
        let cidr = net("fd00::/120");
        let except = [net("fd00::10/124"), net("fd00::80/125")];
        let kept = subtract(cidr, &except);
        for host in cidr.hosts() {
            let in_kept = kept.iter().any(|n| n.contains(&host));
            let in_except = except.iter().any(|n| n.contains(&host));
            assert!(in_kept != in_except, "{host}");
        }
    }
}
