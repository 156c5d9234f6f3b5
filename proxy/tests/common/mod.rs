//! Shared helpers: YAML fixtures in, readable goldens out, short queries on a desired state.

#![allow(dead_code)] // each test binary uses a different subset

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proxy::model::{
    DesiredState, NodeContext, NodePortAddresses, Protocol, VirtualServer, VirtualServerKey,
    desired_state,
};

/// The objects of one fixture file.
pub struct Objects {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
}

impl Objects {
    pub fn desired(&self, node: &NodeContext) -> DesiredState {
        desired_state(&self.services, &self.slices, node)
    }

    pub fn service_mut(&mut self, name: &str) -> &mut Service {
        self.services
            .iter_mut()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no service {name} in fixture"))
    }

    pub fn slice_mut(&mut self, name: &str) -> &mut EndpointSlice {
        self.slices
            .iter_mut()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no slice {name} in fixture"))
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/model")
}

/// Parses `fixtures/model/<name>.yaml`: a multi-document stream of Services and EndpointSlices.
pub fn load(name: &str) -> Objects {
    let path = fixtures().join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut objects = Objects {
        services: Vec::new(),
        slices: Vec::new(),
    };
    for document in serde_norway::Deserializer::from_str(&text) {
        let value: serde_norway::Value = serde::Deserialize::deserialize(document)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "Service" => objects.services.push(
                serde_norway::from_value(value)
                    .unwrap_or_else(|e| panic!("{}: Service: {e}", path.display())),
            ),
            "EndpointSlice" => objects.slices.push(
                serde_norway::from_value(value)
                    .unwrap_or_else(|e| panic!("{}: EndpointSlice: {e}", path.display())),
            ),
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
    objects
}

/// This node in the fixtures: `node-a` in `zone-a`, with one address of each family given, plus the addresses
/// a real node also has (a second address per family) so NodePort filtering has something to filter.
pub fn node(addresses: &[&str]) -> NodeContext {
    NodeContext {
        name: "node-a".into(),
        zone: Some("zone-a".into()),
        addresses: addresses.iter().map(|a| ip(a)).collect(),
        node_port_addresses: NodePortAddresses::all(),
    }
}

pub fn node_dual() -> NodeContext {
    node(&["fd00:1::a", "198.19.1.10"])
}

pub fn node_ipv6() -> NodeContext {
    node(&["fd00:1::a"])
}

pub fn node_ipv4() -> NodeContext {
    node(&["198.19.1.10"])
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn key(address: &str, port: u16, protocol: Protocol) -> VirtualServerKey {
    VirtualServerKey::new(ip(address), port, protocol)
}

pub fn tcp(address: &str, port: u16) -> VirtualServerKey {
    key(address, port, Protocol::Tcp)
}

/// The virtual server, failing the test when it is missing.
pub fn vs<'a>(state: &'a DesiredState, key: &VirtualServerKey) -> &'a VirtualServer {
    state
        .ipvs
        .virtual_servers
        .get(key)
        .unwrap_or_else(|| panic!("no virtual server {key}; have:\n{}", render(state)))
}

/// Destinations of a virtual server as sorted strings (`[fd00::1]:80`), for compact assertions.
pub fn dests(state: &DesiredState, key: &VirtualServerKey) -> Vec<String> {
    vs(state, key)
        .destinations
        .keys()
        .map(ToString::to_string)
        .collect()
}

/// A readable rendering of a desired state, the golden format.
pub fn render(state: &DesiredState) -> String {
    let mut out = String::new();
    for (key, server) in &state.ipvs.virtual_servers {
        let origin = state
            .origins
            .get(key)
            .map(|o| format!("{:?} {}", o.kind, o.service_port))
            .unwrap_or_default();
        let persistence = server
            .persistence
            .map(|p| format!(" persistent {}", p.timeout_seconds))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{key} {}{persistence} <- {origin}",
            server.scheduler.name()
        );
        for (destination, weight) in &server.destinations {
            let _ = writeln!(out, "  -> {destination} weight {weight}");
        }
    }
    let list = |addrs: Vec<IpAddr>| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(out, "vips: {}", list(state.vips.iter().collect()));
    let _ = writeln!(
        out,
        "node port addresses: {}",
        list(state.node_port_addresses.iter().collect())
    );
    for (port, check) in &state.health_check_node_ports {
        let _ = writeln!(
            out,
            "health check {port}: {} local endpoints {}",
            check.service, check.local_endpoints
        );
    }
    for warning in &state.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

/// Compares `text` with `fixtures/model/<name>.golden`; `FAIRLEAD_BLESS=1` rewrites the golden instead.
pub fn golden(name: &str, text: &str) {
    let path = fixtures().join(format!("{name}.golden"));
    if std::env::var_os("FAIRLEAD_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with FAIRLEAD_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        expected,
        text,
        "{} differs (FAIRLEAD_BLESS=1 regenerates it after review)",
        path.display()
    );
}
