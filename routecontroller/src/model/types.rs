//! Plain value types of the desired routing state: ASNs, families, communities, passwords.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An autonomous system number (RFC 6793, four octets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asn(pub u32);

/// Why a string is not a usable ASN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsnError {
    /// Not a decimal integer in 0..=4294967295 (asplain, RFC 5396) nor asdot `X.Y`.
    #[error("not an AS number: {0:?}")]
    Syntax(String),
    /// Reserved: 0 (RFC 7607), 23456 AS_TRANS (RFC 6793), 65535 and 4294967295 (RFC 7300).
    #[error("AS number {0} is reserved")]
    Reserved(u32),
}

impl FromStr for Asn {
    type Err = AsnError;

    /// Accepts asplain (`4200000001`) and asdot (`64086.59905`), RFC 5396.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let value = if let Some((hi, lo)) = t.split_once('.') {
            let hi: u16 = hi.parse().map_err(|_| AsnError::Syntax(s.to_owned()))?;
            let lo: u16 = lo.parse().map_err(|_| AsnError::Syntax(s.to_owned()))?;
            (u32::from(hi) << 16) | u32::from(lo)
        } else {
            t.parse::<u32>()
                .map_err(|_| AsnError::Syntax(s.to_owned()))?
        };
        Asn::new(value)
    }
}

impl Asn {
    /// Validates a numeric ASN, rejecting the reserved values.
    pub fn new(value: u32) -> Result<Self, AsnError> {
        match value {
            0 | 23456 | 65535 | u32::MAX => Err(AsnError::Reserved(value)),
            v => Ok(Asn(v)),
        }
    }
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An IP family, named as Kubernetes names it (`ipFamilies: [IPv6, IPv4]`); each maps to AFI 1 / 2 with SAFI unicast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    /// AFI 1.
    Ipv4,
    /// AFI 2.
    Ipv6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of_addr(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => IpFamily::Ipv4,
            IpAddr::V6(_) => IpFamily::Ipv6,
        }
    }

    /// The family of a prefix.
    pub fn of_net(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => IpFamily::Ipv4,
            IpNet::V6(_) => IpFamily::Ipv6,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            IpFamily::Ipv4 => IpFamily::Ipv6,
            IpFamily::Ipv6 => IpFamily::Ipv4,
        }
    }

    /// The longest prefix length of the family.
    pub fn max_prefix_len(self) -> u8 {
        match self {
            IpFamily::Ipv4 => 32,
            IpFamily::Ipv6 => 128,
        }
    }

    /// The default route of the family (`0.0.0.0/0`, `::/0`).
    pub fn default_route(self) -> IpNet {
        match self {
            IpFamily::Ipv4 => IpNet::V4(Default::default()),
            IpFamily::Ipv6 => IpNet::V6(Default::default()),
        }
    }
}

impl FromStr for IpFamily {
    type Err = String;

    /// `IPv4` / `IPv6` as in Service `ipFamilies`, case-insensitive; `ipv4-unicast` / `ipv6-unicast` (GoBGP) too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ipv4" | "ipv4-unicast" => Ok(IpFamily::Ipv4),
            "ipv6" | "ipv6-unicast" => Ok(IpFamily::Ipv6),
            _ => Err(format!("unknown IP family {s:?} (expected IPv4 or IPv6)")),
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::Ipv4 => "IPv4",
            IpFamily::Ipv6 => "IPv6",
        })
    }
}

/// A BGP standard community (RFC 1997), four octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl FromStr for Community {
    type Err = String;

    /// Accepts `ASN:value` (two 16-bit halves), a 32-bit decimal, or an IANA well-known name
    /// (`no-export`, `no-advertise`, `no-export-subconfed`, `no-peer`, `graceful-shutdown`, `blackhole`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let well_known = match t.to_ascii_lowercase().as_str() {
            "graceful-shutdown" => Some(0xFFFF_0000), // RFC 8326
            "blackhole" => Some(0xFFFF_029A),         // RFC 7999
            "no-export" => Some(0xFFFF_FF01),         // RFC 1997
            "no-advertise" => Some(0xFFFF_FF02),      // RFC 1997
            "no-export-subconfed" | "local-as" => Some(0xFFFF_FF03), // RFC 1997
            "no-peer" => Some(0xFFFF_FF04),           // RFC 3765
            _ => None,
        };
        if let Some(v) = well_known {
            return Ok(Community(v));
        }
        if let Some((hi, lo)) = t.split_once(':') {
            let hi: u16 = hi
                .parse()
                .map_err(|_| format!("community {s:?}: {hi:?} is not a 16-bit number"))?;
            let lo: u16 = lo
                .parse()
                .map_err(|_| format!("community {s:?}: {lo:?} is not a 16-bit number"))?;
            return Ok(Community((u32::from(hi) << 16) | u32::from(lo)));
        }
        t.parse::<u32>()
            .map(Community)
            .map_err(|_| format!("not a BGP community: {s:?} (expected ASN:value, a 32-bit number or a well-known name)"))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xFFFF)
    }
}

/// AS-path prepending applied to the node's announcements on export to eBGP peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsPathPrepend {
    /// The ASN to prepend.
    pub asn: Asn,
    /// How many times (1..=[`AsPathPrepend::MAX_REPEAT`]).
    pub repeat: u8,
}

impl AsPathPrepend {
    /// Upper bound for `repeat-n`; longer prepends only make paths look broken to operators.
    pub const MAX_REPEAT: u8 = 16;
}

/// A TCP MD5 password (RFC 2385); `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A key of a Secret in fairlead's own namespace (the DaemonSet's), as in `secretKeyRef`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// Where a peer's password comes from; the controller resolves Secret references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerPassword {
    /// Given inline (flags, kube-router's base64 annotation).
    Value(Password),
    /// A Secret key (the `fairlead.io/peers` annotation), read by the controller.
    SecretKeyRef(SecretKeySelector),
}
