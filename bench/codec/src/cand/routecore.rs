//! routecore 0.7 (BSD-3-Clause, NLnet Labs): zero-copy views; parsing validates the structure, and the
//! typed values come from accessor methods (Debug of the message is only its octets).

use routecore::bgp::message::{Message, SessionConfig, UpdateMessage};
use routecore::bgp::nlri::afisafi::AfiSafiType;
use routecore::bgp::types::AddpathDirection;

use super::Outcome;
use crate::cases::Needs;

fn config(n: Needs) -> SessionConfig {
    let mut c = SessionConfig::modern();
    if !n.four_octet_as {
        c = SessionConfig::legacy();
    }
    if n.add_path_v6 {
        c.add_addpath(AfiSafiType::Ipv6Unicast, AddpathDirection::Receive);
    }
    c
}

/// Renders what the accessors give, so the needles can look for typed values.
fn render_update(u: &UpdateMessage<&[u8]>) -> String {
    // Display, not Debug: routecore's Debug shows prefixes and communities as raw bits/octets even though
    // they are typed (Display renders them as text).
    let list = |v: Result<Vec<String>, String>| format!("{v:?}");
    let mut s = String::new();
    s += &list(
        u.announcements_vec()
            .map(|v| v.iter().map(|n| n.to_string()).collect())
            .map_err(|e| format!("Err({e:?})")),
    );
    s += " withdrawals=";
    s += &list(
        u.withdrawals_vec()
            .map(|v| v.iter().map(|n| n.to_string()).collect())
            .map_err(|e| format!("Err({e:?})")),
    );
    s += &format!(" mp_next_hop={:?} ", u.mp_next_hop());
    s += &format!("next_hop={:?} ", u.conventional_next_hop());
    s += &format!(
        "as_path={:?} ",
        u.aspath().map(|p| p.map(|p| p.to_string()))
    );
    s += &format!(
        "as4_path={:?} ",
        u.as4path().map(|p| p.map(|p| p.to_string()))
    );
    s += &format!(
        "communities={:?} ",
        u.communities()
            .map(|c| c.map(|i| i.map(|c| c.to_string()).collect::<Vec<_>>()))
    );
    if let Ok(pas) = u.path_attributes() {
        for pa in pas {
            s += &format!("attr={:?} ", pa.and_then(|p| p.to_owned()));
        }
    }
    s
}

pub fn outcome(bytes: &[u8], needs: Needs) -> Outcome {
    let c = config(needs);
    match Message::from_octets(bytes, Some(&c)) {
        Ok(Message::Update(u)) => Outcome {
            decoded: Ok(render_update(&u)),
            reencoded: None,
        },
        Ok(Message::Open(o)) => {
            let caps: Vec<_> = o.capabilities().map(|c| format!("{:?}", c.typ())).collect();
            let s = format!(
                "four_octet={} asn={:?} mp={:?} addpath={:?} caps={caps:?}",
                o.four_octet_capable(),
                o.my_asn(),
                o.multiprotocol_ids().collect::<Vec<_>>(),
                o.addpath_families_vec()
            );
            Outcome {
                decoded: Ok(s),
                reencoded: None,
            }
        }
        Ok(_) => Outcome {
            decoded: Ok("other".into()),
            reencoded: None,
        },
        Err(e) => Outcome {
            decoded: Err(format!("{e:?}")),
            reencoded: None,
        },
    }
}

/// The bench body: routecore parses lazily, so the NLRI and every path attribute are walked (to_owned) to
/// do the same work as an eager decoder.
pub fn decode_all(frames: &[&[u8]]) -> usize {
    let c = config(Needs {
        four_octet_as: true,
        ..Default::default()
    });
    let mut n = 0;
    for f in frames {
        if let Ok(u) = UpdateMessage::from_octets(*f, &c) {
            if let Ok(pas) = u.path_attributes() {
                for p in pas.flatten() {
                    std::hint::black_box(p.to_owned().is_ok());
                }
            }
            if let Ok(a) = u.announcements() {
                n += a.filter(|x| x.is_ok()).count();
            }
        }
    }
    n
}
