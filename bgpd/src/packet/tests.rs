//! Codec tests: hand-built RFC byte vectors both ways, the malformed-input corpus, and never-panic properties.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use ipnet::IpNet;

use super::*;

const V4: Family = (Afi::Ipv4, Safi::Unicast);
const V6: Family = (Afi::Ipv6, Safi::Unicast);

/// Octets from hex with any whitespace, as the RFC layouts are written out below.
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A whole message: marker, length, type, body.
fn msg(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(typ);
    m.extend_from_slice(body);
    m
}

/// One attribute with a 1-octet length.
fn attr(flags: u8, code: u8, v: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, code, v.len() as u8];
    a.extend_from_slice(v);
    a
}

/// An UPDATE message from its three parts.
fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    msg(2, &b)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn cx4() -> DecodeCxt {
    DecodeCxt {
        four_octet_as: true,
        ..Default::default()
    }
}

fn ecx4() -> EncodeCxt {
    EncodeCxt {
        four_octet_as: true,
        ..Default::default()
    }
}

fn enc(m: &Message, cx: &EncodeCxt) -> Vec<u8> {
    let mut b = BytesMut::new();
    m.encode(cx, &mut b).unwrap();
    b.to_vec()
}

/// Both directions: `bytes` decode to `m`, and `m` encodes to exactly `bytes`.
fn both_ways(bytes: &[u8], m: &Message, dcx: &DecodeCxt, ecx: &EncodeCxt) {
    assert_eq!(frame_len(bytes).unwrap(), Some(bytes.len()));
    assert_eq!(&Message::decode(bytes, dcx).unwrap(), m);
    assert_eq!(enc(m, ecx), bytes);
}

fn decode_update(bytes: &[u8], cx: &DecodeCxt) -> UpdateMsg {
    match Message::decode(bytes, cx) {
        Ok(Message::Update(u)) => u,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

/// The NOTIFICATION (code, subcode, data) a malformed message is answered with.
fn notification(bytes: &[u8], cx: &DecodeCxt) -> (u8, u8, Vec<u8>) {
    let e = Message::decode(bytes, cx).expect_err("must be a session reset");
    let n = NotificationMsg::from(&e);
    (n.code, n.subcode, n.data)
}

// A well-formed base of attributes, for the malformed cases to vary: ORIGIN IGP, AS_PATH (65001), NEXT_HOP.
fn origin() -> Vec<u8> {
    attr(0x40, 1, &[0])
}
fn as_path() -> Vec<u8> {
    attr(0x40, 2, &hex("02 01 0000fde9"))
}
fn next_hop() -> Vec<u8> {
    attr(0x40, 3, &hex("c6120001"))
}
fn base_attrs() -> Vec<u8> {
    [origin(), as_path(), next_hop()].concat()
}
const NLRI_198_18_1: &str = "18 c61201";

mod vectors {
    use super::*;

    #[test]
    fn keepalive() {
        both_ways(
            &hex("ffffffffffffffffffffffffffffffff 0013 04"),
            &Message::Keepalive,
            &cx4(),
            &ecx4(),
        );
    }

    #[test]
    fn open_with_every_capability() {
        // RFC 4271 4.2 + RFC 5492: one Capabilities parameter (type 2) holding them all.
        let caps = hex("01 04 0001 00 01          \
             01 04 0002 00 01          \
             02 00                     \
             05 06 0001 0001 0002      \
             40 06 8078 0002 01 80     \
             41 04 0000fde9            \
             45 04 0002 01 03");
        let mut body = hex("04 fde9 005a c6120001");
        body.push(caps.len() as u8 + 2);
        body.extend_from_slice(&[2, caps.len() as u8]);
        body.extend_from_slice(&caps);
        let bytes = msg(1, &body);
        assert_eq!(bytes.len(), 73);
        let m = Message::Open(OpenMsg {
            version: 4,
            my_as: 65001,
            hold_time: 90,
            bgp_identifier: Ipv4Addr::new(198, 18, 0, 1),
            capabilities: vec![
                Capability::MultiProtocol {
                    afi: Afi::Ipv4,
                    safi: Safi::Unicast,
                },
                Capability::MultiProtocol {
                    afi: Afi::Ipv6,
                    safi: Safi::Unicast,
                },
                Capability::RouteRefresh,
                Capability::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]),
                Capability::GracefulRestart {
                    restarting: true,
                    restart_time: 120,
                    families: vec![(Afi::Ipv6, Safi::Unicast, true)],
                },
                Capability::FourOctetAs(65001),
                Capability::AddPath(vec![(Afi::Ipv6, Safi::Unicast, 3)]),
            ],
        });
        both_ways(&bytes, &m, &cx4(), &ecx4());
    }

    #[test]
    fn open_keeps_unknown_capability_and_several_parameters() {
        // Two Capabilities parameters (RFC 5492 section 4 allows that); code 70 (enhanced route refresh) and
        // a multiprotocol capability for L2VPN (AFI 25) are kept as Unknown.
        let body = hex("04 fde9 00b4 c6120001 0c 02 02 4600 02 06 01 04 0019 0041");
        let Message::Open(o) = Message::decode(&msg(1, &body), &cx4()).unwrap() else {
            panic!()
        };
        assert_eq!(
            o.capabilities,
            vec![
                Capability::Unknown {
                    code: 70,
                    value: vec![]
                },
                Capability::Unknown {
                    code: 1,
                    value: hex("0019 0041")
                }
            ]
        );
    }

    #[test]
    fn update_classic_ipv4() {
        // RFC 4271 4.3: withdrawn 198.18.5.0/24; ORIGIN, AS_PATH, NEXT_HOP, MED, COMMUNITIES; NLRI.
        let attrs = [
            origin(),
            as_path(),
            next_hop(),
            attr(0x80, 4, &hex("00000064")),
            attr(0xc0, 8, &hex("fde90064 ffffff01")),
        ]
        .concat();
        let bytes = update(&hex("18 c61205"), &attrs, &hex("18 c61201 10 c613"));
        let m = Message::Update(UpdateMsg {
            withdrawn: vec![net("198.18.5.0/24")],
            attributes: Some(PathAttributes {
                as_path: vec![AsPathSegment::Sequence(vec![65001])],
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                med: Some(100),
                communities: vec![Community(0xfde9_0064), Community(0xffff_ff01)],
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24"), net("198.19.0.0/16")],
            ..Default::default()
        });
        both_ways(&bytes, &m, &cx4(), &ecx4());
    }

    #[test]
    fn update_mp_reach_ipv6_global_and_link_local_with_reflection_attributes() {
        // RFC 4760 3 + RFC 2545 3: 32-octet next hop (global fd00::1, link-local fe80::1); RFC 4456
        // ORIGINATOR_ID and CLUSTER_LIST; LOCAL_PREF.
        let mp = hex(
            "0002 01 20 fd000000000000000000000000000001 fe800000000000000000000000000001 00 \
             40 fd00000100000000 30 fd0000020000",
        );
        let attrs = [
            attr(0x80, 14, &mp),
            origin(),
            attr(0x40, 2, &[]),
            attr(0x40, 5, &hex("00000064")),
            attr(0x80, 9, &hex("c6120009")),
            attr(0x80, 10, &hex("c612000a c612000b")),
        ]
        .concat();
        let bytes = update(&[], &attrs, &[]);
        let m = Message::Update(UpdateMsg {
            attributes: Some(PathAttributes {
                next_hop: Some("fd00::1".parse().unwrap()),
                link_local_next_hop: Some("fe80::1".parse().unwrap()),
                local_pref: Some(100),
                originator_id: Some(Ipv4Addr::new(198, 18, 0, 9)),
                cluster_list: vec![Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 11)],
                ..Default::default()
            }),
            nlri: vec![net("fd00:1::/64"), net("fd00:2::/48")],
            ..Default::default()
        });
        both_ways(&bytes, &m, &cx4(), &ecx4());
    }

    #[test]
    fn update_mp_reach_ipv6_global_only() {
        let mp = hex(
            "0002 01 10 fd000000000000000000000000000001 00 80 fd000000000000000000000000000064",
        );
        let bytes = update(
            &[],
            &[attr(0x80, 14, &mp), origin(), attr(0x40, 2, &[])].concat(),
            &[],
        );
        let u = decode_update(&bytes, &cx4());
        assert_eq!(u.nlri, vec![net("fd00::64/128")]);
        let a = u.attributes.as_ref().unwrap();
        assert_eq!(a.next_hop, Some("fd00::1".parse().unwrap()));
        assert_eq!(a.link_local_next_hop, None);
        assert_eq!(enc(&Message::Update(u), &ecx4()), bytes);
    }

    #[test]
    fn update_mp_unreach_ipv6() {
        let bytes = update(
            &[],
            &attr(0x80, 15, &hex("0002 01 40 fd00000100000000")),
            &[],
        );
        let m = Message::Update(UpdateMsg {
            withdrawn: vec![net("fd00:1::/64")],
            ..Default::default()
        });
        both_ways(&bytes, &m, &cx4(), &ecx4());
    }

    #[test]
    fn update_rfc8950_ipv4_nlri_with_ipv6_next_hop() {
        // RFC 8950 section 3: AFI 1 SAFI 1 with a 16-octet next hop, once the capability is negotiated.
        let mp = hex("0001 01 10 fd000000000000000000000000000001 00 18 c61201");
        let bytes = update(
            &[],
            &[attr(0x80, 14, &mp), origin(), attr(0x40, 2, &[])].concat(),
            &[],
        );
        let m = Message::Update(UpdateMsg {
            attributes: Some(PathAttributes {
                next_hop: Some("fd00::1".parse().unwrap()),
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24")],
            ..Default::default()
        });
        let mut dcx = cx4();
        dcx.extended_next_hop.insert(V4);
        let mut ecx = ecx4();
        ecx.extended_next_hop.insert(V4);
        both_ways(&bytes, &m, &dcx, &ecx);
        // Without the capability the encoder refuses rather than send what the peer cannot read.
        let mut b = BytesMut::new();
        assert_eq!(
            m.encode(&ecx4(), &mut b),
            Err(EncodeError::ExtendedNextHopNotNegotiated)
        );
        assert!(b.is_empty());
    }

    #[test]
    fn end_of_rib_both_families() {
        // RFC 4724 section 2.
        let v4 = update(&[], &[], &[]);
        let m = Message::Update(UpdateMsg {
            end_of_rib: Some(V4),
            ..Default::default()
        });
        both_ways(&v4, &m, &cx4(), &ecx4());
        let v6 = update(&[], &attr(0x80, 15, &hex("0002 01")), &[]);
        let m = Message::Update(UpdateMsg {
            end_of_rib: Some(V6),
            ..Default::default()
        });
        both_ways(&v6, &m, &cx4(), &ecx4());
    }

    #[test]
    fn notification_and_route_refresh() {
        let n = Message::Notification(NotificationMsg {
            code: 6,
            subcode: 2,
            data: vec![],
        });
        both_ways(&msg(3, &hex("06 02")), &n, &cx4(), &ecx4());
        let rr = Message::RouteRefresh {
            afi: Afi::Ipv6,
            safi: Safi::Unicast,
        };
        both_ways(&msg(5, &hex("0002 00 01")), &rr, &cx4(), &ecx4());
    }

    #[test]
    fn add_path_ids_both_families() {
        // RFC 7911 section 3: a 4-octet path identifier before each prefix.
        let mp = hex("0002 01 10 fd000000000000000000000000000001 00 00000007 40 fd00000100000000");
        let bytes = update(
            &hex("00000009 18 c61205"),
            &[attr(0x80, 14, &mp), origin(), attr(0x40, 2, &[])].concat(),
            &[],
        );
        let mut dcx = cx4();
        dcx.add_path = [V4, V6].into_iter().collect();
        let mut ecx = ecx4();
        ecx.add_path = dcx.add_path;
        let m = Message::Update(UpdateMsg {
            withdrawn: vec![net("198.18.5.0/24")],
            withdrawn_path_ids: vec![9],
            attributes: Some(PathAttributes {
                next_hop: Some("fd00::1".parse().unwrap()),
                ..Default::default()
            }),
            nlri: vec![net("fd00:1::/64")],
            nlri_path_ids: vec![7],
            ..Default::default()
        });
        both_ways(&bytes, &m, &dcx, &ecx);
    }

    #[test]
    fn two_octet_peer_gets_as4_path_and_as4_aggregator() {
        // RFC 6793 section 4.2.2: AS_TRANS in AS_PATH/AGGREGATOR, the real ASNs in AS4_PATH/AS4_AGGREGATOR.
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                as_path: vec![AsPathSegment::Sequence(vec![65001, 4_200_000_000])],
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                aggregator: Some((4_200_000_000, Ipv4Addr::new(198, 18, 0, 2))),
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24")],
            ..Default::default()
        };
        let bytes = enc(&Message::Update(u.clone()), &EncodeCxt::default());
        let attrs = [
            origin(),
            attr(0x40, 2, &hex("02 02 fde9 5ba0")),
            next_hop(),
            attr(0xc0, 7, &hex("5ba0 c6120002")),
            attr(0xc0, 17, &hex("02 02 0000fde9 fa56ea00")),
            attr(0xc0, 18, &hex("fa56ea00 c6120002")),
        ]
        .concat();
        assert_eq!(bytes, update(&[], &attrs, &hex(NLRI_198_18_1)));
        assert_eq!(decode_update(&bytes, &DecodeCxt::default()), u);
    }

    #[test]
    fn as4_path_merge_keeps_leading_ases_of_an_old_speaker() {
        // RFC 6793 section 4.2.3: an OLD speaker prepended 64512 after AS4_PATH was made; AS_PATH is longer,
        // so its leading AS is kept and AS4_PATH appended.
        let attrs = [
            origin(),
            attr(0x40, 2, &hex("02 03 fc00 fde9 5ba0")),
            next_hop(),
            attr(0xc0, 17, &hex("02 02 0000fde9 fa56ea00")),
        ]
        .concat();
        let u = decode_update(
            &update(&[], &attrs, &hex(NLRI_198_18_1)),
            &DecodeCxt::default(),
        );
        let a = u.attributes.unwrap();
        assert_eq!(
            a.as_path,
            vec![AsPathSegment::Sequence(vec![64512, 65001, 4_200_000_000])]
        );
        // AS4_PATH longer than AS_PATH is ignored.
        let attrs = [
            origin(),
            attr(0x40, 2, &hex("02 01 fde9")),
            next_hop(),
            attr(0xc0, 17, &hex("02 02 0000fde9 fa56ea00")),
        ]
        .concat();
        let a = decode_update(
            &update(&[], &attrs, &hex(NLRI_198_18_1)),
            &DecodeCxt::default(),
        )
        .attributes
        .unwrap();
        assert_eq!(a.as_path, vec![AsPathSegment::Sequence(vec![65001])]);
        // AGGREGATOR that is not AS_TRANS: AS4_PATH and AS4_AGGREGATOR are ignored.
        let attrs = [
            origin(),
            attr(0x40, 2, &hex("02 02 fde9 5ba0")),
            next_hop(),
            attr(0xc0, 7, &hex("fde9 c6120002")),
            attr(0xc0, 17, &hex("02 02 0000fde9 fa56ea00")),
            attr(0xc0, 18, &hex("fa56ea00 c6120002")),
        ]
        .concat();
        let a = decode_update(
            &update(&[], &attrs, &hex(NLRI_198_18_1)),
            &DecodeCxt::default(),
        )
        .attributes
        .unwrap();
        assert_eq!(a.as_path, vec![AsPathSegment::Sequence(vec![65001, 23456])]);
        assert_eq!(a.aggregator, Some((65001, Ipv4Addr::new(198, 18, 0, 2))));
    }

    #[test]
    fn mixed_families_in_one_update() {
        // RFC 4760 allows classic IPv4 NLRI beside MP_REACH for IPv6; each keeps its own next hop.
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                next_hop: Some("fd00::1".parse().unwrap()),
                classic_next_hop: Some(Ipv4Addr::new(198, 18, 0, 1)),
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24"), net("fd00:1::/64")],
            ..Default::default()
        };
        let bytes = enc(&Message::Update(u.clone()), &ecx4());
        assert_eq!(decode_update(&bytes, &cx4()), u);
    }

    #[test]
    fn long_as_path_and_attribute_use_extended_length() {
        // 300 ASNs: two segments of 255 and 45 (one-octet count), AS_PATH value 1204 octets (extended length).
        let path: Vec<u32> = (1..=300).collect();
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                as_path: vec![AsPathSegment::Sequence(path.clone())],
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24")],
            ..Default::default()
        };
        let bytes = enc(&Message::Update(u), &ecx4());
        // Header 19, withdrawn len 2, attr len 2, ORIGIN 4, then AS_PATH with flags 0x50.
        assert_eq!(&bytes[27..31], &hex("50 02 04b4"));
        let a = decode_update(&bytes, &cx4()).attributes.unwrap();
        assert_eq!(
            a.as_path,
            vec![
                AsPathSegment::Sequence(path[..255].to_vec()),
                AsPathSegment::Sequence(path[255..].to_vec())
            ]
        );
    }

    #[test]
    fn too_long_update_is_an_encode_error_and_leaves_buf() {
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                ..Default::default()
            }),
            nlri: (0..1100u32)
                .map(|i| IpNet::new(Ipv4Addr::from(0xc612_0000 + (i << 8)).into(), 24).unwrap())
                .collect(),
            ..Default::default()
        };
        let mut b = BytesMut::from(&b"x"[..]);
        assert!(matches!(
            Message::Update(u).encode(&ecx4(), &mut b),
            Err(EncodeError::MessageTooLong(_))
        ));
        assert_eq!(&b[..], b"x");
    }

    #[test]
    fn framer_waits_for_whole_message() {
        let k = hex("ffffffffffffffffffffffffffffffff 0013 04");
        assert_eq!(frame_len(&k[..10]).unwrap(), None);
        assert_eq!(frame_len(&k[..18]).unwrap(), None);
        let mut two = k.clone();
        two.extend_from_slice(&k);
        assert_eq!(frame_len(&two).unwrap(), Some(19));
    }
}

/// Malformed input: each case asserts the NOTIFICATION or the RFC 7606 handling the RFCs require.
mod malformed {
    use super::*;

    fn soft(u: &UpdateMsg) -> Vec<(u8, ErrorAction, UpdateErrorKind)> {
        u.errors
            .iter()
            .map(|e| (e.type_code, e.action, e.kind))
            .collect()
    }

    /// Asserts treat-as-withdraw: the announced prefix is withdrawn, no attributes, the error recorded.
    fn assert_taw(bytes: &[u8], code: u8, kind: UpdateErrorKind) {
        let u = decode_update(bytes, &cx4());
        assert!(u.treated_as_withdraw(), "{u:?}");
        assert_eq!(u.nlri, vec![]);
        assert_eq!(u.attributes, None);
        assert_eq!(u.withdrawn, vec![net("198.18.1.0/24")]);
        assert!(
            soft(&u).contains(&(code, ErrorAction::TreatAsWithdraw, kind)),
            "{:?}",
            u.errors
        );
    }

    fn classic(attrs: &[u8]) -> Vec<u8> {
        update(&[], attrs, &hex(NLRI_198_18_1))
    }

    // --- Message header, RFC 4271 section 6.1 ---

    #[test]
    fn bad_marker_is_connection_not_synchronized() {
        let mut m = msg(4, &[]);
        m[3] = 0;
        assert_eq!(
            frame_len(&m),
            Err(DecodeError::Header(HeaderError::ConnectionNotSynchronized))
        );
        assert_eq!(notification(&m, &cx4()), (1, 1, vec![]));
        // Refused as soon as a wrong marker octet is seen, before 19 octets arrived.
        assert!(frame_len(&[0xff, 0x00]).is_err());
    }

    #[test]
    fn bad_length_is_bad_message_length_with_the_length_as_data() {
        let mut m = msg(4, &[]);
        m[17] = 18;
        assert_eq!(notification(&m, &cx4()), (1, 2, vec![0, 18]));
        m[16..18].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(
            frame_len(&m),
            Err(DecodeError::Header(HeaderError::BadMessageLength(4097)))
        );
        // KEEPALIVE must be exactly 19 octets; OPEN at least 29; UPDATE 23; NOTIFICATION 21.
        assert_eq!(notification(&msg(4, &[0]), &cx4()), (1, 2, vec![0, 20]));
        assert_eq!(
            notification(&msg(1, &[4, 0, 1]), &cx4()),
            (1, 2, vec![0, 22])
        );
        assert_eq!(notification(&msg(2, &[0, 0]), &cx4()), (1, 2, vec![0, 21]));
        assert_eq!(notification(&msg(3, &[6]), &cx4()), (1, 2, vec![0, 20]));
    }

    #[test]
    fn bad_type_is_bad_message_type_with_the_type_as_data() {
        assert_eq!(notification(&msg(7, &[]), &cx4()), (1, 3, vec![7]));
    }

    // --- OPEN, RFC 4271 section 6.2 and RFC 5492 ---

    #[test]
    fn open_errors() {
        // Unsupported version: data is the largest supported version (4), 2 octets.
        assert_eq!(
            notification(&msg(1, &hex("03 fde9 005a c6120001 00")), &cx4()),
            (2, 1, vec![0, 4])
        );
        // Hold time 1 or 2 MUST be refused.
        assert_eq!(
            notification(&msg(1, &hex("04 fde9 0002 c6120001 00")), &cx4()),
            (2, 6, vec![])
        );
        // BGP Identifier 0 (RFC 6286 section 2.2).
        assert_eq!(
            notification(&msg(1, &hex("04 fde9 005a 00000000 00")), &cx4()),
            (2, 3, vec![])
        );
        // Optional parameter type 1 (authentication, deprecated): Unsupported Optional Parameter.
        assert_eq!(
            notification(&msg(1, &hex("04 fde9 005a c6120001 02 01 00")), &cx4()),
            (2, 4, vec![])
        );
        // Optional Parameters Length disagrees with the message; capability overrunning its parameter.
        assert_eq!(
            notification(&msg(1, &hex("04 fde9 005a c6120001 05 02 00")), &cx4()),
            (2, 0, vec![])
        );
        assert_eq!(
            notification(
                &msg(1, &hex("04 fde9 005a c6120001 04 02 02 41 04")),
                &cx4()
            ),
            (2, 0, vec![])
        );
        // A four-octet AS capability of 3 octets.
        assert_eq!(
            notification(
                &msg(1, &hex("04 fde9 005a c6120001 05 02 03 41 01 00")),
                &cx4()
            ),
            (2, 0, vec![])
        );
    }

    // --- UPDATE lengths, RFC 4271 section 6.3 ---

    #[test]
    fn withdrawn_or_attribute_length_overrunning_message_is_malformed_attribute_list() {
        assert_eq!(
            notification(&msg(2, &hex("0010 0000")), &cx4()),
            (3, 1, vec![])
        );
        assert_eq!(
            notification(&msg(2, &hex("0000 0010 40010100")), &cx4()),
            (3, 1, vec![])
        );
    }

    #[test]
    fn truncated_nlri_and_bad_prefix_length_are_invalid_network_field() {
        // RFC 4271 6.3 and RFC 7606 section 5.3: session reset, Invalid Network Field.
        assert_eq!(
            notification(&classic_with_nlri(&hex("18 c612")), &cx4()),
            (3, 10, vec![])
        );
        assert_eq!(
            notification(&classic_with_nlri(&hex("21 c6120100 00")), &cx4()),
            (3, 10, vec![])
        );
        // The same in the withdrawn routes.
        assert_eq!(
            notification(&update(&hex("20 c61201"), &[], &[]), &cx4()),
            (3, 10, vec![])
        );
        // Add-path negotiated: a path identifier with no prefix after it.
        let mut cx = cx4();
        cx.add_path.insert(V4);
        assert_eq!(
            notification(&classic_with_nlri(&hex("00000001")), &cx),
            (3, 10, vec![])
        );
    }

    fn classic_with_nlri(nlri: &[u8]) -> Vec<u8> {
        update(&[], &base_attrs(), nlri)
    }

    // --- Attribute flags and lengths, RFC 7606 sections 3 and 7 ---

    #[test]
    fn origin_errors_are_treat_as_withdraw() {
        // RFC 7606 section 7.1: length other than 1, or undefined value.
        assert_taw(
            &classic(&[attr(0x40, 1, &[0, 0]), as_path(), next_hop()].concat()),
            1,
            UpdateErrorKind::AttributeLengthError,
        );
        assert_taw(
            &classic(&[attr(0x40, 1, &[3]), as_path(), next_hop()].concat()),
            1,
            UpdateErrorKind::InvalidOrigin,
        );
        // RFC 7606 section 3 (c): Optional bit set on a well-known attribute.
        assert_taw(
            &classic(&[attr(0xc0, 1, &[0]), as_path(), next_hop()].concat()),
            1,
            UpdateErrorKind::AttributeFlagsError,
        );
    }

    #[test]
    fn malformed_as_path_is_treat_as_withdraw() {
        // RFC 7606 section 7.2: unknown segment type, zero-length segment, segment overrunning the attribute.
        for bad in ["05 01 0000fde9", "02 00", "02 02 0000fde9", "02"] {
            assert_taw(
                &classic(&[origin(), attr(0x40, 2, &hex(bad)), next_hop()].concat()),
                2,
                UpdateErrorKind::MalformedAsPath,
            );
        }
        // With a 2-octet peer the same octets read differently: "02 02 fde9 0001" is fine there.
        let u = decode_update(
            &classic(&[origin(), attr(0x40, 2, &hex("02 02 fde9 0001")), next_hop()].concat()),
            &DecodeCxt::default(),
        );
        assert!(u.errors.is_empty());
    }

    #[test]
    fn next_hop_errors_are_treat_as_withdraw() {
        // RFC 7606 section 7.3: length other than 4; RFC 4271 6.3: not a host address.
        assert_taw(
            &classic(&[origin(), as_path(), attr(0x40, 3, &hex("c612000101"))].concat()),
            3,
            UpdateErrorKind::AttributeLengthError,
        );
        assert_taw(
            &classic(&[origin(), as_path(), attr(0x40, 3, &hex("00000000"))].concat()),
            3,
            UpdateErrorKind::InvalidNextHop,
        );
        assert_taw(
            &classic(&[origin(), as_path(), attr(0x40, 3, &hex("e0000001"))].concat()),
            3,
            UpdateErrorKind::InvalidNextHop,
        );
    }

    #[test]
    fn med_local_pref_communities_originator_cluster_list_lengths_are_treat_as_withdraw() {
        // RFC 7606 sections 7.4, 7.5, 7.8, 7.9, 7.10.
        for (a, code) in [
            (attr(0x80, 4, &hex("000064")), 4),
            (attr(0x40, 5, &hex("0000000064")), 5),
            (attr(0xc0, 8, &hex("fde900")), 8),
            (attr(0xc0, 8, &[]), 8),
            (attr(0x80, 9, &hex("c61200")), 9),
            (attr(0x80, 10, &hex("c6120001 c612")), 10),
        ] {
            assert_taw(
                &classic(&[base_attrs(), a].concat()),
                code,
                UpdateErrorKind::AttributeLengthError,
            );
        }
        // MED marked transitive: flags conflict (RFC 7606 section 3 (c)).
        assert_taw(
            &classic(&[base_attrs(), attr(0xc0, 4, &hex("00000064"))].concat()),
            4,
            UpdateErrorKind::AttributeFlagsError,
        );
    }

    #[test]
    fn atomic_aggregate_and_aggregator_errors_are_attribute_discard() {
        // RFC 7606 sections 7.6 and 7.7: the attribute is discarded, the routes stay.
        let u = decode_update(
            &classic(
                &[
                    base_attrs(),
                    attr(0x40, 6, &[1]),
                    attr(0xc0, 7, &hex("fde9c612")),
                ]
                .concat(),
            ),
            &cx4(),
        );
        assert!(!u.treated_as_withdraw());
        assert_eq!(u.nlri, vec![net("198.18.1.0/24")]);
        let a = u.attributes.as_ref().unwrap();
        assert!(!a.atomic_aggregate);
        assert_eq!(a.aggregator, None);
        assert_eq!(
            soft(&u),
            vec![
                (
                    6,
                    ErrorAction::AttributeDiscard,
                    UpdateErrorKind::AttributeLengthError
                ),
                (
                    7,
                    ErrorAction::AttributeDiscard,
                    UpdateErrorKind::AttributeLengthError
                )
            ]
        );
    }

    #[test]
    fn malformed_as4_path_is_attribute_discard() {
        // RFC 6793 section 6 / RFC 7606 section 7: AS4_PATH errors discard the attribute.
        let attrs = [
            origin(),
            attr(0x40, 2, &hex("02 01 fde9")),
            next_hop(),
            attr(0xc0, 17, &hex("02 00")),
        ]
        .concat();
        let u = decode_update(&classic(&attrs), &DecodeCxt::default());
        assert_eq!(
            soft(&u),
            vec![(
                17,
                ErrorAction::AttributeDiscard,
                UpdateErrorKind::MalformedAsPath
            )]
        );
        assert_eq!(
            u.attributes.unwrap().as_path,
            vec![AsPathSegment::Sequence(vec![65001])]
        );
    }

    #[test]
    fn missing_well_known_attributes_are_treat_as_withdraw() {
        // RFC 7606 section 3 (d).
        assert_taw(
            &classic(&[as_path(), next_hop()].concat()),
            1,
            UpdateErrorKind::MissingWellKnownAttribute,
        );
        assert_taw(
            &classic(&[origin(), next_hop()].concat()),
            2,
            UpdateErrorKind::MissingWellKnownAttribute,
        );
        assert_taw(
            &classic(&[origin(), as_path()].concat()),
            3,
            UpdateErrorKind::MissingWellKnownAttribute,
        );
        // NEXT_HOP is not needed when the only NLRI is in MP_REACH_NLRI (RFC 4760 section 3).
        let mp = hex("0002 01 10 fd000000000000000000000000000001 00 40 fd00000100000000");
        let u = decode_update(
            &update(
                &[],
                &[attr(0x80, 14, &mp), origin(), as_path()].concat(),
                &[],
            ),
            &cx4(),
        );
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        // A pure withdrawal needs no attributes at all.
        assert!(
            decode_update(&update(&hex("18 c61201"), &[], &[]), &cx4())
                .errors
                .is_empty()
        );
    }

    #[test]
    fn duplicate_attribute_keeps_the_first() {
        // RFC 7606 section 3 (g).
        let u = decode_update(
            &classic(
                &[
                    base_attrs(),
                    attr(0x80, 4, &hex("00000001")),
                    attr(0x80, 4, &hex("00000002")),
                ]
                .concat(),
            ),
            &cx4(),
        );
        assert_eq!(u.attributes.unwrap().med, Some(1));
        assert_eq!(u.errors.len(), 1);
        assert_eq!(u.errors[0].action, ErrorAction::AttributeDiscard);
    }

    #[test]
    fn duplicate_mp_reach_is_malformed_attribute_list() {
        // RFC 7606 section 3 (g): MP_REACH_NLRI or MP_UNREACH_NLRI twice.
        let mp = attr(
            0x80,
            14,
            &hex("0002 01 10 fd000000000000000000000000000001 00 40 fd00000100000000"),
        );
        assert_eq!(
            notification(
                &update(&[], &[mp.clone(), mp, origin(), as_path()].concat(), &[]),
                &cx4()
            ),
            (3, 1, vec![])
        );
        let un = attr(0x80, 15, &hex("0002 01"));
        assert_eq!(
            notification(&update(&[], &[un.clone(), un].concat(), &[]), &cx4()),
            (3, 1, vec![])
        );
    }

    #[test]
    fn mp_reach_errors_are_optional_attribute_error_with_the_attribute() {
        // RFC 4760 section 7, RFC 7606 section 7.11: session reset, Optional Attribute Error.
        let cases = [
            // IPv6 next hop of 8 octets.
            "0002 01 08 fd00000000000000 00 40 fd00000100000000",
            // IPv4 NLRI with a 16-octet next hop, extended next hop not negotiated (RFC 8950 section 3).
            "0001 01 10 fd000000000000000000000000000001 00 18 c61201",
            // IPv6 prefix length 129.
            "0002 01 10 fd000000000000000000000000000001 00 81 fd",
            // NLRI cut short.
            "0002 01 10 fd000000000000000000000000000001 00 40 fd00",
            // Next hop length past the attribute end.
            "0002 01 20 fd000000000000000000000000000001",
            // Too short for AFI, SAFI, next hop length and reserved.
            "0002 01 00",
        ];
        for c in cases {
            let a = attr(0x80, 14, &hex(c));
            let n = notification(
                &update(&[], &[a.clone(), origin(), as_path()].concat(), &[]),
                &cx4(),
            );
            assert_eq!(n, (3, 9, a), "{c}");
        }
        // MP_UNREACH with a bad prefix.
        let a = attr(0x80, 15, &hex("0002 01 81"));
        assert_eq!(notification(&update(&[], &a, &[]), &cx4()), (3, 9, a));
        // MP_REACH flagged transitive: Attribute Flags Error, still a session reset.
        let a = attr(
            0xc0,
            14,
            &hex("0002 01 10 fd000000000000000000000000000001 00"),
        );
        assert_eq!(notification(&update(&[], &a, &[]), &cx4()), (3, 4, a));
    }

    #[test]
    fn unknown_attributes() {
        // RFC 4271 section 6.3: unrecognized well-known (Optional bit clear): reset with the attribute as data.
        let a = attr(0x40, 99, &[1, 2]);
        assert_eq!(
            notification(&classic(&[base_attrs(), a.clone()].concat()), &cx4()),
            (3, 2, a)
        );
        // Section 9: optional transitive is kept to pass on, optional non-transitive ignored.
        let u = decode_update(
            &classic(
                &[
                    base_attrs(),
                    attr(0xc0, 32, &[1, 2, 3, 4]),
                    attr(0x80, 99, &[5]),
                ]
                .concat(),
            ),
            &cx4(),
        );
        assert!(u.errors.is_empty());
        assert_eq!(
            u.attributes.unwrap().unknown,
            vec![(0xc0, 32, vec![1, 2, 3, 4])]
        );
    }

    #[test]
    fn attribute_overrunning_the_attribute_block() {
        // RFC 7606 section 4: the last attribute's length passes Total Path Attribute Length: treat-as-withdraw.
        let mut attrs = base_attrs();
        attrs.extend_from_slice(&hex("80 04 08 0000"));
        assert_taw(&classic(&attrs), 4, UpdateErrorKind::AttributeLengthError);
        // Fewer than 3 octets left for an attribute header.
        let mut attrs = base_attrs();
        attrs.extend_from_slice(&hex("80"));
        assert_taw(&classic(&attrs), 0, UpdateErrorKind::AttributeLengthError);
        // After MP_REACH_NLRI was read the NLRI cannot be trusted: session reset.
        let mp = attr(
            0x80,
            14,
            &hex("0002 01 10 fd000000000000000000000000000001 00 40 fd00000100000000"),
        );
        let attrs = [mp, origin(), hex("80 04 08 0000")].concat();
        assert_eq!(
            notification(&update(&[], &attrs, &[]), &cx4()),
            (3, 1, vec![])
        );
    }

    #[test]
    fn treat_as_withdraw_moves_mp_nlri_and_path_ids() {
        // ORIGIN invalid in an add-path IPv6 UPDATE: the MP_REACH prefix is withdrawn with its path id.
        let mp = hex("0002 01 10 fd000000000000000000000000000001 00 00000007 40 fd00000100000000");
        let mut cx = cx4();
        cx.add_path.insert(V6);
        let u = decode_update(
            &update(
                &[],
                &[attr(0x80, 14, &mp), attr(0x40, 1, &[9]), as_path()].concat(),
                &[],
            ),
            &cx,
        );
        assert!(u.treated_as_withdraw());
        assert_eq!(u.withdrawn, vec![net("fd00:1::/64")]);
        assert_eq!(u.withdrawn_path_ids, vec![7]);
        assert!(u.nlri.is_empty() && u.nlri_path_ids.is_empty() && u.attributes.is_none());
    }

    #[test]
    fn route_refresh_errors() {
        // RFC 7313 section 5: wrong length is ROUTE-REFRESH Message Error / Invalid Message Length, data the message.
        let m = msg(5, &hex("0002 00 01 00"));
        assert_eq!(notification(&m, &cx4()), (7, 1, m.clone()));
        // RFC 2918 section 4: an unsupported family is ignored, not answered.
        let e = Message::decode(&msg(5, &hex("0019 00 41")), &cx4()).unwrap_err();
        assert!(e.is_ignorable());
    }
}

/// Properties: decoding never panics, whatever the octets; encode then decode gives back the message.
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn all_cxs() -> Vec<DecodeCxt> {
        let all: FamilySet = [V4, V6].into_iter().collect();
        vec![
            DecodeCxt::default(),
            DecodeCxt {
                four_octet_as: true,
                add_path: all,
                extended_next_hop: all,
            },
        ]
    }

    /// A header for `body` of type `typ`, so random bodies get past the framer into the message decoders.
    fn framed(typ: u8, body: &[u8]) -> Vec<u8> {
        msg(typ, &body[..body.len().min(4096 - 19)])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn decode_never_panics_on_random_bodies(typ in 0u8..7, body in proptest::collection::vec(any::<u8>(), 0..600)) {
            for cx in all_cxs() {
                let m = framed(typ, &body);
                let _ = frame_len(&m);
                if let Err(e) = Message::decode(&m, &cx) {
                    let _ = NotificationMsg::from(&e);
                }
            }
        }

        #[test]
        fn decode_never_panics_on_random_octets(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = frame_len(&bytes);
            let _ = Message::decode(&bytes, &DecodeCxt::default());
        }

        #[test]
        fn decode_never_panics_on_mutated_updates(idx in any::<prop::sample::Index>(), val in any::<u8>(), cut in 0usize..4) {
            let mp = hex("0002 01 20 fd000000000000000000000000000001 fe800000000000000000000000000001 00 40 fd00000100000000");
            let mut m = update(&hex("18 c61205"), &[attr(0x80, 14, &mp), base_attrs(), attr(0xc0, 8, &hex("fde90064"))].concat(), &hex(NLRI_198_18_1));
            let i = idx.index(m.len() - 19) + 19;
            m[i] = val;
            m.truncate(m.len() - cut);
            let l = m.len() as u16;
            m[16..18].copy_from_slice(&l.to_be_bytes());
            for cx in all_cxs() {
                let _ = Message::decode(&m, &cx);
            }
        }

        #[test]
        fn update_round_trips(
            v4 in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            v6 in proptest::collection::vec((any::<u128>(), 0u8..=128), 0..40),
            wd in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            path in proptest::collection::vec(any::<u32>(), 0..20),
            communities in proptest::collection::vec(any::<u32>(), 0..10),
            med in any::<Option<u32>>(),
            four in any::<bool>(),
        ) {
            let v4: Vec<IpNet> = v4.into_iter().map(|(a, l)| IpNet::new(Ipv4Addr::from(a).into(), l).unwrap().trunc()).collect();
            let v6: Vec<IpNet> = v6.into_iter().map(|(a, l)| IpNet::new(Ipv6Addr::from(a).into(), l).unwrap().trunc()).collect();
            let announce_v6 = !v6.is_empty();
            let nlri = if announce_v6 { v6 } else { v4 };
            let withdrawn: Vec<IpNet> = wd.into_iter().map(|(a, l)| IpNet::new(Ipv4Addr::from(a).into(), l).unwrap().trunc()).collect();
            let attributes = (!nlri.is_empty()).then(|| PathAttributes {
                as_path: if path.is_empty() { vec![] } else { vec![AsPathSegment::Sequence(path)] },
                next_hop: Some(if announce_v6 { "fd00::1".parse().unwrap() } else { IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)) }),
                med,
                communities: communities.into_iter().map(Community).collect(),
                ..Default::default()
            });
            let u = UpdateMsg { withdrawn, attributes, nlri, ..Default::default() };
            let ecx = EncodeCxt { four_octet_as: four, ..Default::default() };
            let dcx = DecodeCxt { four_octet_as: four, ..Default::default() };
            let mut b = BytesMut::new();
            match Message::Update(u.clone()).encode(&ecx, &mut b) {
                Ok(()) => {
                    let back = decode_update(&b, &dcx);
                    if u.withdrawn.is_empty() && u.nlri.is_empty() {
                        // Nothing in it: that is the IPv4 End-of-RIB on the wire.
                        prop_assert_eq!(back.end_of_rib, Some(V4));
                    } else {
                        prop_assert_eq!(back, u);
                    }
                }
                Err(EncodeError::MessageTooLong(_)) => prop_assert!(b.is_empty()),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}

/// The libFuzzer-free twin of `bgpd/fuzz/fuzz_targets/decode.rs`: a long random-mutation loop over valid
/// seeds (byte flips, insertions, deletions, splices, and the header length fixed up so mutations reach the
/// body decoders). Ignored by default; run with
/// `BGPD_FUZZ_ITERS=10000000 cargo test -p bgpd --release --lib mutation_fuzz -- --ignored --nocapture`.
mod mutation_fuzz {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        let v6nh = "fd000000000000000000000000000001 fe800000000000000000000000000001";
        let mp = hex(&format!(
            "0002 01 20 {v6nh} 00 00000007 40 fd00000100000000 30 fd0000020000"
        ));
        vec![
            msg(4, &[]),
            msg(
                1,
                &hex(
                    "04 fde9 005a c6120001 1e 02 1c 01040001000102000506000100010002400681780002018041040000fde9",
                ),
            ),
            update(
                &hex("18 c61205"),
                &[
                    base_attrs(),
                    attr(0x80, 4, &hex("00000064")),
                    attr(0xc0, 8, &hex("fde90064")),
                ]
                .concat(),
                &hex("18 c61201 10 c613"),
            ),
            update(
                &[],
                &[
                    attr(0x80, 14, &mp),
                    origin(),
                    attr(0x40, 2, &hex("02 02 fde9 5ba0")),
                    attr(0xc0, 17, &hex("02 02 0000fde9 fa56ea00")),
                ]
                .concat(),
                &[],
            ),
            update(
                &[],
                &[
                    attr(
                        0x80,
                        14,
                        &hex("0001 01 10 fd000000000000000000000000000001 00 18 c61201"),
                    ),
                    origin(),
                    as_path(),
                ]
                .concat(),
                &[],
            ),
            update(
                &[],
                &attr(0x80, 15, &hex("0002 01 40 fd00000100000000")),
                &[],
            ),
            update(
                &[],
                &[
                    base_attrs(),
                    attr(0x80, 9, &hex("c6120009")),
                    attr(0x80, 10, &hex("c612000a")),
                    attr(0xc0, 7, &hex("fde9 c6120002")),
                ]
                .concat(),
                &hex("18 c61201"),
            ),
            msg(3, &hex("06 02 0102")),
            msg(5, &hex("0002 00 01")),
        ]
    }

    fn mutate(r: &mut Rng, m: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        for _ in 0..1 + r.below(4) {
            let i = r.below(m.len());
            match r.below(6) {
                0 if !m.is_empty() => m[i] ^= 1 << r.below(8),
                1 if !m.is_empty() => m[i] = r.next() as u8,
                2 if m.len() < 4096 => m.insert(i, r.next() as u8),
                3 if !m.is_empty() => {
                    m.remove(i);
                }
                4 => {
                    let s = &seeds[r.below(seeds.len())];
                    let a = r.below(s.len());
                    let b = a + r.below(s.len() - a);
                    let at = r.below(m.len() + 1);
                    m.splice(at..at, s[a..b].iter().copied());
                }
                _ if !m.is_empty() => m[i] = [0, 1, 0x7f, 0x80, 0xff, 32, 33, 128, 129][r.below(9)],
                _ => {}
            }
        }
        // Mostly keep the header's length right, so the body decoders see the mutation.
        if m.len() >= 19 && r.below(8) != 0 {
            let l = (m.len().min(4096)) as u16;
            m[16..18].copy_from_slice(&l.to_be_bytes());
        }
    }

    fn check(frame: &[u8], dcx: &DecodeCxt, ecx: &EncodeCxt) {
        let _ = frame_len(frame);
        match Message::decode(frame, dcx) {
            Err(e) => {
                let _ = NotificationMsg::from(&e);
            }
            Ok(m) => {
                let mut b = BytesMut::new();
                if m.encode(ecx, &mut b).is_err() {
                    assert!(b.is_empty());
                    return;
                }
                let again = Message::decode(&b, dcx).expect("re-encoded message must decode");
                if !matches!(m, Message::Update(_)) {
                    assert_eq!(again, m);
                }
            }
        }
    }

    #[test]
    #[ignore = "long-running: set BGPD_FUZZ_ITERS and run in release"]
    fn mutation_fuzz() {
        let iters: u64 = std::env::var("BGPD_FUZZ_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000);
        let seeds = seeds();
        let mut r = Rng(0x0123_4567_89ab_cdef);
        let start = std::time::Instant::now();
        let mut decoded_ok = 0u64;
        for n in 0..iters {
            let sel = r.next() as u8;
            let fam = |bit: u8| -> FamilySet {
                [(bit, V4), (bit << 1, V6)]
                    .into_iter()
                    .filter(|(b, _)| sel & b != 0)
                    .map(|(_, f)| f)
                    .collect()
            };
            let dcx = DecodeCxt {
                four_octet_as: sel & 1 != 0,
                add_path: fam(2),
                extended_next_hop: fam(8),
            };
            let ecx = EncodeCxt {
                four_octet_as: dcx.four_octet_as,
                add_path: dcx.add_path,
                extended_next_hop: dcx.extended_next_hop,
            };
            let mut m = seeds[r.below(seeds.len())].clone();
            mutate(&mut r, &mut m, &seeds);
            if Message::decode(&m, &dcx).is_ok() {
                decoded_ok += 1;
            }
            check(&m, &dcx, &ecx);
            if n % 1_000_000 == 0 && n > 0 {
                eprintln!("{n} inputs, {decoded_ok} decoded Ok, {:?}", start.elapsed());
            }
        }
        eprintln!(
            "done: {iters} inputs, {decoded_ok} decoded Ok, {:?}",
            start.elapsed()
        );
        // The mutations must reach the decoders, not only the header checks.
        assert!(
            decoded_ok > iters / 100,
            "only {decoded_ok} of {iters} inputs decoded: mutations too destructive"
        );
    }
}

mod negotiation {
    use super::*;

    fn open(caps: Vec<Capability>) -> OpenMsg {
        OpenMsg {
            version: 4,
            my_as: 23456,
            hold_time: 90,
            bgp_identifier: Ipv4Addr::new(198, 18, 0, 1),
            capabilities: caps,
        }
    }

    #[test]
    fn contexts_follow_both_opens() {
        let local = open(vec![
            Capability::FourOctetAs(4_200_000_001),
            Capability::AddPath(vec![
                (Afi::Ipv6, Safi::Unicast, 3),
                (Afi::Ipv4, Safi::Unicast, 1),
            ]),
            Capability::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]),
        ]);
        let remote = open(vec![
            Capability::FourOctetAs(65001),
            Capability::AddPath(vec![
                (Afi::Ipv6, Safi::Unicast, 1),
                (Afi::Ipv4, Safi::Unicast, 2),
            ]),
        ]);
        let (d, e) = negotiate(&local, &remote);
        assert!(d.four_octet_as && e.four_octet_as);
        // IPv6: we offered both, the peer only receives: we send path ids, we do not read them.
        assert!(e.add_path.contains(V6) && !d.add_path.contains(V6));
        // IPv4: we receive, the peer sends.
        assert!(d.add_path.contains(V4) && !e.add_path.contains(V4));
        // We advertised extended next hop, the peer did not: accept it, never send it.
        assert!(d.extended_next_hop.contains(V4) && !e.extended_next_hop.contains(V4));
        assert_eq!(local.asn(), 4_200_000_001);
        // A peer without the four-octet capability makes both directions 2-octet.
        let (d, e) = negotiate(&local, &open(vec![]));
        assert!(!d.four_octet_as && !e.four_octet_as);
        assert_eq!(open(vec![]).asn(), 23456);
    }

    #[test]
    fn unknown_transitive_attribute_is_passed_on_with_partial() {
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                unknown: vec![(0xc0, 32, vec![0, 0, 0xfd, 0xe9, 0, 0, 0, 1, 0, 0, 0, 2])],
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24")],
            ..Default::default()
        };
        let b = enc(&Message::Update(u), &ecx4());
        let a = decode_update(&b, &cx4()).attributes.unwrap();
        assert_eq!(
            a.unknown,
            vec![(0xe0, 32, vec![0, 0, 0xfd, 0xe9, 0, 0, 0, 1, 0, 0, 0, 2])]
        );
    }
}

/// Cross-check with a real implementation: ExaBGP (Debian package `exabgp`, installed by CI) decodes what
/// bgpd encodes, offline (`exabgp --decode HEX config`, no session, no network), and its JSON must say
/// the same routes and attributes. Skips with a message when exabgp is not installed.
mod exabgp_interop {
    use super::*;
    use serde_json::Value;
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// The `update` (or `eor`) object ExaBGP decodes `bytes` into, under a neighbor with the given state.
    fn decode(name: &str, bytes: &[u8], asn4: bool, add_path: bool, ext_nh: bool) -> Option<Value> {
        let Some(bin) = super::exabgp_interop_bin() else {
            eprintln!("skipping {name}: exabgp not installed (apt-get install exabgp)");
            return None;
        };
        let conf = std::env::temp_dir().join(format!(
            "fairlead-codec-exabgp-{}-{name}.conf",
            std::process::id()
        ));
        let caps = format!(
            "asn4 {}; {} {}",
            if asn4 { "enable" } else { "disable" },
            if add_path {
                "add-path send/receive;"
            } else {
                ""
            },
            if ext_nh { "nexthop enable;" } else { "" }
        );
        let nexthop = if ext_nh {
            "nexthop { ipv4 unicast ipv6; }"
        } else {
            ""
        };
        std::fs::write(
            &conf,
            format!(
                "neighbor 198.18.0.2 {{ router-id 198.18.0.1; local-address 198.18.0.1; local-as 65001; \
                 peer-as 65002; family {{ ipv4 unicast; ipv6 unicast; }} {nexthop} capability {{ {caps} }} }}\n"
            ),
        )
        .unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut child = Command::new(bin)
            .arg("--decode")
            .arg(&hex)
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        // Bounded wait; the child is ours and is killed by its own handle on timeout.
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("exabgp --decode did not finish in 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&conf);
        let out = reader.join().unwrap();
        let line = out
            .lines()
            .find_map(|l| l.split_once(" json ").map(|(_, j)| j.to_string()));
        let line = line.unwrap_or_else(|| panic!("exabgp printed no JSON for {name}:\n{out}"));
        let v: Value = serde_json::from_str(&line).unwrap();
        Some(v["neighbor"]["message"].clone())
    }

    fn nlri_of(v: &Value) -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["nlri"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn classic_ipv4_with_withdrawal_med_communities() {
        let u = UpdateMsg {
            withdrawn: vec![net("198.18.5.0/24")],
            attributes: Some(PathAttributes {
                as_path: vec![AsPathSegment::Sequence(vec![65001, 4_200_000_000])],
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                med: Some(100),
                communities: vec![Community(0xfde9_0064)],
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24"), net("198.19.0.0/16")],
            ..Default::default()
        };
        let Some(m) = decode(
            "classic",
            &enc(&Message::Update(u), &ecx4()),
            true,
            false,
            false,
        ) else {
            return;
        };
        let up = &m["update"];
        assert_eq!(up["attribute"]["origin"], "igp");
        assert_eq!(
            up["attribute"]["as-path"],
            serde_json::json!([65001, 4_200_000_000u32])
        );
        assert_eq!(up["attribute"]["med"], 100);
        assert_eq!(
            up["attribute"]["community"],
            serde_json::json!([[65001, 100]])
        );
        assert_eq!(
            nlri_of(&up["announce"]["ipv4 unicast"]["198.18.0.1"]),
            ["198.18.1.0/24", "198.19.0.0/16"]
        );
        assert_eq!(nlri_of(&up["withdraw"]["ipv4 unicast"]), ["198.18.5.0/24"]);
    }

    #[test]
    fn mp_reach_ipv6_link_local_and_reflection_attributes() {
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                next_hop: Some("fd00::1".parse().unwrap()),
                link_local_next_hop: Some("fe80::1".parse().unwrap()),
                local_pref: Some(100),
                originator_id: Some(Ipv4Addr::new(198, 18, 0, 9)),
                cluster_list: vec![Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 11)],
                ..Default::default()
            }),
            nlri: vec![net("fd00:1::/64")],
            ..Default::default()
        };
        let Some(m) = decode(
            "mp6",
            &enc(&Message::Update(u), &ecx4()),
            true,
            false,
            false,
        ) else {
            return;
        };
        let up = &m["update"];
        assert_eq!(up["attribute"]["local-preference"], 100);
        assert_eq!(up["attribute"]["originator-id"], "198.18.0.9");
        assert_eq!(
            up["attribute"]["cluster-list"],
            serde_json::json!(["198.18.0.10", "198.18.0.11"])
        );
        // ExaBGP lists the 32-octet next hop as its two addresses.
        assert_eq!(
            nlri_of(&up["announce"]["ipv6 unicast"]["fd00::1"]),
            ["fd00:1::/64"]
        );
        assert_eq!(
            nlri_of(&up["announce"]["ipv6 unicast"]["fe80::1"]),
            ["fd00:1::/64"]
        );
    }

    #[test]
    fn rfc8950_ipv4_over_ipv6_next_hop() {
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                next_hop: Some("fd00::1".parse().unwrap()),
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24")],
            ..Default::default()
        };
        let mut ecx = ecx4();
        ecx.extended_next_hop.insert(V4);
        let Some(m) = decode(
            "rfc8950",
            &enc(&Message::Update(u), &ecx),
            true,
            false,
            true,
        ) else {
            return;
        };
        assert_eq!(
            nlri_of(&m["update"]["announce"]["ipv4 unicast"]["fd00::1"]),
            ["198.18.1.0/24"]
        );
    }

    #[test]
    fn two_octet_peer_as4_path_is_merged_alike() {
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                as_path: vec![AsPathSegment::Sequence(vec![65001, 4_200_000_000])],
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                ..Default::default()
            }),
            nlri: vec![net("198.18.1.0/24")],
            ..Default::default()
        };
        let Some(m) = decode(
            "as4",
            &enc(&Message::Update(u), &EncodeCxt::default()),
            false,
            false,
            false,
        ) else {
            return;
        };
        assert_eq!(
            m["update"]["attribute"]["as-path"],
            serde_json::json!([65001, 4_200_000_000u32])
        );
    }

    #[test]
    fn add_path_ipv6() {
        let u = UpdateMsg {
            attributes: Some(PathAttributes {
                next_hop: Some("fd00::1".parse().unwrap()),
                ..Default::default()
            }),
            nlri: vec![net("fd00:1::/64")],
            nlri_path_ids: vec![7],
            ..Default::default()
        };
        let mut ecx = ecx4();
        ecx.add_path = [V4, V6].into_iter().collect();
        let Some(m) = decode(
            "addpath",
            &enc(&Message::Update(u), &ecx),
            true,
            true,
            false,
        ) else {
            return;
        };
        let n = &m["update"]["announce"]["ipv6 unicast"]["fd00::1"][0];
        assert_eq!(n["nlri"], "fd00:1::/64");
        assert_eq!(n["path-information"], "0.0.0.7");
    }

    #[test]
    fn mp_unreach_and_end_of_rib_ipv6() {
        let w = UpdateMsg {
            withdrawn: vec![net("fd00:1::/64")],
            ..Default::default()
        };
        let Some(m) = decode(
            "unreach6",
            &enc(&Message::Update(w), &ecx4()),
            true,
            false,
            false,
        ) else {
            return;
        };
        assert_eq!(
            nlri_of(&m["update"]["withdraw"]["ipv6 unicast"]),
            ["fd00:1::/64"]
        );
        let eor = UpdateMsg {
            end_of_rib: Some(V6),
            ..Default::default()
        };
        let Some(m) = decode(
            "eor6",
            &enc(&Message::Update(eor), &ecx4()),
            true,
            false,
            false,
        ) else {
            return;
        };
        assert_eq!(m["eor"]["afi"], "ipv6");
        assert_eq!(m["eor"]["safi"], "unicast");
    }
}

/// Decode what a real speaker sends: ExaBGP in a network namespace made by the test opens a session to a
/// listener of ours, and every OPEN/UPDATE it sends must decode to the routes in its configuration.
/// Needs root (for the namespace) and exabgp; skips with a message otherwise.
mod exabgp_session {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// The namespace and the exabgp process; both go away on drop, even when an assertion failed.
    struct Lab {
        ns: String,
        conf: std::path::PathBuf,
        exabgp: Option<Child>,
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            if let Some(c) = &mut self.exabgp {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
            let _ = std::fs::remove_file(&self.conf);
        }
    }

    fn ip(args: &[&str]) {
        let st = Command::new("ip").args(args).status().expect("run ip");
        assert!(st.success(), "ip {args:?} failed");
    }

    const CONF: &str = "
neighbor 198.18.0.2 {
    router-id 198.18.0.1;
    local-address 198.18.0.1;
    local-as 65001;
    peer-as 65002;
    hold-time 30;
    family { ipv4 unicast; ipv6 unicast; }
    nexthop { ipv4 unicast ipv6; }
    capability { asn4 enable; route-refresh; graceful-restart 120; nexthop enable; }
    static {
        route 198.18.10.0/24 next-hop 198.18.0.1 med 50 community [ 65001:100 65001:200 ] as-path [ 65001 4200000001 ];
        route fd00:10::/64 next-hop fd00::1 originator-id 198.18.0.9 cluster-list [ 198.18.0.10 ];
        route 198.18.11.0/24 next-hop fd00::1;
    }
}
";

    fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Vec<u8> {
        loop {
            if let Some(n) = frame_len(buf).unwrap() {
                return buf.drain(..n).collect();
            }
            assert!(
                Instant::now() < deadline,
                "no complete message from exabgp in time"
            );
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) => panic!("exabgp closed the session"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    #[test]
    fn decodes_a_live_exabgp_session() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping decodes_a_live_exabgp_session: needs root for a network namespace");
            return;
        }
        let Some(bin) = super::exabgp_interop_bin() else {
            eprintln!(
                "skipping decodes_a_live_exabgp_session: exabgp not installed (apt-get install exabgp)"
            );
            return;
        };
        let ns = format!("fl-codec-{}", std::process::id());
        let conf = std::env::temp_dir().join(format!("{ns}.conf"));
        let mut lab = Lab {
            ns: ns.clone(),
            conf: conf.clone(),
            exabgp: None,
        };
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        for a in ["198.18.0.1/32", "198.18.0.2/32"] {
            ip(&["-n", &ns, "addr", "add", a, "dev", "lo"]);
        }
        std::fs::write(&conf, CONF).unwrap();

        // Our side runs on a thread that entered the namespace; exabgp is started once it listens.
        let path = format!("/run/netns/{ns}");
        let (tx, rx) = std::sync::mpsc::channel();
        let listener = std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let l = TcpListener::bind("198.18.0.2:179".parse::<SocketAddr>().unwrap()).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "exabgp did not connect in 60 s");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            session(&mut s, deadline)
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("listener ready");
        lab.exabgp = Some(
            Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(bin)
                .arg(&conf)
                .env("exabgp_daemon_daemonize", "false")
                .env("exabgp_log_destination", "stderr")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let (their_open, updates) = listener.join().expect("session thread");

        // OPEN: what the configuration asked for, as typed capabilities.
        assert_eq!(their_open.my_as, 65001);
        assert_eq!(their_open.hold_time, 30);
        assert_eq!(their_open.bgp_identifier, Ipv4Addr::new(198, 18, 0, 1));
        let caps = &their_open.capabilities;
        assert!(caps.contains(&Capability::FourOctetAs(65001)), "{caps:?}");
        assert!(
            caps.contains(&Capability::MultiProtocol {
                afi: Afi::Ipv6,
                safi: Safi::Unicast
            }),
            "{caps:?}"
        );
        assert!(caps.contains(&Capability::RouteRefresh), "{caps:?}");
        assert!(
            caps.iter().any(|c| matches!(
                c,
                Capability::GracefulRestart {
                    restart_time: 120,
                    ..
                }
            )),
            "{caps:?}"
        );
        assert!(
            caps.iter().any(|c| matches!(c, Capability::ExtendedNextHop(v) if v.contains(&(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)))),
            "{caps:?}"
        );

        // UPDATEs: each configured route with its attributes; no RFC 7606 error on any of them.
        let route = |p: &str| -> PathAttributes {
            let p = net(p);
            let u = updates
                .iter()
                .find(|u| u.nlri.contains(&p))
                .unwrap_or_else(|| panic!("{p} not received: {updates:?}"));
            assert!(u.errors.is_empty(), "{:?}", u.errors);
            u.attributes.clone().unwrap()
        };
        let a = route("198.18.10.0/24");
        assert_eq!(a.next_hop, Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))));
        assert_eq!(a.med, Some(50));
        assert_eq!(
            a.communities,
            vec![Community(0xfde9_0064), Community(0xfde9_00c8)]
        );
        assert_eq!(
            a.as_path,
            vec![AsPathSegment::Sequence(vec![65001, 4_200_000_001])]
        );
        let a = route("fd00:10::/64");
        assert_eq!(a.next_hop, Some("fd00::1".parse().unwrap()));
        assert_eq!(a.originator_id, Some(Ipv4Addr::new(198, 18, 0, 9)));
        assert_eq!(a.cluster_list, vec![Ipv4Addr::new(198, 18, 0, 10)]);
        let a = route("198.18.11.0/24");
        assert_eq!(
            a.next_hop,
            Some("fd00::1".parse().unwrap()),
            "RFC 8950 next hop"
        );
        assert!(
            updates.iter().any(|u| u.end_of_rib == Some(V4))
                && updates.iter().any(|u| u.end_of_rib == Some(V6))
        );
    }

    /// Our half of the session: read the OPEN, answer with ours and a KEEPALIVE, then read until both
    /// End-of-RIBs arrived, decoding with the contexts the two OPENs negotiate.
    fn session(s: &mut TcpStream, deadline: Instant) -> (OpenMsg, Vec<UpdateMsg>) {
        let mut buf = Vec::new();
        let first = read_message(s, &mut buf, deadline);
        let Message::Open(theirs) = Message::decode(&first, &DecodeCxt::default()).unwrap() else {
            panic!("first message is not an OPEN")
        };
        let ours = OpenMsg {
            version: 4,
            my_as: 65002,
            hold_time: 30,
            bgp_identifier: Ipv4Addr::new(198, 18, 0, 2),
            capabilities: vec![
                Capability::MultiProtocol {
                    afi: Afi::Ipv4,
                    safi: Safi::Unicast,
                },
                Capability::MultiProtocol {
                    afi: Afi::Ipv6,
                    safi: Safi::Unicast,
                },
                Capability::FourOctetAs(65002),
                Capability::RouteRefresh,
                Capability::GracefulRestart {
                    restarting: false,
                    restart_time: 120,
                    families: vec![],
                },
                Capability::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]),
            ],
        };
        let (dcx, ecx) = negotiate(&ours, &theirs);
        let mut out = BytesMut::new();
        Message::Open(ours).encode(&ecx, &mut out).unwrap();
        Message::Keepalive.encode(&ecx, &mut out).unwrap();
        s.write_all(&out).unwrap();
        let mut updates = Vec::new();
        let mut eor = (false, false);
        while !(eor.0 && eor.1) {
            let m = read_message(s, &mut buf, deadline);
            match Message::decode(&m, &dcx).unwrap() {
                Message::Update(u) => {
                    eor.0 |= u.end_of_rib == Some(V4);
                    eor.1 |= u.end_of_rib == Some(V6);
                    updates.push(u);
                }
                Message::Keepalive => {
                    let mut k = BytesMut::new();
                    Message::Keepalive.encode(&ecx, &mut k).unwrap();
                    s.write_all(&k).unwrap();
                }
                Message::Notification(n) => panic!("exabgp sent {n:?}"),
                _ => {}
            }
        }
        // Cease / Administrative Shutdown (RFC 4486), then close.
        let mut n = BytesMut::new();
        Message::Notification(NotificationMsg {
            code: 6,
            subcode: 2,
            data: vec![],
        })
        .encode(&ecx, &mut n)
        .unwrap();
        let _ = s.write_all(&n);
        (theirs, updates)
    }
}

/// The exabgp executable, when installed.
fn exabgp_interop_bin() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("exabgp"))
        .find(|p| p.is_file())
}
