//! Prints decision 0001's tables: feature coverage per candidate, RFC 7606 behaviour on malformed UPDATEs,
//! and the benchmark stream's shape with each candidate's NLRI count (all must decode all of it).
//! `--verbose` also prints every decoded value, to check the needles against.

use codec_survey::{cand, cases, stream};

fn cell(o: &cand::Outcome, needles: &[Vec<&str>]) -> &'static str {
    match &o.decoded {
        Err(_) => "ERR",
        Ok(dbg) => {
            let d = dbg.to_lowercase();
            let typed = needles
                .iter()
                .all(|alts| alts.iter().any(|n| d.contains(&n.to_lowercase())));
            match (typed, o.reencoded) {
                (true, Some(true)) => "typed+rt",
                (true, Some(false)) => "typed, re-enc differs",
                (true, None) => "typed, no re-enc",
                (false, Some(true)) => "raw only (rt)",
                (false, _) => "raw only",
            }
        }
    }
}

/// A candidate's panic (bgp-rs panics on some inputs) is a result, not the end of the survey.
fn guarded(
    f: fn(&[u8], cases::Needs) -> cand::Outcome,
    bytes: &[u8],
    needs: cases::Needs,
) -> cand::Outcome {
    std::panic::catch_unwind(|| f(bytes, needs)).unwrap_or(cand::Outcome {
        decoded: Err("PANIC".into()),
        reencoded: None,
    })
}

fn main() {
    let verbose = std::env::args().any(|a| a == "--verbose");
    let cands = cand::all();
    println!("## Feature coverage\n");
    print!("| case |");
    for c in &cands {
        print!(" {} |", c.name);
    }
    println!();
    println!("|---|{}", "---|".repeat(cands.len()));
    print!("| licence |");
    for c in &cands {
        print!(" {} |", c.licence);
    }
    println!();
    for case in cases::feature_cases() {
        print!("| {} |", case.name);
        for c in &cands {
            let o = guarded(c.outcome, &case.bytes, case.needs);
            print!(" {} |", cell(&o, &case.needles));
            if verbose {
                eprintln!(
                    "{} / {}: {:?} re={:?}",
                    case.name, c.name, o.decoded, o.reencoded
                );
            }
        }
        println!();
    }
    println!(
        "\ntyped = the decoded value carries the feature's values (addresses, ASNs, times) as fields;"
    );
    println!(
        "rt = re-encoding the decoded value gives the same octets; raw only = kept as octets or dropped.\n"
    );

    println!("## Malformed UPDATEs (RFC 7606)\n");
    print!("| input | RFC says |");
    for c in &cands {
        print!(" {} |", c.name);
    }
    println!();
    println!("|---|---|{}", "---|".repeat(cands.len()));
    let needs = cases::Needs {
        four_octet_as: true,
        ..Default::default()
    };
    for (name, rfc, bytes) in cases::malformed_cases() {
        print!("| {name} | {rfc} |");
        for c in &cands {
            let o = guarded(c.outcome, &bytes, needs);
            if verbose {
                eprintln!("{name} / {}: {:?}", c.name, o.decoded);
            }
            let s = match &o.decoded {
                Ok(d) if c.name.starts_with("bgpd") => {
                    // bgpd reports RFC 7606 outcomes inside the UPDATE.
                    if d.contains("TreatAsWithdraw") {
                        "Ok: treat-as-withdraw".to_string()
                    } else if d.contains("AttributeDiscard") {
                        "Ok: attribute-discard".to_string()
                    } else {
                        "Ok (accepted)".to_string()
                    }
                }
                // routecore checks lazily: the message parses, an accessor fails later.
                Ok(d) if d.contains("Err(") => "Ok, an accessor fails later".to_string(),
                Ok(_) => "Ok (accepted)".to_string(),
                Err(e) => {
                    let mut e = e.replace('|', "/").replace('\n', " ");
                    e.truncate(70);
                    format!("Err: {e}")
                }
            };
            print!(" {s} |");
        }
        println!();
    }

    println!("\n## Benchmark stream\n");
    let s = stream::stream();
    let frames = stream::frames(&s);
    println!(
        "{} octets, {} UPDATE messages, {} prefixes per family ({} total)\n",
        s.len(),
        frames.len(),
        stream::PREFIXES_PER_FAMILY,
        2 * stream::PREFIXES_PER_FAMILY
    );
    for c in &cands {
        let t = std::time::Instant::now();
        let n = (c.decode_all)(&frames);
        println!(
            "{:>18}: decoded {n} prefixes (one pass {:?})",
            c.name,
            t.elapsed()
        );
    }
}
