//! The standalone `bgpd` config file (TOML): parsed into typed settings, validated with the key and line named.
//!
//! The model is the [`Speaker`](crate::speaker::Speaker) API's: `[global]` becomes a [`SpeakerConfig`], each
//! `[[neighbor]]` a [`Neighbor`], each `[[originate]]` a prefix with its [`PathAttributes`]. See
//! `bgpd/README.md` for the format and `bgpd/examples/*.toml` for complete files.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

use crate::fsm::GracefulRestartConfig;
use crate::packet::{Afi, Community, Family, Origin, PathAttributes, Safi};
use crate::policy::{
    Action, CommunityAction, CommunityMatch, Conditions, MaxPrefix, MaxPrefixAction, Modifications,
    Policy, PolicyError, PrefixMatch, Prepend, Statement,
};
use crate::session::TtlMode;
use crate::speaker::{Neighbor, SpeakerConfig};

/// The longest TCP-MD5 key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
const MD5_MAX_KEY_LEN: usize = 80;

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type or form (the message names line and column).
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// A value that parses but cannot work (a ge/le range, conflicting options, a duplicate neighbour).
    #[error("line {line}: {key}: {message}")]
    Invalid {
        key: String,
        line: usize,
        message: String,
    },
}

/// An autonomous system number (4-octet, RFC 6793); 0 is reserved (RFC 7607) and refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Asn(pub u32);

impl<'de> Deserialize<'de> for Asn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        match u32::try_from(v) {
            Ok(0) => Err(de::Error::custom("AS number 0 is reserved (RFC 7607)")),
            Ok(asn) => Ok(Asn(asn)),
            Err(_) => Err(de::Error::custom(format!(
                "AS number {v} outside 1..=4294967295"
            ))),
        }
    }
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A neighbour's address: `fd00::2`, `198.18.0.2`, or a link-local `fe80::2%eth0` with its interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NeighborAddress {
    pub addr: IpAddr,
    /// The interface of a link-local IPv6 neighbour (resolved to a scope id when the session starts).
    pub interface: Option<String>,
}

impl FromStr for NeighborAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, interface) = match s.split_once('%') {
            Some((a, i)) if !i.is_empty() => (a, Some(i.to_string())),
            Some(_) => return Err(format!("{s:?}: empty interface after '%'")),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address"))?;
        let link_local = matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local());
        match (&interface, link_local) {
            (None, true) => Err(format!(
                "{s:?} is link-local: name its interface, as in \"{addr}%eth0\""
            )),
            (Some(_), false) => Err(format!(
                "{s:?}: an interface is only meaningful for a link-local IPv6 address"
            )),
            _ => Ok(NeighborAddress { addr, interface }),
        }
    }
}

impl fmt::Display for NeighborAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.interface {
            Some(i) => write!(f, "{}%{i}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Deserializes any `FromStr` type from a TOML string, with the type's own message on failure.
fn from_str<'de, D: Deserializer<'de>, T: FromStr<Err = E>, E: fmt::Display>(
    d: D,
) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(de::Error::custom)
}

impl<'de> Deserialize<'de> for NeighborAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d)
    }
}

/// A standard community (RFC 1997), written `ASN:value` (each 0..=65535).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommunityValue(pub Community);

impl FromStr for CommunityValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("community {s:?}: expected ASN:value, each 0..=65535");
        let (hi, lo) = s.split_once(':').ok_or_else(bad)?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        Ok(CommunityValue(Community(
            (u32::from(hi) << 16) | u32::from(lo),
        )))
    }
}

impl<'de> Deserialize<'de> for CommunityValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d)
    }
}

/// An address family of the config: `ipv4-unicast` or `ipv6-unicast`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressFamily {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl AddressFamily {
    pub fn family(self) -> Family {
        match self {
            AddressFamily::Ipv4Unicast => (Afi::Ipv4, Safi::Unicast),
            AddressFamily::Ipv6Unicast => (Afi::Ipv6, Safi::Unicast),
        }
    }
}

/// Log output of the binary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `permit`/`deny` in a policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    #[default]
    Permit,
    Deny,
}

impl From<RawAction> for Action {
    fn from(a: RawAction) -> Action {
        match a {
            RawAction::Permit => Action::Permit,
            RawAction::Deny => Action::Deny,
        }
    }
}

// ---- the file as written (serde), kept private: the typed `Config` below is the interface ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    global: RawGlobal,
    #[serde(default)]
    neighbor: Vec<Spanned<RawNeighbor>>,
    #[serde(default)]
    originate: Vec<Spanned<RawOriginate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    asn: Asn,
    router_id: Ipv4Addr,
    #[serde(default)]
    listen_addresses: Option<Vec<IpAddr>>,
    #[serde(default)]
    listen_port: Option<u16>,
    #[serde(default)]
    cluster_id: Option<Ipv4Addr>,
    #[serde(default)]
    grpc_port: Option<u16>,
    #[serde(default)]
    log_format: LogFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: NeighborAddress,
    remote_asn: Asn,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    families: Option<Vec<AddressFamily>>,
    #[serde(default)]
    passive: bool,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    multihop_ttl: Option<u8>,
    #[serde(default)]
    ttl_security: Option<u8>,
    #[serde(default)]
    hold_time: Option<u16>,
    #[serde(default)]
    connect_retry: Option<u16>,
    #[serde(default)]
    route_reflector_client: bool,
    #[serde(default)]
    next_hop_self: bool,
    #[serde(default)]
    extended_next_hop: bool,
    #[serde(default)]
    graceful_restart: Option<RawGracefulRestart>,
    #[serde(default)]
    local_address: Option<IpAddr>,
    #[serde(default)]
    next_hop_ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    next_hop_ipv6: Option<Ipv6Addr>,
    #[serde(default)]
    import: Option<RawPolicy>,
    #[serde(default)]
    export: Option<RawPolicy>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGracefulRestart {
    Enabled(bool),
    Table {
        #[serde(default)]
        restart_time: Option<u16>,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    default: RawAction,
    #[serde(default)]
    allow_default_route: bool,
    #[serde(default)]
    max_prefix: Option<u32>,
    #[serde(default)]
    max_prefix_action: Option<RawMaxPrefixAction>,
    #[serde(default)]
    statement: Vec<RawStatement>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawMaxPrefixAction {
    Teardown,
    Warn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(default)]
    action: RawAction,
    #[serde(default)]
    family: Option<AddressFamily>,
    #[serde(default)]
    prefixes: Vec<RawPrefixMatch>,
    #[serde(default)]
    communities_any: Vec<CommunityValue>,
    #[serde(default)]
    communities_all: Vec<CommunityValue>,
    #[serde(default)]
    set_communities: Option<Vec<CommunityValue>>,
    #[serde(default)]
    add_communities: Vec<CommunityValue>,
    #[serde(default)]
    remove_communities: Vec<CommunityValue>,
    #[serde(default)]
    prepend: Option<u8>,
    #[serde(default)]
    prepend_asn: Option<Asn>,
    #[serde(default)]
    local_pref: Option<u32>,
    #[serde(default)]
    med: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrefixMatch {
    prefix: IpNet,
    #[serde(default)]
    ge: Option<u8>,
    #[serde(default)]
    le: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOriginate {
    prefix: IpNet,
    #[serde(default)]
    next_hop: Option<IpAddr>,
    #[serde(default)]
    communities: Vec<CommunityValue>,
}

// ---- the typed config ----

/// A whole config file, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub global: GlobalConfig,
    pub neighbors: Vec<NeighborConfig>,
    pub originate: Vec<Origination>,
}

/// `[global]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalConfig {
    pub asn: Asn,
    pub router_id: Ipv4Addr,
    /// Where to accept sessions; `[::]` and `0.0.0.0` when not given, nothing when given empty.
    pub listen_addresses: Vec<IpAddr>,
    pub listen_port: u16,
    pub cluster_id: Option<Ipv4Addr>,
    /// Loopback port of the GoBGP-compatible gRPC API; `None` (or 0): no API.
    pub grpc_port: Option<u16>,
    pub log_format: LogFormat,
}

/// One `[[neighbor]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborConfig {
    pub address: NeighborAddress,
    pub remote_asn: Asn,
    pub port: u16,
    pub families: Vec<AddressFamily>,
    pub passive: bool,
    pub password: Option<String>,
    pub ttl: TtlMode,
    pub hold_time: u16,
    pub connect_retry: Duration,
    pub route_reflector_client: bool,
    pub next_hop_self: bool,
    /// RFC 8950: IPv4 routes with IPv6 next hops over this (IPv6) session.
    pub extended_next_hop: bool,
    /// Graceful restart (RFC 4724) with this restart time, in seconds.
    pub graceful_restart: Option<u16>,
    pub local_address: Option<IpAddr>,
    /// Our next hop of the other family than the session's (dual-stack routes over one session).
    pub next_hop_ipv4: Option<Ipv4Addr>,
    pub next_hop_ipv6: Option<Ipv6Addr>,
    pub import: Policy,
    pub export: Policy,
    pub max_prefix: Option<MaxPrefix>,
    /// Line of the `[[neighbor]]` table in the file, for messages.
    pub line: usize,
}

/// One `[[originate]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origination {
    pub prefix: IpNet,
    /// `None`: ourselves, per peer.
    pub next_hop: Option<IpAddr>,
    pub communities: Vec<Community>,
}

impl Origination {
    pub fn attributes(&self) -> PathAttributes {
        PathAttributes {
            origin: Origin::Igp,
            next_hop: self.next_hop,
            communities: self.communities.clone(),
            ..Default::default()
        }
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, span: &Range<usize>) -> usize {
    text.as_bytes()[..span.start.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and validates a config file's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text)?;
        let g = raw.global;
        let global = GlobalConfig {
            asn: g.asn,
            router_id: g.router_id,
            listen_addresses: g.listen_addresses.unwrap_or_else(|| {
                vec![
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                ]
            }),
            listen_port: g.listen_port.unwrap_or(179),
            cluster_id: g.cluster_id,
            grpc_port: g.grpc_port,
            log_format: g.log_format,
        };
        let invalid = |i: usize, span: &Range<usize>, key: &str, message: String| {
            ConfigError::Invalid {
                key: key.to_string(),
                line: line_of(text, span),
                message,
            }
            .with_index(i)
        };
        if global.router_id.is_unspecified() {
            return Err(ConfigError::Invalid {
                key: "global.router_id".into(),
                line: text
                    .lines()
                    .position(|l| l.trim_start().starts_with("router_id"))
                    .map_or(1, |p| p + 1),
                message: "0.0.0.0 is not a valid BGP identifier (RFC 6286)".into(),
            });
        }
        let mut neighbors = Vec::new();
        let mut seen = HashSet::new();
        for (i, n) in raw.neighbor.into_iter().enumerate() {
            let span = n.span();
            let n = n.into_inner();
            let fail = |key: &str, message: String| invalid(i, &span, key, message);
            if !seen.insert(n.address.clone()) {
                return Err(fail(
                    "address",
                    format!("neighbor {} is configured twice", n.address),
                ));
            }
            let hold_time = n.hold_time.unwrap_or(90);
            if hold_time == 1 || hold_time == 2 {
                return Err(fail(
                    "hold_time",
                    format!("{hold_time}: must be 0 or at least 3 (RFC 4271 section 4.2)"),
                ));
            }
            let connect_retry = n.connect_retry.unwrap_or(5);
            if connect_retry == 0 || connect_retry > 120 {
                return Err(fail(
                    "connect_retry",
                    format!("{connect_retry}: must be 1..=120 seconds"),
                ));
            }
            let ttl = match (n.multihop_ttl, n.ttl_security) {
                (Some(_), Some(_)) => {
                    return Err(fail(
                        "ttl_security",
                        "multihop_ttl and ttl_security exclude each other (GTSM always sends TTL 255)"
                            .into(),
                    ));
                }
                (Some(0), None) => return Err(fail("multihop_ttl", "must be 1..=255".into())),
                (Some(t), None) => TtlMode::Multihop(t),
                (None, Some(h)) if h == 0 || h > 254 => {
                    return Err(fail("ttl_security", format!("{h} hops: must be 1..=254")));
                }
                (None, Some(h)) => TtlMode::Gtsm { hops: h },
                (None, None) => TtlMode::Default,
            };
            if let Some(p) = &n.password
                && (p.is_empty() || p.len() > MD5_MAX_KEY_LEN)
            {
                return Err(fail(
                    "password",
                    format!("TCP-MD5 key of {} octets: must be 1..=80", p.len()),
                ));
            }
            let mut families = n
                .families
                .unwrap_or_else(|| vec![AddressFamily::Ipv6Unicast, AddressFamily::Ipv4Unicast]);
            families.dedup();
            if families.is_empty() {
                return Err(fail("families", "at least one family is needed".into()));
            }
            if n.extended_next_hop && !n.address.addr.is_ipv6() {
                return Err(fail(
                    "extended_next_hop",
                    "RFC 8950 next hops need an IPv6 session (the neighbor address is IPv4)".into(),
                ));
            }
            if let Some(l) = n.local_address
                && l.is_ipv4() != n.address.addr.is_ipv4()
            {
                return Err(fail(
                    "local_address",
                    format!(
                        "{l} is not of the neighbor address's family ({})",
                        n.address.addr
                    ),
                ));
            }
            let graceful_restart = match n.graceful_restart {
                None | Some(RawGracefulRestart::Enabled(false)) => None,
                Some(RawGracefulRestart::Enabled(true)) => Some(120),
                Some(RawGracefulRestart::Table { restart_time }) => {
                    let t = restart_time.unwrap_or(120);
                    if t > 4095 {
                        return Err(fail(
                            "graceful_restart.restart_time",
                            format!("{t}: the field has 12 bits (at most 4095 s)"),
                        ));
                    }
                    Some(t)
                }
            };
            let import_raw = n.import.unwrap_or_default();
            let export_raw = n.export.unwrap_or_default();
            if export_raw.max_prefix.is_some() || export_raw.max_prefix_action.is_some() {
                return Err(fail(
                    "export.max_prefix",
                    "max_prefix limits what a neighbor sends: it belongs in [neighbor.import]"
                        .into(),
                ));
            }
            let max_prefix = match import_raw.max_prefix {
                Some(limit) => {
                    let action = match import_raw.max_prefix_action {
                        Some(RawMaxPrefixAction::Warn) => MaxPrefixAction::Warn,
                        Some(RawMaxPrefixAction::Teardown) | None => MaxPrefixAction::TearDown,
                    };
                    Some(
                        MaxPrefix::new(limit, action)
                            .map_err(|e| fail("import.max_prefix", e.to_string()))?,
                    )
                }
                None => None,
            };
            let import = policy(&import_raw)
                .map_err(|(k, e)| fail(&format!("import.{k}"), e.to_string()))?;
            let export = policy(&export_raw)
                .map_err(|(k, e)| fail(&format!("export.{k}"), e.to_string()))?;
            neighbors.push(NeighborConfig {
                address: n.address,
                remote_asn: n.remote_asn,
                port: n.port.unwrap_or(179),
                families,
                passive: n.passive,
                password: n.password,
                ttl,
                hold_time,
                connect_retry: Duration::from_secs(connect_retry.into()),
                route_reflector_client: n.route_reflector_client,
                next_hop_self: n.next_hop_self,
                extended_next_hop: n.extended_next_hop,
                graceful_restart,
                local_address: n.local_address,
                next_hop_ipv4: n.next_hop_ipv4,
                next_hop_ipv6: n.next_hop_ipv6,
                import,
                export,
                max_prefix,
                line: line_of(text, &span),
            });
        }
        let mut originate = Vec::new();
        let mut prefixes = HashSet::new();
        for (i, o) in raw.originate.into_iter().enumerate() {
            let span = o.span();
            let o = o.into_inner();
            let fail = |key: &str, message: String| {
                ConfigError::Invalid {
                    key: key.to_string(),
                    line: line_of(text, &span),
                    message,
                }
                .with_table("originate", i)
            };
            let prefix = o.prefix.trunc();
            if prefix != o.prefix {
                return Err(fail(
                    "prefix",
                    format!("{} has host bits set (did you mean {prefix}?)", o.prefix),
                ));
            }
            if !prefixes.insert(prefix) {
                return Err(fail("prefix", format!("{prefix} is originated twice")));
            }
            if let (IpNet::V6(_), Some(IpAddr::V4(nh))) = (prefix, o.next_hop) {
                return Err(fail(
                    "next_hop",
                    format!("an IPv6 route never gets an IPv4 next hop ({nh})"),
                ));
            }
            originate.push(Origination {
                prefix,
                next_hop: o.next_hop,
                communities: o.communities.iter().map(|c| c.0).collect(),
            });
        }
        Ok(Config {
            global,
            neighbors,
            originate,
        })
    }

    /// The speaker's own settings.
    pub fn speaker_config(&self) -> SpeakerConfig {
        SpeakerConfig {
            asn: self.global.asn.0,
            router_id: self.global.router_id,
            cluster_id: self.global.cluster_id,
            listen: self
                .global
                .listen_addresses
                .iter()
                .map(|a| SocketAddr::new(*a, self.global.listen_port))
                .collect(),
        }
    }
}

impl ConfigError {
    /// Prefixes the key of an `Invalid` error with `neighbor[i].`.
    fn with_index(self, i: usize) -> Self {
        self.with_table("neighbor", i)
    }

    fn with_table(self, table: &str, i: usize) -> Self {
        match self {
            ConfigError::Invalid { key, line, message } => ConfigError::Invalid {
                key: format!("{table}[{i}].{key}"),
                line,
                message,
            },
            e => e,
        }
    }
}

/// Builds a [`Policy`]; on error, the key (relative to the policy table) and the reason.
fn policy(raw: &RawPolicy) -> Result<Policy, (String, PolicyError)> {
    let mut statements = Vec::new();
    for (i, s) in raw.statement.iter().enumerate() {
        let prefixes = s
            .prefixes
            .iter()
            .enumerate()
            .map(|(j, p)| {
                PrefixMatch::new(p.prefix, p.ge, p.le)
                    .map_err(|e| (format!("statement[{i}].prefixes[{j}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let list = |v: &[CommunityValue]| v.iter().map(|c| c.0).collect::<Vec<_>>();
        let communities = if !s.communities_all.is_empty() {
            Some(CommunityMatch::All(list(&s.communities_all)))
        } else if !s.communities_any.is_empty() {
            Some(CommunityMatch::Any(list(&s.communities_any)))
        } else {
            None
        };
        let mut actions = Vec::new();
        if let Some(set) = &s.set_communities {
            actions.push(CommunityAction::Set(list(set)));
        }
        if !s.add_communities.is_empty() {
            actions.push(CommunityAction::Add(list(&s.add_communities)));
        }
        if !s.remove_communities.is_empty() {
            actions.push(CommunityAction::Remove(list(&s.remove_communities)));
        }
        statements.push(Statement {
            conditions: Conditions {
                afi: s.family.map(|f| f.family().0),
                prefixes,
                communities,
            },
            action: s.action.into(),
            modifications: Modifications {
                communities: actions,
                prepend: s.prepend.filter(|&c| c > 0).map(|count| Prepend {
                    asn: s.prepend_asn.map(|a| a.0),
                    count,
                }),
                local_pref: s.local_pref,
                med: s.med,
            },
        });
    }
    Ok(Policy {
        statements,
        default_action: raw.default.into(),
        allow_default_route: raw.allow_default_route,
    })
}

impl NeighborConfig {
    /// The speaker's neighbour; `scope_id` is the ifindex of a link-local neighbour's interface.
    pub fn to_neighbor(&self, speaker: &SpeakerConfig, scope_id: Option<u32>) -> Neighbor {
        let mut n = Neighbor::new(speaker, self.address.addr, self.remote_asn.0);
        let fsm = &mut n.session.fsm;
        fsm.hold_time = self.hold_time;
        fsm.connect_retry_time = self.connect_retry;
        fsm.passive = self.passive;
        fsm.families = self.families.iter().map(|f| f.family()).collect();
        fsm.extended_next_hop = if self.extended_next_hop {
            vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]
        } else {
            Vec::new()
        };
        fsm.graceful_restart = self.graceful_restart.map(|t| GracefulRestartConfig {
            restart_time: t,
            restarting: false,
            forwarding: fsm
                .families
                .iter()
                .map(|&(afi, safi)| (afi, safi, false))
                .collect(),
        });
        n.session.scope_id = scope_id;
        n.session.remote_port = self.port;
        n.session.local_addr = self.local_address;
        n.session.md5_key = self.password.as_ref().map(|p| p.as_bytes().to_vec());
        n.session.ttl = self.ttl;
        // The id depends on the scope id: set it after.
        let id = n.id();
        n.rib.id = id;
        n.rib.route_reflector_client = self.route_reflector_client;
        n.rib.next_hop_self = self.next_hop_self;
        n.rib.import = self.import.clone();
        n.rib.export = self.export.clone();
        n.rib.max_prefix = self.max_prefix;
        n.local_ipv4 = self.next_hop_ipv4;
        n.local_ipv6 = self.next_hop_ipv6;
        n
    }
}

#[cfg(test)]
mod tests;
