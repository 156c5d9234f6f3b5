//! fairlead's Prometheus series (names and labels from `manifests/METRICS.md`), rendered in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Bucket upper bounds of `fairlead_sync_duration_seconds` (the contract's list; +Inf is implicit).
pub const SYNC_BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Cumulative per bucket of [`SYNC_BUCKETS`].
    buckets: [u64; SYNC_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Per controller (`controller` label) sync durations, process-wide: controllers run on threads of their own.
static SYNCS: Mutex<BTreeMap<&'static str, Histogram>> = Mutex::new(BTreeMap::new());

/// Records one sync pass of `controller` (`router`, `service_proxy`, `firewall`).
pub fn observe_sync(controller: &'static str, duration: Duration) {
    let secs = duration.as_secs_f64();
    let mut all = SYNCS.lock().unwrap_or_else(|p| p.into_inner());
    let h = all.entry(controller).or_default();
    for (i, le) in SYNC_BUCKETS.iter().enumerate() {
        if secs <= *le {
            h.buckets[i] += 1;
        }
    }
    h.count += 1;
    h.sum += secs;
}

/// Passes by (controller, result) and errors by (controller, kind).
#[derive(Clone, Debug, Default)]
struct Counters {
    syncs: BTreeMap<(&'static str, &'static str), u64>,
    errors: BTreeMap<(&'static str, &'static str), u64>,
}

static COUNTERS: Mutex<Counters> = Mutex::new(Counters {
    syncs: BTreeMap::new(),
    errors: BTreeMap::new(),
});

/// Records the result of one pass: `success` without errors, else `error`, each error counted by its kind.
pub fn observe_result(controller: &'static str, errors: &[&'static str]) {
    let mut c = COUNTERS.lock().unwrap_or_else(|p| p.into_inner());
    let result = if errors.is_empty() {
        "success"
    } else {
        "error"
    };
    *c.syncs.entry((controller, result)).or_default() += 1;
    for kind in errors {
        *c.errors.entry((controller, kind)).or_default() += 1;
    }
}

fn render_counters(out: &mut String) {
    let c = COUNTERS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let _ = writeln!(out, "# HELP fairlead_syncs_total Passes, by result.");
    let _ = writeln!(out, "# TYPE fairlead_syncs_total counter");
    for ((controller, result), n) in &c.syncs {
        let _ = writeln!(
            out,
            "fairlead_syncs_total{{controller=\"{controller}\",result=\"{result}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP fairlead_errors_total Errors by kind.");
    let _ = writeln!(out, "# TYPE fairlead_errors_total counter");
    for ((controller, kind), n) in &c.errors {
        let _ = writeln!(
            out,
            "fairlead_errors_total{{controller=\"{controller}\",kind=\"{kind}\"}} {n}"
        );
    }
}

/// Declares a controller so its histogram is exported (all zero) before its first pass.
pub fn declare_controller(controller: &'static str) {
    SYNCS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(controller)
        .or_default();
}

/// Appends the sync-duration histogram family to `out`.
pub fn render_syncs(out: &mut String) {
    let all = SYNCS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let _ = writeln!(
        out,
        "# HELP fairlead_sync_duration_seconds One recompute-diff-apply pass, watch event or resync to done."
    );
    let _ = writeln!(out, "# TYPE fairlead_sync_duration_seconds histogram");
    for (controller, h) in &all {
        for (le, n) in SYNC_BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(
                out,
                "fairlead_sync_duration_seconds_bucket{{controller=\"{controller}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "fairlead_sync_duration_seconds_bucket{{controller=\"{controller}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "fairlead_sync_duration_seconds_sum{{controller=\"{controller}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "fairlead_sync_duration_seconds_count{{controller=\"{controller}\"}} {}",
            h.count
        );
    }
}

fn family_label(family: &bgpd::packet::iana::Family) -> &'static str {
    match family.0 {
        bgpd::packet::iana::Afi::Ipv4 => "ipv4-unicast",
        bgpd::packet::iana::Afi::Ipv6 => "ipv6-unicast",
    }
}

/// The RFC 4271 FSM states, as the `state` label spells them.
const STATES: [(bgpd::fsm::State, &str); 6] = [
    (bgpd::fsm::State::Idle, "idle"),
    (bgpd::fsm::State::Connect, "connect"),
    (bgpd::fsm::State::Active, "active"),
    (bgpd::fsm::State::OpenSent, "opensent"),
    (bgpd::fsm::State::OpenConfirm, "openconfirm"),
    (bgpd::fsm::State::Established, "established"),
];

/// Picks one per-family prefix count of a neighbour.
type CountsOf = fn(&bgpd::speaker::NeighborState) -> &BTreeMap<bgpd::packet::iana::Family, usize>;

/// The BGP series from the speaker's neighbour table.
pub fn render_bgp(out: &mut String, neighbors: &[bgpd::speaker::NeighborState]) {
    let _ = writeln!(
        out,
        "# HELP fairlead_bgp_session_state 1 for the session's current FSM state, 0 for the other five."
    );
    let _ = writeln!(out, "# TYPE fairlead_bgp_session_state gauge");
    for n in neighbors {
        for (state, label) in STATES {
            let _ = writeln!(
                out,
                "fairlead_bgp_session_state{{peer=\"{}\",peer_asn=\"{}\",state=\"{label}\"}} {}",
                n.id.addr,
                n.remote_asn,
                u8::from(n.state == state)
            );
        }
    }
    let gauges: [(&str, &str, CountsOf); 3] = [
        (
            "fairlead_bgp_prefixes_received",
            "Prefixes in Adj-RIB-In from the peer (before import policy).",
            |n| &n.received,
        ),
        (
            "fairlead_bgp_prefixes_accepted",
            "Prefixes from the peer that passed import policy.",
            |n| &n.accepted,
        ),
        (
            "fairlead_bgp_prefixes_advertised",
            "Prefixes in Adj-RIB-Out to the peer.",
            |n| &n.advertised,
        ),
    ];
    render_bgp_sessions(out, neighbors);
    for (name, help, counts) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for n in neighbors {
            for (family, count) in counts(n) {
                let _ = writeln!(
                    out,
                    "{name}{{peer=\"{}\",family=\"{}\"}} {count}",
                    n.id.addr,
                    family_label(family)
                );
            }
        }
    }
}

/// Negotiated families, the last state change and the message counters of each session.
fn render_bgp_sessions(out: &mut String, neighbors: &[bgpd::speaker::NeighborState]) {
    let _ = writeln!(
        out,
        "# HELP fairlead_bgp_family_negotiated 1 when the AFI/SAFI was negotiated in OPEN, 0 when configured but not."
    );
    let _ = writeln!(out, "# TYPE fairlead_bgp_family_negotiated gauge");
    for n in neighbors {
        let negotiated = n.negotiated.as_ref().map(|x| &x.families);
        let mut families: Vec<_> = n
            .accepted
            .keys()
            .chain(n.advertised.keys())
            .copied()
            .collect();
        if let Some(neg) = negotiated {
            families.extend(neg.iter().copied());
        }
        families.sort();
        families.dedup();
        for family in families {
            let on = negotiated.is_some_and(|neg| neg.contains(&family));
            let _ = writeln!(
                out,
                "fairlead_bgp_family_negotiated{{peer=\"{}\",family=\"{}\"}} {}",
                n.id.addr,
                family_label(&family),
                u8::from(on)
            );
        }
    }
    // Instants are monotonic: the wall-clock time of a change is now minus its age.
    let now = tokio::time::Instant::now();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP fairlead_bgp_session_last_change_timestamp_seconds Unix time of the session's last state change."
    );
    let _ = writeln!(
        out,
        "# TYPE fairlead_bgp_session_last_change_timestamp_seconds gauge"
    );
    for n in neighbors {
        let last = [n.established_since, n.down_since]
            .into_iter()
            .flatten()
            .max();
        if let Some(at) = last {
            let _ = writeln!(
                out,
                "fairlead_bgp_session_last_change_timestamp_seconds{{peer=\"{}\"}} {:.3}",
                n.id.addr,
                unix_now - now.saturating_duration_since(at).as_secs_f64()
            );
        }
    }
    for (name, direction) in [
        ("fairlead_bgp_messages_received_total", "received"),
        ("fairlead_bgp_messages_sent_total", "sent"),
    ] {
        let _ = writeln!(out, "# HELP {name} BGP messages {direction}.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for n in neighbors {
            let c = if direction == "sent" {
                &n.messages.sent
            } else {
                &n.messages.received
            };
            for (kind, count) in [
                ("open", c.open),
                ("update", c.update),
                ("notification", c.notification),
                ("keepalive", c.keepalive),
                ("route_refresh", c.route_refresh),
            ] {
                let _ = writeln!(
                    out,
                    "{name}{{peer=\"{}\",message_type=\"{kind}\"}} {count}",
                    n.id.addr
                );
            }
        }
    }
}

/// fairlead's kernel routes (route protocol 44) per family, over all tables.
pub async fn count_routes(
    handle: &rtnetlink::Handle,
) -> Result<[(&'static str, u64); 2], rtnetlink::Error> {
    use futures::TryStreamExt;
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::route::{RouteMessage, RouteProtocol};
    let mut counts = [("ipv4-unicast", 0u64), ("ipv6-unicast", 0u64)];
    for (i, family) in [AddressFamily::Inet, AddressFamily::Inet6]
        .into_iter()
        .enumerate()
    {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        let mut dump = handle.route().get(query).execute();
        while let Some(msg) = dump.try_next().await? {
            if msg.header.protocol
                == RouteProtocol::from(routecontroller::dataplane::ROUTE_PROTOCOL)
            {
                counts[i].1 += 1;
            }
        }
    }
    Ok(counts)
}

async fn render_routes(out: &mut String) {
    let counts = match routecontroller::dataplane::rtnetlink_handle() {
        Ok(handle) => count_routes(&handle).await,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: opening rtnetlink");
            return;
        }
    };
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading the kernel routes");
            return;
        }
    };
    let _ = writeln!(
        out,
        "# HELP fairlead_routes_installed Kernel routes fairlead owns (its route protocol number)."
    );
    let _ = writeln!(out, "# TYPE fairlead_routes_installed gauge");
    for (label, count) in counts {
        let _ = writeln!(
            out,
            "fairlead_routes_installed{{family=\"{label}\"}} {count}"
        );
    }
}

/// Rules, sets and set elements over fairlead's nftables tables (`nft -j`, read at scrape time).
fn render_nftables(out: &mut String) {
    let (mut rules, mut sets, mut elements) = (0u64, 0u64, 0u64);
    for table in crate::cleanup::nft_tables() {
        let Ok(output) = std::process::Command::new("nft")
            .args(["-j", "list", "table", "inet", table])
            .output()
        else {
            return;
        };
        // An absent table (its controller is off) counts nothing.
        if !output.status.success() {
            continue;
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
            tracing::warn!(table, "metrics: nft -j output did not parse");
            continue;
        };
        for object in json["nftables"].as_array().into_iter().flatten() {
            if object.get("rule").is_some() {
                rules += 1;
            } else if let Some(set) = object.get("set").or_else(|| object.get("map")) {
                sets += 1;
                elements += set["elem"].as_array().map_or(0, |e| e.len() as u64);
            }
        }
    }
    for (name, help, value) in [
        (
            "fairlead_nftables_rules",
            "Rules in fairlead's nftables tables.",
            rules,
        ),
        (
            "fairlead_nftables_sets",
            "Sets in fairlead's nftables tables.",
            sets,
        ),
        (
            "fairlead_nftables_set_elements",
            "Elements over all of those sets.",
            elements,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The whole exposition: build info, BGP (when the speaker runs), routes, sync durations.
pub async fn render(speaker: Option<&bgpd::speaker::Speaker>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP fairlead_build_info Always 1; the running version."
    );
    let _ = writeln!(out, "# TYPE fairlead_build_info gauge");
    let _ = writeln!(
        out,
        "fairlead_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(speaker) = speaker {
        match speaker.neighbors().await {
            Ok(neighbors) => render_bgp(&mut out, &neighbors),
            Err(e) => tracing::warn!(error = %e, "metrics: reading the BGP neighbours"),
        }
        render_routes(&mut out).await;
    }
    if let Err(e) = tokio::task::spawn_blocking(move || {
        let mut nft = String::new();
        render_nftables(&mut nft);
        nft
    })
    .await
    .map(|nft| out.push_str(&nft))
    {
        tracing::warn!(error = %e, "metrics: reading nftables");
    }
    render_syncs(&mut out);
    render_counters(&mut out);
    out
}

/// `/metrics` in the Prometheus text format.
pub fn router(speaker: Option<bgpd::speaker::Speaker>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let speaker = speaker.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(speaker.as_ref()).await,
                )
            }
        }),
    )
}
