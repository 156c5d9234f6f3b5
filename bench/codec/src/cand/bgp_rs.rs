//! bgp-rs 0.6 (GPL-3.0): io::Read based, one `Reader` per stream.

use bgp_rs::{Capabilities, Message, PathAttribute, Reader};

use super::Outcome;
use crate::cases::Needs;

fn caps(n: Needs) -> Capabilities {
    Capabilities {
        FOUR_OCTET_ASN_SUPPORT: n.four_octet_as,
        // bgp-rs has one add-path switch for every family.
        EXTENDED_PATH_NLRI_SUPPORT: n.add_path_v6,
        ..Default::default()
    }
}

pub fn outcome(bytes: &[u8], needs: Needs) -> Outcome {
    let mut r = Reader {
        stream: bytes,
        capabilities: caps(needs),
    };
    match r.read() {
        Ok((_, m)) => {
            let mut b = Vec::new();
            let re = m.encode(&mut b).is_ok() && b == bytes;
            Outcome {
                decoded: Ok(format!("{m:?}")),
                reencoded: Some(re),
            }
        }
        Err(e) => Outcome {
            decoded: Err(format!("{e:?}")),
            reencoded: None,
        },
    }
}

pub fn decode_all(frames: &[&[u8]]) -> usize {
    let c = caps(Needs {
        four_octet_as: true,
        ..Default::default()
    });
    let mut n = 0;
    for f in frames {
        let mut r = Reader {
            stream: *f,
            capabilities: &c,
        };
        if let Ok((_, Message::Update(u))) = r.read() {
            n += u.announced_routes.len();
            for a in &u.attributes {
                if let PathAttribute::MP_REACH_NLRI(mp) = a {
                    n += mp.announced_routes.len();
                }
            }
        }
    }
    n
}
