//! Node annotations (`fairlead.io/...`, with kube-router's `kube-router.io/...` as aliases) parsed into typed settings.
//!
//! Precedence: when both a `fairlead.io/` key and its `kube-router.io/` alias are set, the `fairlead.io/` value
//! is used and the alias is ignored, even if the `fairlead.io/` value turns out invalid (so a typo never silently
//! revives a stale kube-router value). For peers, `fairlead.io/peers` shadows the whole `kube-router.io/peer.*` group.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;

use super::config::{PeerSpec, decode_base64_password};
use super::types::{AsPathPrepend, Asn, Community, IpFamily, PeerPassword, SecretKeySelector};
use super::warning::ModelWarning;

/// `fairlead.io/node.asn`: the node's own ASN (asplain or asdot).
pub const NODE_ASN: &str = "fairlead.io/node.asn";
/// `fairlead.io/peers`: a YAML list of [`PeerAnnotationEntry`].
pub const PEERS: &str = "fairlead.io/peers";
/// `fairlead.io/rr.server`: this node is a route reflector for the given cluster id (u32 or dotted quad).
pub const RR_SERVER: &str = "fairlead.io/rr.server";
/// `fairlead.io/rr.client`: this node is a route-reflector client of the given cluster id.
pub const RR_CLIENT: &str = "fairlead.io/rr.client";
/// `fairlead.io/node.bgp.communities`: comma-separated communities added to the node's announcements.
pub const COMMUNITIES: &str = "fairlead.io/node.bgp.communities";
/// `fairlead.io/path-prepend.as`: the ASN prepended on export to eBGP peers.
pub const PATH_PREPEND_AS: &str = "fairlead.io/path-prepend.as";
/// `fairlead.io/path-prepend.repeat-n`: how many times.
pub const PATH_PREPEND_REPEAT_N: &str = "fairlead.io/path-prepend.repeat-n";

/// kube-router alias of [`NODE_ASN`].
pub const KR_NODE_ASN: &str = "kube-router.io/node.asn";
/// kube-router: comma-separated peer IPs.
pub const KR_PEER_IPS: &str = "kube-router.io/peer.ips";
/// kube-router: comma-separated peer ASNs, one per IP.
pub const KR_PEER_ASNS: &str = "kube-router.io/peer.asns";
/// kube-router: comma-separated base64 passwords, one per IP.
pub const KR_PEER_PASSWORDS: &str = "kube-router.io/peer.passwords";
/// kube-router: comma-separated ports, one per IP.
pub const KR_PEER_PORTS: &str = "kube-router.io/peer.ports";
/// kube-router alias of [`RR_SERVER`].
pub const KR_RR_SERVER: &str = "kube-router.io/rr.server";
/// kube-router alias of [`RR_CLIENT`].
pub const KR_RR_CLIENT: &str = "kube-router.io/rr.client";
/// kube-router alias of [`COMMUNITIES`].
pub const KR_COMMUNITIES: &str = "kube-router.io/node.bgp.communities";
/// kube-router alias of [`PATH_PREPEND_AS`].
pub const KR_PATH_PREPEND_AS: &str = "kube-router.io/path-prepend.as";
/// kube-router alias of [`PATH_PREPEND_REPEAT_N`].
pub const KR_PATH_PREPEND_REPEAT_N: &str = "kube-router.io/path-prepend.repeat-n";

/// One entry of `fairlead.io/peers`, e.g.
/// ```yaml
/// - remoteIP: fd00:0:0:ff::1
///   remoteASN: 65001
///   localIP: fd00:0:0:1::2        # optional
///   port: 179                     # optional
///   passwordSecretRef: {name: bgp-passwords, key: tor1}   # optional, Secret in fairlead's namespace
///   families: [IPv6, IPv4]        # optional, default: the cluster's families
///   multihopTTL: 3                # optional, default: --peer-router-multihop-ttl
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerAnnotationEntry {
    /// Remote address.
    #[serde(rename = "remoteIP")]
    pub remote_ip: String,
    /// Remote ASN, a number or an asdot string.
    #[serde(rename = "remoteASN")]
    pub remote_asn: serde_norway::Value,
    /// Local address.
    #[serde(rename = "localIP", default)]
    pub local_ip: Option<String>,
    /// Remote port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Password from a Secret key.
    #[serde(default)]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// `IPv4` / `IPv6`.
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// eBGP multihop TTL.
    #[serde(rename = "multihopTTL", default)]
    pub multihop_ttl: Option<u8>,
}

/// A node's BGP settings from its annotations; invalid values are left out (and warned about).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBgpSettings {
    /// `node.asn`.
    pub asn: Option<Asn>,
    /// External peers, each with the annotation key it came from.
    pub peers: Vec<(PeerSpec, &'static str)>,
    /// `rr.server` cluster id.
    pub rr_server: Option<Ipv4Addr>,
    /// `rr.client` cluster id.
    pub rr_client: Option<Ipv4Addr>,
    /// `node.bgp.communities`.
    pub communities: Vec<Community>,
    /// `path-prepend.as` + `path-prepend.repeat-n`.
    pub prepend: Option<AsPathPrepend>,
}

/// Parses a node's annotations; problems are appended to `warnings` and the rest is still returned.
pub fn parse_node_annotations(
    node: &str,
    annotations: &BTreeMap<String, String>,
    warnings: &mut Vec<ModelWarning>,
) -> NodeBgpSettings {
    let mut w = Warn { node, warnings };
    let pick = |primary: &'static str, alias: &'static str| -> Option<(&'static str, &str)> {
        if let Some(v) = annotations.get(primary) {
            Some((primary, v.as_str()))
        } else {
            annotations.get(alias).map(|v| (alias, v.as_str()))
        }
    };

    let asn = pick(NODE_ASN, KR_NODE_ASN).and_then(|(key, v)| {
        v.parse::<Asn>()
            .map_err(|e| w.warn(key, e.to_string()))
            .ok()
    });
    let rr_server = pick(RR_SERVER, KR_RR_SERVER)
        .and_then(|(key, v)| parse_cluster_id(v).map_err(|e| w.warn(key, e)).ok());
    let mut rr_client = pick(RR_CLIENT, KR_RR_CLIENT)
        .and_then(|(key, v)| parse_cluster_id(v).map_err(|e| w.warn(key, e)).ok());
    if rr_server.is_some() && rr_client.is_some() {
        let key = if annotations.contains_key(RR_CLIENT) {
            RR_CLIENT
        } else {
            KR_RR_CLIENT
        };
        w.warn(
            key,
            "a node cannot be both route-reflector server and client here; acting as server".into(),
        );
        rr_client = None;
    }

    let mut communities = Vec::new();
    if let Some((key, v)) = pick(COMMUNITIES, KR_COMMUNITIES) {
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.parse::<Community>() {
                Ok(c) if !communities.contains(&c) => communities.push(c),
                Ok(_) => {}
                Err(e) => w.warn(key, e),
            }
        }
    }

    let prepend = parse_prepend(
        &mut w,
        pick(PATH_PREPEND_AS, KR_PATH_PREPEND_AS),
        pick(PATH_PREPEND_REPEAT_N, KR_PATH_PREPEND_REPEAT_N),
    );

    let peers = if let Some(v) = annotations.get(PEERS) {
        parse_peers_yaml(&mut w, v)
    } else {
        parse_kube_router_peers(&mut w, annotations)
    };

    NodeBgpSettings {
        asn,
        peers,
        rr_server,
        rr_client,
        communities,
        prepend,
    }
}

struct Warn<'a> {
    node: &'a str,
    warnings: &'a mut Vec<ModelWarning>,
}

impl Warn<'_> {
    fn warn(&mut self, annotation: &str, reason: String) {
        self.warnings.push(ModelWarning::InvalidAnnotation {
            node: self.node.to_owned(),
            annotation: annotation.to_owned(),
            reason,
        });
    }
}

/// A route-reflector cluster id (RFC 4456): a 32-bit number or a dotted quad; 0 is rejected.
pub fn parse_cluster_id(v: &str) -> Result<Ipv4Addr, String> {
    let t = v.trim();
    let id = match t.parse::<u32>() {
        Ok(n) => Ipv4Addr::from(n),
        Err(_) => t.parse::<Ipv4Addr>().map_err(|_| {
            format!("cluster id {v:?} is neither a 32-bit number nor a dotted quad")
        })?,
    };
    if id.is_unspecified() {
        return Err("cluster id 0 is not allowed".into());
    }
    Ok(id)
}

fn parse_prepend(
    w: &mut Warn<'_>,
    asn: Option<(&'static str, &str)>,
    repeat: Option<(&'static str, &str)>,
) -> Option<AsPathPrepend> {
    match (asn, repeat) {
        (None, None) => None,
        (Some((key, _)), None) => {
            w.warn(key, "set without path-prepend.repeat-n; ignored".into());
            None
        }
        (None, Some((key, _))) => {
            w.warn(key, "set without path-prepend.as; ignored".into());
            None
        }
        (Some((akey, a)), Some((rkey, r))) => {
            let asn = a
                .parse::<Asn>()
                .map_err(|e| w.warn(akey, e.to_string()))
                .ok();
            let repeat = match r.trim().parse::<u8>() {
                Ok(n) if (1..=AsPathPrepend::MAX_REPEAT).contains(&n) => Some(n),
                _ => {
                    w.warn(
                        rkey,
                        format!(
                            "{r:?} is not a repeat count in 1..={}",
                            AsPathPrepend::MAX_REPEAT
                        ),
                    );
                    None
                }
            };
            Some(AsPathPrepend {
                asn: asn?,
                repeat: repeat?,
            })
        }
    }
}

fn parse_peers_yaml(w: &mut Warn<'_>, value: &str) -> Vec<(PeerSpec, &'static str)> {
    let entries: Vec<serde_norway::Value> = match serde_norway::from_str(value) {
        Ok(serde_norway::Value::Sequence(s)) => s,
        Ok(serde_norway::Value::Null) => Vec::new(),
        Ok(_) => {
            w.warn(PEERS, "not a YAML list".into());
            return Vec::new();
        }
        Err(e) => {
            w.warn(PEERS, format!("not YAML: {e}"));
            return Vec::new();
        }
    };
    let mut peers = Vec::new();
    for (i, raw) in entries.into_iter().enumerate() {
        let entry: PeerAnnotationEntry = match serde_norway::from_value(raw) {
            Ok(e) => e,
            Err(e) => {
                w.warn(PEERS, format!("entry {}: {e}", i + 1));
                continue;
            }
        };
        match peer_from_entry(&entry) {
            Ok(p) => peers.push((p, PEERS)),
            Err(e) => w.warn(PEERS, format!("entry {}: {e}", i + 1)),
        }
    }
    peers
}

fn peer_from_entry(e: &PeerAnnotationEntry) -> Result<PeerSpec, String> {
    let address: IpAddr = e
        .remote_ip
        .trim()
        .parse()
        .map_err(|_| format!("remoteIP {:?} is not an IP address", e.remote_ip))?;
    let asn = match &e.remote_asn {
        serde_norway::Value::Number(n) => {
            let v = n
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| format!("remoteASN {n} is not a 32-bit AS number"))?;
            Asn::new(v).map_err(|e| format!("remoteASN: {e}"))?
        }
        serde_norway::Value::String(s) => {
            s.parse::<Asn>().map_err(|e| format!("remoteASN: {e}"))?
        }
        other => return Err(format!("remoteASN {other:?} is not an AS number")),
    };
    let local_address = match &e.local_ip {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("localIP {s:?} is not an IP address"))?,
        ),
    };
    if let Some(local) = local_address
        && IpFamily::of_addr(&local) != IpFamily::of_addr(&address)
    {
        return Err(format!(
            "localIP {local} and remoteIP {address} are of different families"
        ));
    }
    if e.port == Some(0) {
        return Err("port 0 is not a TCP port".into());
    }
    let families = match &e.families {
        None => None,
        Some(list) => {
            let set = list
                .iter()
                .map(|f| f.parse::<IpFamily>())
                .collect::<Result<BTreeSet<_>, _>>()?;
            if set.is_empty() {
                return Err("families is empty".into());
            }
            Some(set)
        }
    };
    Ok(PeerSpec {
        address,
        asn,
        port: e.port,
        password: e
            .password_secret_ref
            .clone()
            .map(PeerPassword::SecretKeyRef),
        local_address,
        families,
        multihop_ttl: e.multihop_ttl,
    })
}

fn split_list(v: &str) -> Vec<&str> {
    v.split(',').map(str::trim).collect()
}

/// kube-router's comma-separated form: `peer.ips` and `peer.asns` of equal length, `peer.passwords` (base64)
/// and `peer.ports` optional but, when set, of the same length. A bad entry drops only that peer.
fn parse_kube_router_peers(
    w: &mut Warn<'_>,
    annotations: &BTreeMap<String, String>,
) -> Vec<(PeerSpec, &'static str)> {
    let Some(ips) = annotations.get(KR_PEER_IPS) else {
        for key in [KR_PEER_ASNS, KR_PEER_PASSWORDS, KR_PEER_PORTS] {
            if annotations.contains_key(key) {
                w.warn(key, format!("set without {KR_PEER_IPS}; ignored"));
            }
        }
        return Vec::new();
    };
    let ips = split_list(ips);
    let asns = annotations
        .get(KR_PEER_ASNS)
        .map(|v| split_list(v))
        .unwrap_or_default();
    if asns.len() != ips.len() {
        w.warn(
            KR_PEER_ASNS,
            format!(
                "{} ASNs for {} peer IPs; no peers from {KR_PEER_IPS}",
                asns.len(),
                ips.len()
            ),
        );
        return Vec::new();
    }
    let optional = |w: &mut Warn<'_>, key: &'static str| -> Option<Vec<&str>> {
        let list = split_list(annotations.get(key)?);
        if list.len() != ips.len() {
            w.warn(
                key,
                format!("{} values for {} peer IPs; ignored", list.len(), ips.len()),
            );
            return None;
        }
        Some(list)
    };
    let passwords = optional(w, KR_PEER_PASSWORDS);
    let ports = optional(w, KR_PEER_PORTS);

    let mut peers = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let Ok(address) = ip.parse::<IpAddr>() else {
            w.warn(KR_PEER_IPS, format!("{ip:?} is not an IP address"));
            continue;
        };
        let asn = match asns[i].parse::<Asn>() {
            Ok(a) => a,
            Err(e) => {
                w.warn(KR_PEER_ASNS, format!("peer {address}: {e}"));
                continue;
            }
        };
        let port = match ports.as_ref().map(|p| p[i]) {
            None | Some("") => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 => Some(n),
                _ => {
                    w.warn(
                        KR_PEER_PORTS,
                        format!("peer {address}: {p:?} is not a TCP port"),
                    );
                    continue;
                }
            },
        };
        let password = match passwords.as_ref().map(|p| p[i]) {
            None | Some("") => None,
            Some(p) => match decode_base64_password(p) {
                Ok(pw) => Some(PeerPassword::Value(pw)),
                Err(e) => {
                    w.warn(KR_PEER_PASSWORDS, format!("peer {address}: {e}"));
                    continue;
                }
            },
        };
        peers.push((
            PeerSpec {
                address,
                asn,
                port,
                password,
                local_address: None,
                families: None,
                multihop_ttl: None,
            },
            KR_PEER_IPS,
        ));
    }
    peers
}
