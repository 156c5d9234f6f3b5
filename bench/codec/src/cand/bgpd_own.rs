//! bgpd's own codec (bgpd/src/packet).

use bgpd::packet::{Afi, DecodeCxt, EncodeCxt, FamilySet, Message, Safi};
use bytes::BytesMut;

use super::Outcome;
use crate::cases::Needs;

fn cxs(n: Needs) -> (DecodeCxt, EncodeCxt) {
    let mut add_path = FamilySet::empty();
    if n.add_path_v6 {
        add_path.insert((Afi::Ipv6, Safi::Unicast));
    }
    let mut enh = FamilySet::empty();
    if n.ext_nh_v4 {
        enh.insert((Afi::Ipv4, Safi::Unicast));
    }
    (
        DecodeCxt {
            four_octet_as: n.four_octet_as,
            add_path,
            extended_next_hop: enh,
        },
        EncodeCxt {
            four_octet_as: n.four_octet_as,
            add_path,
            extended_next_hop: enh,
        },
    )
}

pub fn outcome(bytes: &[u8], needs: Needs) -> Outcome {
    let (dcx, ecx) = cxs(needs);
    match Message::decode(bytes, &dcx) {
        Ok(m) => {
            let mut b = BytesMut::new();
            let re = m.encode(&ecx, &mut b).is_ok() && b[..] == bytes[..];
            Outcome {
                decoded: Ok(format!("{m:?}")),
                reencoded: Some(re),
            }
        }
        Err(e) => Outcome {
            decoded: Err(format!(
                "{e:?} -> {:?}",
                bgpd::packet::NotificationMsg::from(&e)
            )),
            reencoded: None,
        },
    }
}

pub fn decode_all(frames: &[&[u8]]) -> usize {
    let cx = DecodeCxt {
        four_octet_as: true,
        ..Default::default()
    };
    let mut n = 0;
    for f in frames {
        if let Ok(Message::Update(u)) = Message::decode(f, &cx) {
            n += u.nlri.len();
        }
    }
    n
}
