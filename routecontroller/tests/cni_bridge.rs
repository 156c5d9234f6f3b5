//! The dual-stack conflist from the model, run through the real CNI bridge + host-local + portmap plugins
//! exactly as a kubelet's runtime does, in throwaway network namespaces (root only; skips otherwise).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use routecontroller::model::{ConflistParams, cni_conflist};
use serde_json::{Value, json};

const CNI_PATH: &str = "/usr/lib/cni";

/// Skips (printing why) when the test cannot run here; under CI=true that is a failure instead.
fn skip_unless_possible() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    let why = if !root {
        Some("not root (needs network namespaces)".to_owned())
    } else if !Path::new(CNI_PATH).join("bridge").exists() {
        Some(format!(
            "{CNI_PATH}/bridge missing (apt-get install containernetworking-plugins)"
        ))
    } else {
        None
    };
    match why {
        None => false,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but cannot run: {why}")
        }
        Some(why) => {
            eprintln!("SKIPPED cni_bridge: {why}");
            true
        }
    }
}

/// Runs a command with a bounded wait; kills it (by its PID) on timeout.
fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        pipe.write_all(data).unwrap();
    }
    drop(pipe);
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ip_cmd(args: &[&str]) -> Output {
    let out = run(Command::new("ip").args(args), None, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Network namespaces and the host-local data directory of one test, removed on drop even after a panic.
struct Sandbox {
    netns: Vec<String>,
    dir: PathBuf,
}

impl Sandbox {
    fn new(tag: &str, netns: &[&str]) -> Sandbox {
        let prefix = format!("rcbr{}{tag}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("{prefix}-ipam"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut sb = Sandbox {
            netns: Vec::new(),
            dir,
        };
        for n in netns {
            let name = format!("{prefix}-{n}");
            let _ = run(
                Command::new("ip").args(["netns", "del", &name]),
                None,
                Duration::from_secs(10),
            );
            ip_cmd(&["netns", "add", &name]);
            sb.netns.push(name);
        }
        sb
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for n in &self.netns {
            let _ = run(
                Command::new("ip").args(["netns", "del", n]),
                None,
                Duration::from_secs(10),
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Calls one plugin of the list as libcni does: the plugin's object plus `cniVersion`, `name` and `prevResult`.
fn call_plugin(
    node_ns: &str,
    pod_ns: &str,
    command: &str,
    conflist: &Value,
    plugin: &Value,
    prev: Option<&Value>,
    runtime_config: Option<&Value>,
) -> Output {
    let mut conf = plugin.clone();
    conf["cniVersion"] = conflist["cniVersion"].clone();
    conf["name"] = conflist["name"].clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    if let Some(rc) = runtime_config {
        conf["runtimeConfig"] = rc.clone();
    }
    let ty = plugin["type"].as_str().unwrap();
    run(
        Command::new("ip")
            .args(["netns", "exec", node_ns, &format!("{CNI_PATH}/{ty}")])
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", format!("{pod_ns}-id"))
            .env("CNI_NETNS", format!("/var/run/netns/{pod_ns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH),
        Some(conf.to_string().as_bytes()),
        Duration::from_secs(30),
    )
}

fn conflist_for(sb: &Sandbox, cidrs: &[IpNet]) -> Value {
    let mut v = cni_conflist(&ConflistParams {
        network_name: format!("{}-net", sb.netns[0]),
        bridge: "rcbr-br0".into(),
        mtu: 1500,
        hairpin_mode: true,
        pod_cidrs: cidrs.to_vec(),
    })
    .unwrap();
    // Only for the test: keep host-local's leases out of /var/lib/cni.
    v["plugins"][0]["ipam"]["dataDir"] = json!(sb.dir.to_string_lossy());
    v
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn ping(ns: &str, addr: IpAddr) -> bool {
    // IPv6 DAD on the bridge's gateway address may take a moment: retry, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = run(
            Command::new("ip").args(["netns", "exec", ns, "ping", "-c1", "-W1", &addr.to_string()]),
            None,
            Duration::from_secs(5),
        );
        if out.status.success() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn dual_stack_ipv6_primary_conflist_works_with_the_real_bridge_plugin() {
    exercise("a", &["fd00:100:0:1::/64", "198.19.1.0/24"]);
}

#[test]
fn dual_stack_ipv4_primary_conflist_works_with_the_real_bridge_plugin() {
    exercise("c", &["198.19.3.0/24", "fd00:100:0:3::/64"]);
}

#[test]
fn ipv6_only_conflist_works_with_the_real_bridge_plugin() {
    exercise("d", &["fd00:100:0:4::/64"]);
}

#[test]
fn ipv4_only_conflist_works_with_the_real_bridge_plugin() {
    exercise("e", &["198.19.5.0/24"]);
}

/// ADD (bridge, then portmap with a port mapping), check addresses, routes, bridge, traffic; DEL; leases freed.
fn exercise(tag: &str, cidrs: &[&str]) {
    if skip_unless_possible() {
        return;
    }
    let sb = Sandbox::new(tag, &["node", "pod"]);
    let (node_ns, pod_ns) = (sb.netns[0].clone(), sb.netns[1].clone());
    ip_cmd(&["-n", &node_ns, "link", "set", "lo", "up"]);
    let cidrs: Vec<IpNet> = cidrs.iter().map(|c| c.parse().unwrap()).collect();
    let conflist = conflist_for(&sb, &cidrs);
    let plugins = conflist["plugins"].as_array().unwrap().clone();
    assert_eq!(plugins.len(), 2);
    // The pod's own side is up, as a runtime leaves it.
    ip_cmd(&["-n", &pod_ns, "link", "set", "lo", "up"]);
    let port_mappings =
        json!({"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]});

    // ADD through the chain, each plugin getting the previous result.
    let out = call_plugin(&node_ns, &pod_ns, "ADD", &conflist, &plugins[0], None, None);
    assert!(
        out.status.success(),
        "bridge ADD: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bridge_result = json_of(&out);
    let out = call_plugin(
        &node_ns,
        &pod_ns,
        "ADD",
        &conflist,
        &plugins[1],
        Some(&bridge_result),
        Some(&port_mappings),
    );
    assert!(
        out.status.success(),
        "portmap ADD: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result = json_of(&out);
    assert_eq!(result["cniVersion"], json!("1.0.0"));

    // One address per pod CIDR, each with the bridge's gateway of its family.
    let ips = result["ips"].as_array().unwrap();
    assert_eq!(ips.len(), cidrs.len(), "{result}");
    let mut pod_addrs = Vec::new();
    for (cidr, entry) in cidrs.iter().zip(ips) {
        let addr: IpNet = entry["address"].as_str().unwrap().parse().unwrap();
        assert!(cidr.contains(&addr.addr()), "{addr} in {cidr}");
        let gw: IpAddr = entry["gateway"].as_str().unwrap().parse().unwrap();
        let first = match cidr.network() {
            IpAddr::V4(n) => IpAddr::V4((u32::from(n) + 1).into()),
            IpAddr::V6(n) => IpAddr::V6((u128::from(n) + 1).into()),
        };
        assert_eq!(
            gw, first,
            "host-local's gateway: the subnet's first address"
        );
        pod_addrs.push((addr.addr(), gw));
    }

    // The pod has a default route of each family via the bridge (isDefaultGateway, no ipam.routes).
    for (addr, gw) in &pod_addrs {
        let family = if addr.is_ipv6() { "-6" } else { "-4" };
        let out = ip_cmd(&["-n", &pod_ns, family, "-j", "route", "show", "default"]);
        let routes: Value = serde_json::from_slice(&out.stdout).unwrap();
        let gws: Vec<&str> = routes
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["gateway"].as_str())
            .collect();
        assert_eq!(
            gws,
            vec![gw.to_string().as_str()],
            "{family} default route in the pod"
        );
    }
    // The bridge in the node namespace carries both gateway addresses.
    let out = ip_cmd(&["-n", &node_ns, "-j", "addr", "show", "dev", "rcbr-br0"]);
    let link: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bridge_addrs: Vec<String> = link[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["local"].as_str().unwrap().to_owned())
        .collect();
    for (_, gw) in &pod_addrs {
        assert!(
            bridge_addrs.contains(&gw.to_string()),
            "{gw} on the bridge: {bridge_addrs:?}"
        );
    }
    assert_eq!(link[0]["mtu"], json!(1500));
    // Traffic between the pod and its gateway, both families.
    for (_, gw) in &pod_addrs {
        assert!(ping(&pod_ns, *gw), "ping {gw} from the pod");
    }
    // host-local recorded the leases in our data directory.
    let leases: Vec<IpAddr> = std::fs::read_dir(sb.dir.join(conflist["name"].as_str().unwrap()))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().parse().ok())
        .collect();
    let mut want: Vec<IpAddr> = pod_addrs.iter().map(|(a, _)| *a).collect();
    let mut got = leases.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "host-local leases");

    // DEL in reverse order releases the addresses.
    let out = call_plugin(
        &node_ns,
        &pod_ns,
        "DEL",
        &conflist,
        &plugins[1],
        Some(&result),
        Some(&port_mappings),
    );
    assert!(
        out.status.success(),
        "portmap DEL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = call_plugin(
        &node_ns,
        &pod_ns,
        "DEL",
        &conflist,
        &plugins[0],
        Some(&result),
        None,
    );
    assert!(
        out.status.success(),
        "bridge DEL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<String> = std::fs::read_dir(sb.dir.join(conflist["name"].as_str().unwrap()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<IpAddr>().is_ok())
        .collect();
    assert!(left.is_empty(), "leases left after DEL: {left:?}");
}

#[test]
fn default_routes_in_ipam_break_dual_stack_add() {
    // The trap the model avoids (docs/TESTING.md): isDefaultGateway plus default routes in ipam.routes.
    if skip_unless_possible() {
        return;
    }
    let sb = Sandbox::new("b", &["node", "pod"]);
    let (node_ns, pod_ns) = (sb.netns[0].clone(), sb.netns[1].clone());
    let cidrs: Vec<IpNet> = vec![
        "198.19.2.0/24".parse().unwrap(),
        "fd00:100:0:2::/64".parse().unwrap(),
    ];
    let mut conflist = conflist_for(&sb, &cidrs);
    conflist["plugins"][0]["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]);
    let bridge = conflist["plugins"][0].clone();
    let out = call_plugin(&node_ns, &pod_ns, "ADD", &conflist, &bridge, None, None);
    let stderr =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "expected bridge 1.1.1 to fail: {stderr}"
    );
    assert!(stderr.contains("file exists"), "{stderr}");
    let _ = call_plugin(&node_ns, &pod_ns, "DEL", &conflist, &bridge, None, None);
}
