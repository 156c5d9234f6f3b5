//! Decode throughput of every candidate on the same stream: 100k IPv4 + 100k IPv6 prefixes in UPDATEs
//! (see src/stream.rs). Each iteration decodes every frame and counts the NLRI; the count is checked
//! once up front so a candidate that silently skips messages cannot look fast.

use codec_survey::{cand, stream};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn decode(c: &mut Criterion) {
    let s = stream::stream();
    let frames = stream::frames(&s);
    let mut g = c.benchmark_group("decode_200k_prefixes");
    g.throughput(Throughput::Elements(2 * stream::PREFIXES_PER_FAMILY as u64));
    g.sample_size(20);
    for cand in cand::all() {
        assert_eq!(
            (cand.decode_all)(&frames),
            2 * stream::PREFIXES_PER_FAMILY,
            "{} missed prefixes",
            cand.name
        );
        g.bench_function(cand.name, |b| {
            b.iter(|| (cand.decode_all)(std::hint::black_box(&frames)))
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
