//! Codec errors: what failed, and the NOTIFICATION (RFC 4271 section 6) each one asks for.

use super::message::NotificationMsg;

/// NOTIFICATION error codes (RFC 4271 section 4.5, RFC 7313).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
}

/// Message Header Error (code 1), RFC 4271 section 6.1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Subcode 1: the marker is not all ones.
    #[error("connection not synchronized (marker is not all ones)")]
    ConnectionNotSynchronized,
    /// Subcode 2: the length field is out of range for the message (data: the length field).
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    /// Subcode 3: unknown message type (data: the type field).
    #[error("bad message type {0}")]
    BadMessageType(u8),
}

/// OPEN Message Error (code 2), RFC 4271 section 6.2 and RFC 5492.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Subcode 1; data is the largest version bgpd supports (4) as 2 octets.
    #[error("unsupported BGP version {0}")]
    UnsupportedVersion(u8),
    /// Subcode 3: a BGP Identifier of 0 (RFC 6286 section 2.2 only asks it be non-zero).
    #[error("bad BGP identifier")]
    BadBgpIdentifier,
    /// Subcode 4: an optional parameter other than Capabilities (type 2).
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    /// Subcode 6: hold time 1 or 2 seconds.
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    /// Subcode 0 (unspecific): optional parameters or a capability whose lengths do not add up.
    #[error("malformed OPEN: {0}")]
    Malformed(&'static str),
}

/// UPDATE Message Error subcodes (RFC 4271 section 4.5 / 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum UpdateErrorKind {
    MalformedAttributeList = 1,
    UnrecognizedWellKnownAttribute = 2,
    MissingWellKnownAttribute = 3,
    AttributeFlagsError = 4,
    AttributeLengthError = 5,
    InvalidOrigin = 6,
    InvalidNextHop = 8,
    OptionalAttributeError = 9,
    InvalidNetworkField = 10,
    MalformedAsPath = 11,
}

impl std::fmt::Display for UpdateErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            UpdateErrorKind::MalformedAttributeList => "malformed attribute list",
            UpdateErrorKind::UnrecognizedWellKnownAttribute => "unrecognized well-known attribute",
            UpdateErrorKind::MissingWellKnownAttribute => "missing well-known attribute",
            UpdateErrorKind::AttributeFlagsError => "attribute flags error",
            UpdateErrorKind::AttributeLengthError => "attribute length error",
            UpdateErrorKind::InvalidOrigin => "invalid ORIGIN",
            UpdateErrorKind::InvalidNextHop => "invalid NEXT_HOP",
            UpdateErrorKind::OptionalAttributeError => "optional attribute error",
            UpdateErrorKind::InvalidNetworkField => "invalid network field",
            UpdateErrorKind::MalformedAsPath => "malformed AS_PATH",
        };
        f.write_str(s)
    }
}

/// An UPDATE error that RFC 7606 still answers with a session reset (NOTIFICATION code 3).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (attribute type {type_code:?})")]
pub struct UpdateError {
    pub kind: UpdateErrorKind,
    /// The attribute at fault, when there is one.
    pub type_code: Option<u8>,
    /// The NOTIFICATION data field RFC 4271 section 6.3 asks for (often the whole attribute: type, length, value).
    pub data: Vec<u8>,
}

/// How RFC 7606 section 2 says an UPDATE error short of a session reset is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorAction {
    /// Every NLRI of the UPDATE is withdrawn, as if it had been in the withdrawn routes (RFC 7606 section 2).
    TreatAsWithdraw,
    /// The attribute is dropped and the UPDATE processed without it.
    AttributeDiscard,
}

/// An error recovered from without a session reset; the decoder has already applied `action`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttributeError {
    pub type_code: u8,
    pub action: ErrorAction,
    /// What RFC 4271 would have called it; logged, and counted by the speaker.
    pub kind: UpdateErrorKind,
}

/// Why a frame could not be decoded. Every variant maps to the NOTIFICATION that answers it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header: {0}")]
    Header(#[from] HeaderError),
    #[error("OPEN: {0}")]
    Open(#[from] OpenError),
    #[error("UPDATE: {0}")]
    Update(#[from] UpdateError),
    /// ROUTE-REFRESH with a length other than 23 (RFC 7313 section 5: code 7, subcode 1, data the message).
    #[error("ROUTE-REFRESH of invalid length {}", .0.len())]
    RouteRefreshLength(Vec<u8>),
    /// ROUTE-REFRESH for a family bgpd does not speak: RFC 2918 section 4 says to ignore it, so the speaker
    /// must not send the NOTIFICATION this maps to (see [`DecodeError::is_ignorable`]).
    #[error("ROUTE-REFRESH for unsupported AFI {afi} SAFI {safi}")]
    RouteRefreshFamily { afi: u16, safi: u8 },
}

impl DecodeError {
    /// True when the RFCs say to ignore the message rather than reset the session.
    pub fn is_ignorable(&self) -> bool {
        matches!(self, DecodeError::RouteRefreshFamily { .. })
    }
}

impl From<&DecodeError> for NotificationMsg {
    fn from(e: &DecodeError) -> Self {
        let (code, subcode, data) = match e {
            DecodeError::Header(h) => match h {
                HeaderError::ConnectionNotSynchronized => (code::MESSAGE_HEADER, 1, vec![]),
                HeaderError::BadMessageLength(l) => {
                    (code::MESSAGE_HEADER, 2, l.to_be_bytes().to_vec())
                }
                HeaderError::BadMessageType(t) => (code::MESSAGE_HEADER, 3, vec![*t]),
            },
            DecodeError::Open(o) => match o {
                OpenError::UnsupportedVersion(_) => {
                    (code::OPEN_MESSAGE, 1, 4u16.to_be_bytes().to_vec())
                }
                OpenError::BadBgpIdentifier => (code::OPEN_MESSAGE, 3, vec![]),
                OpenError::UnsupportedOptionalParameter(_) => (code::OPEN_MESSAGE, 4, vec![]),
                OpenError::UnacceptableHoldTime(_) => (code::OPEN_MESSAGE, 6, vec![]),
                OpenError::Malformed(_) => (code::OPEN_MESSAGE, 0, vec![]),
            },
            DecodeError::Update(u) => (code::UPDATE_MESSAGE, u.kind as u8, u.data.clone()),
            DecodeError::RouteRefreshLength(m) => (code::ROUTE_REFRESH_MESSAGE, 1, m.clone()),
            DecodeError::RouteRefreshFamily { .. } => (code::ROUTE_REFRESH_MESSAGE, 0, vec![]),
        };
        NotificationMsg {
            code,
            subcode,
            data,
        }
    }
}

impl From<DecodeError> for NotificationMsg {
    fn from(e: DecodeError) -> Self {
        NotificationMsg::from(&e)
    }
}

/// Why a message could not be encoded; these are bugs or unnegotiated features on the sending side.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {0} octets exceeds the 4096-octet maximum")]
    MessageTooLong(usize),
    #[error("an announcement needs path attributes")]
    MissingAttributes,
    #[error("no next hop usable for {0:?} NLRI")]
    NoNextHop(super::iana::Afi),
    #[error("IPv6 next hop for IPv4 NLRI without the extended next hop capability (RFC 8950)")]
    ExtendedNextHopNotNegotiated,
    #[error("IPv4 and IPv6 NLRI need two MP_REACH_NLRI attributes in one UPDATE")]
    MixedFamilies,
    #[error("path id list length {ids} does not match NLRI count {nlri}")]
    PathIdCount { ids: usize, nlri: usize },
    #[error("optional parameters exceed 255 octets")]
    OptionalParametersTooLong,
    #[error("capability {0} value exceeds 255 octets")]
    CapabilityTooLong(u8),
    #[error("attribute {0} value exceeds 65535 octets")]
    AttributeTooLong(u8),
}
