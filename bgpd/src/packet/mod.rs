//! BGP messages as bgpd's own types; the wire codec behind them is swappable (docs/decisions/0001).

pub mod attribute;
pub mod iana;
pub mod message;

pub use attribute::{AsPathSegment, Community, Origin, PathAttributes};
pub use iana::{Afi, Safi};
pub use message::{Capability, Message, NotificationMsg, OpenMsg, UpdateMsg};
