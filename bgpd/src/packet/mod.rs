//! BGP messages as bgpd's own types and their wire codec; the codec is bgpd's own (docs/decisions/0001).

pub mod attribute;
pub mod error;
pub mod iana;
pub mod message;
mod nlri;
mod update;

pub use attribute::{AsPathSegment, Community, Origin, PathAttributes};
pub use error::{
    AttributeError, DecodeError, EncodeError, ErrorAction, HeaderError, OpenError, UpdateError,
    UpdateErrorKind,
};
pub use iana::{Afi, Family, FamilySet, Safi};
pub use message::{
    Capability, DecodeCxt, EncodeCxt, HEADER_LEN, MAX_MESSAGE_LEN, Message, NotificationMsg,
    OpenMsg, UpdateMsg, frame_len, negotiate,
};

#[cfg(test)]
mod tests;
