//! FRR as a test peer: zebra + bgpd with every path (config, pid files, zserv and vty sockets, logs) under the
//! test's temp dir, queried with `vtysh --vty_socket <dir> -d bgpd -c ...`.
//!
//! zebra is needed: bgpd alone knows no interfaces and withdraws every IPv6 route whose next hop comes with a
//! link-local address ("sent a v6 LL next-hop and there's no peer interface information"), which BIRD sends.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ipnet::IpNet;

use super::{AfiSafi, BgpSpeaker, HOLD_TIME_SECS, RouterSpec, START_TIMEOUT, parse_prefix};
use crate::error::{HarnessError, Result};
use crate::exec::{run, wait_until};
use crate::guard::Guard;

/// Debian's FRR daemon directory.
pub const FRR_DIR: &str = "/usr/lib/frr";

/// A running FRR (zebra + bgpd).
#[derive(Clone, Debug)]
pub struct Frr {
    netns: String,
    vty_dir: PathBuf,
    pid: u32,
    zebra_pid: u32,
}

fn af(afi: AfiSafi) -> &'static str {
    match afi {
        AfiSafi::Ipv4Unicast => "ipv4 unicast",
        AfiSafi::Ipv6Unicast => "ipv6 unicast",
    }
}

impl Frr {
    /// The bgpd.conf for `spec`. eBGP needs no policy (`no bgp ebgp-requires-policy`), families are activated
    /// per neighbour only (`no bgp default ipv4-unicast`), and `network` statements need no matching RIB route
    /// (`no bgp network import-check`: announced prefixes are `unreachable` by design).
    pub fn config(spec: &RouterSpec) -> String {
        let mut c = String::new();
        c.push_str("frr defaults traditional\n");
        let _ = writeln!(c, "router bgp {}", spec.asn);
        let _ = writeln!(c, " bgp router-id {}", spec.router_id);
        c.push_str(" no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n no bgp network import-check\n");
        for n in &spec.neighbors {
            let a = n.address;
            let _ = writeln!(c, " neighbor {a} remote-as {}", n.remote_asn);
            let _ = writeln!(
                c,
                " neighbor {a} timers {} {HOLD_TIME_SECS}",
                HOLD_TIME_SECS / 3
            );
            let _ = writeln!(c, " neighbor {a} timers connect 1");
            if let Some(local) = spec.local_address_for(n) {
                let _ = writeln!(c, " neighbor {a} update-source {local}");
            }
            if n.passive {
                let _ = writeln!(c, " neighbor {a} passive");
            }
            if let Some(ttl) = n.multihop {
                let _ = writeln!(c, " neighbor {a} ebgp-multihop {ttl}");
            }
            if let Some(p) = &n.password {
                let _ = writeln!(c, " neighbor {a} password {p}");
            }
            if n.extended_next_hop {
                let _ = writeln!(c, " neighbor {a} capability extended-nexthop");
            }
        }
        for afi in [AfiSafi::Ipv4Unicast, AfiSafi::Ipv6Unicast] {
            let _ = writeln!(c, " address-family {}", af(afi));
            for p in spec.announced(afi) {
                let _ = writeln!(c, "  network {p}");
            }
            for n in spec.neighbors.iter().filter(|n| n.families.contains(&afi)) {
                let _ = writeln!(c, "  neighbor {} activate", n.address);
                if n.route_reflector_client {
                    let _ = writeln!(c, "  neighbor {} route-reflector-client", n.address);
                }
            }
            c.push_str(" exit-address-family\n");
        }
        c
    }

    /// Checks a written config with `bgpd -C` (dry run). bgpd exits 0 even for unknown commands and only logs
    /// them (`[EC ...] No such command on config line N`), so any logged error code counts as a rejection.
    pub fn check_config(conf: &Path) -> Result<()> {
        let mut cmd = Command::new(format!("{FRR_DIR}/bgpd"));
        cmd.args(["-C", "-S", "-Z", "-f"]).arg(conf);
        let line = crate::exec::command_line(&cmd);
        let out = cmd.output().map_err(|source| HarnessError::Spawn {
            command: line.clone(),
            source,
        })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || text.contains("[EC ") {
            return Err(HarnessError::Command {
                command: line,
                status: out.status.to_string(),
                stdout: String::new(),
                stderr: text,
            });
        }
        Ok(())
    }

    /// Writes `<temp>/<label>.conf`, starts zebra (as user `frr`) and then bgpd (as root, `-S`; it does not
    /// install routes, `-n`) in `netns` with sockets, pid files and logs under `<temp>/<label>.vty/`, and waits until
    /// vtysh answers for both.
    pub fn start(guard: &Guard, netns: &str, label: &str, spec: &RouterSpec) -> Result<Frr> {
        let conf = guard.temp_dir().join(format!("{label}.conf"));
        let vty_dir = guard.temp_dir().join(format!("{label}.vty"));
        std::fs::create_dir_all(&vty_dir)
            .map_err(|e| HarnessError::io("create directory", &vty_dir, e))?;
        std::fs::write(&conf, Self::config(spec))
            .map_err(|e| HarnessError::io("write", &conf, e))?;
        Self::check_config(&conf)?;
        // An explicit (empty) zebra config: without -f zebra would read the system's /etc/frr/frr.conf.
        let zebra_conf = vty_dir.join("zebra.conf");
        std::fs::write(&zebra_conf, "").map_err(|e| HarnessError::io("write", &zebra_conf, e))?;
        // zebra refuses to run as root unless root is in the `frrvty` group, so it runs as Debian's `frr` user
        // and needs to write its sockets, pid file and log here.
        let frr_user = nix::unistd::User::from_name("frr")
            .ok()
            .flatten()
            .ok_or_else(|| {
                HarnessError::Topology("no `frr` user (is the frr package installed?)".into())
            })?;
        nix::unistd::chown(&vty_dir, Some(frr_user.uid), Some(frr_user.gid))
            .map_err(|e| HarnessError::io("chown", &vty_dir, e.into()))?;
        let path = |name: &str| vty_dir.join(name).to_string_lossy().into_owned();
        let (zserv, vty_s) = (path("zserv.api"), vty_dir.to_string_lossy().into_owned());

        let zebra_label = format!("{label}-zebra");
        let zebra_log = format!("file:{}", path("zebra.log"));
        let zebra_pid = guard.spawn_in(
            netns,
            &zebra_label,
            &format!("{FRR_DIR}/zebra"),
            &[
                "-u",
                "frr",
                "-g",
                "frr",
                "-f",
                &path("zebra.conf"),
                "-i",
                &path("zebra.pid"),
                "-z",
                &zserv,
                "--vty_socket",
                &vty_s,
                "-P",
                "0",
                "--log",
                &zebra_log,
            ],
        )?;
        let mut frr = Frr {
            netns: netns.to_owned(),
            vty_dir: vty_dir.clone(),
            pid: 0,
            zebra_pid,
        };
        frr.wait_answers("zebra", guard, &zebra_label, "zebra.log")?;

        let conf_s = conf.to_string_lossy().into_owned();
        let bgpd_log = format!("file:{}", path("bgpd.log"));
        let bgpd_pid = path("bgpd.pid");
        let mut args = vec![
            "-S",
            "-n",
            "-z",
            &zserv,
            "-f",
            &conf_s,
            "-i",
            &bgpd_pid,
            "--vty_socket",
            &vty_s,
            "-P",
            "0",
            "--log",
            &bgpd_log,
        ];
        let listen: Vec<String> = spec.listen.iter().map(IpAddr::to_string).collect();
        for l in &listen {
            args.extend(["-l", l.as_str()]);
        }
        frr.pid = guard.spawn_in(netns, label, &format!("{FRR_DIR}/bgpd"), &args)?;
        frr.wait_answers("bgpd", guard, label, "bgpd.log")?;
        Ok(frr)
    }

    fn wait_answers(&self, daemon: &str, guard: &Guard, label: &str, log: &str) -> Result<()> {
        wait_until(
            &format!("{daemon} in {} to answer vtysh", self.netns),
            START_TIMEOUT,
            Duration::from_millis(100),
            || self.vtysh_daemon(daemon, "show version").is_ok(),
        )
        .map_err(|e| {
            HarnessError::Topology(format!(
                "{e}; {daemon} output: {} log: {}",
                guard.log(label),
                std::fs::read_to_string(self.vty_dir.join(log)).unwrap_or_default()
            ))
        })
    }

    /// zebra's PID (bgpd's is [`BgpSpeaker::pid`]).
    pub fn zebra_pid(&self) -> u32 {
        self.zebra_pid
    }

    /// Runs `vtysh --vty_socket <dir> -d bgpd -c <command>` and returns its output.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        self.vtysh_daemon("bgpd", command)
    }

    /// Runs `vtysh --vty_socket <dir> -d <daemon> -c <command>` (daemon: `bgpd` or `zebra`).
    pub fn vtysh_daemon(&self, daemon: &str, command: &str) -> Result<String> {
        run(Command::new("vtysh")
            .arg("--vty_socket")
            .arg(&self.vty_dir)
            .args(["-d", daemon, "-c", command]))
    }

    fn vtysh_json(&self, command: &str) -> Result<serde_json::Value> {
        let out = self.vtysh(command)?;
        serde_json::from_str(&out).map_err(|e| HarnessError::Parse {
            what: format!("vtysh -c '{command}'"),
            detail: format!("{e}: {out}"),
        })
    }
}

impl BgpSpeaker for Frr {
    fn kind(&self) -> &'static str {
        "frr bgpd"
    }

    fn netns(&self) -> &str {
        &self.netns
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn session_established(&self, neighbor: IpAddr) -> Result<bool> {
        let v = self.vtysh_json(&format!("show bgp neighbors {neighbor} json"))?;
        Ok(v.get(neighbor.to_string())
            .and_then(|n| n.get("bgpState"))
            .and_then(serde_json::Value::as_str)
            == Some("Established"))
    }

    fn rib(&self, afi: AfiSafi) -> Result<Vec<IpNet>> {
        let v = self.vtysh_json(&format!("show bgp {} json", af(afi)))?;
        match v.get("routes") {
            Some(serde_json::Value::Object(routes)) => routes
                .keys()
                .map(|k| parse_prefix("vtysh show bgp", k))
                .collect(),
            // An empty RIB prints no "routes" object at all.
            _ => Ok(Vec::new()),
        }
    }
}
