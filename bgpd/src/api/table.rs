//! Text renderings of API data in the `gobgp` CLI's layouts (neighbour summary and detail, RIB tables).
//!
//! Pure functions of the data and the current time, so they are unit-tested against captured `gobgp` output.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::backend::{
    AdminState, Capability, Destination, GlobalInfo, PeerInfo, RoutePath, SessionState,
};
use crate::packet::{Afi, AsPathSegment, Origin, PathAttributes};

/// What `gobgp` prints when a RIB query returns no destination.
pub const NETWORK_NOT_IN_TABLE: &str = "Network not in table\n";

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Before the epoch: floor, as Go's Time.Unix does.
        Err(e) => {
            let d = e.duration();
            -i64::try_from(d.as_secs()).unwrap_or(i64::MAX) - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// Time since `t` as gobgp shows it: `HH:MM:SS`, or `Nd HH:MM:SS` from one day on (whole seconds).
pub fn format_timedelta(t: SystemTime, now: SystemTime) -> String {
    let d = unix_secs(now).saturating_sub(unix_secs(t)).unsigned_abs();
    let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
    if days == 0 {
        format!("{hours:02}:{mins:02}:{secs:02}")
    } else {
        format!("{days}d {hours:02}:{mins:02}:{secs:02}")
    }
}

/// The State column: `Establ`, `Idle(Admin)` and friends.
pub fn state_column(admin: AdminState, state: SessionState) -> &'static str {
    match admin {
        AdminState::Down => return "Idle(Admin)",
        AdminState::PrefixLimitExceeded => return "Idle(PfxCt)",
        AdminState::Up => {}
    }
    match state {
        SessionState::Idle => "Idle",
        SessionState::Connect => "Connect",
        SessionState::Active => "Active",
        SessionState::OpenSent => "Sent",
        SessionState::OpenConfirm => "Confirm",
        SessionState::Established => "Establ",
    }
}

/// The protobuf enum name gobgp prints in `BGP state = ...`.
fn state_enum_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Idle => "IDLE",
        SessionState::Connect => "CONNECT",
        SessionState::Active => "ACTIVE",
        SessionState::OpenSent => "OPENSENT",
        SessionState::OpenConfirm => "OPENCONFIRM",
        SessionState::Established => "ESTABLISHED",
    }
}

fn asn_column(asn: u32) -> String {
    if asn == 0 {
        "*".to_string()
    } else {
        asn.to_string()
    }
}

/// Sums (received, accepted, advertised) over the neighbour's families, or one family.
pub fn prefix_counters(p: &PeerInfo, afi: Option<Afi>) -> (u64, u64, u64) {
    p.families
        .iter()
        .filter(|f| afi.is_none_or(|a| a == f.afi))
        .fold((0, 0, 0), |(r, a, d), f| {
            (r + f.received, a + f.accepted, d + f.advertised)
        })
}

/// IPv4 neighbours first, then by address.
fn neighbor_order(a: &IpAddr, b: &IpAddr) -> std::cmp::Ordering {
    a.is_ipv6().cmp(&b.is_ipv6()).then(a.cmp(b))
}

/// `gobgp neighbor`: one row per neighbour under `Peer AS Up/Down State |#Received Accepted`.
pub fn neighbors_table(peers: &[PeerInfo], afi: Option<Afi>, now: SystemTime) -> String {
    let mut peers: Vec<&PeerInfo> = peers.iter().collect();
    peers.sort_by(|a, b| neighbor_order(&a.address, &b.address));
    let times: Vec<String> = peers
        .iter()
        .map(|p| match p.uptime {
            None => "never".to_string(),
            Some(up) => {
                let t = if p.session_state == SessionState::Established {
                    up
                } else {
                    p.downtime.unwrap_or(UNIX_EPOCH)
                };
                format_timedelta(t, now)
            }
        })
        .collect();
    let addr_w = peers
        .iter()
        .map(|p| p.address.to_string().len())
        .max()
        .unwrap_or(0);
    let as_w = peers
        .iter()
        .map(|p| asn_column(p.peer_asn).len())
        .max()
        .unwrap_or(0)
        .max(2);
    let time_w = times
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("Up/Down".len());
    let mut out = String::new();
    let mut row = |a: &str, b: &str, c: &str, d: &str, e: &str, f: &str| {
        let _ = writeln!(
            out,
            "{a:<addr_w$} {b:>as_w$} {c:>time_w$} {d:<11} |{e:>9} {f:>9}"
        );
    };
    row("Peer", "AS", "Up/Down", "State", "#Received", "Accepted");
    for (p, t) in peers.iter().zip(&times) {
        let (received, accepted, _) = prefix_counters(p, afi);
        row(
            &p.address.to_string(),
            &asn_column(p.peer_asn),
            t,
            state_column(p.admin_state, p.session_state),
            &received.to_string(),
            &accepted.to_string(),
        );
    }
    out
}

fn family_name(afi: Afi) -> &'static str {
    match afi {
        Afi::Ipv4 => "ipv4-unicast",
        Afi::Ipv6 => "ipv6-unicast",
    }
}

/// GoBGP's name of a capability code (`UnknownCapability(N)` for codes it does not name).
fn capability_name(code: u8) -> String {
    match code {
        1 => "multiprotocol".into(),
        2 => "route-refresh".into(),
        4 => "carrying-label-info".into(),
        5 => "extended-nexthop".into(),
        64 => "graceful-restart".into(),
        65 => "4-octet-as".into(),
        69 => "add-path".into(),
        70 => "enhanced-route-refresh".into(),
        71 => "long-lived-graceful-restart".into(),
        73 => "fqdn".into(),
        128 => "cisco-route-refresh".into(),
        n => format!("UnknownCapability({n})"),
    }
}

/// Same capability, ignoring the value except for multiprotocol's family (as gobgp matches them).
fn same_capability(a: &Capability, b: &Capability) -> bool {
    match (a, b) {
        (Capability::MultiProtocol(x), Capability::MultiProtocol(y)) => x == y,
        _ => a.code() == b.code(),
    }
}

/// An RFC 7911 send/receive value as gobgp names it.
fn add_path_mode(mode: u8) -> String {
    match mode {
        0 => "none".into(),
        1 => "receive".into(),
        2 => "send".into(),
        3 => "receive/send".into(),
        n => format!("unknown({n})"),
    }
}

/// The graceful-restart summary after `Local: ` / `Remote: ` (empty when there is nothing to say).
fn graceful_restart_text(flags: u8, restart_time: u16, families: &[(Afi, bool)]) -> String {
    let mut parts = Vec::new();
    if !families.is_empty() {
        parts.push(format!("restart time {restart_time} sec"));
    }
    if flags & 0x08 != 0 {
        parts.push("restart flag set".to_string());
    }
    if flags & 0x04 != 0 {
        parts.push("notification flag set".to_string());
    }
    let mut o = parts.join(", ");
    if !o.is_empty() {
        o.push('\n');
    }
    for (afi, forwarding) in families {
        let _ = write!(o, "\t    {}", family_name(*afi));
        if *forwarding {
            o.push_str(", forward flag set");
        }
        o.push('\n');
    }
    o
}

/// The lines under a capability's name: its local and remote values, in gobgp's layout for that capability.
fn capability_values(o: &mut String, local: Option<&Capability>, remote: Option<&Capability>) {
    for (side, c) in [("Local", local), ("Remote", remote)] {
        let Some(c) = c else { continue };
        match c {
            Capability::GracefulRestart {
                flags,
                restart_time,
                families,
            } => {
                let text = graceful_restart_text(*flags, *restart_time, families);
                if !text.is_empty() {
                    let _ = write!(o, "        {side}: {text}");
                }
            }
            Capability::LongLivedGracefulRestart(tuples) if !tuples.is_empty() => {
                let _ = writeln!(o, "        {side}:");
                for (afi, flags, time) in tuples {
                    let _ = write!(o, "\t    {}, restart time {time} sec", family_name(*afi));
                    if *flags == 0x80 {
                        o.push_str(", forward flag set");
                    }
                    o.push('\n');
                }
            }
            Capability::ExtendedNexthop(tuples) if !tuples.is_empty() => {
                let lines: Vec<String> = tuples
                    .iter()
                    .map(|(nlri, nh)| {
                        let nh = match nh {
                            Afi::Ipv4 => "ipv4",
                            Afi::Ipv6 => "ipv6",
                        };
                        format!("nlri: {}, nexthop: {nh}", family_name(*nlri))
                    })
                    .collect();
                // gobgp pads `Local:` to the width of `Remote:`.
                let pad = if side == "Local" { "  " } else { " " };
                let _ = writeln!(o, "        {side}:{pad}{}", lines.join("\n"));
            }
            Capability::AddPath(tuples) => {
                let _ = writeln!(o, "      {side}:");
                for (afi, mode) in tuples {
                    let _ = writeln!(
                        o,
                        "         {}:\t{}",
                        family_name(*afi),
                        add_path_mode(*mode)
                    );
                }
            }
            Capability::Fqdn {
                host_name,
                domain_name,
            } => {
                let _ = writeln!(o, "      {side}:");
                let _ = writeln!(o, "         name: {host_name}, domain: {domain_name}");
            }
            _ => {}
        }
    }
}

/// `gobgp neighbor ADDR`: the detailed view.
pub fn neighbor_detail(p: &PeerInfo, afi: Option<Afi>, now: SystemTime) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "BGP neighbor is {}, remote AS {}",
        p.address,
        asn_column(p.peer_asn)
    );
    o.push_str(if p.route_reflector_client {
        ", route-reflector-client\n"
    } else {
        "\n"
    });
    let id = p
        .remote_router_id
        .map_or_else(|| "unknown".to_string(), |i| i.to_string());
    let _ = writeln!(o, "  BGP version 4, remote router ID {id}");
    let _ = write!(o, "  BGP state = {}", state_enum_name(p.session_state));
    match p.uptime {
        Some(up) => {
            let _ = writeln!(o, ", up for {}", format_timedelta(up, now));
        }
        None => o.push('\n'),
    }
    let _ = writeln!(o, "  BGP OutQ = 0, Flops = {}", p.flops);
    let _ = writeln!(
        o,
        "  Hold time is {}, keepalive interval is {} seconds",
        p.timers.negotiated_hold_time, p.timers.negotiated_keepalive_interval
    );
    let _ = writeln!(
        o,
        "  Configured hold time is {}, keepalive interval is {} seconds",
        p.timers.hold_time, p.timers.keepalive_interval
    );
    o.push_str("  \n");
    o.push_str("  Neighbor capabilities:\n");
    let mut caps: Vec<Capability> = p.local_capabilities.clone();
    for c in &p.remote_capabilities {
        if !caps.iter().any(|x| same_capability(x, c)) {
            caps.push(c.clone());
        }
    }
    // Stable, as Go's sort.Slice is not guaranteed to be: same-code capabilities keep their order.
    caps.sort_by_key(Capability::code);
    let mut first_mp = true;
    for c in &caps {
        let local = p.local_capabilities.iter().find(|x| same_capability(x, c));
        let remote = p.remote_capabilities.iter().find(|x| same_capability(x, c));
        let support = match (local.is_some(), remote.is_some()) {
            (true, true) => "advertised and received",
            (true, false) => "advertised",
            (false, true) => "received",
            (false, false) => "",
        };
        match c {
            Capability::MultiProtocol(afi) => {
                if first_mp {
                    let _ = writeln!(o, "    {}:", capability_name(c.code()));
                    first_mp = false;
                }
                let _ = writeln!(o, "        {}:\t{support}", family_name(*afi));
            }
            _ => {
                let _ = writeln!(o, "    {}:\t{support}", capability_name(c.code()));
                capability_values(&mut o, local, remote);
            }
        }
    }
    let (received, accepted, advertised) = prefix_counters(p, afi);
    o.push_str("  Message statistics:\n");
    o.push_str("                         Sent       Rcvd\n");
    let (s, r) = (&p.sent, &p.received);
    for (name, a, b) in [
        ("Opens:        ", s.open, r.open),
        ("Notifications:", s.notification, r.notification),
        ("Updates:      ", s.update, r.update),
        ("Keepalives:   ", s.keepalive, r.keepalive),
        ("Route Refresh:", s.refresh, r.refresh),
        ("Discarded:    ", s.discarded, r.discarded),
        ("Total:        ", s.total, r.total),
    ] {
        let _ = writeln!(o, "    {name} {a:>10} {b:>10}");
    }
    o.push_str("  Route statistics:\n");
    let _ = writeln!(o, "    Advertised:    {advertised:>10}");
    let _ = writeln!(o, "    Received:      {received:>10}");
    let _ = writeln!(o, "    Accepted:      {accepted:>10}");
    let limits: Vec<_> = p
        .families
        .iter()
        .filter_map(|f| f.max_prefixes.map(|m| (f.afi, m)))
        .collect();
    if !limits.is_empty() {
        o.push_str("  Prefix Limits:\n");
        for (afi, max) in limits {
            let _ = writeln!(
                o,
                "    {}:\tMaximum prefixes allowed {max}",
                family_name(afi)
            );
        }
    }
    o
}

/// `gobgp global`.
pub fn global_summary(g: &GlobalInfo) -> String {
    let mut o = format!("AS:        {}\nRouter-ID: {}\n", g.asn, g.router_id);
    if !g.listen_addresses.is_empty() {
        let addrs: Vec<String> = g.listen_addresses.iter().map(ToString::to_string).collect();
        let port = g.listen_port.map_or(-1, i32::from);
        let _ = writeln!(o, "Listening Port: {port}, Addresses: {}", addrs.join(", "));
    }
    if g.use_multiple_paths {
        // gobgp prints this line without a newline; fairlead ends it.
        o.push_str("Multipath: enabled\n");
    }
    o
}

/// Which ADD-PATH identifier column a RIB table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdColumn {
    None,
    /// The identifier received (adj-in).
    Received,
    /// The identifier sent (adj-out).
    Sent,
}

/// Column choices of a RIB table; gobgp's are [`RibView::GLOBAL`], [`RibView::ADJ_IN`], [`RibView::ADJ_OUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RibView {
    pub show_best: bool,
    pub show_age: bool,
    pub id: IdColumn,
}

impl RibView {
    pub const GLOBAL: RibView = RibView {
        show_best: true,
        show_age: true,
        id: IdColumn::None,
    };
    pub const ADJ_IN: RibView = RibView {
        show_best: false,
        show_age: true,
        id: IdColumn::Received,
    };
    pub const ADJ_OUT: RibView = RibView {
        show_best: false,
        show_age: false,
        id: IdColumn::Sent,
    };
}

/// AS_PATH as gobgp writes it: sequences space-separated, `{a,b}` sets, `(a b)` confederation sequences,
/// `[a,b]` confederation sets.
pub fn as_path_string(path: &[AsPathSegment]) -> String {
    let join = |v: &[u32], sep: &str| v.iter().map(u32::to_string).collect::<Vec<_>>().join(sep);
    path.iter()
        .map(|s| match s {
            AsPathSegment::Sequence(v) => join(v, " "),
            AsPathSegment::Set(v) => format!("{{{}}}", join(v, ",")),
            AsPathSegment::ConfedSequence(v) => format!("({})", join(v, " ")),
            AsPathSegment::ConfedSet(v) => format!("[{}]", join(v, ",")),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A standard community as gobgp writes it: a well-known name (RFC 1997, RFC 7999, RFC 8326...) or `AS:value`.
pub fn community_string(c: u32) -> String {
    let name = match c {
        0x0000_0000 => "internet",
        0xffff_0000 => "planned-shut",
        0xffff_0001 => "accept-own",
        0xffff_0002 => "route-filter-translated-v4",
        0xffff_0003 => "route-filter-v4",
        0xffff_0004 => "route-filter-translated-v6",
        0xffff_0005 => "route-filter-v6",
        0xffff_0006 => "llgr-stale",
        0xffff_0007 => "no-llgr",
        0xffff_029a => "blackhole",
        0xffff_ff01 => "no-export",
        0xffff_ff02 => "no-advertise",
        0xffff_ff03 => "no-export-subconfed",
        0xffff_ff04 => "no-peer",
        _ => return format!("{}:{}", c >> 16, c & 0xffff),
    };
    name.to_string()
}

/// The Attrs column: every attribute but NEXT_HOP, MP_REACH and AS_PATH, in type-code order.
pub fn attrs_string(a: &PathAttributes) -> String {
    let mut v = Vec::new();
    let origin = match a.origin {
        Origin::Igp => "i",
        Origin::Egp => "e",
        Origin::Incomplete => "?",
    };
    v.push(format!("{{Origin: {origin}}}"));
    if let Some(med) = a.med {
        v.push(format!("{{Med: {med}}}"));
    }
    if let Some(lp) = a.local_pref {
        v.push(format!("{{LocalPref: {lp}}}"));
    }
    if a.atomic_aggregate {
        v.push("{AtomicAggregate}".to_string());
    }
    if let Some((asn, addr)) = a.aggregator {
        v.push(format!("{{Aggregate: {{AS: {asn}, Address: {addr}}}}}"));
    }
    if !a.communities.is_empty() {
        let c: Vec<String> = a
            .communities
            .iter()
            .map(|c| community_string(c.0))
            .collect();
        v.push(format!("{{Communities: {}}}", c.join(", ")));
    }
    if let Some(id) = a.originator_id {
        v.push(format!("{{Originator: {id}}}"));
    }
    if !a.cluster_list.is_empty() {
        let c: Vec<String> = a.cluster_list.iter().map(ToString::to_string).collect();
        v.push(format!("{{ClusterList: [{}]}}", c.join(" ")));
    }
    format!("[{}]", v.join(" "))
}

fn symbols(p: &RoutePath, view: RibView) -> String {
    let mut s = String::new();
    if p.stale {
        s.push('S');
    }
    if view.show_best {
        s.push_str(if p.best { "*>" } else { "* " });
    }
    s
}

/// `gobgp global rib` / `gobgp neighbor ADDR adj-in|adj-out`: a row per path, destinations in address order;
/// [`NETWORK_NOT_IN_TABLE`] when empty.
pub fn rib_table(dests: &[Destination], view: RibView, now: SystemTime) -> String {
    let mut dests: Vec<&Destination> = dests.iter().collect();
    dests.sort_by_key(|d| d.prefix.network());
    let rows: Vec<Vec<String>> = dests
        .iter()
        .flat_map(|d| d.paths.iter())
        .map(|p| {
            let mut r = vec![symbols(p, view)];
            match view.id {
                IdColumn::None => {}
                IdColumn::Received => r.push(p.path_id.to_string()),
                IdColumn::Sent => r.push(p.local_path_id.to_string()),
            }
            r.push(p.prefix.to_string());
            r.push(
                p.attrs
                    .next_hop
                    .map_or_else(|| "fictitious".to_string(), |n| n.to_string()),
            );
            r.push(as_path_string(&p.attrs.as_path));
            if view.show_age {
                r.push(format_timedelta(p.age, now));
            }
            r.push(attrs_string(&p.attrs));
            r
        })
        .collect();
    if rows.is_empty() {
        return NETWORK_NOT_IN_TABLE.to_string();
    }
    // Column indexes after the optional ID column.
    let base = usize::from(view.id != IdColumn::None);
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(20);
    let (wp, wn, wa) = (width(1 + base), width(2 + base), width(3 + base));
    let mut header = vec![String::new()];
    if view.id != IdColumn::None {
        header.push("ID".into());
    }
    header.extend(["Network".into(), "Next Hop".into(), "AS_PATH".into()]);
    if view.show_age {
        header.push("Age".into());
    }
    header.push("Attrs".into());
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows.iter()) {
        let mut i = 0;
        let _ = write!(out, "{:<3}", r[i]);
        i += 1;
        if view.id != IdColumn::None {
            let _ = write!(out, "{:<3} ", r[i]);
            i += 1;
        }
        let _ = write!(out, "{:<wp$} {:<wn$} {:<wa$} ", r[i], r[i + 1], r[i + 2]);
        i += 3;
        if view.show_age {
            let _ = write!(out, "{:<10} ", r[i]);
            i += 1;
        }
        let _ = writeln!(out, "{}", r[i]);
    }
    out
}
