//! Sans-IO codec: typed requests to netlink bytes, netlink bytes to typed replies.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    DecodeError as NlDecodeError, Emitable, NLA_F_NESTED, NLA_TYPE_MASK, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST, NetlinkDeserializable, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

use super::error::DecodeError;
use super::types::*;
use super::uapi::*;

/// The IPVS generic netlink payload: a command and its attributes, kept as bytes.
///
/// The attribute numbering depends on the command (an info reply reuses the numbers of a service
/// request), so attributes are decoded by the typed functions below, not by one attribute enum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsGenl {
    pub cmd: u8,
    pub attrs: Vec<u8>,
}

impl GenlFamily for IpvsGenl {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsGenl {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.attrs.len()].copy_from_slice(&self.attrs);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsGenl {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, NlDecodeError> {
        Ok(Self {
            cmd: header.cmd,
            attrs: buf.to_vec(),
        })
    }
}

/// IPVS commands this module sends, named as in `ip_vs.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    NewService,
    SetService,
    DelService,
    GetService,
    NewDest,
    SetDest,
    DelDest,
    GetDest,
    SetConfig,
    GetConfig,
    GetInfo,
    Flush,
    /// nlctrl's CTRL_CMD_GETFAMILY, sent to resolve the family id.
    GetFamily,
}

impl Command {
    fn number(self) -> u8 {
        match self {
            Self::NewService => IPVS_CMD_NEW_SERVICE,
            Self::SetService => IPVS_CMD_SET_SERVICE,
            Self::DelService => IPVS_CMD_DEL_SERVICE,
            Self::GetService => IPVS_CMD_GET_SERVICE,
            Self::NewDest => IPVS_CMD_NEW_DEST,
            Self::SetDest => IPVS_CMD_SET_DEST,
            Self::DelDest => IPVS_CMD_DEL_DEST,
            Self::GetDest => IPVS_CMD_GET_DEST,
            Self::SetConfig => IPVS_CMD_SET_CONFIG,
            Self::GetConfig => IPVS_CMD_GET_CONFIG,
            Self::GetInfo => IPVS_CMD_GET_INFO,
            Self::Flush => IPVS_CMD_FLUSH,
            // CTRL_CMD_GETFAMILY; never sent as an IPVS command.
            Self::GetFamily => 3,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NewService => "IPVS_CMD_NEW_SERVICE",
            Self::SetService => "IPVS_CMD_SET_SERVICE",
            Self::DelService => "IPVS_CMD_DEL_SERVICE",
            Self::GetService => "IPVS_CMD_GET_SERVICE",
            Self::NewDest => "IPVS_CMD_NEW_DEST",
            Self::SetDest => "IPVS_CMD_SET_DEST",
            Self::DelDest => "IPVS_CMD_DEL_DEST",
            Self::GetDest => "IPVS_CMD_GET_DEST",
            Self::SetConfig => "IPVS_CMD_SET_CONFIG",
            Self::GetConfig => "IPVS_CMD_GET_CONFIG",
            Self::GetInfo => "IPVS_CMD_GET_INFO",
            Self::Flush => "IPVS_CMD_FLUSH",
            Self::GetFamily => "CTRL_CMD_GETFAMILY(IPVS)",
        })
    }
}

/// A request to IPVS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    GetInfo,
    GetConfig,
    SetConfig(Timeouts),
    NewService(Service),
    SetService(Service),
    DelService(ServiceKey),
    GetService(ServiceKey),
    /// GET_SERVICE as a dump: every service of the network namespace.
    DumpServices,
    NewDest(ServiceKey, Destination),
    SetDest(ServiceKey, Destination),
    DelDest {
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
    },
    /// GET_DEST as a dump: every destination of one service.
    DumpDests(ServiceKey),
    /// Removes every service of the network namespace: for tests, never for the daemon.
    Flush,
}

impl Request {
    pub fn command(&self) -> Command {
        match self {
            Self::GetInfo => Command::GetInfo,
            Self::GetConfig => Command::GetConfig,
            Self::SetConfig(_) => Command::SetConfig,
            Self::NewService(_) => Command::NewService,
            Self::SetService(_) => Command::SetService,
            Self::DelService(_) => Command::DelService,
            Self::GetService(_) | Self::DumpServices => Command::GetService,
            Self::NewDest(..) => Command::NewDest,
            Self::SetDest(..) => Command::SetDest,
            Self::DelDest { .. } => Command::DelDest,
            Self::DumpDests(_) => Command::GetDest,
            Self::Flush => Command::Flush,
        }
    }

    pub fn is_dump(&self) -> bool {
        matches!(self, Self::DumpServices | Self::DumpDests(_))
    }

    /// The command's attributes.
    pub fn attrs(&self) -> Vec<u8> {
        let mut w = AttrWriter::default();
        match self {
            Self::GetInfo | Self::GetConfig | Self::DumpServices | Self::Flush => {}
            Self::SetConfig(t) => {
                w.put_u32(IPVS_CMD_ATTR_TIMEOUT_TCP, t.tcp);
                w.put_u32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, t.tcp_fin);
                w.put_u32(IPVS_CMD_ATTR_TIMEOUT_UDP, t.udp);
            }
            Self::NewService(svc) | Self::SetService(svc) => {
                w.nested(IPVS_CMD_ATTR_SERVICE, |w| put_service(w, svc))
            }
            Self::DelService(key) | Self::GetService(key) | Self::DumpDests(key) => {
                w.nested(IPVS_CMD_ATTR_SERVICE, |w| put_service_key(w, key))
            }
            Self::NewDest(key, dest) | Self::SetDest(key, dest) => {
                w.nested(IPVS_CMD_ATTR_SERVICE, |w| put_service_key(w, key));
                w.nested(IPVS_CMD_ATTR_DEST, |w| put_dest(w, dest));
            }
            Self::DelDest {
                service,
                addr,
                port,
            } => {
                w.nested(IPVS_CMD_ATTR_SERVICE, |w| put_service_key(w, service));
                w.nested(IPVS_CMD_ATTR_DEST, |w| {
                    w.put_addr(IPVS_DEST_ATTR_ADDR, addr);
                    w.put_be16(IPVS_DEST_ATTR_PORT, *port);
                    w.put_u16(IPVS_DEST_ATTR_ADDR_FAMILY, AddressFamily::of(addr).to_af());
                });
            }
        }
        w.0
    }

    /// The whole netlink message, ready for `send`.
    pub fn encode(&self, family_id: u16, seq: u32) -> Vec<u8> {
        let mut genl = GenlMessage::from_payload(IpvsGenl {
            cmd: self.command().number(),
            attrs: self.attrs(),
        });
        genl.set_resolved_family_id(family_id);
        let flags = if self.is_dump() {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        };
        serialize(genl, flags, seq)
    }
}

/// The nlctrl request that resolves the IPVS family id.
pub fn encode_get_family(seq: u32) -> Vec<u8> {
    use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs};
    let genl = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_owned())],
    });
    serialize(genl, NLM_F_REQUEST | NLM_F_ACK, seq)
}

fn serialize<T: NetlinkSerializable + fmt::Debug>(inner: T, flags: u16, seq: u32) -> Vec<u8>
where
    NetlinkPayload<T>: From<T>,
{
    let mut msg = NetlinkMessage::from(inner);
    msg.header.flags = flags;
    msg.header.sequence_number = seq;
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// One netlink message of a reply, with the framing resolved.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<I> {
    Message(I),
    /// NLMSG_DONE: the end of a dump.
    Done,
    /// NLMSG_ERROR with code 0: the acknowledgement that ends a non-dump request.
    Ack,
    /// NLMSG_ERROR with the kernel's errno (positive).
    Error(i32),
}

/// Splits one datagram into frames, keeping those that answer `seq`.
pub fn split_frames<I>(buf: &[u8], seq: u32) -> Result<Vec<Frame<I>>, DecodeError>
where
    I: NetlinkDeserializable,
    I::Error: Into<NlDecodeError>,
{
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let msg = NetlinkMessage::<I>::deserialize(&buf[offset..])?;
        let len = msg.header.length as usize;
        if len == 0 {
            return Err(DecodeError::Truncated);
        }
        offset += len.div_ceil(4) * 4;
        if msg.header.sequence_number != seq {
            continue;
        }
        frames.push(match msg.payload {
            NetlinkPayload::InnerMessage(inner) => Frame::Message(inner),
            NetlinkPayload::Done(_) => Frame::Done,
            NetlinkPayload::Error(e) => match e.code {
                None => Frame::Ack,
                Some(code) => Frame::Error(code.get().saturating_abs()),
            },
            NetlinkPayload::Overrun(_) => return Err(DecodeError::Truncated),
            _ => continue,
        });
    }
    Ok(frames)
}

/// Decodes a GET_INFO reply (command SET_INFO).
pub fn decode_info(msg: &IpvsGenl) -> Result<Info, DecodeError> {
    expect_cmd(msg, IPVS_CMD_SET_INFO)?;
    let attrs = AttrSet::parse(&msg.attrs)?;
    let nest = "IPVS_CMD_SET_INFO";
    Ok(Info {
        version: Version::from_code(attrs.u32(nest, IPVS_INFO_ATTR_VERSION, "VERSION")?),
        conn_table_size: attrs.u32(nest, IPVS_INFO_ATTR_CONN_TAB_SIZE, "CONN_TAB_SIZE")?,
    })
}

/// Decodes a GET_CONFIG reply (command SET_CONFIG).
pub fn decode_config(msg: &IpvsGenl) -> Result<Timeouts, DecodeError> {
    expect_cmd(msg, IPVS_CMD_SET_CONFIG)?;
    let attrs = AttrSet::parse(&msg.attrs)?;
    let nest = "IPVS_CMD_SET_CONFIG";
    Ok(Timeouts {
        tcp: attrs.u32(nest, IPVS_CMD_ATTR_TIMEOUT_TCP, "TIMEOUT_TCP")?,
        tcp_fin: attrs.u32(nest, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, "TIMEOUT_TCP_FIN")?,
        udp: attrs.u32(nest, IPVS_CMD_ATTR_TIMEOUT_UDP, "TIMEOUT_UDP")?,
    })
}

/// Decodes one service of a GET_SERVICE reply or dump (command NEW_SERVICE).
pub fn decode_service(msg: &IpvsGenl) -> Result<ServiceEntry, DecodeError> {
    expect_cmd(msg, IPVS_CMD_NEW_SERVICE)?;
    let top = AttrSet::parse(&msg.attrs)?;
    let nest = "IPVS_CMD_ATTR_SERVICE";
    let attrs =
        AttrSet::parse(top.require("IPVS_CMD_NEW_SERVICE", IPVS_CMD_ATTR_SERVICE, nest)?)?;
    let af = attrs.u16(nest, IPVS_SVC_ATTR_AF, "AF")?;
    let family = AddressFamily::from_af(af).ok_or(DecodeError::AddressFamily(af))?;
    let key = match attrs.get(IPVS_SVC_ATTR_FWMARK) {
        Some(_) => ServiceKey::Fwmark {
            family,
            mark: attrs.u32(nest, IPVS_SVC_ATTR_FWMARK, "FWMARK")?,
        },
        None => {
            let proto = attrs.u16(nest, IPVS_SVC_ATTR_PROTOCOL, "PROTOCOL")?;
            ServiceKey::Addr {
                protocol: Protocol::from_number(proto).ok_or(DecodeError::Protocol(proto))?,
                addr: parse_addr(family, attrs.require(nest, IPVS_SVC_ATTR_ADDR, "ADDR")?)?,
                port: attrs.be16(nest, IPVS_SVC_ATTR_PORT, "PORT")?,
            }
        }
    };
    let sched = attrs.require(nest, IPVS_SVC_ATTR_SCHED_NAME, "SCHED_NAME")?;
    let sched = sched
        .split(|b| *b == 0)
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .ok_or(DecodeError::SchedulerName)?;
    let flags = attrs.require(nest, IPVS_SVC_ATTR_FLAGS, "FLAGS")?;
    if flags.len() != 8 {
        return Err(DecodeError::Length {
            attr: "FLAGS",
            len: flags.len(),
            expected: 8,
        });
    }
    let flags = u32::from_ne_bytes(flags[..4].try_into().expect("length checked"));
    let netmask = attrs.require(nest, IPVS_SVC_ATTR_NETMASK, "NETMASK")?;
    Ok(ServiceEntry {
        service: Service {
            key,
            scheduler: sched.parse()?,
            flags: ServiceFlags::from_bits(flags),
            timeout: attrs.u32(nest, IPVS_SVC_ATTR_TIMEOUT, "TIMEOUT")?,
            netmask: parse_netmask(family, netmask)?,
        },
        stats: parse_stats(&attrs, IPVS_SVC_ATTR_STATS, IPVS_SVC_ATTR_STATS64)?,
    })
}

/// Decodes one destination of a GET_DEST dump (command NEW_DEST). `family` is the service's, for kernels
/// that do not report a destination's own family.
pub fn decode_dest(msg: &IpvsGenl, family: AddressFamily) -> Result<DestinationEntry, DecodeError> {
    expect_cmd(msg, IPVS_CMD_NEW_DEST)?;
    let top = AttrSet::parse(&msg.attrs)?;
    let nest = "IPVS_CMD_ATTR_DEST";
    let attrs = AttrSet::parse(top.require("IPVS_CMD_NEW_DEST", IPVS_CMD_ATTR_DEST, nest)?)?;
    let family = match attrs.get(IPVS_DEST_ATTR_ADDR_FAMILY) {
        Some(_) => {
            let af = attrs.u16(nest, IPVS_DEST_ATTR_ADDR_FAMILY, "ADDR_FAMILY")?;
            AddressFamily::from_af(af).ok_or(DecodeError::AddressFamily(af))?
        }
        None => family,
    };
    let fwd = attrs.u32(nest, IPVS_DEST_ATTR_FWD_METHOD, "FWD_METHOD")?;
    Ok(DestinationEntry {
        destination: Destination {
            addr: parse_addr(family, attrs.require(nest, IPVS_DEST_ATTR_ADDR, "ADDR")?)?,
            port: attrs.be16(nest, IPVS_DEST_ATTR_PORT, "PORT")?,
            fwd_method: FwdMethod::from_bits(fwd).ok_or(DecodeError::FwdMethod(fwd))?,
            weight: attrs.u32(nest, IPVS_DEST_ATTR_WEIGHT, "WEIGHT")?,
            upper_threshold: attrs.u32(nest, IPVS_DEST_ATTR_U_THRESH, "U_THRESH")?,
            lower_threshold: attrs.u32(nest, IPVS_DEST_ATTR_L_THRESH, "L_THRESH")?,
        },
        active_conns: attrs.u32(nest, IPVS_DEST_ATTR_ACTIVE_CONNS, "ACTIVE_CONNS")?,
        inactive_conns: attrs.u32(nest, IPVS_DEST_ATTR_INACT_CONNS, "INACT_CONNS")?,
        persistent_conns: attrs.u32(nest, IPVS_DEST_ATTR_PERSIST_CONNS, "PERSIST_CONNS")?,
        stats: parse_stats(&attrs, IPVS_DEST_ATTR_STATS, IPVS_DEST_ATTR_STATS64)?,
    })
}

fn expect_cmd(msg: &IpvsGenl, cmd: u8) -> Result<(), DecodeError> {
    if msg.cmd == cmd {
        Ok(())
    } else {
        Err(DecodeError::UnexpectedCommand(msg.cmd))
    }
}

fn put_service_key(w: &mut AttrWriter, key: &ServiceKey) {
    w.put_u16(IPVS_SVC_ATTR_AF, key.family().to_af());
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            w.put_u16(IPVS_SVC_ATTR_PROTOCOL, protocol.number());
            w.put_addr(IPVS_SVC_ATTR_ADDR, addr);
            w.put_be16(IPVS_SVC_ATTR_PORT, *port);
        }
        ServiceKey::Fwmark { mark, .. } => w.put_u32(IPVS_SVC_ATTR_FWMARK, *mark),
    }
}

fn put_service(w: &mut AttrWriter, svc: &Service) {
    put_service_key(w, &svc.key);
    let mut name = svc.scheduler.name().as_bytes().to_vec();
    name.push(0);
    debug_assert!(name.len() <= IP_VS_SCHEDNAME_MAXLEN);
    w.put(IPVS_SVC_ATTR_SCHED_NAME, &name);
    // struct ip_vs_flags { flags; mask }: a full mask makes the kernel take exactly these flags.
    let mut flags = svc.flags.bits().to_ne_bytes().to_vec();
    flags.extend_from_slice(&u32::MAX.to_ne_bytes());
    w.put(IPVS_SVC_ATTR_FLAGS, &flags);
    w.put_u32(IPVS_SVC_ATTR_TIMEOUT, svc.timeout);
    w.put(
        IPVS_SVC_ATTR_NETMASK,
        &encode_netmask(svc.key.family(), svc.netmask),
    );
}

fn put_dest(w: &mut AttrWriter, dest: &Destination) {
    w.put_addr(IPVS_DEST_ATTR_ADDR, &dest.addr);
    w.put_be16(IPVS_DEST_ATTR_PORT, dest.port);
    w.put_u32(IPVS_DEST_ATTR_FWD_METHOD, dest.fwd_method.bits());
    w.put_u32(IPVS_DEST_ATTR_WEIGHT, dest.weight);
    w.put_u32(IPVS_DEST_ATTR_U_THRESH, dest.upper_threshold);
    w.put_u32(IPVS_DEST_ATTR_L_THRESH, dest.lower_threshold);
    w.put_u16(
        IPVS_DEST_ATTR_ADDR_FAMILY,
        AddressFamily::of(&dest.addr).to_af(),
    );
}

/// IPv4: a mask in network byte order; IPv6: the prefix length as a host-order u32 (the kernel compares
/// the raw value against 1..=128).
fn encode_netmask(family: AddressFamily, prefix_len: u8) -> [u8; 4] {
    match family {
        AddressFamily::Inet => {
            let len = u32::from(prefix_len.min(32));
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            mask.to_be_bytes()
        }
        AddressFamily::Inet6 => u32::from(prefix_len.min(128)).to_ne_bytes(),
    }
}

fn parse_netmask(family: AddressFamily, value: &[u8]) -> Result<u8, DecodeError> {
    let raw: [u8; 4] = value.try_into().map_err(|_| DecodeError::Length {
        attr: "NETMASK",
        len: value.len(),
        expected: 4,
    })?;
    match family {
        AddressFamily::Inet => {
            let mask = u32::from_be_bytes(raw);
            let ones = mask.leading_ones();
            if mask.checked_shl(ones).unwrap_or(0) != 0 {
                return Err(DecodeError::Netmask(mask));
            }
            Ok(ones as u8)
        }
        AddressFamily::Inet6 => {
            let len = u32::from_ne_bytes(raw);
            if len > 128 {
                return Err(DecodeError::Netmask(len));
            }
            Ok(len as u8)
        }
    }
}

/// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first 4.
fn parse_addr(family: AddressFamily, value: &[u8]) -> Result<IpAddr, DecodeError> {
    let need = match family {
        AddressFamily::Inet => 4,
        AddressFamily::Inet6 => 16,
    };
    if value.len() < need {
        return Err(DecodeError::Length {
            attr: "ADDR",
            len: value.len(),
            expected: 16,
        });
    }
    Ok(match family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(&value[..4]).expect("checked"),
        )),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(&value[..16]).expect("checked"),
        )),
    })
}

/// Prefers the 64-bit counters; the older nest has 32-bit counters except the byte counts.
fn parse_stats(attrs: &AttrSet<'_>, stats: u16, stats64: u16) -> Result<Stats, DecodeError> {
    let Some(nest) = attrs.get(stats64).or_else(|| attrs.get(stats)) else {
        return Ok(Stats::default());
    };
    let s = AttrSet::parse(nest)?;
    let n = |kind: u16, name: &'static str| s.counter(kind, name);
    Ok(Stats {
        conns: n(IPVS_STATS_ATTR_CONNS, "CONNS")?,
        in_pkts: n(IPVS_STATS_ATTR_INPKTS, "INPKTS")?,
        out_pkts: n(IPVS_STATS_ATTR_OUTPKTS, "OUTPKTS")?,
        in_bytes: n(IPVS_STATS_ATTR_INBYTES, "INBYTES")?,
        out_bytes: n(IPVS_STATS_ATTR_OUTBYTES, "OUTBYTES")?,
        cps: n(IPVS_STATS_ATTR_CPS, "CPS")?,
        in_pps: n(IPVS_STATS_ATTR_INPPS, "INPPS")?,
        out_pps: n(IPVS_STATS_ATTR_OUTPPS, "OUTPPS")?,
        in_bps: n(IPVS_STATS_ATTR_INBPS, "INBPS")?,
        out_bps: n(IPVS_STATS_ATTR_OUTBPS, "OUTBPS")?,
    })
}

/// Appends netlink attributes (struct nlattr: u16 length, u16 type, value padded to 4 bytes).
#[derive(Default)]
struct AttrWriter(Vec<u8>);

impl AttrWriter {
    fn put(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).expect("IPVS attributes are small");
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn put_u16(&mut self, kind: u16, v: u16) {
        self.put(kind, &v.to_ne_bytes());
    }

    fn put_be16(&mut self, kind: u16, v: u16) {
        self.put(kind, &v.to_be_bytes());
    }

    fn put_u32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_ne_bytes());
    }

    /// Addresses go as the kernel's 16-byte `union nf_inet_addr`, as the kernel itself reports them.
    fn put_addr(&mut self, kind: u16, addr: &IpAddr) {
        let mut raw = [0u8; 16];
        match addr {
            IpAddr::V4(a) => raw[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => raw.copy_from_slice(&a.octets()),
        }
        self.put(kind, &raw);
    }

    fn nested(&mut self, kind: u16, body: impl FnOnce(&mut Self)) {
        let start = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        body(self);
        let len = u16::try_from(self.0.len() - start).expect("IPVS attributes are small");
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }
}

/// The attributes of one level, by type (flags masked off).
struct AttrSet<'a>(Vec<(u16, &'a [u8])>);

impl<'a> AttrSet<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(buf) {
            let nla = nla?;
            let kind = nla.kind() & NLA_TYPE_MASK;
            let start = 4;
            let end = nla.length() as usize;
            let value = nla.into_inner();
            attrs.push((kind, &value[start..end]));
        }
        Ok(Self(attrs))
    }

    fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.0.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
    }

    fn require(
        &self,
        nest: &'static str,
        kind: u16,
        attr: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        self.get(kind)
            .ok_or(DecodeError::MissingAttribute { nest, attr })
    }

    fn fixed<const N: usize>(
        &self,
        nest: &'static str,
        kind: u16,
        attr: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let v = self.require(nest, kind, attr)?;
        v.try_into().map_err(|_| DecodeError::Length {
            attr,
            len: v.len(),
            expected: N,
        })
    }

    fn u16(&self, nest: &'static str, kind: u16, attr: &'static str) -> Result<u16, DecodeError> {
        self.fixed::<2>(nest, kind, attr).map(u16::from_ne_bytes)
    }

    fn be16(&self, nest: &'static str, kind: u16, attr: &'static str) -> Result<u16, DecodeError> {
        self.fixed::<2>(nest, kind, attr).map(u16::from_be_bytes)
    }

    fn u32(&self, nest: &'static str, kind: u16, attr: &'static str) -> Result<u32, DecodeError> {
        self.fixed::<4>(nest, kind, attr).map(u32::from_ne_bytes)
    }

    /// A statistics counter: u32 or u64 depending on the nest; absent counters read as 0.
    fn counter(&self, kind: u16, attr: &'static str) -> Result<u64, DecodeError> {
        match self.get(kind) {
            None => Ok(0),
            Some(v) if v.len() == 4 => Ok(u64::from(u32::from_ne_bytes(v.try_into().expect("4")))),
            Some(v) if v.len() == 8 => Ok(u64::from_ne_bytes(v.try_into().expect("8"))),
            Some(v) => Err(DecodeError::Length {
                attr,
                len: v.len(),
                expected: 8,
            }),
        }
    }
}
