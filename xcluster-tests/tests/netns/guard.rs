//! Cleanup and failure reporting of the harness itself.

use std::time::Duration;

use xcluster_tests::guard::{Guard, list_netns, prefix_for};
use xcluster_tests::{
    AddressPlan, HarnessError, TopologyBuilder, exec, require_root_and_tools, wait_until,
};

/// After the topology is dropped: no namespace of its prefix, no process it started, no temp dir.
#[test]
fn drop_leaves_nothing_behind() {
    if !require_root_and_tools(&["ip", "bridge", "host-local", "sleep"]) {
        return;
    }
    let topo = TopologyBuilder::new(AddressPlan::DualStackV6Primary)
        .nodes(2)
        .router("r1", &[1])
        .build()
        .expect("build topology");
    let node = topo.node(1).unwrap();
    let pod = topo
        .add_pod(node, &topo.bridge_conflist(node))
        .expect("pod");
    let pid = topo
        .guard()
        .spawn_in(&pod.netns, "sleeper", "sleep", &["600"])
        .expect("spawn");
    let prefix = topo.guard().prefix().to_owned();
    let created = topo.guard().namespaces();
    let temp = topo.guard().temp_dir().to_owned();
    assert_eq!(
        created.len(),
        5,
        "segment, 2 nodes, router, pod: {created:?}"
    );
    assert!(list_netns().unwrap().iter().any(|n| n == &pod.netns));
    assert!(temp.is_dir());

    drop(topo);

    let left: Vec<String> = list_netns()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None);
    assert_eq!(
        alive,
        Err(nix::errno::Errno::ESRCH),
        "pid {pid} still exists"
    );
    assert!(!temp.exists(), "{} still exists", temp.display());
}

/// A namespace left by a crashed earlier run of the same test is removed when the guard is made; one of a run
/// that is still alive in another process (here: PID 1) is left alone.
#[test]
fn stale_namespaces_of_the_same_test_are_removed() {
    if !require_root_and_tools(&["ip"]) {
        return;
    }
    let name = "stale-cleanup-probe";
    // "zzzzz" in base 36 is above any pid_max: that run is over.
    let stale = format!("{}zzzzz-0-leftover", prefix_for(name));
    let foreign = format!("{}1-0-alive", prefix_for(name));
    for ns in [&stale, &foreign] {
        exec::ip(&["netns", "add", ns]).expect("make namespace");
    }
    let guard = Guard::new(name).expect("guard");
    let after = list_netns().unwrap();
    let _ = exec::ip(&["netns", "del", &foreign]);
    assert!(!after.contains(&stale), "stale {stale} survived");
    assert!(
        after.contains(&foreign),
        "{foreign} of a live process was removed"
    );
    // Two guards of one test in one process do not clean up each other.
    let ns = guard.add_netns("a").expect("namespace");
    let second = Guard::new(name).expect("second guard");
    assert!(
        list_netns().unwrap().contains(&ns),
        "second guard removed the first's {ns}"
    );
    assert_ne!(guard.prefix(), second.prefix());
}

#[test]
fn wait_until_names_what_it_awaited() {
    let mut calls = 0;
    let err = wait_until(
        "the moon to turn blue",
        Duration::from_millis(50),
        Duration::from_millis(10),
        || {
            calls += 1;
            false
        },
    )
    .unwrap_err();
    assert!(matches!(err, HarnessError::Timeout { .. }));
    assert!(err.to_string().contains("the moon to turn blue"), "{err}");
    assert!(calls >= 2, "polled {calls} times");
    wait_until(
        "true",
        Duration::from_millis(50),
        Duration::from_millis(10),
        || true,
    )
    .expect("immediate success");
}

#[test]
fn failed_command_reports_command_line_and_stderr() {
    let err =
        exec::run(std::process::Command::new("ls").arg("/no/such/fairlead/path")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("ls /no/such/fairlead/path"), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn ping_and_tcp_fail_for_unreachable_targets() {
    if !require_root_and_tools(&["ip", "ping", "nc"]) {
        return;
    }
    let topo = TopologyBuilder::new(AddressPlan::DualStackV4Primary)
        .nodes(1)
        .build()
        .expect("build");
    let ns = &topo.node(1).unwrap().netns;
    // Nothing listens and no route exists: both checks must fail, not pass vacuously.
    assert!(xcluster_tests::ping(ns, "fd00:dead::1".parse().unwrap()).is_err());
    assert!(xcluster_tests::tcp_connect(ns, "198.18.1.1".parse().unwrap(), 9).is_err());
}

/// A test that panics still loses its namespaces and processes: the guard cleans up while unwinding.
#[test]
fn panic_still_cleans_up() {
    if !require_root_and_tools(&["ip", "sleep"]) {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let topo = TopologyBuilder::named("panic-still-cleans-up", AddressPlan::Ipv6Only)
            .nodes(2)
            .build()
            .expect("build");
        let pid = topo
            .guard()
            .spawn_in(&topo.node(1).unwrap().netns, "sleeper", "sleep", &["600"])
            .expect("spawn");
        tx.send((topo.guard().prefix().to_owned(), pid)).unwrap();
        panic!("deliberate panic with a live topology");
    })
    .join();
    assert!(outcome.is_err(), "the thread should have panicked");
    let (prefix, pid) = rx.recv().expect("prefix and pid from the panicking thread");
    let left: Vec<String> = list_netns()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left behind after panic: {left:?}");
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None);
    assert_eq!(
        alive,
        Err(nix::errno::Errno::ESRCH),
        "pid {pid} survived the panic"
    );
}
