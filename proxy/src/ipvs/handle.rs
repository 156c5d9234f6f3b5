//! A blocking IPVS handle on a generic netlink socket, in the network namespace it was opened in.

use std::net::IpAddr;

use netlink_packet_core::NetlinkDeserializable;
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::{GenlCtrl, nlas::GenlCtrlAttrs};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use super::codec::{self, Command, Frame, IpvsGenl, Request};
use super::error::{DecodeError, IpvsError};
use super::types::*;

/// Talks to the kernel's IPVS in one network namespace (IPVS state is per namespace, and a netlink
/// socket stays in the namespace of the thread that opened it).
///
/// Calls block until the kernel answers; the kernel answers every request, so no timeout is needed.
/// Callers on an async runtime use `spawn_blocking`.
#[derive(Debug)]
pub struct IpvsHandle {
    socket: Socket,
    family_id: u16,
    seq: u32,
}

impl IpvsHandle {
    /// Opens a socket in the calling thread's network namespace and resolves the "IPVS" family.
    pub fn new() -> Result<Self, IpvsError> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let mut handle = Self {
            socket,
            family_id: 0,
            seq: 0,
        };
        handle.family_id = handle.resolve_family()?;
        Ok(handle)
    }

    /// The family id nlctrl assigned to IPVS.
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    fn resolve_family(&mut self) -> Result<u16, IpvsError> {
        let seq = self.next_seq();
        let replies: Vec<GenlMessage<GenlCtrl>> =
            match self.transact(&codec::encode_get_family(seq), seq, Command::GetFamily) {
                Err(IpvsError::Kernel { errno, .. }) if errno == ENOENT => {
                    return Err(IpvsError::FamilyNotFound);
                }
                other => other?,
            };
        replies
            .iter()
            .flat_map(|m| m.payload.nlas.iter())
            .find_map(|nla| match nla {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(IpvsError::Decode(DecodeError::MissingAttribute {
                nest: "CTRL_CMD_NEWFAMILY",
                attr: "CTRL_ATTR_FAMILY_ID",
            }))
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one request and collects the messages of its answer, up to NLMSG_DONE or the acknowledgement.
    fn transact<I>(&mut self, bytes: &[u8], seq: u32, command: Command) -> Result<Vec<I>, IpvsError>
    where
        I: NetlinkDeserializable,
        I::Error: Into<netlink_packet_core::DecodeError>,
    {
        self.socket.send(bytes, 0)?;
        let mut messages = Vec::new();
        loop {
            let (buf, _) = self.socket.recv_from_full()?;
            if buf.is_empty() {
                return Err(DecodeError::Truncated.into());
            }
            for frame in codec::split_frames::<I>(&buf, seq)? {
                match frame {
                    Frame::Message(m) => messages.push(m),
                    Frame::Done | Frame::Ack => return Ok(messages),
                    Frame::Error(errno) => {
                        return Err(IpvsError::Kernel {
                            command,
                            errno,
                            source: std::io::Error::from_raw_os_error(errno),
                        });
                    }
                }
            }
        }
    }

    fn request(&mut self, request: &Request) -> Result<Vec<IpvsGenl>, IpvsError> {
        let seq = self.next_seq();
        let bytes = request.encode(self.family_id, seq);
        let replies: Vec<GenlMessage<IpvsGenl>> = self.transact(&bytes, seq, request.command())?;
        Ok(replies.into_iter().map(|m| m.payload).collect())
    }

    fn single(&mut self, request: &Request) -> Result<IpvsGenl, IpvsError> {
        self.request(request)?
            .into_iter()
            .next()
            .ok_or(IpvsError::Decode(DecodeError::Truncated))
    }

    /// `IPVS_CMD_GET_INFO`: version and connection table size (`ipvsadm -Ln`'s first line).
    pub fn info(&mut self) -> Result<Info, IpvsError> {
        Ok(codec::decode_info(&self.single(&Request::GetInfo)?)?)
    }

    /// `IPVS_CMD_GET_CONFIG`: connection timeouts.
    pub fn config(&mut self) -> Result<Timeouts, IpvsError> {
        Ok(codec::decode_config(&self.single(&Request::GetConfig)?)?)
    }

    /// `IPVS_CMD_SET_CONFIG`: connection timeouts; a 0 leaves that timeout unchanged.
    pub fn set_config(&mut self, timeouts: Timeouts) -> Result<(), IpvsError> {
        self.request(&Request::SetConfig(timeouts)).map(drop)
    }

    /// Every service of the namespace, with statistics (a GET_SERVICE dump).
    pub fn services(&mut self) -> Result<Vec<ServiceEntry>, IpvsError> {
        self.request(&Request::DumpServices)?
            .iter()
            .map(|m| codec::decode_service(m).map_err(IpvsError::from))
            .collect()
    }

    /// One service; `IpvsError::Kernel` with `ESRCH` when it does not exist.
    pub fn service(&mut self, key: &ServiceKey) -> Result<ServiceEntry, IpvsError> {
        Ok(codec::decode_service(
            &self.single(&Request::GetService(*key))?,
        )?)
    }

    /// `IPVS_CMD_NEW_SERVICE`; `EEXIST` when the key is taken.
    pub fn new_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        self.request(&Request::NewService(service.clone()))
            .map(drop)
    }

    /// `IPVS_CMD_SET_SERVICE`: changes scheduler, flags, timeout, netmask of an existing service.
    pub fn set_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        self.request(&Request::SetService(service.clone()))
            .map(drop)
    }

    /// `IPVS_CMD_DEL_SERVICE`, with its destinations; `ESRCH` when it does not exist.
    pub fn del_service(&mut self, key: &ServiceKey) -> Result<(), IpvsError> {
        self.request(&Request::DelService(*key)).map(drop)
    }

    /// The destinations of one service, with connection counts and statistics (a GET_DEST dump).
    pub fn destinations(&mut self, key: &ServiceKey) -> Result<Vec<DestinationEntry>, IpvsError> {
        let family = key.family();
        self.request(&Request::DumpDests(*key))?
            .iter()
            .map(|m| codec::decode_dest(m, family).map_err(IpvsError::from))
            .collect()
    }

    /// `IPVS_CMD_NEW_DEST`; `EEXIST` when the destination exists.
    pub fn new_destination(
        &mut self,
        key: &ServiceKey,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        self.request(&Request::NewDest(*key, dest.clone()))
            .map(drop)
    }

    /// `IPVS_CMD_SET_DEST`: changes weight, forwarding method, thresholds.
    pub fn set_destination(
        &mut self,
        key: &ServiceKey,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        self.request(&Request::SetDest(*key, dest.clone()))
            .map(drop)
    }

    /// `IPVS_CMD_DEL_DEST`; `ENOENT` when the destination does not exist.
    pub fn del_destination(
        &mut self,
        key: &ServiceKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), IpvsError> {
        self.request(&Request::DelDest {
            service: *key,
            addr,
            port,
        })
        .map(drop)
    }

    /// `IPVS_CMD_FLUSH`: removes every service of the namespace. For tests in their own namespace only:
    /// the daemon never removes what it did not create.
    pub fn flush(&mut self) -> Result<(), IpvsError> {
        self.request(&Request::Flush).map(drop)
    }
}

/// errno for "no such family" from nlctrl (asm-generic/errno-base.h).
const ENOENT: i32 = 2;
