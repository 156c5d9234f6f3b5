//! Errors of the IPVS module: socket I/O, the kernel's answer (errno kept), malformed replies.

use std::io;

use super::codec::Command;

/// What went wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error("generic netlink socket: {0}")]
    Io(#[from] io::Error),
    /// nlctrl does not know the family: the `ip_vs` module is not loaded in this kernel.
    #[error("generic netlink family \"IPVS\" is not registered (is the ip_vs module loaded?)")]
    FamilyNotFound,
    /// The kernel answered the command with an error.
    #[error("{command} failed: {source}")]
    Kernel {
        command: Command,
        errno: i32,
        #[source]
        source: io::Error,
    },
    #[error("malformed reply: {0}")]
    Decode(#[from] DecodeError),
}

impl IpvsError {
    /// The kernel's errno (positive, e.g. `libc::EEXIST`) when the kernel refused the command.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            Self::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

/// A reply the codec could not turn into typed values.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("netlink framing: {0}")]
    Netlink(#[from] netlink_packet_core::DecodeError),
    #[error("{nest} lacks attribute {attr}")]
    MissingAttribute {
        nest: &'static str,
        attr: &'static str,
    },
    #[error("attribute {attr} has {len} bytes, expected {expected}")]
    Length {
        attr: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("unknown address family {0}")]
    AddressFamily(u16),
    #[error("unknown protocol {0}")]
    Protocol(u16),
    #[error(transparent)]
    Scheduler(#[from] super::types::UnknownScheduler),
    #[error("scheduler name is not NUL-terminated UTF-8")]
    SchedulerName,
    #[error("unknown forwarding method {0:#x}")]
    FwdMethod(u32),
    #[error("netmask {0:#x} is not a prefix of its family")]
    Netmask(u32),
    #[error("unexpected reply command {0}")]
    UnexpectedCommand(u8),
    #[error("reply ended without NLMSG_DONE or an acknowledgement")]
    Truncated,
}
