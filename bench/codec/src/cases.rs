//! The feature cases of decision 0001: one wire message per listed encoding, built from the RFC layouts
//! (the same octets bgpd's own unit tests check by hand), plus malformed UPDATEs for the RFC 7606 column.

/// What the decoder must know from the session to read a case.
#[derive(Clone, Copy, Debug, Default)]
pub struct Needs {
    /// Four-octet AS negotiated (false: a 2-octet peer).
    pub four_octet_as: bool,
    /// Add-path receive for IPv6 unicast.
    pub add_path_v6: bool,
    /// RFC 8950 for IPv4 unicast.
    pub ext_nh_v4: bool,
}

/// One case: a name for the table, the message, and values whose presence in the decoded value's Debug
/// rendering shows the feature was decoded into typed fields (any alternative of each group must appear).
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub needs: Needs,
    pub needles: Vec<Vec<&'static str>>,
}

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn msg(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(typ);
    m.extend_from_slice(body);
    m
}

pub fn attr(flags: u8, code: u8, v: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, code, v.len() as u8];
    a.extend_from_slice(v);
    a
}

pub fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    msg(2, &b)
}

fn open(caps: &str) -> Vec<u8> {
    // Version 4, My AS 23456 (AS_TRANS), hold 90, id 198.18.0.1, one Capabilities parameter; every OPEN
    // also carries four-octet AS 4200000001 and MP IPv4 so libraries that require them are satisfied.
    let mut caps = hex(caps);
    caps.extend_from_slice(&hex("41 04 fa56ea01 01 04 0001 00 01"));
    let mut body = hex("04 5ba0 005a c6120001");
    body.push(caps.len() as u8 + 2);
    body.extend_from_slice(&[2, caps.len() as u8]);
    body.extend_from_slice(&caps);
    msg(1, &body)
}

fn base() -> Vec<u8> {
    // ORIGIN IGP, AS_PATH (65001 4200000001) with 4-octet ASNs.
    [
        attr(0x40, 1, &[0]),
        attr(0x40, 2, &hex("02 02 0000fde9 fa56ea01")),
    ]
    .concat()
}

const FOUR: Needs = Needs {
    four_octet_as: true,
    add_path_v6: false,
    ext_nh_v4: false,
};

pub fn feature_cases() -> Vec<Case> {
    let v6nh = "fd000000000000000000000000000001";
    let ll = "fe800000000000000000000000000001";
    vec![
        Case {
            name: "OPEN four-octet AS (RFC 6793)",
            bytes: open(""),
            needs: FOUR,
            needles: vec![vec!["4200000001"]],
        },
        Case {
            name: "OPEN MP-BGP ipv6 unicast (RFC 4760)",
            bytes: open("01 04 0002 00 01"),
            needs: FOUR,
            needles: vec![vec!["ipv6", "inet6"]],
        },
        Case {
            name: "OPEN route refresh (RFC 2918)",
            bytes: open("02 00"),
            needs: FOUR,
            needles: vec![vec!["routerefresh", "route_refresh", "caprr"]],
        },
        Case {
            name: "OPEN graceful restart (RFC 4724)",
            bytes: open("40 06 814d 0002 01 80"),
            needs: FOUR,
            needles: vec![vec!["333"]],
        },
        Case {
            name: "OPEN extended next hop (RFC 8950)",
            bytes: open("05 06 0001 0001 0002"),
            needs: FOUR,
            needles: vec![vec![
                "extendednexthop",
                "extended_next_hop",
                "nexthopencoding",
                "extendednexthopencoding",
            ]],
        },
        Case {
            name: "OPEN add-path (RFC 7911)",
            bytes: open("45 04 0002 01 03"),
            needs: FOUR,
            needles: vec![vec!["addpath", "add_path"]],
        },
        Case {
            name: "UPDATE MP_REACH ipv4 unicast",
            bytes: update(
                &[],
                &[
                    attr(0x80, 14, &hex("0001 01 04 c6120001 00 18 c61201")),
                    base(),
                ]
                .concat(),
                &[],
            ),
            needs: FOUR,
            needles: vec![vec!["198.18.1.0"], vec!["198.18.0.1"]],
        },
        Case {
            name: "UPDATE MP_REACH ipv6, 16-octet next hop",
            bytes: update(
                &[],
                &[
                    attr(
                        0x80,
                        14,
                        &hex(&format!("0002 01 10 {v6nh} 00 40 fd00000100000000")),
                    ),
                    base(),
                ]
                .concat(),
                &[],
            ),
            needs: FOUR,
            needles: vec![vec!["fd00:1::"], vec!["fd00::1"]],
        },
        Case {
            name: "UPDATE MP_REACH ipv6, global + link-local",
            bytes: update(
                &[],
                &[
                    attr(
                        0x80,
                        14,
                        &hex(&format!("0002 01 20 {v6nh} {ll} 00 40 fd00000100000000")),
                    ),
                    base(),
                ]
                .concat(),
                &[],
            ),
            needs: FOUR,
            needles: vec![vec!["fd00:1::"], vec!["fd00::1"], vec!["fe80::1"]],
        },
        Case {
            name: "UPDATE MP_UNREACH ipv4 unicast",
            bytes: update(&[], &attr(0x80, 15, &hex("0001 01 18 c61201")), &[]),
            needs: FOUR,
            needles: vec![vec!["198.18.1.0"]],
        },
        Case {
            name: "UPDATE MP_UNREACH ipv6 unicast",
            bytes: update(
                &[],
                &attr(0x80, 15, &hex("0002 01 40 fd00000100000000")),
                &[],
            ),
            needs: FOUR,
            needles: vec![vec!["fd00:1::"]],
        },
        Case {
            name: "UPDATE ipv4 NLRI, ipv6 next hop (RFC 8950)",
            bytes: update(
                &[],
                &[
                    attr(0x80, 14, &hex(&format!("0001 01 10 {v6nh} 00 18 c61201"))),
                    base(),
                ]
                .concat(),
                &[],
            ),
            needs: Needs {
                ext_nh_v4: true,
                ..FOUR
            },
            needles: vec![vec!["198.18.1.0"], vec!["fd00::1"]],
        },
        Case {
            name: "UPDATE ORIGINATOR_ID + CLUSTER_LIST (RFC 4456)",
            bytes: update(
                &[],
                &[
                    base(),
                    attr(0x40, 3, &hex("c6120001")),
                    attr(0x80, 9, &hex("c6120009")),
                    attr(0x80, 10, &hex("c612000a")),
                ]
                .concat(),
                &hex("18 c61201"),
            ),
            needs: FOUR,
            needles: vec![
                vec!["198.18.0.9", "3323068425"],
                // routecore keeps a cluster id as a typed 4-octet BgpIdentifier.
                vec![
                    "198.18.0.10",
                    "3323068426",
                    "bgpidentifier([198, 18, 0, 10])",
                ],
            ],
        },
        Case {
            name: "UPDATE COMMUNITIES (RFC 1997)",
            bytes: update(
                &[],
                &[
                    base(),
                    attr(0x40, 3, &hex("c6120001")),
                    attr(0xc0, 8, &hex("fde90064")),
                ]
                .concat(),
                &hex("18 c61201"),
            ),
            needs: FOUR,
            needles: vec![vec![
                "4259905636",
                "65001:100",
                "65001, 100",
                "asn: 65001",
                "fde90064",
            ]],
        },
        Case {
            name: "UPDATE add-path ipv6 (RFC 7911)",
            bytes: update(
                &[],
                &[
                    attr(
                        0x80,
                        14,
                        &hex(&format!(
                            "0002 01 10 {v6nh} 00 0000004d 40 fd00000100000000"
                        )),
                    ),
                    base(),
                ]
                .concat(),
                &[],
            ),
            needs: Needs {
                add_path_v6: true,
                ..FOUR
            },
            needles: vec![vec!["fd00:1::"], vec!["77"]],
        },
        Case {
            name: "UPDATE AS4_PATH from 2-octet peer (RFC 6793)",
            bytes: update(
                &[],
                &[
                    attr(0x40, 1, &[0]),
                    attr(0x40, 2, &hex("02 02 fde9 5ba0")),
                    attr(0x40, 3, &hex("c6120001")),
                    attr(0xc0, 17, &hex("02 02 0000fde9 fa56ea01")),
                ]
                .concat(),
                &hex("18 c61201"),
            ),
            needs: Needs {
                four_octet_as: false,
                ..FOUR
            },
            needles: vec![vec!["4200000001"]],
        },
    ]
}

/// Malformed UPDATEs and what RFC 7606 / RFC 4271 say the receiver does.
pub fn malformed_cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let nh = attr(0x40, 3, &hex("c6120001"));
    let nlri = hex("18 c61201");
    vec![
        (
            "ORIGIN value 3",
            "treat-as-withdraw (7606 s7.1)",
            update(
                &[],
                &[attr(0x40, 1, &[3]), attr(0x40, 2, &[]), nh.clone()].concat(),
                &nlri,
            ),
        ),
        (
            "AS_PATH segment type 5",
            "treat-as-withdraw (7606 s7.2)",
            update(
                &[],
                &[
                    attr(0x40, 1, &[0]),
                    attr(0x40, 2, &hex("05 01 0000fde9")),
                    nh.clone(),
                ]
                .concat(),
                &nlri,
            ),
        ),
        (
            "missing ORIGIN",
            "treat-as-withdraw (7606 s3.d)",
            update(&[], &[attr(0x40, 2, &[]), nh.clone()].concat(), &nlri),
        ),
        (
            "ATOMIC_AGGREGATE length 1",
            "attribute-discard (7606 s7.6)",
            update(
                &[],
                &[base(), nh.clone(), attr(0x40, 6, &[1])].concat(),
                &nlri,
            ),
        ),
        (
            "MED twice",
            "discard the second (7606 s3.g)",
            update(
                &[],
                &[
                    base(),
                    nh.clone(),
                    attr(0x80, 4, &[0, 0, 0, 1]),
                    attr(0x80, 4, &[0, 0, 0, 2]),
                ]
                .concat(),
                &nlri,
            ),
        ),
        (
            "MP_REACH ipv6 next hop length 8",
            "session reset 3/9 (4760 s7)",
            update(
                &[],
                &[
                    attr(
                        0x80,
                        14,
                        &hex("0002 01 08 fd00000000000000 00 40 fd00000100000000"),
                    ),
                    base(),
                ]
                .concat(),
                &[],
            ),
        ),
        (
            "unknown well-known attribute 99",
            "session reset 3/2 (4271 s6.3)",
            update(
                &[],
                &[base(), nh.clone(), attr(0x40, 99, &[1])].concat(),
                &nlri,
            ),
        ),
        (
            "NLRI prefix length 33",
            "session reset 3/10 (4271 s6.3)",
            update(&[], &[base(), nh].concat(), &hex("21 c6120100 00")),
        ),
    ]
}
