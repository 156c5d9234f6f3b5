//! fairlead's table renderer on API answers captured from a real gobgpd, against what `gobgp` printed for them
//! in the same second (fixtures written by `api_vs_gobgpd` with `FAIRLEAD_UPDATE_FIXTURES=1`).

mod api_common;

use std::path::PathBuf;

use api_common::render;

/// (fixture, kind of rendering).
const FIXTURES: &[(&str, &str)] = &[
    ("global", "global"),
    ("neighbor", "neighbor"),
    ("neighbor_detail_v4", "detail"),
    ("global_rib_ipv4", "rib_global"),
    ("global_rib_ipv6", "rib_global"),
    ("global_rib_ipv6_prefix", "rib_global"),
    ("adj_in_ipv4", "rib_adj_in"),
    ("adj_out_ipv6", "rib_adj_out"),
    ("neighbor_detail_v6", "detail"),
    ("adj_in_ipv6", "rib_adj_in"),
    ("adj_out_ipv4", "rib_adj_out"),
];

#[test]
fn renderer_reproduces_captured_gobgp_output() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gobgpd");
    for (name, kind) in FIXTURES {
        let read = |ext: &str| {
            std::fs::read(dir.join(format!("{name}.{ext}")))
                .unwrap_or_else(|e| panic!("{name}.{ext}: {e}"))
        };
        let text = String::from_utf8(read("txt")).unwrap();
        let raw = read("pb");
        let now: u64 = String::from_utf8(read("now"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let kind = render::kind_of(kind);
        assert!(!text.is_empty() && !raw.is_empty(), "{name}: empty fixture");
        assert_eq!(
            render::render(kind, &raw, now),
            render::comparable(kind, &text),
            "{name}"
        );
    }
}

#[test]
fn captured_tables_have_gobgp_marks() {
    // The fixtures themselves show what the renderer must produce: best marks, both families, all states.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gobgpd");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    let v6 = read("global_rib_ipv6.txt");
    assert!(
        v6.lines().skip(1).all(|l| l.starts_with("*> fd00:")),
        "{v6}"
    );
    let peers = read("neighbor.txt");
    assert!(
        peers.starts_with("Peer               AS  Up/Down State       |#Received  Accepted\n"),
        "{peers}"
    );
    assert!(
        peers.contains(" never Active ") && peers.contains(" Establ "),
        "{peers}"
    );
}
