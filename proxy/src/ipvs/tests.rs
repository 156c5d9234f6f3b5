//! Byte-level tests of the codec: requests against hand-derived bytes, replies built by hand.

// The hand-derived bytes below are little-endian where netlink uses host order.
#![cfg(target_endian = "little")]

use std::net::IpAddr;

use super::codec::{self, Frame, IpvsGenl, Request};
use super::*;
use netlink_packet_generic::GenlMessage;

const FAMILY: u16 = 0x1c;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn new_service_ipv6_matches_hand_derived_bytes() {
    let svc = Service::new(
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: ip("fd00::1"),
            port: 80,
        },
        Scheduler::Rr,
    );
    let expected: Vec<u8> = [
        &[0x68, 0, 0, 0, 0x1c, 0, 0x05, 0, 7, 0, 0, 0, 0, 0, 0, 0][..], // nlmsghdr: 104 bytes, REQUEST|ACK, seq 7
        &[1, 1, 0, 0],              // genlmsghdr: NEW_SERVICE, version 1
        &[0x54, 0, 0x01, 0x80],     // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, 84 bytes
        &[6, 0, 1, 0, 10, 0, 0, 0], // AF = AF_INET6
        &[6, 0, 2, 0, 6, 0, 0, 0],  // PROTOCOL = TCP
        &[
            20, 0, 3, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ], // ADDR fd00::1
        &[6, 0, 4, 0, 0, 80, 0, 0], // PORT 80, network order
        &[7, 0, 6, 0, b'r', b'r', 0, 0], // SCHED_NAME "rr\0"
        &[12, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], // FLAGS {0, mask ~0}
        &[8, 0, 8, 0, 0, 0, 0, 0],  // TIMEOUT 0
        &[8, 0, 9, 0, 128, 0, 0, 0], // NETMASK: prefix length 128
    ]
    .concat();
    assert_eq!(Request::NewService(svc).encode(FAMILY, 7), expected);
}

#[test]
fn new_dest_ipv4_matches_hand_derived_bytes() {
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip("198.18.0.1"),
        port: 80,
    };
    let dest = Destination::masquerade(ip("198.18.1.2"), 8080, 1);
    let expected: Vec<u8> = [
        &[0x8c, 0, 0, 0, 0x1c, 0, 0x05, 0, 9, 0, 0, 0, 0, 0, 0, 0][..], // 140 bytes, seq 9
        &[5, 1, 0, 0],                                                  // NEW_DEST
        &[0x30, 0, 0x01, 0x80],                                         // SERVICE nest, 48 bytes
        &[6, 0, 1, 0, 2, 0, 0, 0],                                      // AF_INET
        &[6, 0, 2, 0, 6, 0, 0, 0],                                      // TCP
        &[
            20, 0, 3, 0, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &[6, 0, 4, 0, 0, 80, 0, 0],
        &[0x48, 0, 0x02, 0x80], // DEST nest, 72 bytes
        &[
            20, 0, 1, 0, 198, 18, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &[6, 0, 2, 0, 0x1f, 0x90, 0, 0], // PORT 8080
        &[8, 0, 3, 0, 0, 0, 0, 0],       // FWD_METHOD masquerade
        &[8, 0, 4, 0, 1, 0, 0, 0],       // WEIGHT 1
        &[8, 0, 5, 0, 0, 0, 0, 0],       // U_THRESH
        &[8, 0, 6, 0, 0, 0, 0, 0],       // L_THRESH
        &[6, 0, 11, 0, 2, 0, 0, 0],      // ADDR_FAMILY AF_INET
    ]
    .concat();
    assert_eq!(Request::NewDest(key, dest).encode(FAMILY, 9), expected);
}

#[test]
fn dumps_and_flush_have_no_attributes() {
    // GET_SERVICE with NLM_F_REQUEST | NLM_F_DUMP (0x301).
    assert_eq!(
        Request::DumpServices.encode(FAMILY, 3),
        vec![
            20, 0, 0, 0, 0x1c, 0, 0x01, 0x03, 3, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0
        ]
    );
    assert_eq!(
        Request::Flush.encode(FAMILY, 4),
        vec![
            20, 0, 0, 0, 0x1c, 0, 0x05, 0, 4, 0, 0, 0, 0, 0, 0, 0, 17, 1, 0, 0
        ]
    );
}

#[test]
fn fwmark_service_key_and_set_config() {
    let key = ServiceKey::Fwmark {
        family: AddressFamily::Inet6,
        mark: 0x42,
    };
    assert_eq!(
        Request::DelService(key).attrs(),
        vec![
            20, 0, 1, 0x80, 6, 0, 1, 0, 10, 0, 0, 0, 8, 0, 5, 0, 0x42, 0, 0, 0
        ]
    );
    let t = Timeouts {
        tcp: 900,
        tcp_fin: 120,
        udp: 300,
    };
    assert_eq!(
        Request::SetConfig(t).attrs(),
        vec![
            8, 0, 4, 0, 0x84, 3, 0, 0, 8, 0, 5, 0, 120, 0, 0, 0, 8, 0, 6, 0, 0x2c, 1, 0, 0
        ]
    );
}

#[test]
fn get_family_request_names_ipvs() {
    let expected: Vec<u8> = [
        &[32, 0, 0, 0, 0x10, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0][..], // to nlctrl (0x10)
        &[3, 2, 0, 0], // CTRL_CMD_GETFAMILY, version 2
        &[9, 0, 2, 0, b'I', b'P', b'V', b'S', 0, 0, 0, 0], // CTRL_ATTR_FAMILY_NAME "IPVS\0"
    ]
    .concat();
    assert_eq!(codec::encode_get_family(1), expected);
}

/// A netlink attribute, written out independently of the codec's writer.
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut out = ((4 + value.len()) as u16).to_le_bytes().to_vec();
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(value);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out
}

fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    nla(kind | 0x8000, &parts.concat())
}

/// A netlink message: header (type, flags 0x2 = NLM_F_MULTI, seq) and payload.
fn nlmsg(msg_type: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = ((16 + payload.len()) as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&msg_type.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn genl(cmd: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![cmd, 1, 0, 0];
    out.extend_from_slice(&attrs.concat());
    out
}

fn frames(buf: &[u8], seq: u32) -> Vec<Frame<GenlMessage<IpvsGenl>>> {
    codec::split_frames(buf, seq).unwrap()
}

fn messages(buf: &[u8], seq: u32) -> Vec<IpvsGenl> {
    frames(buf, seq)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Message(m) => Some(m.payload),
            _ => None,
        })
        .collect()
}

#[test]
fn service_dump_reply_decodes_with_stats64_and_skips_other_sequences() {
    let stats64 = nest(
        12,
        &[nla(1, &5u64.to_le_bytes()), nla(4, &1000u64.to_le_bytes())],
    );
    let service = nest(
        1,
        &[
            nla(1, &2u16.to_le_bytes()),
            nla(2, &17u16.to_le_bytes()),
            nla(3, &[198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            nla(4, &53u16.to_be_bytes()),
            nla(6, b"wrr\0"),
            nla(7, &[3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), // PERSISTENT | HASHED
            nla(8, &300u32.to_le_bytes()),
            nla(9, &[255, 255, 255, 0]),
            nla(10, &[]), // an empty legacy STATS nest: STATS64 wins
            stats64,
        ],
    );
    let buf = [
        nlmsg(FAMILY, 41, &genl(1, &[vec![]])), // another request's answer
        nlmsg(FAMILY, 42, &genl(1, std::slice::from_ref(&service))),
        nlmsg(3, 42, &0u32.to_le_bytes()), // NLMSG_DONE
    ]
    .concat();
    let f = frames(&buf, 42);
    assert_eq!(f.len(), 2);
    assert_eq!(f[1], Frame::Done);
    let entry = codec::decode_service(&messages(&buf, 42)[0]).unwrap();
    assert_eq!(
        entry,
        ServiceEntry {
            service: Service {
                key: ServiceKey::Addr {
                    protocol: Protocol::Udp,
                    addr: ip("198.18.0.10"),
                    port: 53
                },
                scheduler: Scheduler::Wrr,
                flags: ServiceFlags::PERSISTENT,
                timeout: 300,
                netmask: 24,
            },
            stats: Stats {
                conns: 5,
                in_bytes: 1000,
                ..Stats::default()
            },
        }
    );
}

fn dest_attrs(with_family: bool) -> Vec<u8> {
    let mut parts = vec![
        nla(1, &ip6_bytes("fd00::2:1")),
        nla(2, &8443u16.to_be_bytes()),
        nla(3, &0u32.to_le_bytes()),
        nla(4, &7u32.to_le_bytes()),
        nla(5, &100u32.to_le_bytes()),
        nla(6, &10u32.to_le_bytes()),
        nla(7, &3u32.to_le_bytes()),
        nla(8, &4u32.to_le_bytes()),
        nla(9, &0u32.to_le_bytes()),
        // legacy 32-bit STATS only: 32-bit counters, 64-bit byte counts
        nest(
            10,
            &[nla(1, &9u32.to_le_bytes()), nla(5, &77u64.to_le_bytes())],
        ),
    ];
    if with_family {
        parts.push(nla(11, &10u16.to_le_bytes()));
    }
    genl(5, &[nest(2, &parts)])
}

fn ip6_bytes(s: &str) -> [u8; 16] {
    match ip(s) {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => unreachable!(),
    }
}

#[test]
fn dest_dump_reply_decodes_ipv6_with_and_without_addr_family() {
    let expected = DestinationEntry {
        destination: Destination {
            addr: ip("fd00::2:1"),
            port: 8443,
            fwd_method: FwdMethod::Masquerade,
            weight: 7,
            upper_threshold: 100,
            lower_threshold: 10,
        },
        active_conns: 3,
        inactive_conns: 4,
        persistent_conns: 0,
        stats: Stats {
            conns: 9,
            out_bytes: 77,
            ..Stats::default()
        },
    };
    for with_family in [true, false] {
        let buf = nlmsg(FAMILY, 5, &dest_attrs(with_family));
        let msg = &messages(&buf, 5)[0];
        assert_eq!(
            codec::decode_dest(msg, AddressFamily::Inet6).unwrap(),
            expected
        );
    }
}

#[test]
fn info_reply_and_ack() {
    let info = genl(
        14,
        &[
            nla(1, &0x01_02_01u32.to_le_bytes()),
            nla(2, &4096u32.to_le_bytes()),
        ],
    );
    // NLMSG_ERROR with code 0 and the request's header: the acknowledgement.
    let mut ack = 0i32.to_le_bytes().to_vec();
    ack.extend_from_slice(&[20, 0, 0, 0, 0x1c, 0, 5, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
    let buf = [nlmsg(FAMILY, 8, &info), nlmsg(2, 8, &ack)].concat();
    let f = frames(&buf, 8);
    assert_eq!(f.last(), Some(&Frame::Ack));
    let info = codec::decode_info(&messages(&buf, 8)[0]).unwrap();
    assert_eq!(
        info.version,
        Version {
            major: 1,
            minor: 2,
            patch: 1
        }
    );
    assert_eq!(info.version.to_string(), "1.2.1");
    assert_eq!(info.conn_table_size, 4096);
}

#[test]
fn kernel_error_keeps_errno() {
    let mut err = (-17i32).to_le_bytes().to_vec(); // -EEXIST
    err.extend_from_slice(&[20, 0, 0, 0, 0x1c, 0, 5, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
    let buf = nlmsg(2, 6, &err);
    assert_eq!(frames(&buf, 6), vec![Frame::Error(17)]);
}

#[test]
fn config_reply_decodes() {
    let msg = IpvsGenl {
        cmd: 12,
        attrs: [
            nla(4, &900u32.to_le_bytes()),
            nla(5, &120u32.to_le_bytes()),
            nla(6, &300u32.to_le_bytes()),
        ]
        .concat(),
    };
    assert_eq!(
        codec::decode_config(&msg).unwrap(),
        Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300
        }
    );
}

fn service_msg(af: u16, sched: &[u8], netmask: [u8; 4], addr: &[u8]) -> IpvsGenl {
    IpvsGenl {
        cmd: 1,
        attrs: nest(
            1,
            &[
                nla(1, &af.to_le_bytes()),
                nla(2, &6u16.to_le_bytes()),
                nla(3, addr),
                nla(4, &80u16.to_be_bytes()),
                nla(6, sched),
                nla(7, &[0; 8]),
                nla(8, &0u32.to_le_bytes()),
                nla(9, &netmask),
            ],
        ),
    }
}

#[test]
fn malformed_replies_are_typed_errors() {
    let v4 = [198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(
        codec::decode_service(&service_msg(2, b"rr\0", [255, 0, 255, 0], &v4)),
        Err(DecodeError::Netmask(_))
    ));
    assert!(matches!(
        codec::decode_service(&service_msg(2, b"nope\0", [255; 4], &v4)),
        Err(DecodeError::Scheduler(_))
    ));
    assert!(matches!(
        codec::decode_service(&service_msg(7, b"rr\0", [255; 4], &v4)),
        Err(DecodeError::AddressFamily(7))
    ));
    // An IPv6 service whose address is only 4 bytes long.
    assert!(matches!(
        codec::decode_service(&service_msg(10, b"rr\0", [128, 0, 0, 0], &v4[..4])),
        Err(DecodeError::Length { attr: "ADDR", .. })
    ));
    // A reply to the wrong command.
    assert!(matches!(
        codec::decode_info(&service_msg(2, b"rr\0", [255; 4], &v4)),
        Err(DecodeError::UnexpectedCommand(1))
    ));
    // Attribute length beyond the buffer, and a truncated netlink header.
    let bad = IpvsGenl {
        cmd: 1,
        attrs: vec![40, 0, 1, 0x80, 1, 2],
    };
    assert!(codec::decode_service(&bad).is_err());
    assert!(codec::split_frames::<GenlMessage<IpvsGenl>>(&[16, 0, 0], 1).is_err());
    // Missing FLAGS attribute.
    let mut msg = service_msg(2, b"rr\0", [255; 4], &v4);
    msg.attrs = nest(
        1,
        &[nla(1, &2u16.to_le_bytes()), nla(5, &1u32.to_le_bytes())],
    );
    assert!(matches!(
        codec::decode_service(&msg),
        Err(DecodeError::MissingAttribute {
            attr: "SCHED_NAME",
            ..
        })
    ));
}

#[test]
fn netmask_round_trips_per_family() {
    for (family, len) in [
        (AddressFamily::Inet, 0),
        (AddressFamily::Inet, 24),
        (AddressFamily::Inet, 32),
        (AddressFamily::Inet6, 64),
        (AddressFamily::Inet6, 128),
    ] {
        let addr = match family {
            AddressFamily::Inet => ip("198.18.0.1"),
            AddressFamily::Inet6 => ip("fd00::1"),
        };
        let mut svc = Service::new(
            ServiceKey::Addr {
                protocol: Protocol::Sctp,
                addr,
                port: 9,
            },
            Scheduler::Mh,
        );
        svc.netmask = len;
        svc.flags = ServiceFlags::PERSISTENT | ServiceFlags::SCHED2;
        svc.timeout = 60;
        // The kernel echoes a service's attributes in the same layout it accepts them.
        let request = Request::NewService(svc.clone());
        let reply = IpvsGenl {
            cmd: 1,
            attrs: request.attrs(),
        };
        assert_eq!(codec::decode_service(&reply).unwrap().service, svc);
    }
}

#[test]
fn scheduler_names_round_trip() {
    for name in [
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
        "twos",
    ] {
        assert_eq!(name.parse::<Scheduler>().unwrap().name(), name);
    }
    assert!("RR".parse::<Scheduler>().is_err());
}

#[test]
fn every_truncation_of_a_reply_is_an_error_not_a_panic() {
    let buf = nlmsg(FAMILY, 5, &dest_attrs(true));
    for len in 0..buf.len() {
        let mut cut = buf[..len].to_vec();
        // Keep the header's length consistent with the cut, so the nested attributes get truncated too.
        if len >= 4 {
            cut[..4].copy_from_slice(&(len as u32).to_le_bytes());
        }
        if let Ok(frames) = codec::split_frames::<GenlMessage<IpvsGenl>>(&cut, 5) {
            for frame in frames {
                if let Frame::Message(m) = frame {
                    let _ = codec::decode_dest(&m.payload, AddressFamily::Inet6);
                }
            }
        }
    }
    // An attribute that claims fewer bytes than its own header.
    let bad = IpvsGenl {
        cmd: 5,
        attrs: vec![2, 0, 2, 0x80],
    };
    assert!(codec::decode_dest(&bad, AddressFamily::Inet).is_err());
}
