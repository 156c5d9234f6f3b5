//! The benchmark stream: 100k IPv4 and 100k IPv6 prefix announcements packed into UPDATEs the way a
//! route server or full-table peer packs them (prefixes sharing attributes travel together), encoded by
//! bgpd's encoder, deterministic from a fixed seed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgpd::packet::{
    AsPathSegment, Community, EncodeCxt, Message, PathAttributes, UpdateMsg, frame_len,
};
use bytes::BytesMut;
use ipnet::IpNet;

/// Prefixes per family in the stream.
pub const PREFIXES_PER_FAMILY: usize = 100_000;

/// xorshift64*: fixed-seed, no dependency, good enough to vary lengths and attributes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prefix lengths roughly as in a DFZ table (IPv4 mostly /24, IPv6 mostly /48 and /32), addresses inside
/// the project's ranges (198.18.0.0/15, fd00::/8). Duplicates are allowed: only the octets matter here.
fn prefix(r: &mut Rng, v6: bool) -> IpNet {
    if v6 {
        let len = match r.below(10) {
            0..=3 => 48,
            4..=5 => 32,
            6 => 64,
            7 => 128,
            _ => 33 + r.below(31) as u8,
        };
        let a = (0xfdu128 << 120) | (r.next() as u128) << 56 | r.next() as u128;
        IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), len)
            .unwrap()
            .trunc()
    } else {
        let len = match r.below(10) {
            0..=5 => 24,
            6 => 22,
            7 => 23,
            8 => 20,
            _ => 16 + r.below(17) as u8,
        };
        let a = 0xc612_0000u32 | (r.next() as u32 & 0x1_ffff);
        IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len.max(15))
            .unwrap()
            .trunc()
    }
}

fn attributes(r: &mut Rng, v6: bool) -> PathAttributes {
    let path_len = 1 + r.below(6) as usize;
    let as_path = vec![AsPathSegment::Sequence(
        (0..path_len)
            .map(|_| 64512 + r.below(1000) as u32)
            .collect(),
    )];
    let reflected = r.below(4) == 0;
    PathAttributes {
        as_path,
        next_hop: Some(if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                0,
                0,
                0,
                0,
                0,
                0,
                1 + r.below(64) as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1 + r.below(64) as u8))
        }),
        link_local_next_hop: v6.then(|| Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        med: (r.below(2) == 0).then(|| r.below(1000) as u32),
        local_pref: Some(100),
        communities: (0..r.below(5))
            .map(|_| Community(0xfde8_0000 | r.below(500) as u32))
            .collect(),
        originator_id: reflected.then(|| Ipv4Addr::new(198, 18, 1, 1)),
        cluster_list: if reflected {
            vec![Ipv4Addr::new(198, 18, 1, 2)]
        } else {
            vec![]
        },
        ..Default::default()
    }
}

/// How many prefixes share one attribute set: half alone, a quarter 2..8, a quarter 9..400 (those
/// split over several UPDATEs at the 4096-octet limit).
fn group_size(r: &mut Rng) -> usize {
    match r.below(4) {
        0 | 1 => 1,
        2 => 2 + r.below(7) as usize,
        _ => 9 + r.below(392) as usize,
    }
}

/// Encodes one group, splitting into as many UPDATEs as the 4096-octet limit needs.
fn push_group(out: &mut BytesMut, cx: &EncodeCxt, attrs: &PathAttributes, nets: &[IpNet]) {
    let mut rest = nets;
    while !rest.is_empty() {
        // Try the whole rest; on MessageTooLong halve until it fits (cheap: done once, outside the bench).
        let mut n = rest.len();
        loop {
            let m = Message::Update(UpdateMsg {
                attributes: Some(attrs.clone()),
                nlri: rest[..n].to_vec(),
                ..Default::default()
            });
            match m.encode(cx, out) {
                Ok(()) => break,
                Err(_) => n = n * 3 / 4,
            }
        }
        rest = &rest[n..];
    }
}

/// The whole stream: IPv4 UPDATEs (classic encoding) then IPv6 UPDATEs (MP_REACH_NLRI, 32-octet next hop),
/// each family closed by its End-of-RIB. Four-octet AS negotiated, no add-path.
pub fn stream() -> Vec<u8> {
    let cx = EncodeCxt {
        four_octet_as: true,
        ..Default::default()
    };
    let mut r = Rng(0x5eed_f00d_dead_beef);
    let mut out = BytesMut::new();
    for v6 in [false, true] {
        let mut done = 0;
        while done < PREFIXES_PER_FAMILY {
            let n = group_size(&mut r).min(PREFIXES_PER_FAMILY - done);
            let attrs = attributes(&mut r, v6);
            let nets: Vec<IpNet> = (0..n).map(|_| prefix(&mut r, v6)).collect();
            push_group(&mut out, &cx, &attrs, &nets);
            done += n;
        }
        let fam = if v6 {
            bgpd::packet::Afi::Ipv6
        } else {
            bgpd::packet::Afi::Ipv4
        };
        Message::Update(UpdateMsg {
            end_of_rib: Some((fam, bgpd::packet::Safi::Unicast)),
            ..Default::default()
        })
        .encode(&cx, &mut out)
        .unwrap();
    }
    out.to_vec()
}

/// The stream cut into messages (by bgpd's framer), so every candidate decodes the same frames.
pub fn frames(stream: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    let mut rest = stream;
    while let Some(n) = frame_len(rest).unwrap() {
        v.push(&rest[..n]);
        rest = &rest[n..];
        if rest.is_empty() {
            break;
        }
    }
    v
}
