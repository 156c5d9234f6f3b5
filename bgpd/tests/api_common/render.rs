//! Renders raw v3 API answers (length-delimited messages) with fairlead's table functions, for comparison
//! with `gobgp`'s output of the same data.

use std::time::{Duration, UNIX_EPOCH};

use bgpd::api::convert;
use bgpd::api::proto::v3;
use bgpd::api::table::{self, RibView};
use prost::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Global,
    Neighbor,
    /// `gobgp neighbor ADDR`, compared without the capability lines (fairlead models only some).
    Detail,
    Rib(RibView),
}

pub fn kind_of(name: &str) -> Kind {
    match name {
        "global" => Kind::Global,
        "neighbor" => Kind::Neighbor,
        "detail" => Kind::Detail,
        "rib_global" => Kind::Rib(RibView::GLOBAL),
        "rib_adj_in" => Kind::Rib(RibView::ADJ_IN),
        "rib_adj_out" => Kind::Rib(RibView::ADJ_OUT),
        other => panic!("unknown fixture kind {other}"),
    }
}

fn messages<M: Message + Default>(mut raw: &[u8]) -> Vec<M> {
    let mut v = Vec::new();
    while !raw.is_empty() {
        v.push(M::decode_length_delimited(&mut raw).expect("decode fixture"));
    }
    v
}

/// Drops the capability block of a detailed neighbour view.
fn without_capabilities(s: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in s.lines() {
        if line == "  Neighbor capabilities:" {
            skipping = true;
        } else if line == "  Message statistics:" {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `gobgp`'s output in the form compared (the detail view without capabilities).
pub fn comparable(kind: Kind, text: &str) -> String {
    match kind {
        Kind::Detail => without_capabilities(text),
        _ => text.to_string(),
    }
}

/// fairlead's rendering of `raw` at unix second `now`.
pub fn render(kind: Kind, raw: &[u8], now: u64) -> String {
    let now = UNIX_EPOCH + Duration::from_secs(now);
    match kind {
        Kind::Global => {
            let r: Vec<v3::GetBgpResponse> = messages(raw);
            let g = convert::global_from_v3(r[0].global.as_ref().unwrap()).unwrap();
            table::global_summary(&g)
        }
        Kind::Neighbor | Kind::Detail => {
            let r: Vec<v3::ListPeerResponse> = messages(raw);
            let peers: Vec<_> = r
                .iter()
                .map(|m| convert::peer_from_v3(m.peer.as_ref().unwrap()).unwrap())
                .collect();
            if kind == Kind::Neighbor {
                table::neighbors_table(&peers, None, now)
            } else {
                without_capabilities(&table::neighbor_detail(&peers[0], None, now))
            }
        }
        Kind::Rib(view) => {
            let r: Vec<v3::ListPathResponse> = messages(raw);
            let dests: Vec<_> = r
                .iter()
                .map(|m| convert::destination_from_v3(m.destination.as_ref().unwrap()).unwrap())
                .collect();
            table::rib_table(&dests, view, now)
        }
    }
}
