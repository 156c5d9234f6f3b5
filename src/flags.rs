//! `fairlead run` flags (kube-router's names): raw [`RunFlags`] from clap, validated into [`RunArgs`].
//!
//! Two steps, so that validation is a pure function with unit tests: clap turns argv and the
//! environment into [`RunFlags`] (strings, as typed), then [`RunArgs::from_low_args`] checks them
//! and resolves defaults, and each error names the flag to fix. The routing flags are validated
//! by `routecontroller::model::Config::from_flags`, the one place that knows their rules.

use std::path::{Path, PathBuf};

use clap::ArgAction;

use cluster::Kind;

/// `fairlead run` flags as given (argv or `FAIRLEAD_*` environment variables).
#[derive(Clone, Debug, clap::Args)]
pub struct RunFlags {
    /// Run the router: BGP with the other nodes and peers, pod routes, the CNI config.
    #[arg(long, env = "FAIRLEAD_RUN_ROUTER", action = ArgAction::Set, default_value_t = true,
          num_args = 0..=1, default_missing_value = "true")]
    pub run_router: bool,
    /// Run the IPVS service proxy.
    #[arg(long, env = "FAIRLEAD_RUN_SERVICE_PROXY", action = ArgAction::Set, default_value_t = true,
          num_args = 0..=1, default_missing_value = "true")]
    pub run_service_proxy: bool,
    /// Run the NetworkPolicy firewall.
    #[arg(long, env = "FAIRLEAD_RUN_FIREWALL", action = ArgAction::Set, default_value_t = true,
          num_args = 0..=1, default_missing_value = "true")]
    pub run_firewall: bool,

    /// Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then the in-cluster account).
    #[arg(long, env = "FAIRLEAD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Read Kubernetes objects from the YAML/JSON files in this directory (re-read on change)
    /// instead of the API server: for tests and demos.
    #[arg(long, env = "FAIRLEAD_OBJECTS_FROM")]
    pub objects_from: Option<PathBuf>,
    /// This node's name (default: $NODE_NAME, then the host name).
    #[arg(long, env = "NODE_NAME")]
    pub hostname_override: Option<String>,

    /// ASN of nodes without a `fairlead.io/node.asn` annotation (default 64512).
    #[arg(long, env = "FAIRLEAD_CLUSTER_ASN")]
    pub cluster_asn: Option<String>,
    /// BGP router-id: an IPv4 address, or `generate` (default: the node's IPv4, else derived).
    #[arg(long, env = "FAIRLEAD_ROUTER_ID")]
    pub router_id: Option<String>,
    /// iBGP full mesh between the nodes (without route-reflector annotations).
    #[arg(long, env = "FAIRLEAD_NODES_FULL_MESH", action = ArgAction::Set, default_value_t = true,
          num_args = 0..=1, default_missing_value = "true")]
    pub nodes_full_mesh: bool,
    /// Peer with nodes of the same ASN.
    #[arg(long, env = "FAIRLEAD_ENABLE_IBGP", action = ArgAction::Set, default_value_t = true,
          num_args = 0..=1, default_missing_value = "true")]
    pub enable_ibgp: bool,
    /// External BGP peers' addresses (comma-separated or repeated).
    #[arg(long, env = "FAIRLEAD_PEER_ROUTER_IPS", value_delimiter = ',')]
    pub peer_router_ips: Vec<String>,
    /// The peers' ASNs, one per address.
    #[arg(long, env = "FAIRLEAD_PEER_ROUTER_ASNS", value_delimiter = ',')]
    pub peer_router_asns: Vec<String>,
    /// The peers' TCP ports, one per address (default 179).
    #[arg(long, env = "FAIRLEAD_PEER_ROUTER_PORTS", value_delimiter = ',')]
    pub peer_router_ports: Vec<String>,
    /// The peers' TCP MD5 passwords, base64, one per address.
    #[arg(long, env = "FAIRLEAD_PEER_ROUTER_PASSWORDS", value_delimiter = ',')]
    pub peer_router_passwords: Vec<String>,
    /// A file of base64 passwords, one per address (used when --peer-router-passwords is empty).
    #[arg(long, env = "FAIRLEAD_PEER_ROUTER_PASSWORDS_FILE")]
    pub peer_router_passwords_file: Option<PathBuf>,
    /// eBGP multihop TTL for external peers.
    #[arg(long, env = "FAIRLEAD_PEER_ROUTER_MULTIHOP_TTL")]
    pub peer_router_multihop_ttl: Option<String>,
    /// Announce ourselves as next hop to external peers.
    #[arg(long, env = "FAIRLEAD_OVERRIDE_NEXTHOP")]
    pub override_nexthop: bool,
    /// SNAT pod traffic that leaves the cluster's ranges.
    #[arg(long, env = "FAIRLEAD_ENABLE_POD_EGRESS", action = ArgAction::Set, default_value_t = true,
          num_args = 0..=1, default_missing_value = "true")]
    pub enable_pod_egress: bool,
    /// Announce Service ClusterIPs.
    #[arg(long, env = "FAIRLEAD_ADVERTISE_CLUSTER_IP")]
    pub advertise_cluster_ip: bool,
    /// Announce Service externalIPs.
    #[arg(long, env = "FAIRLEAD_ADVERTISE_EXTERNAL_IP")]
    pub advertise_external_ip: bool,
    /// Announce LoadBalancer ingress IPs.
    #[arg(long, env = "FAIRLEAD_ADVERTISE_LOADBALANCER_IP")]
    pub advertise_loadbalancer_ip: bool,
    /// The cluster's pod ranges, primary family first (at most one per family).
    #[arg(long, env = "FAIRLEAD_CLUSTER_CIDR", value_delimiter = ',')]
    pub cluster_cidr: Vec<String>,
    /// Service ClusterIP ranges (at most one per family).
    #[arg(long, env = "FAIRLEAD_SERVICE_CLUSTER_IP_RANGE", value_delimiter = ',')]
    pub service_cluster_ip_range: Vec<String>,
    /// Service external IP ranges.
    #[arg(
        long,
        env = "FAIRLEAD_SERVICE_EXTERNAL_IP_RANGE",
        value_delimiter = ','
    )]
    pub service_external_ip_range: Vec<String>,
    /// LoadBalancer IP ranges.
    #[arg(long, env = "FAIRLEAD_LOADBALANCER_IP_RANGE", value_delimiter = ',')]
    pub loadbalancer_ip_range: Vec<String>,
    /// Accept from external peers only prefixes inside these.
    #[arg(
        long,
        env = "FAIRLEAD_PEER_ROUTER_IMPORT_PREFIXES",
        value_delimiter = ','
    )]
    pub peer_router_import_prefixes: Vec<String>,
    /// Accept default routes from external peers.
    #[arg(long, env = "FAIRLEAD_BGP_ACCEPT_DEFAULT_ROUTE")]
    pub bgp_accept_default_route: bool,
    /// BGP TCP port (default 179).
    #[arg(long, env = "FAIRLEAD_BGP_PORT")]
    pub bgp_port: Option<String>,

    /// Answer neighbor solicitations for pod addresses on this interface (IPv6 uplinks that do
    /// not route to the node).
    #[arg(long, env = "FAIRLEAD_NDP_PROXY_INTERFACE")]
    pub ndp_proxy_interface: Option<String>,
    /// The node's CNI config file (a .conflist).
    #[arg(
        long,
        env = "FAIRLEAD_CNI_CONF_FILE",
        default_value = "/etc/cni/net.d/10-fairlead.conflist"
    )]
    pub cni_conf_file: PathBuf,
    /// Prometheus metrics port (0: off).
    #[arg(long, env = "FAIRLEAD_METRICS_PORT", default_value_t = 0)]
    pub metrics_port: u16,
    /// Health endpoint port (0: off).
    #[arg(long, env = "FAIRLEAD_HEALTH_PORT", default_value_t = 20244)]
    pub health_port: u16,
    /// GoBGP-compatible gRPC API port, on loopback only.
    #[arg(long, env = "FAIRLEAD_GRPC_PORT", default_value_t = 50051)]
    pub grpc_port: u16,
    /// Log format.
    #[arg(long, env = "FAIRLEAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the cluster's objects come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceArgs {
    /// The API server, through this kubeconfig (or the inferred one).
    Kube { kubeconfig: Option<PathBuf> },
    /// The files in this directory (`--objects-from`).
    Dir(PathBuf),
}

/// Which controllers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controllers {
    pub router: bool,
    pub service_proxy: bool,
    pub firewall: bool,
}

/// The validated `fairlead run` configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    pub controllers: Controllers,
    pub source: SourceArgs,
    /// This node's name, as its Node object is named.
    pub node_name: String,
    /// The routing configuration, when the router runs.
    pub routing: Option<routecontroller::model::Config>,
    pub ndp_proxy_interface: Option<String>,
    pub cni_conf_file: PathBuf,
    /// `None`: off.
    pub metrics_port: Option<u16>,
    /// `None`: off.
    pub health_port: Option<u16>,
    pub grpc_port: u16,
    pub log_format: LogFormat,
}

/// A flag value that does not validate; the message starts with the flag's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// One flag's value is wrong.
    #[error("{flag}: invalid value {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// Two flags contradict each other.
    #[error("{flag} and {other}: {reason}")]
    Conflict {
        flag: &'static str,
        other: &'static str,
        reason: String,
    },
    /// A file a flag names could not be read.
    #[error("{flag}: cannot read {path}: {reason}")]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The node's name could not be found.
    #[error("--hostname-override: not given, $NODE_NAME unset, and the host name is unknown")]
    NoNodeName,
    /// A routing flag (the routecontroller's rules).
    #[error(transparent)]
    Routing(#[from] routecontroller::model::ConfigError),
}

impl RunArgs {
    /// Validates `low`. `host_name` is the system's host name (the last fallback for the node's
    /// name); `read_file` reads files that flags name (`--peer-router-passwords-file`).
    pub fn from_low_args(
        low: RunFlags,
        host_name: Option<String>,
        read_file: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<RunArgs, FlagError> {
        let controllers = Controllers {
            router: low.run_router,
            service_proxy: low.run_service_proxy,
            firewall: low.run_firewall,
        };
        if !(controllers.router || controllers.service_proxy || controllers.firewall) {
            return Err(FlagError::Conflict {
                flag: "--run-router",
                other: "--run-service-proxy, --run-firewall",
                reason: "all false: nothing to run".into(),
            });
        }
        let source = match (low.kubeconfig, low.objects_from) {
            (Some(_), Some(_)) => {
                return Err(FlagError::Conflict {
                    flag: "--kubeconfig",
                    other: "--objects-from",
                    reason: "objects come from the API server or from a directory, not both".into(),
                });
            }
            (kubeconfig, None) => SourceArgs::Kube { kubeconfig },
            (None, Some(dir)) => SourceArgs::Dir(dir),
        };
        let node_name = match low.hostname_override.filter(|h| !h.trim().is_empty()) {
            Some(name) => name.trim().to_string(),
            None => host_name
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .ok_or(FlagError::NoNodeName)?,
        };
        check_node_name(&node_name)?;

        let peer_router_passwords_file = match &low.peer_router_passwords_file {
            None => None,
            Some(path) => Some(read_file(path).map_err(|e| FlagError::Unreadable {
                flag: "--peer-router-passwords-file",
                path: path.clone(),
                reason: e.to_string(),
            })?),
        };
        let routing_flags = routecontroller::model::Flags {
            cluster_asn: low.cluster_asn,
            router_id: low.router_id,
            nodes_full_mesh: low.nodes_full_mesh,
            enable_ibgp: low.enable_ibgp,
            peer_router_ips: low.peer_router_ips,
            peer_router_asns: low.peer_router_asns,
            peer_router_ports: low.peer_router_ports,
            peer_router_passwords: low.peer_router_passwords,
            peer_router_passwords_file,
            peer_router_multihop_ttl: low.peer_router_multihop_ttl,
            override_nexthop: low.override_nexthop,
            enable_pod_egress: low.enable_pod_egress,
            advertise_cluster_ip: low.advertise_cluster_ip,
            advertise_external_ip: low.advertise_external_ip,
            advertise_loadbalancer_ip: low.advertise_loadbalancer_ip,
            cluster_cidr: low.cluster_cidr,
            service_cluster_ip_range: low.service_cluster_ip_range,
            service_external_ip_range: low.service_external_ip_range,
            loadbalancer_ip_range: low.loadbalancer_ip_range,
            peer_router_import_prefixes: low.peer_router_import_prefixes,
            bgp_accept_default_route: low.bgp_accept_default_route,
            bgp_port: low.bgp_port,
        };
        // Only the router needs them (a firewall-only node has no --cluster-cidr to give).
        let routing = if controllers.router {
            Some(routecontroller::model::Config::from_flags(&routing_flags)?)
        } else {
            None
        };

        let ndp_proxy_interface = match low.ndp_proxy_interface {
            None => None,
            Some(name) => {
                check_interface_name(&name)?;
                Some(name)
            }
        };
        check_conflist_path(&low.cni_conf_file)?;
        let metrics_port = (low.metrics_port != 0).then_some(low.metrics_port);
        let health_port = (low.health_port != 0).then_some(low.health_port);
        let ports = [
            ("--metrics-port", metrics_port),
            ("--health-port", health_port),
            // 0 disables the API (issue #4), like 0 for the metrics and health ports.
            ("--grpc-port", (low.grpc_port != 0).then_some(low.grpc_port)),
        ];
        for (i, (flag, port)) in ports.iter().enumerate() {
            for (other, other_port) in &ports[i + 1..] {
                if port.is_some() && port == other_port {
                    return Err(FlagError::Conflict {
                        flag,
                        other,
                        reason: format!("both use port {}", port.unwrap_or_default()),
                    });
                }
            }
        }

        Ok(RunArgs {
            controllers,
            source,
            node_name,
            routing,
            ndp_proxy_interface,
            cni_conf_file: low.cni_conf_file,
            metrics_port,
            health_port,
            grpc_port: low.grpc_port,
            log_format: low.log_format,
        })
    }

    /// The kinds the running controllers read, so the source watches (and RBAC needs) no more.
    pub fn watched_kinds(&self) -> Vec<Kind> {
        let c = self.controllers;
        Kind::ALL
            .into_iter()
            .filter(|kind| match kind {
                // The proxy reads Nodes too (NodePort addresses, topology hints).
                Kind::Node => c.router || c.service_proxy,
                Kind::Service | Kind::EndpointSlice => c.service_proxy || c.router,
                // The NDP proxy answers for this node's pod addresses, read from Pod objects.
                Kind::Pod => c.firewall || (c.router && self.ndp_proxy_interface.is_some()),
                Kind::Namespace | Kind::NetworkPolicy => c.firewall,
            })
            .collect()
    }
}

/// A Node name is a DNS subdomain (RFC 1123): lowercase alphanumerics, `-` and `.`, at most 253.
fn check_node_name(name: &str) -> Result<(), FlagError> {
    let bad = |reason: &str| FlagError::Invalid {
        flag: "--hostname-override",
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty()
            || label.len() > 63
            || !ok_chars
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad(
                "not a DNS subdomain (lowercase letters, digits, '-', '.'; labels of 1-63)",
            ));
        }
    }
    Ok(())
}

/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ 16 with the NUL), no '/', ':' or whitespace.
fn check_interface_name(name: &str) -> Result<(), FlagError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(FlagError::Invalid {
            flag: "--ndp-proxy-interface",
            value: name.to_string(),
            reason: "not a Linux interface name (1-15 bytes, no '/', ':' or spaces)".into(),
        })
    }
}

/// The CNI config file: an absolute path to a `.conflist` (what the runtime reads).
fn check_conflist_path(path: &Path) -> Result<(), FlagError> {
    let bad = |reason: &str| FlagError::Invalid {
        flag: "--cni-conf-file",
        value: path.display().to_string(),
        reason: reason.to_string(),
    };
    if !path.is_absolute() {
        return Err(bad("not an absolute path"));
    }
    if path.extension().is_none_or(|e| e != "conflist") {
        return Err(bad("a network configuration list must end in .conflist"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
