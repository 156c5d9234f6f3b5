//! netgauze-bgp-pkt 0.13 (Apache-2.0): nom-style parser with a parsing context, WritablePdu encoder.

use std::collections::HashMap;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::path_attribute::{MpReach, PathAttributeValue};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use super::Outcome;
use crate::cases::Needs;

fn ctx(n: Needs) -> BgpParsingContext {
    let mut add_path = HashMap::new();
    if n.add_path_v6 {
        add_path.insert(AddressType::Ipv6Unicast, true);
    }
    // RFC 7606-style leniency off: fail on malformed attributes, as a session would want reported.
    BgpParsingContext::new(
        n.four_octet_as,
        HashMap::new(),
        add_path,
        true,
        true,
        true,
        true,
    )
}

pub fn outcome(bytes: &[u8], needs: Needs) -> Outcome {
    let mut c = ctx(needs);
    let mut r = SliceReader::new(bytes);
    match BgpMessage::parse(&mut r, &mut c) {
        Ok(m) => {
            let mut b = Vec::new();
            let re = m.write(&mut b).is_ok() && b == bytes;
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
    let mut c = ctx(Needs {
        four_octet_as: true,
        ..Default::default()
    });
    let mut n = 0;
    for f in frames {
        let mut r = SliceReader::new(f);
        if let Ok(BgpMessage::Update(u)) = BgpMessage::parse(&mut r, &mut c) {
            n += u.nlri().len();
            for a in u.path_attributes() {
                if let PathAttributeValue::MpReach(mp) = a.value() {
                    n += match mp {
                        MpReach::Ipv4Unicast { nlri, .. } => nlri.len(),
                        MpReach::Ipv6Unicast { nlri, .. } => nlri.len(),
                        _ => 0,
                    };
                }
            }
        }
    }
    n
}
