//! The routing flags (kube-router's names) validated into a typed [`Config`].

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use base64::Engine as _;
use ipnet::IpNet;

use super::types::{Asn, IpFamily, Password, PeerPassword};

/// The raw flag values as the binary's argument parser hands them over (strings, unparsed).
///
/// `peer_router_passwords_file` carries the file's *contents*: the binary reads it, so this stays pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flags {
    /// `--cluster-asn`: the ASN of every node without a `node.asn` annotation.
    pub cluster_asn: Option<String>,
    /// `--router-id`: an IPv4 address, or `generate` to always hash (see [`super::hashed_router_id`]).
    pub router_id: Option<String>,
    /// `--nodes-full-mesh` (default true).
    pub nodes_full_mesh: bool,
    /// `--enable-ibgp` (default true): peer with nodes of the same ASN.
    pub enable_ibgp: bool,
    /// `--peer-router-ips`.
    pub peer_router_ips: Vec<String>,
    /// `--peer-router-asns`, one per IP.
    pub peer_router_asns: Vec<String>,
    /// `--peer-router-ports`, one per IP, or empty for 179.
    pub peer_router_ports: Vec<String>,
    /// `--peer-router-passwords`: base64, one per IP (empty entry: no password).
    pub peer_router_passwords: Vec<String>,
    /// Contents of `--peer-router-passwords-file` (comma- or newline-separated base64), used when
    /// `--peer-router-passwords` is empty (kube-router's precedence).
    pub peer_router_passwords_file: Option<String>,
    /// `--peer-router-multihop-ttl`: eBGP multihop TTL for external peers (values below 2 mean directly connected).
    pub peer_router_multihop_ttl: Option<String>,
    /// `--override-nexthop`: next-hop-self towards external peers.
    pub override_nexthop: bool,
    /// `--enable-pod-egress` (default true): SNAT pod traffic leaving the cluster ranges.
    pub enable_pod_egress: bool,
    /// `--advertise-cluster-ip`.
    pub advertise_cluster_ip: bool,
    /// `--advertise-external-ip`.
    pub advertise_external_ip: bool,
    /// `--advertise-loadbalancer-ip`.
    pub advertise_loadbalancer_ip: bool,
    /// `--cluster-cidr`: the cluster's pod ranges, primary family first (at most one per family).
    pub cluster_cidr: Vec<String>,
    /// `--service-cluster-ip-range` (at most one per family).
    pub service_cluster_ip_range: Vec<String>,
    /// `--service-external-ip-range`.
    pub service_external_ip_range: Vec<String>,
    /// `--loadbalancer-ip-range`.
    pub loadbalancer_ip_range: Vec<String>,
    /// `--peer-router-import-prefixes`: accept from external peers only prefixes inside these (default: all
    /// but the cluster's own ranges).
    pub peer_router_import_prefixes: Vec<String>,
    /// `--bgp-accept-default-route`: accept 0.0.0.0/0 and ::/0 from external peers.
    pub bgp_accept_default_route: bool,
    /// `--bgp-port` (default 179).
    pub bgp_port: Option<String>,
}

impl Default for Flags {
    /// kube-router's defaults.
    fn default() -> Self {
        Flags {
            cluster_asn: None,
            router_id: None,
            nodes_full_mesh: true,
            enable_ibgp: true,
            peer_router_ips: Vec::new(),
            peer_router_asns: Vec::new(),
            peer_router_ports: Vec::new(),
            peer_router_passwords: Vec::new(),
            peer_router_passwords_file: None,
            peer_router_multihop_ttl: None,
            override_nexthop: false,
            enable_pod_egress: true,
            advertise_cluster_ip: false,
            advertise_external_ip: false,
            advertise_loadbalancer_ip: false,
            cluster_cidr: Vec::new(),
            service_cluster_ip_range: Vec::new(),
            service_external_ip_range: Vec::new(),
            loadbalancer_ip_range: Vec::new(),
            peer_router_import_prefixes: Vec::new(),
            bgp_accept_default_route: false,
            bgp_port: None,
        }
    }
}

/// A flag that does not validate; `flag` is the flag's name as typed on the command line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{flag}: invalid value {value:?}: {reason}")]
    Invalid {
        /// Flag name, e.g. `--cluster-asn`.
        flag: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A list flag whose length must match `--peer-router-ips`.
    #[error("{flag}: {got} values for {expected} --peer-router-ips")]
    LengthMismatch {
        /// Flag name.
        flag: &'static str,
        /// Number of `--peer-router-ips`.
        expected: usize,
        /// Number given.
        got: usize,
    },
    /// A required flag is missing.
    #[error("{flag} is required: {reason}")]
    Missing {
        /// Flag name.
        flag: &'static str,
        /// Why it is needed.
        reason: &'static str,
    },
}

/// How the BGP router-id is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterIdMode {
    /// The node's IPv4 InternalIP, else a hash (the default).
    Derive,
    /// Always the hash (`--router-id=generate`).
    Generate,
    /// This value (`--router-id=198.18.0.1`).
    Fixed(Ipv4Addr),
}

/// An external BGP peer (from flags or a node annotation), before it becomes a [`super::DesiredPeer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// Remote address.
    pub address: IpAddr,
    /// Remote ASN.
    pub asn: Asn,
    /// Remote TCP port (None: `--bgp-port`'s default 179).
    pub port: Option<u16>,
    /// TCP MD5 password.
    pub password: Option<PeerPassword>,
    /// Local address to bind the session to.
    pub local_address: Option<IpAddr>,
    /// Families to negotiate (None: the cluster's families).
    pub families: Option<BTreeSet<IpFamily>>,
    /// eBGP multihop TTL (None: `--peer-router-multihop-ttl`).
    pub multihop_ttl: Option<u8>,
}

/// The validated routing configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// ASN of nodes without a `node.asn` annotation.
    pub cluster_asn: Asn,
    /// Router-id choice.
    pub router_id: RouterIdMode,
    /// Full-mesh iBGP between nodes (when no route-reflector annotations exist).
    pub nodes_full_mesh: bool,
    /// Peer with nodes of the same ASN.
    pub enable_ibgp: bool,
    /// Peers from `--peer-router-*`.
    pub global_peers: Vec<PeerSpec>,
    /// eBGP multihop TTL for external peers.
    pub peer_multihop_ttl: Option<u8>,
    /// next-hop-self towards external peers.
    pub override_nexthop: bool,
    /// SNAT pod egress (carried for the controller; no effect on the BGP model).
    pub enable_pod_egress: bool,
    /// Nodes announce ClusterIPs (so node peers may send them).
    pub advertise_cluster_ip: bool,
    /// Nodes announce externalIPs.
    pub advertise_external_ip: bool,
    /// Nodes announce LoadBalancer ingress IPs.
    pub advertise_loadbalancer_ip: bool,
    /// Pod ranges, primary family first.
    pub cluster_cidrs: Vec<IpNet>,
    /// Service ClusterIP ranges.
    pub service_cluster_ip_ranges: Vec<IpNet>,
    /// Service external IP ranges.
    pub service_external_ip_ranges: Vec<IpNet>,
    /// LoadBalancer IP ranges.
    pub loadbalancer_ip_ranges: Vec<IpNet>,
    /// Accept from external peers only inside these (None: everything but the cluster's ranges).
    pub import_prefixes: Option<Vec<IpNet>>,
    /// Accept default routes from external peers.
    pub accept_default_route: bool,
    /// BGP TCP port for sessions between nodes and the default for external peers.
    pub bgp_port: u16,
}

/// kube-router's default `--cluster-asn`.
pub const DEFAULT_CLUSTER_ASN: Asn = Asn(64512);

/// The BGP port (RFC 4271).
pub const BGP_PORT: u16 = 179;

impl Config {
    /// Validates the flags; the first invalid flag is reported by name.
    pub fn from_flags(flags: &Flags) -> Result<Config, ConfigError> {
        let cluster_asn = match &flags.cluster_asn {
            None => DEFAULT_CLUSTER_ASN,
            Some(v) => v.parse::<Asn>().map_err(|e| ConfigError::Invalid {
                flag: "--cluster-asn",
                value: v.clone(),
                reason: e.to_string(),
            })?,
        };
        let router_id = match flags.router_id.as_deref().map(str::trim) {
            None | Some("") => RouterIdMode::Derive,
            Some("generate") => RouterIdMode::Generate,
            Some(v) => {
                let id: Ipv4Addr = v.parse().map_err(|_| ConfigError::Invalid {
                    flag: "--router-id",
                    value: v.to_owned(),
                    reason: "not an IPv4 address nor \"generate\"".into(),
                })?;
                if id.is_unspecified() || id.is_broadcast() {
                    return Err(ConfigError::Invalid {
                        flag: "--router-id",
                        value: v.to_owned(),
                        reason:
                            "0.0.0.0 and 255.255.255.255 are not valid BGP identifiers (RFC 6286)"
                                .into(),
                    });
                }
                RouterIdMode::Fixed(id)
            }
        };
        let bgp_port = match &flags.bgp_port {
            None => BGP_PORT,
            Some(v) => parse_port("--bgp-port", v)?,
        };
        let peer_multihop_ttl = match &flags.peer_router_multihop_ttl {
            None => None,
            Some(v) => {
                let ttl: u8 = v.trim().parse().map_err(|_| ConfigError::Invalid {
                    flag: "--peer-router-multihop-ttl",
                    value: v.clone(),
                    reason: "not a TTL in 0..=255".into(),
                })?;
                // kube-router: only relevant from 2 on; 0 and 1 mean a directly connected peer.
                (ttl >= 2).then_some(ttl)
            }
        };

        let cluster_cidrs = parse_family_pair("--cluster-cidr", &flags.cluster_cidr)?;
        if cluster_cidrs.is_empty() {
            return Err(ConfigError::Missing {
                flag: "--cluster-cidr",
                reason: "the pod ranges decide the cluster's IP families and the import filters",
            });
        }
        let service_cluster_ip_ranges = parse_family_pair(
            "--service-cluster-ip-range",
            &flags.service_cluster_ip_range,
        )?;
        let service_external_ip_ranges = parse_cidrs(
            "--service-external-ip-range",
            &flags.service_external_ip_range,
        )?;
        let loadbalancer_ip_ranges =
            parse_cidrs("--loadbalancer-ip-range", &flags.loadbalancer_ip_range)?;
        let import_prefixes = if flags.peer_router_import_prefixes.is_empty() {
            None
        } else {
            Some(parse_cidrs(
                "--peer-router-import-prefixes",
                &flags.peer_router_import_prefixes,
            )?)
        };

        let global_peers = parse_global_peers(flags)?;

        Ok(Config {
            cluster_asn,
            router_id,
            nodes_full_mesh: flags.nodes_full_mesh,
            enable_ibgp: flags.enable_ibgp,
            global_peers,
            peer_multihop_ttl,
            override_nexthop: flags.override_nexthop,
            enable_pod_egress: flags.enable_pod_egress,
            advertise_cluster_ip: flags.advertise_cluster_ip,
            advertise_external_ip: flags.advertise_external_ip,
            advertise_loadbalancer_ip: flags.advertise_loadbalancer_ip,
            cluster_cidrs,
            service_cluster_ip_ranges,
            service_external_ip_ranges,
            loadbalancer_ip_ranges,
            import_prefixes,
            accept_default_route: flags.bgp_accept_default_route,
            bgp_port,
        })
    }

    /// The cluster's primary IP family: the family of the first `--cluster-cidr`.
    pub fn primary_family(&self) -> IpFamily {
        self.cluster_cidrs
            .first()
            .map(IpFamily::of_net)
            .unwrap_or(IpFamily::Ipv4)
    }

    /// The cluster's IP families (those of `--cluster-cidr`).
    pub fn cluster_families(&self) -> BTreeSet<IpFamily> {
        self.cluster_cidrs.iter().map(IpFamily::of_net).collect()
    }

    /// Every range the cluster owns: pods, ClusterIPs, external and LoadBalancer IPs.
    pub fn cluster_owned_ranges(&self) -> Vec<IpNet> {
        let mut all: Vec<IpNet> = self
            .cluster_cidrs
            .iter()
            .chain(&self.service_cluster_ip_ranges)
            .chain(&self.service_external_ip_ranges)
            .chain(&self.loadbalancer_ip_ranges)
            .copied()
            .collect();
        all.dedup();
        all
    }

    /// The service ranges nodes announce, given the `--advertise-*` flags.
    pub fn advertised_service_ranges(&self) -> Vec<IpNet> {
        let mut v = Vec::new();
        if self.advertise_cluster_ip {
            v.extend(&self.service_cluster_ip_ranges);
        }
        if self.advertise_external_ip {
            v.extend(&self.service_external_ip_ranges);
        }
        if self.advertise_loadbalancer_ip {
            v.extend(&self.loadbalancer_ip_ranges);
        }
        v
    }
}

/// Parses a canonical CIDR (no host bits set), as Kubernetes requires for pod and service ranges.
pub fn parse_canonical_cidr(value: &str) -> Result<IpNet, String> {
    let net: IpNet = value.trim().parse().map_err(|_| "not a CIDR".to_owned())?;
    if net.trunc() != net {
        return Err(format!("host bits set (did you mean {}?)", net.trunc()));
    }
    Ok(net)
}

fn parse_port(flag: &'static str, v: &str) -> Result<u16, ConfigError> {
    match v.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(ConfigError::Invalid {
            flag,
            value: v.to_owned(),
            reason: "not a TCP port in 1..=65535".into(),
        }),
    }
}

/// Splits comma-separated values too, so `--flag a,b` and `--flag a --flag b` mean the same.
fn split_values(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .collect()
}

fn parse_cidrs(flag: &'static str, values: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    split_values(values)
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse_canonical_cidr(&s).map_err(|reason| ConfigError::Invalid {
                flag,
                value: s.clone(),
                reason,
            })
        })
        .collect()
}

/// A dual-stack range list: at most two, of different families (as kube-apiserver requires).
fn parse_family_pair(flag: &'static str, values: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    let nets = parse_cidrs(flag, values)?;
    let families: BTreeSet<IpFamily> = nets.iter().map(IpFamily::of_net).collect();
    if families.len() != nets.len() {
        return Err(ConfigError::Invalid {
            flag,
            value: values.join(","),
            reason: "at most one range per IP family".into(),
        });
    }
    Ok(nets)
}

fn parse_global_peers(flags: &Flags) -> Result<Vec<PeerSpec>, ConfigError> {
    let ips = split_values(&flags.peer_router_ips);
    let ips: Vec<String> = ips.into_iter().filter(|s| !s.is_empty()).collect();
    let asns: Vec<String> = split_values(&flags.peer_router_asns)
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if ips.len() != asns.len() {
        return Err(ConfigError::LengthMismatch {
            flag: "--peer-router-asns",
            expected: ips.len(),
            got: asns.len(),
        });
    }
    let ports = split_values(&flags.peer_router_ports);
    let ports: Vec<String> = if ports.iter().all(|p| p.is_empty()) {
        Vec::new()
    } else {
        ports
    };
    if !ports.is_empty() && ports.len() != ips.len() {
        return Err(ConfigError::LengthMismatch {
            flag: "--peer-router-ports",
            expected: ips.len(),
            got: ports.len(),
        });
    }
    let (passwords, password_flag): (Vec<String>, &'static str) =
        if !flags.peer_router_passwords.is_empty() {
            (
                split_values(&flags.peer_router_passwords),
                "--peer-router-passwords",
            )
        } else if let Some(contents) = &flags.peer_router_passwords_file {
            (
                contents
                    .split([',', '\n'])
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                "--peer-router-passwords-file",
            )
        } else {
            (Vec::new(), "--peer-router-passwords")
        };
    if !passwords.is_empty() && passwords.len() != ips.len() {
        return Err(ConfigError::LengthMismatch {
            flag: password_flag,
            expected: ips.len(),
            got: passwords.len(),
        });
    }

    let mut peers = Vec::with_capacity(ips.len());
    for (i, ip) in ips.iter().enumerate() {
        let address: IpAddr = ip.parse().map_err(|_| ConfigError::Invalid {
            flag: "--peer-router-ips",
            value: ip.clone(),
            reason: "not an IP address".into(),
        })?;
        let asn: Asn =
            asns[i]
                .parse()
                .map_err(|e: super::types::AsnError| ConfigError::Invalid {
                    flag: "--peer-router-asns",
                    value: asns[i].clone(),
                    reason: e.to_string(),
                })?;
        let port = match ports.get(i) {
            Some(p) => Some(parse_port("--peer-router-ports", p)?),
            None => None,
        };
        let password = match passwords.get(i) {
            Some(p) if !p.is_empty() => Some(PeerPassword::Value(
                decode_base64_password(p).map_err(|reason| ConfigError::Invalid {
                    flag: password_flag,
                    value: format!("entry {}", i + 1),
                    reason,
                })?,
            )),
            _ => None,
        };
        peers.push(PeerSpec {
            address,
            asn,
            port,
            password,
            local_address: None,
            families: None,
            multihop_ttl: None,
        });
    }
    Ok(peers)
}

/// kube-router's password encoding: standard base64 of the UTF-8 password.
pub(crate) fn decode_base64_password(encoded: &str) -> Result<Password, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let s = String::from_utf8(bytes).map_err(|_| "decodes to non-UTF-8 bytes".to_owned())?;
    if s.is_empty() {
        return Err("decodes to an empty password".into());
    }
    // RFC 2385 keys are at most 80 octets on Linux (TCP_MD5SIG_MAXKEYLEN).
    if s.len() > 80 {
        return Err("longer than 80 octets (TCP_MD5SIG_MAXKEYLEN)".into());
    }
    Ok(Password(s))
}
