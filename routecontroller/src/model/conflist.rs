//! The node's CNI network config list (bridge + host-local + portmap) and merging it into an existing file.

use ipnet::IpNet;
use serde_json::{Value, json};

use super::types::IpFamily;

/// The file name kubelet's container runtime picks up (lowest name wins, hence `10-`).
pub const CONFLIST_FILE_NAME: &str = "10-fairlead.conflist";

/// CNI spec version written: 1.0.0 is accepted by the bridge, host-local and portmap plugins 1.1.1 (Debian 12).
pub const CNI_VERSION: &str = "1.0.0";

/// Inputs of the conflist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflistParams {
    /// The network `name` (the host-local data directory is named after it).
    pub network_name: String,
    /// Linux bridge name, e.g. `kube-bridge`.
    pub bridge: String,
    /// MTU of the pod interfaces, from the uplink.
    pub mtu: u32,
    /// Let a pod reach itself through a Service (hairpin on the bridge port).
    pub hairpin_mode: bool,
    /// The node's pod CIDRs, primary first: one host-local range set each.
    pub pod_cidrs: Vec<IpNet>,
}

/// Why a conflist cannot be produced or merged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConflistError {
    /// No pod CIDR: pods could get no address.
    #[error("no pod CIDR to give host-local a range")]
    NoPodCidr,
    /// An MTU the family cannot use.
    #[error("MTU {mtu} is out of range for {family} (min {min})")]
    Mtu {
        /// The MTU.
        mtu: u32,
        /// The family that limits it.
        family: IpFamily,
        /// Its minimum (68, RFC 791; 1280, RFC 8200).
        min: u32,
    },
    /// An empty bridge name or one longer than IFNAMSIZ-1.
    #[error("bridge name {0:?} is not a valid interface name")]
    BridgeName(String),
    /// The existing file is not a conflist.
    #[error("existing conflist is not usable: {0}")]
    Existing(String),
}

/// Builds the conflist.
///
/// The bridge sets `isGateway` and `isDefaultGateway`, so each pod gets a default route of each family via the
/// bridge; `ipam.routes` lists no default route, because bridge 1.1.1 then fails a dual-stack ADD with
/// "failed to add route ... file exists".
pub fn cni_conflist(p: &ConflistParams) -> Result<Value, ConflistError> {
    if p.pod_cidrs.is_empty() {
        return Err(ConflistError::NoPodCidr);
    }
    if p.bridge.is_empty() || p.bridge.len() > 15 || p.bridge.contains(['/', ' ', '\0']) {
        return Err(ConflistError::BridgeName(p.bridge.clone()));
    }
    for net in &p.pod_cidrs {
        let family = IpFamily::of_net(net);
        let min = match family {
            IpFamily::Ipv4 => 68,
            IpFamily::Ipv6 => 1280,
        };
        if p.mtu < min || p.mtu > 65535 {
            return Err(ConflistError::Mtu {
                mtu: p.mtu,
                family,
                min,
            });
        }
    }
    let ranges: Vec<Value> = p
        .pod_cidrs
        .iter()
        .map(|net| json!([{ "subnet": net.trunc().to_string() }]))
        .collect();
    Ok(json!({
        "cniVersion": CNI_VERSION,
        "name": p.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": p.bridge,
                "isGateway": true,
                "isDefaultGateway": true,
                "hairpinMode": p.hairpin_mode,
                "mtu": p.mtu,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                },
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true,
            },
        ],
    }))
}

/// Merges `desired` (from [`cni_conflist`]) into an existing conflist's JSON text.
///
/// Kept from the existing file: unknown top-level keys, unknown keys of our plugins (matched by `type`,
/// objects merged recursively, arrays replaced) and plugins of other types (after ours, in their order).
/// Default routes in the bridge's `ipam.routes` are dropped: they break dual-stack ADD with `isDefaultGateway`.
pub fn merge_conflist(existing: &str, desired: &Value) -> Result<Value, ConflistError> {
    let mut old: Value = serde_json::from_str(existing)
        .map_err(|e| ConflistError::Existing(format!("not JSON: {e}")))?;
    let old_obj = old
        .as_object_mut()
        .ok_or_else(|| ConflistError::Existing("not a JSON object".into()))?;
    let mut old_plugins: Vec<Value> = match old_obj.remove("plugins") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ConflistError::Existing("\"plugins\" is not a list".into())),
    };
    let desired_obj = desired
        .as_object()
        .ok_or_else(|| ConflistError::Existing("desired conflist is not an object".into()))?;

    let mut merged = old_obj.clone();
    for (k, v) in desired_obj {
        if k != "plugins" {
            merged.insert(k.clone(), v.clone());
        }
    }
    let mut plugins = Vec::new();
    for want in desired_obj
        .get("plugins")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ty = want.get("type");
        let mut plugin = match old_plugins.iter().position(|p| p.get("type") == ty) {
            Some(i) => {
                let mut base = old_plugins.remove(i);
                merge_value(&mut base, want);
                base
            }
            None => want.clone(),
        };
        if ty.and_then(Value::as_str) == Some("bridge") {
            drop_default_routes(&mut plugin);
        }
        plugins.push(plugin);
    }
    plugins.extend(old_plugins);
    merged.insert("plugins".into(), Value::Array(plugins));
    Ok(Value::Object(merged))
}

/// Objects merge key by key (`want` wins); anything else is replaced.
fn merge_value(base: &mut Value, want: &Value) {
    match (base, want) {
        (Value::Object(b), Value::Object(w)) => {
            for (k, v) in w {
                match b.get_mut(k) {
                    Some(slot) => merge_value(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, w) => *slot = w.clone(),
    }
}

fn drop_default_routes(bridge: &mut Value) {
    let Some(ipam) = bridge.get_mut("ipam").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(Value::Array(routes)) = ipam.get_mut("routes") else {
        return;
    };
    routes.retain(|r| {
        let dst = r.get("dst").and_then(Value::as_str).unwrap_or("");
        !matches!(dst.parse::<IpNet>(), Ok(n) if n.prefix_len() == 0)
    });
    if routes.is_empty() {
        ipam.remove("routes");
    }
}

/// Renders a conflist as the file's text (pretty JSON and a final newline).
pub fn render_conflist(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}
