//! Benchmark: install then remove 10k kernel routes (5k per family, a quarter ECMP) with [`RouteDataplane`] and
//! with `ip -batch`, side by side in one run, each run in a fresh network namespace; prints medians and the ratio.
//!
//! `cargo bench -p routecontroller --bench routes` (root; `RUNS=N` and `ROUTES_PER_FAMILY=N` override 7 and 5000,
//! `MAX_IN_FLIGHT=N` the dataplane's pipelining window, default 256).
//! Not a pass/fail test: it only reports.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use routecontroller::dataplane::{
    ROUTE_PROTOCOL, RouteDataplane, RouteDataplaneConfig, rtnetlink_handle,
};
use routecontroller::model::{KernelNextHop, KernelRoute};

fn run(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("spawn ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh namespace with an uplink (veth pair) carrying the gateways' subnets; removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("rcbench-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["netns", "add", &name]);
        let ns = Netns(name);
        let n = ns.0.as_str();
        for cmd in [
            "link set lo up",
            "link add up0 type veth peer name up0peer",
            "link set up0peer up",
            "link set up0 up",
            "addr add 198.18.0.1/24 dev up0",
            "-6 addr add fd00:0:0:1::1/64 dev up0 nodad",
        ] {
            let mut args = vec!["-n", n];
            args.extend(cmd.split_whitespace());
            run(&args);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// `per_family` IPv4 /30s in 198.19.0.0/16 and IPv6 /64s in fd00:20::/32; every fourth route ECMP over two gateways.
fn routes(per_family: u32) -> Vec<KernelRoute> {
    let mut out = Vec::new();
    for i in 0..per_family {
        let gw4 =
            |k: u32| KernelNextHop::Gateway(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2 + k as u8)));
        let gw6 = |k: u32| {
            KernelNextHop::Gateway(IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                0,
                0,
                1,
                0,
                0,
                0,
                2 + k as u16,
            )))
        };
        let hops = |gw: &dyn Fn(u32) -> KernelNextHop| {
            if i % 4 == 0 {
                vec![gw(0), gw(1)]
            } else {
                vec![gw(i % 3)]
            }
        };
        let v4 = u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i * 4;
        out.push(KernelRoute {
            prefix: IpNet::V4(Ipv4Net::new(Ipv4Addr::from(v4), 30).unwrap()),
            next_hops: hops(&gw4),
        });
        out.push(KernelRoute {
            prefix: IpNet::V6(
                Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x20, 0, i as u16, 0, 0, 0, 0), 64).unwrap(),
            ),
            next_hops: hops(&gw6),
        });
    }
    for r in &mut out {
        r.next_hops.sort();
    }
    out
}

fn hop_addr(h: &KernelNextHop) -> IpAddr {
    match h {
        KernelNextHop::Gateway(ip) => *ip,
        KernelNextHop::ViaInet6(v6) => IpAddr::V6(*v6),
    }
}

/// The same routes as `ip -batch` input.
fn batch_files(routes: &[KernelRoute]) -> (String, String) {
    let (mut add, mut del) = (String::new(), String::new());
    for r in routes {
        write!(add, "route add {} proto {ROUTE_PROTOCOL}", r.prefix).unwrap();
        match r.next_hops.as_slice() {
            [one] => write!(add, " via {}", hop_addr(one)).unwrap(),
            many => {
                for h in many {
                    write!(add, " nexthop via {}", hop_addr(h)).unwrap();
                }
            }
        }
        add.push('\n');
        writeln!(del, "route del {} proto {ROUTE_PROTOCOL}", r.prefix).unwrap();
    }
    (add, del)
}

fn count_ours(ns: &str) -> usize {
    let mut n = 0;
    for fam in ["-4", "-6"] {
        let out = Command::new("ip")
            .args([
                "-n",
                ns,
                fam,
                "route",
                "show",
                "proto",
                &ROUTE_PROTOCOL.to_string(),
            ])
            .output()
            .expect("ip route show");
        n += String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(char::is_whitespace))
            .count();
    }
    n
}

/// One fairlead run: (install, remove).
fn fairlead_run(routes: &[KernelRoute], tag: &str) -> (Duration, Duration) {
    let ns = Netns::new(tag);
    let path = format!("/var/run/netns/{}", ns.0);
    let (install, remove) = std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut config = RouteDataplaneConfig::default();
                if let Some(n) = std::env::var("MAX_IN_FLIGHT")
                    .ok()
                    .and_then(|v| v.parse().ok())
                {
                    config.max_in_flight = n;
                }
                let dp = RouteDataplane::new(rtnetlink_handle().unwrap(), config);
                let t = Instant::now();
                let r = dp.apply(routes).await.unwrap();
                let install = t.elapsed();
                assert!(r.errors.is_empty(), "{:?}", r.errors.first());
                assert_eq!(r.added, routes.len());
                let t = Instant::now();
                let r = dp.apply(&[]).await.unwrap();
                let remove = t.elapsed();
                assert!(r.errors.is_empty(), "{:?}", r.errors.first());
                assert_eq!(r.deleted, routes.len());
                (install, remove)
            })
        })
        .join()
        .unwrap()
    });
    assert_eq!(count_ours(&ns.0), 0);
    (install, remove)
}

/// One `ip -batch` run: (install, remove), each including the `ip` process.
fn ip_run(add: &str, del: &str, n_routes: usize, tag: &str) -> (Duration, Duration) {
    let ns = Netns::new(tag);
    let dir = std::env::temp_dir();
    let (fa, fd) = (
        dir.join(format!("{}-add", ns.0)),
        dir.join(format!("{}-del", ns.0)),
    );
    std::fs::write(&fa, add).unwrap();
    std::fs::write(&fd, del).unwrap();
    let t = Instant::now();
    run(&["-n", &ns.0, "-batch", fa.to_str().unwrap()]);
    let install = t.elapsed();
    assert_eq!(count_ours(&ns.0), n_routes);
    let t = Instant::now();
    run(&["-n", &ns.0, "-batch", fd.to_str().unwrap()]);
    let remove = t.elapsed();
    assert_eq!(count_ours(&ns.0), 0);
    let _ = std::fs::remove_file(fa);
    let _ = std::fs::remove_file(fd);
    (install, remove)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to skip on.
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("routes bench: skipped (needs root for network namespaces)");
        return;
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let runs = env("RUNS", 7).max(1);
    let per_family = env("ROUTES_PER_FAMILY", 5000) as u32;
    let routes = routes(per_family);
    let ecmp = routes.iter().filter(|r| r.next_hops.len() > 1).count();
    let (add, del) = batch_files(&routes);
    println!(
        "{} routes ({per_family} IPv4 + {per_family} IPv6, {ecmp} ECMP), {runs} runs each, alternating, fresh netns per run",
        routes.len()
    );
    let (mut f_in, mut f_rm, mut f_tot, mut i_in, mut i_rm, mut i_tot) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for k in 0..runs {
        let (a, b) = fairlead_run(&routes, &format!("f{k}"));
        f_in.push(a);
        f_rm.push(b);
        f_tot.push(a + b);
        let (c, d) = ip_run(&add, &del, routes.len(), &format!("i{k}"));
        i_in.push(c);
        i_rm.push(d);
        i_tot.push(c + d);
        println!(
            "run {k}: fairlead install {} ms remove {} ms | ip -batch install {} ms remove {} ms",
            ms(a),
            ms(b),
            ms(c),
            ms(d)
        );
    }
    let rows = [
        ("install", median(f_in), median(i_in)),
        ("remove", median(f_rm), median(i_rm)),
        ("install + remove", median(f_tot), median(i_tot)),
    ];
    println!();
    println!("| phase | fairlead (median ms) | ip -batch (median ms) | fairlead / ip |");
    println!("|---|---:|---:|---:|");
    for (name, f, i) in rows {
        println!(
            "| {name} | {} | {} | {:.2} |",
            ms(f),
            ms(i),
            f.as_secs_f64() / i.as_secs_f64()
        );
    }
}
