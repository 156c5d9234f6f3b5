//! zettabgp 0.6 (MIT OR Apache-2.0): decode/encode into caller buffers, session parameters as context.

use std::net::Ipv4Addr;

use zettabgp::prelude::*;

use super::Outcome;
use crate::cases::Needs;

fn params(n: Needs) -> BgpSessionParams {
    let mut caps = vec![BgpCapability::SafiIPv4u, BgpCapability::SafiIPv6u];
    if n.add_path_v6 {
        caps.push(BgpCapability::CapAddPath(vec![BgpCapAddPath {
            afi: 2,
            safi: 1,
            send: true,
            receive: true,
        }]));
    }
    // IPv4 transport: with IPv6 transport zettabgp 0.6 refuses every 4-octet NEXT_HOP ("Invalid nexthop
    // length"), so classic IPv4 routes over an IPv6 session cannot be read; see decision 0001.
    let mut p = BgpSessionParams::new(
        65001,
        90,
        BgpTransportMode::IPv4,
        Ipv4Addr::new(198, 18, 0, 1),
        caps,
    );
    p.has_as32bit = n.four_octet_as;
    // No guessing of path identifiers: the session says whether they are there.
    p.fuzzy_pathid = false;
    p
}

pub fn outcome(bytes: &[u8], needs: Needs) -> Outcome {
    let p = params(needs);
    let (typ, len) = match p.decode_message_head(bytes) {
        Ok(h) => h,
        Err(e) => {
            return Outcome {
                decoded: Err(format!("{e:?}")),
                reencoded: None,
            };
        }
    };
    let body = &bytes[19..19 + len.min(bytes.len() - 19)];
    let mut out = vec![0u8; 8192];
    match typ {
        BgpMessageType::Open => {
            let mut m = BgpOpenMessage::new();
            match m.decode_from(&p, body) {
                Ok(()) => {
                    let re = m
                        .encode_to(&p, &mut out)
                        .map(|n| out[..n] == *body)
                        .unwrap_or(false);
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
        BgpMessageType::Update => {
            let mut m = BgpUpdateMessage::new();
            match m.decode_from(&p, body) {
                Ok(()) => {
                    let re = m
                        .encode_to(&p, &mut out)
                        .map(|n| out[..n] == *body)
                        .unwrap_or(false);
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
        t => Outcome {
            decoded: Ok(format!("{t:?}")),
            reencoded: None,
        },
    }
}

pub fn decode_all(frames: &[&[u8]]) -> usize {
    let p = params(Needs {
        four_octet_as: true,
        ..Default::default()
    });
    let mut n = 0;
    for f in frames {
        if let Ok((BgpMessageType::Update, len)) = p.decode_message_head(f) {
            let mut m = BgpUpdateMessage::new();
            if m.decode_from(&p, &f[19..19 + len]).is_ok() {
                n += m.updates.len();
                for a in &m.attrs {
                    if let BgpAttrItem::MPUpdates(mp) = a {
                        n += mp.addrs.len();
                    }
                }
            }
        }
    }
    n
}
