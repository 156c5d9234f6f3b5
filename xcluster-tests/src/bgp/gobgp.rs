//! GoBGP as a test peer: TOML config writer, launcher (`gobgpd`), and `gobgp` CLI queries over its gRPC API.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use ipnet::IpNet;

use super::{AfiSafi, BgpSpeaker, HOLD_TIME_SECS, RouterSpec, START_TIMEOUT, parse_prefix};
use crate::error::{HarnessError, Result};
use crate::exec::{ns_command, run, wait_until};
use crate::guard::Guard;

/// The gRPC API port; gobgpd binds it on the namespace's own loopback, so every namespace can use it.
pub const API_PORT: u16 = 50051;

/// A running gobgpd.
#[derive(Clone, Debug)]
pub struct Gobgp {
    netns: String,
    pid: u32,
}

fn afi_safi_name(afi: AfiSafi) -> &'static str {
    match afi {
        AfiSafi::Ipv4Unicast => "ipv4-unicast",
        AfiSafi::Ipv6Unicast => "ipv6-unicast",
    }
}

fn cli_family(afi: AfiSafi) -> &'static str {
    match afi {
        AfiSafi::Ipv4Unicast => "ipv4",
        AfiSafi::Ipv6Unicast => "ipv6",
    }
}

impl Gobgp {
    /// The gobgpd TOML config for `spec`. Originated prefixes are not part of it: GoBGP has no static routes
    /// in its config, so [`Gobgp::start`] adds them through the API. GoBGP advertises the extended next hop
    /// capability by itself for IPv4 unicast on an IPv6 session; `extended_next_hop` needs no line here.
    pub fn config(spec: &RouterSpec) -> String {
        let mut c = String::new();
        let _ = writeln!(
            c,
            "[global.config]\n  as = {}\n  router-id = \"{}\"\n  port = 179",
            spec.asn, spec.router_id
        );
        if !spec.listen.is_empty() {
            let list: Vec<String> = spec.listen.iter().map(|a| format!("\"{a}\"")).collect();
            let _ = writeln!(c, "  local-address-list = [{}]", list.join(", "));
        }
        for n in &spec.neighbors {
            let _ = writeln!(
                c,
                "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}",
                n.address, n.remote_asn
            );
            if let Some(p) = &n.password {
                let _ = writeln!(c, "    auth-password = \"{p}\"");
            }
            let _ = writeln!(
                c,
                "  [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = {HOLD_TIME_SECS}\n    keepalive-interval = {}",
                HOLD_TIME_SECS / 3
            );
            let local = spec.local_address_for(n);
            if n.passive || local.is_some() {
                c.push_str("  [neighbors.transport.config]\n");
                if n.passive {
                    c.push_str("    passive-mode = true\n");
                }
                if let Some(local) = local {
                    let _ = writeln!(c, "    local-address = \"{local}\"");
                }
            }
            if let Some(ttl) = n.multihop {
                let _ = writeln!(
                    c,
                    "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = {ttl}"
                );
            }
            if n.route_reflector_client {
                let _ = writeln!(
                    c,
                    "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"{}\"",
                    spec.router_id
                );
            }
            for afi in &n.families {
                let _ = writeln!(
                    c,
                    "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{}\"",
                    afi_safi_name(*afi)
                );
            }
        }
        c
    }

    /// Writes `<temp>/<label>.toml`, checks it (`gobgpd -d`), starts gobgpd in `netns` with its API on the
    /// namespace's loopback, waits until the CLI answers, then originates the spec's prefixes.
    pub fn start(guard: &Guard, netns: &str, label: &str, spec: &RouterSpec) -> Result<Gobgp> {
        let conf = guard.temp_dir().join(format!("{label}.toml"));
        std::fs::write(&conf, Self::config(spec))
            .map_err(|e| HarnessError::io("write", &conf, e))?;
        let conf_s = conf.to_string_lossy().into_owned();
        run(Command::new("gobgpd").args(["-d", "-f", &conf_s]))?;
        let api = format!("127.0.0.1:{API_PORT}");
        let pid = guard.spawn_in(
            netns,
            label,
            "gobgpd",
            &["-f", &conf_s, "-p", "--api-hosts", &api, "--pprof-disable"],
        )?;
        let gobgp = Gobgp {
            netns: netns.to_owned(),
            pid,
        };
        wait_until(
            &format!("gobgpd in {netns} to answer gobgp"),
            START_TIMEOUT,
            Duration::from_millis(100),
            || gobgp.cli(&["global"]).is_ok(),
        )
        .map_err(|e| HarnessError::Topology(format!("{e}; gobgpd log: {}", guard.log(label))))?;
        for prefix in &spec.announce {
            let family = cli_family(AfiSafi::of_prefix(prefix));
            gobgp.cli(&["global", "rib", "-a", family, "add", &prefix.to_string()])?;
        }
        Ok(gobgp)
    }

    /// Runs `gobgp -u 127.0.0.1 -p 50051 <args>` inside the namespace and returns its output.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let port = API_PORT.to_string();
        run(ns_command(&self.netns, "gobgp")
            .args(["-u", "127.0.0.1", "-p", &port])
            .args(args))
    }
}

impl BgpSpeaker for Gobgp {
    fn kind(&self) -> &'static str {
        "gobgpd"
    }

    fn netns(&self) -> &str {
        &self.netns
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn session_established(&self, neighbor: IpAddr) -> Result<bool> {
        let out = self.cli(&["neighbor", &neighbor.to_string()])?;
        Ok(out.lines().any(|l| {
            l.trim()
                .to_ascii_lowercase()
                .starts_with("bgp state = established")
        }))
    }

    fn rib(&self, afi: AfiSafi) -> Result<Vec<IpNet>> {
        let out = self.cli(&["-j", "global", "rib", "-a", cli_family(afi)])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| HarnessError::Parse {
            what: "gobgp -j global rib".into(),
            detail: format!("{e}: {out}"),
        })?;
        // The JSON is an object keyed by prefix (or null when the RIB is empty).
        match v {
            serde_json::Value::Object(map) => map
                .keys()
                .map(|k| parse_prefix("gobgp global rib", k))
                .collect(),
            serde_json::Value::Null => Ok(Vec::new()),
            other => Err(HarnessError::Parse {
                what: "gobgp -j global rib".into(),
                detail: other.to_string(),
            }),
        }
    }
}
