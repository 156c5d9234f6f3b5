//! One module per candidate codec, each with the same three entry points: `outcome` (decode one case,
//! render it, re-encode it), `decode_all` (the benchmark body: decode every frame, count NLRI), `NAME`.

pub mod bgp_rs;
pub mod bgpd_own;
pub mod netgauze;
pub mod routecore;
pub mod zettabgp;

/// What a candidate made of one case.
pub struct Outcome {
    /// The decoded value's Debug rendering, or the error's.
    pub decoded: Result<String, String>,
    /// Whether re-encoding the decoded value gave back the same octets; `None` when it has no encoder
    /// for that message (or re-encoding failed: `Some(false)`).
    pub reencoded: Option<bool>,
}

/// A candidate for the table and the bench.
pub struct Candidate {
    pub name: &'static str,
    pub crate_version: &'static str,
    pub licence: &'static str,
    pub outcome: fn(&[u8], crate::cases::Needs) -> Outcome,
    pub decode_all: fn(&[&[u8]]) -> usize,
}

pub fn all() -> Vec<Candidate> {
    vec![
        Candidate {
            name: "bgpd (own)",
            crate_version: "-",
            licence: "Apache-2.0",
            outcome: bgpd_own::outcome,
            decode_all: bgpd_own::decode_all,
        },
        Candidate {
            name: "bgp-rs",
            crate_version: "0.6.0",
            licence: "GPL-3.0",
            outcome: bgp_rs::outcome,
            decode_all: bgp_rs::decode_all,
        },
        Candidate {
            name: "netgauze-bgp-pkt",
            crate_version: "0.13.0",
            licence: "Apache-2.0",
            outcome: netgauze::outcome,
            decode_all: netgauze::decode_all,
        },
        Candidate {
            name: "routecore",
            crate_version: "0.7.2",
            licence: "BSD-3-Clause",
            outcome: routecore::outcome,
            decode_all: routecore::decode_all,
        },
        Candidate {
            name: "zettabgp",
            crate_version: "0.6.0",
            licence: "MIT OR Apache-2.0",
            outcome: zettabgp::outcome,
            decode_all: zettabgp::decode_all,
        },
    ]
}
