//! Pods: network namespaces wired into their node by the real CNI plugins, executed as a kubelet executes them.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::error::{HarnessError, Result};
use crate::exec::{ns_command, run_with_stdin};
use crate::plan::Family;

/// Where Debian's containernetworking-plugins live (also the CNI_PATH given to plugins).
pub const CNI_PATH: &str = "/usr/lib/cni";
/// The pod's interface, as kubelet names it.
pub const POD_IFNAME: &str = "eth0";
/// The CNI version the harness speaks (bridge 1.1.1 supports it).
pub const CNI_VERSION: &str = "1.0.0";

/// A pod: its namespace, and the addresses CNI gave it.
#[derive(Clone, Debug)]
pub struct Pod {
    /// The pod's network namespace.
    pub netns: String,
    /// The namespace of the node it runs on (plugins are executed there).
    pub node_netns: String,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// Its addresses from the CNI result, in result order (the conflist's range order: primary family first).
    pub ips: Vec<IpNet>,
    /// The final CNI result of ADD (passed back as prevResult on DEL).
    pub result: Value,
    /// The network configuration list it was added with.
    pub conflist: Value,
}

impl Pod {
    /// Its address of `family`.
    pub fn ip(&self, family: Family) -> Option<IpAddr> {
        self.ips
            .iter()
            .map(IpNet::addr)
            .find(|a| Family::of(*a) == family)
    }

    /// CNI DEL of the conflist (reverse plugin order), then of loopback. The namespace stays (the guard deletes it).
    pub fn delete(&self) -> Result<()> {
        let rt = Runtime {
            node_netns: &self.node_netns,
            pod_netns: &self.netns,
            container_id: &self.container_id,
        };
        rt.del_list(&self.conflist, POD_IFNAME, Some(&self.result))?;
        rt.del_list(&loopback_conf(), "lo", None)
    }
}

/// A bridge + host-local conflist as fairlead writes it: one host-local range per pod CIDR (in the given order),
/// `isDefaultGateway` (which gives a default route per family) and no default routes in `ipam.routes` (bridge
/// 1.1.1 fails a dual-stack ADD with "file exists" when both are set). IPAM state goes to `data_dir`.
pub fn bridge_conflist(name: &str, pod_cidrs: &[IpNet], data_dir: &Path) -> Value {
    let ranges: Vec<Value> = pod_cidrs
        .iter()
        .map(|c| json!([{ "subnet": c.trunc().to_string() }]))
        .collect();
    json!({
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": data_dir.to_string_lossy(),
                "ranges": ranges,
            },
        }],
    })
}

/// Reads a `.conflist` (or single-plugin `.conf`) file.
pub fn load_conflist(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| HarnessError::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| HarnessError::Parse {
        what: path.display().to_string(),
        detail: e.to_string(),
    })
}

fn loopback_conf() -> Value {
    json!({ "cniVersion": CNI_VERSION, "name": "cni-loopback", "plugins": [{ "type": "loopback" }] })
}

/// Runs CNI ADD for `lo` (loopback) and `eth0` (`conflist`) of pod namespace `pod_netns`, plugins executed inside
/// `node_netns`, and returns the pod.
pub fn add_pod(
    node_netns: &str,
    pod_netns: &str,
    container_id: &str,
    conflist: &Value,
) -> Result<Pod> {
    let rt = Runtime {
        node_netns,
        pod_netns,
        container_id,
    };
    rt.add_list(&loopback_conf(), "lo")?;
    let result = rt.add_list(conflist, POD_IFNAME)?;
    let ips = result_ips(&result)?;
    Ok(Pod {
        netns: pod_netns.to_owned(),
        node_netns: node_netns.to_owned(),
        container_id: container_id.to_owned(),
        ips,
        result,
        conflist: conflist.clone(),
    })
}

/// The addresses of a CNI result (`ips[].address`).
pub fn result_ips(result: &Value) -> Result<Vec<IpNet>> {
    let bad = |detail: String| HarnessError::Parse {
        what: "CNI result".into(),
        detail,
    };
    result
        .get("ips")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("no ips in {result}")))?
        .iter()
        .map(|ip| {
            let s = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("ip without address: {ip}")))?;
            s.parse::<IpNet>()
                .map_err(|e| bad(format!("address {s}: {e}")))
        })
        .collect()
}

/// What a kubelet passes every plugin of one pod.
struct Runtime<'a> {
    node_netns: &'a str,
    pod_netns: &'a str,
    container_id: &'a str,
}

/// The plugins of a conflist, each with the list's `name` and `cniVersion` injected (a single `.conf` is a list of one).
fn plugins(conflist: &Value) -> Result<Vec<Value>> {
    let list = match conflist.get("plugins") {
        Some(Value::Array(p)) => p.clone(),
        Some(other) => {
            return Err(HarnessError::Parse {
                what: "conflist".into(),
                detail: format!("plugins is not a list: {other}"),
            });
        }
        None => vec![conflist.clone()],
    };
    let mut out = Vec::new();
    for mut p in list {
        let obj = p.as_object_mut().ok_or_else(|| HarnessError::Parse {
            what: "conflist".into(),
            detail: "plugin is not an object".into(),
        })?;
        for key in ["name", "cniVersion"] {
            if let Some(v) = conflist.get(key) {
                obj.insert(key.into(), v.clone());
            }
        }
        out.push(p);
    }
    Ok(out)
}

impl Runtime<'_> {
    fn add_list(&self, conflist: &Value, ifname: &str) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for p in plugins(conflist)? {
            let out = self.exec("ADD", ifname, p, prev.as_ref())?;
            prev = Some(serde_json::from_str(&out).map_err(|e| HarnessError::Parse {
                what: "CNI ADD result".into(),
                detail: format!("{e}: {out}"),
            })?);
        }
        prev.ok_or_else(|| HarnessError::Parse {
            what: "conflist".into(),
            detail: "no plugins".into(),
        })
    }

    fn del_list(&self, conflist: &Value, ifname: &str, prev: Option<&Value>) -> Result<()> {
        for p in plugins(conflist)?.into_iter().rev() {
            self.exec("DEL", ifname, p, prev)?;
        }
        Ok(())
    }

    fn exec(
        &self,
        command: &'static str,
        ifname: &str,
        mut conf: Value,
        prev: Option<&Value>,
    ) -> Result<String> {
        let plugin = conf
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| HarnessError::Parse {
                what: "CNI plugin config".into(),
                detail: format!("no type: {conf}"),
            })?
            .to_owned();
        if let (Some(prev), Some(obj)) = (prev, conf.as_object_mut()) {
            obj.insert("prevResult".into(), prev.clone());
        }
        let path = Path::new(CNI_PATH).join(&plugin);
        let mut cmd = ns_command(self.node_netns, &path.to_string_lossy());
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", format!("/var/run/netns/{}", self.pod_netns))
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", CNI_PATH);
        let stdin = conf.to_string();
        run_with_stdin(&mut cmd, Some(stdin.as_bytes())).map_err(|e| match e {
            // The plugin's JSON error object is on stdout.
            HarnessError::Command { stdout, stderr, .. } => HarnessError::Cni {
                plugin,
                command,
                message: format!("{} {}", stdout.trim(), stderr).trim().to_owned(),
            },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_has_one_range_per_cidr_and_no_default_routes() {
        let cidrs: Vec<IpNet> = vec![
            "fd00:10:244:1::/64".parse().unwrap(),
            "198.19.1.0/24".parse().unwrap(),
        ];
        let c = bridge_conflist("k", &cidrs, Path::new("/tmp/x"));
        let ipam = &c["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"][0][0]["subnet"], "fd00:10:244:1::/64");
        assert_eq!(ipam["ranges"][1][0]["subnet"], "198.19.1.0/24");
        assert!(ipam.get("routes").is_none());
        assert_eq!(c["plugins"][0]["isDefaultGateway"], true);
        assert_eq!(ipam["dataDir"], "/tmp/x");
    }

    #[test]
    fn plugins_get_name_and_version() {
        let c = bridge_conflist("k", &[], Path::new("/tmp/x"));
        let p = plugins(&c).unwrap();
        assert_eq!(p[0]["name"], "k");
        assert_eq!(p[0]["cniVersion"], CNI_VERSION);
        assert!(plugins(&json!({"plugins": 3})).is_err());
    }

    #[test]
    fn result_ips_parses_and_rejects() {
        let r = json!({"ips": [{"address": "198.19.1.2/24"}, {"address": "fd00:10:244:1::2/64"}]});
        let ips = result_ips(&r).unwrap();
        assert_eq!(ips[1].to_string(), "fd00:10:244:1::2/64");
        assert!(result_ips(&json!({"ips": [{"address": "nope"}]})).is_err());
        assert!(result_ips(&json!({})).is_err());
    }
}
