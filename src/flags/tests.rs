//! Flag tests: argv through clap, then validation; every error names its flag.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};

use super::{Controllers, FlagError, LogFormat, RunArgs, RunFlags, SourceArgs};
use cluster::Kind;

#[derive(Debug, Parser)]
struct TestCli {
    #[command(flatten)]
    run: RunFlags,
}

fn flags(args: &[&str]) -> RunFlags {
    let argv = std::iter::once("fairlead-run").chain(args.iter().copied());
    TestCli::try_parse_from(argv).expect("clap accepts").run
}

fn no_files(path: &Path) -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{} not in this test", path.display()),
    ))
}

/// A dual-stack cluster, IPv6 primary, unless the test gives its own `--cluster-cidr`.
fn with_cidr<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    if !args.contains(&"--cluster-cidr") {
        all.extend(["--cluster-cidr", "fd00:10:244::/56,198.18.128.0/17"]);
    }
    all
}

fn validate(args: &[&str]) -> Result<RunArgs, FlagError> {
    RunArgs::from_low_args(flags(&with_cidr(args)), Some("Node-A".into()), no_files)
}

fn routing(run: &RunArgs) -> &routecontroller::model::Config {
    run.routing.as_ref().expect("the router runs")
}

fn error_of(args: &[&str]) -> String {
    match validate(args) {
        Ok(ok) => panic!("{args:?} validated: {ok:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_are_kube_routers() {
    let run = validate(&[]).expect("defaults validate");
    assert_eq!(
        run.controllers,
        Controllers {
            router: true,
            service_proxy: true,
            firewall: true
        }
    );
    assert_eq!(run.source, SourceArgs::Kube { kubeconfig: None });
    assert_eq!(run.node_name, "node-a", "the host name, lowercased");
    assert_eq!(run.grpc_port, 50051);
    assert_eq!(run.health_port, Some(20244));
    assert_eq!(run.metrics_port, None);
    assert_eq!(run.log_format, LogFormat::Text);
    assert_eq!(
        run.cni_conf_file,
        PathBuf::from("/etc/cni/net.d/10-fairlead.conflist")
    );
    let r = routing(&run);
    assert!(r.nodes_full_mesh && r.enable_ibgp && r.enable_pod_egress);
    assert_eq!(r.cluster_asn, routecontroller::model::DEFAULT_CLUSTER_ASN);
    assert_eq!(run.watched_kinds(), Kind::ALL.to_vec());
}

#[test]
fn boolean_flags_take_false_and_a_bare_flag_means_true() {
    let run = validate(&[
        "--run-firewall=false",
        "--run-service-proxy",
        "--nodes-full-mesh=false",
    ])
    .expect("valid");
    assert!(!run.controllers.firewall && run.controllers.service_proxy && run.controllers.router);
    assert!(!routing(&run).nodes_full_mesh);
    assert_eq!(
        run.watched_kinds(),
        vec![Kind::Node, Kind::Service, Kind::EndpointSlice]
    );
    // A firewall-only node needs no routing flags, and they are not validated.
    let fw_only = [
        "--run-router=false",
        "--run-service-proxy=false",
        "--cluster-asn",
        "x",
    ];
    let fw =
        RunArgs::from_low_args(flags(&fw_only), Some("node-a".into()), no_files).expect("valid");
    assert_eq!(fw.routing, None);
    assert_eq!(
        fw.watched_kinds(),
        vec![Kind::Pod, Kind::Namespace, Kind::NetworkPolicy]
    );
    // The NDP proxy reads this node's pods even when the firewall is off.
    let ndp = validate(&["--run-firewall=false", "--ndp-proxy-interface", "eth0"]).expect("valid");
    assert!(ndp.watched_kinds().contains(&Kind::Pod));
    let err = error_of(&[
        "--run-router=false",
        "--run-service-proxy=false",
        "--run-firewall=false",
    ]);
    assert!(
        err.starts_with("--run-router and --run-service-proxy, --run-firewall"),
        "{err}"
    );
}

#[test]
fn objects_from_and_kubeconfig_exclude_each_other() {
    let run = validate(&["--objects-from", "/srv/objects"]).expect("valid");
    assert_eq!(run.source, SourceArgs::Dir(PathBuf::from("/srv/objects")));
    let run = validate(&["--kubeconfig", "/etc/kube/admin.conf"]).expect("valid");
    assert_eq!(
        run.source,
        SourceArgs::Kube {
            kubeconfig: Some(PathBuf::from("/etc/kube/admin.conf"))
        }
    );
    let err = error_of(&["--kubeconfig", "/k", "--objects-from", "/d"]);
    assert!(err.starts_with("--kubeconfig and --objects-from"), "{err}");
}

#[test]
fn the_node_name_comes_from_the_flag_then_the_host() {
    let run = validate(&["--hostname-override", "worker-1.example"]).expect("valid");
    assert_eq!(run.node_name, "worker-1.example");
    for bad in ["Worker_1", "-a", "a..b", &"x".repeat(64)] {
        let err = error_of(&[&format!("--hostname-override={bad}")]);
        assert!(
            err.starts_with("--hostname-override: invalid value"),
            "{bad}: {err}"
        );
    }
    let none = RunArgs::from_low_args(flags(&[]), None, no_files);
    assert_eq!(none, Err(FlagError::NoNodeName));
    assert!(
        FlagError::NoNodeName
            .to_string()
            .starts_with("--hostname-override")
    );
    // The Kubernetes way to pass the node's name is the NODE_NAME variable (downward API).
    let cmd = TestCli::command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == "hostname_override")
        .expect("the flag");
    assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new("NODE_NAME")));
}

#[test]
fn routing_flags_are_validated_by_the_routecontroller_rules() {
    // IPv6-only, dual-stack (each family primary) and IPv4-only peers and ranges.
    for (ips, asns, cidrs) in [
        ("fd00::fe", "64600", "fd00:10:244::/56"),
        (
            "fd00::fe,198.18.0.254",
            "64600,64601",
            "fd00:10:244::/56,198.18.128.0/17",
        ),
        (
            "198.18.0.254,fd00::fe",
            "64601,64600",
            "198.18.128.0/17,fd00:10:244::/56",
        ),
        ("198.18.0.254", "64601", "198.18.128.0/17"),
    ] {
        let run = validate(&[
            "--peer-router-ips",
            ips,
            "--peer-router-asns",
            asns,
            "--cluster-cidr",
            cidrs,
            "--cluster-asn",
            "64512",
            "--router-id",
            "generate",
        ])
        .unwrap_or_else(|e| panic!("{ips}: {e}"));
        let peers: Vec<String> = routing(&run)
            .global_peers
            .iter()
            .map(|p| p.address.to_string())
            .collect();
        assert_eq!(peers.join(","), ips);
        let first = routing(&run).cluster_cidrs[0].to_string();
        assert_eq!(
            first,
            cidrs.split(',').next().unwrap(),
            "primary family first"
        );
    }
    let err = RunArgs::from_low_args(flags(&[]), Some("node-a".into()), no_files)
        .expect_err("the router needs the pod ranges")
        .to_string();
    assert!(err.starts_with("--cluster-cidr is required"), "{err}");
    let err = error_of(&["--cluster-asn", "not-a-number"]);
    assert!(err.starts_with("--cluster-asn"), "{err}");
    let err = error_of(&[
        "--peer-router-ips",
        "fd00::fe,198.18.0.254",
        "--peer-router-asns",
        "64600",
    ]);
    assert!(err.starts_with("--peer-router-asns"), "{err}");
    let err = error_of(&["--router-id", "fd00::1"]);
    assert!(err.starts_with("--router-id"), "{err}");
    let err = error_of(&["--peer-router-multihop-ttl", "300"]);
    assert!(err.starts_with("--peer-router-multihop-ttl"), "{err}");
}

#[test]
fn the_passwords_file_is_read_through_the_given_reader() {
    let args = [
        "--peer-router-ips",
        "fd00::fe,198.18.0.254",
        "--peer-router-asns",
        "64600,64601",
        "--peer-router-passwords-file",
        "/etc/fairlead/passwords",
    ];
    let err = error_of(&args);
    assert!(
        err.starts_with("--peer-router-passwords-file: cannot read /etc/fairlead/passwords"),
        "{err}"
    );
    // "c2VjcmV0" is base64 for "secret"; routecontroller decodes and checks the count.
    let read = |path: &Path| {
        assert_eq!(path, Path::new("/etc/fairlead/passwords"));
        Ok("c2VjcmV0\nc2VjcmV0\n".to_string())
    };
    let run = RunArgs::from_low_args(flags(&with_cidr(&args)), Some("node-a".into()), read)
        .expect("valid");
    let peers = &routing(&run).global_peers;
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.password.is_some()));
}

#[test]
fn ports_interfaces_and_paths_are_checked() {
    let run = validate(&[
        "--metrics-port",
        "9090",
        "--health-port",
        "0",
        "--ndp-proxy-interface",
        "eth0",
    ])
    .expect("valid");
    assert_eq!((run.metrics_port, run.health_port), (Some(9090), None));
    assert_eq!(run.ndp_proxy_interface.as_deref(), Some("eth0"));

    let err = error_of(&["--metrics-port", "50051"]);
    assert!(
        err.starts_with("--metrics-port and --grpc-port: both use port 50051"),
        "{err}"
    );
    let err = error_of(&["--health-port", "9090", "--metrics-port", "9090"]);
    assert!(err.starts_with("--metrics-port and --health-port"), "{err}");
    // 0 disables the gRPC API, and then frees nothing to conflict with.
    let no_api = validate(&["--grpc-port", "0", "--metrics-port", "0"]).expect("valid");
    assert_eq!(no_api.grpc_port, 0);
    for bad in ["", "a-very-long-interface", "eth0/1", "eth 0"] {
        let err = error_of(&["--ndp-proxy-interface", bad]);
        assert!(
            err.starts_with("--ndp-proxy-interface: invalid value"),
            "{bad:?}: {err}"
        );
    }
    for bad in ["relative.conflist", "/etc/cni/net.d/10-fairlead.conf"] {
        let err = error_of(&["--cni-conf-file", bad]);
        assert!(
            err.starts_with("--cni-conf-file: invalid value"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn clap_rejects_what_has_no_meaning() {
    let argv = |args: &[&str]| {
        let argv = std::iter::once("fairlead-run").chain(args.iter().copied());
        TestCli::try_parse_from(argv)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let err = argv(&["--log-format", "xml"]).expect_err("not a format");
    assert!(err.contains("--log-format"), "{err}");
    let err = argv(&["--metrics-port", "70000"]).expect_err("not a port");
    assert!(err.contains("--metrics-port"), "{err}");
    let err = argv(&["--run-router=maybe"]).expect_err("not a bool");
    assert!(err.contains("--run-router"), "{err}");
    assert_eq!(flags(&["--log-format", "json"]).log_format, LogFormat::Json);
}
