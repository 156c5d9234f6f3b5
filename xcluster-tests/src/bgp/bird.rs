//! BIRD 2 as a test peer: config writer, launcher (`bird -f`), and `birdc -s <socket>` queries.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use ipnet::IpNet;

use super::{AfiSafi, BgpSpeaker, HOLD_TIME_SECS, RouterSpec, START_TIMEOUT, parse_prefix};
use crate::error::{HarnessError, Result};
use crate::exec::{run, wait_until};
use crate::guard::Guard;

/// A running BIRD.
#[derive(Clone, Debug)]
pub struct Bird {
    netns: String,
    socket: PathBuf,
    pid: u32,
    neighbors: Vec<IpAddr>,
}

fn channel(afi: AfiSafi) -> &'static str {
    match afi {
        AfiSafi::Ipv4Unicast => "ipv4",
        AfiSafi::Ipv6Unicast => "ipv6",
    }
}

fn table(afi: AfiSafi) -> &'static str {
    match afi {
        AfiSafi::Ipv4Unicast => "master4",
        AfiSafi::Ipv6Unicast => "master6",
    }
}

impl Bird {
    /// The protocol name BIRD uses for neighbour number `i` of the spec.
    pub fn protocol_name(i: usize) -> String {
        format!("peer{}", i + 1)
    }

    /// The bird.conf for `spec`. Originated prefixes are `unreachable` static routes; every BGP channel imports
    /// all and exports only static and BGP routes (not the connected ones `protocol direct` brings in so that
    /// iBGP next hops resolve recursively). Nothing is exported to the kernel.
    pub fn config(spec: &RouterSpec) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "router id {};", spec.router_id);
        c.push_str("protocol device { scan time 10; }\n");
        c.push_str("protocol direct { ipv4; ipv6; }\n");
        for afi in [AfiSafi::Ipv4Unicast, AfiSafi::Ipv6Unicast] {
            let routes: Vec<&IpNet> = spec.announced(afi).collect();
            if routes.is_empty() {
                continue;
            }
            let _ = writeln!(
                c,
                "protocol static static_{} {{\n  {};",
                channel(afi),
                channel(afi)
            );
            for r in routes {
                let _ = writeln!(c, "  route {r} unreachable;");
            }
            c.push_str("}\n");
        }
        for (i, n) in spec.neighbors.iter().enumerate() {
            let _ = writeln!(c, "protocol bgp {} {{", Self::protocol_name(i));
            match spec.local_address_for(n) {
                Some(local) => {
                    let _ = writeln!(c, "  local {local} as {};", spec.asn);
                }
                None => {
                    let _ = writeln!(c, "  local as {};", spec.asn);
                }
            }
            let _ = writeln!(c, "  neighbor {} as {};", n.address, n.remote_asn);
            let _ = writeln!(
                c,
                "  hold time {HOLD_TIME_SECS}; keepalive time {}; connect delay time 1; connect retry time 2; error wait time 1, 4;",
                HOLD_TIME_SECS / 3
            );
            if n.passive {
                c.push_str("  passive on;\n");
            }
            if let Some(ttl) = n.multihop {
                let _ = writeln!(c, "  multihop {ttl};");
            }
            if let Some(p) = &n.password {
                let _ = writeln!(c, "  password \"{p}\";");
            }
            if n.route_reflector_client {
                c.push_str("  rr client;\n");
            }
            for afi in &n.families {
                let _ = write!(
                    c,
                    "  {} {{ import all; export where source ~ [ RTS_STATIC, RTS_BGP ];",
                    channel(*afi)
                );
                if n.extended_next_hop && *afi == AfiSafi::Ipv4Unicast {
                    c.push_str(" extended next hop on;");
                }
                c.push_str(" };\n");
            }
            c.push_str("}\n");
        }
        c
    }

    /// Writes the config to `<temp>/<label>.conf`, checks it (`bird -p`), starts `bird -f` in `netns` with its
    /// control socket at `<temp>/<label>.ctl`, and waits until `birdc` answers.
    pub fn start(guard: &Guard, netns: &str, label: &str, spec: &RouterSpec) -> Result<Bird> {
        let conf = guard.temp_dir().join(format!("{label}.conf"));
        let socket = guard.temp_dir().join(format!("{label}.ctl"));
        let pidfile = guard.temp_dir().join(format!("{label}.pid"));
        std::fs::write(&conf, Self::config(spec))
            .map_err(|e| HarnessError::io("write", &conf, e))?;
        let conf_s = conf.to_string_lossy().into_owned();
        run(Command::new("bird").args(["-p", "-c", &conf_s]))?;
        let pid = guard.spawn_in(
            netns,
            label,
            "bird",
            &[
                "-f",
                "-c",
                &conf_s,
                "-s",
                &socket.to_string_lossy(),
                "-P",
                &pidfile.to_string_lossy(),
            ],
        )?;
        let bird = Bird {
            netns: netns.to_owned(),
            socket,
            pid,
            neighbors: spec.neighbors.iter().map(|n| n.address).collect(),
        };
        wait_until(
            &format!("bird in {netns} to answer birdc"),
            START_TIMEOUT,
            std::time::Duration::from_millis(100),
            || bird.birdc(&["show", "status"]).is_ok(),
        )
        .map_err(|e| HarnessError::Topology(format!("{e}; bird log: {}", guard.log(label))))?;
        Ok(bird)
    }

    /// Runs `birdc -s <socket> <args>` and returns its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let out = run(Command::new("birdc").arg("-s").arg(&self.socket).args(args))?;
        // birdc exits 0 even when the daemon refuses a command; its error lines are numbered 8xxx/9xxx.
        if out
            .lines()
            .any(|l| l.starts_with("syntax error") || l.starts_with("Unable to connect"))
        {
            return Err(HarnessError::Parse {
                what: format!("birdc {}", args.join(" ")),
                detail: out,
            });
        }
        Ok(out)
    }

    /// The control socket.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }
}

impl BgpSpeaker for Bird {
    fn kind(&self) -> &'static str {
        "bird"
    }

    fn netns(&self) -> &str {
        &self.netns
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn session_established(&self, neighbor: IpAddr) -> Result<bool> {
        let i = self
            .neighbors
            .iter()
            .position(|n| *n == neighbor)
            .ok_or_else(|| HarnessError::Topology(format!("bird has no neighbor {neighbor}")))?;
        let name = Self::protocol_name(i);
        let out = self.birdc(&["show", "protocols", &name])?;
        Ok(out.lines().any(|l| {
            l.split_whitespace().next() == Some(name.as_str()) && l.contains("Established")
        }))
    }

    fn rib(&self, afi: AfiSafi) -> Result<Vec<IpNet>> {
        let out = self.birdc(&["show", "route", "table", table(afi)])?;
        // Route lines start with the prefix; further paths of the same prefix are indented.
        let mut prefixes = Vec::new();
        for line in out.lines() {
            let Some(first) = line.split_whitespace().next() else {
                continue;
            };
            if line.starts_with(char::is_whitespace) || !first.contains('/') {
                continue;
            }
            prefixes.push(parse_prefix("birdc show route", first)?);
        }
        Ok(prefixes)
    }
}
