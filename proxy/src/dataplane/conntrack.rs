//! Flushing conntrack entries of UDP flows whose endpoint went away, with the `conntrack` tool.
//!
//! Why a command: no crate on the rust-netlink stack speaks ctnetlink's delete (`netlink-packet-netfilter`
//! covers nflog only), and deleting by destination needs a dump plus one delete per entry, which `conntrack -D`
//! does. UDP has no connection end, so without this a client that keeps sending (DNS from a fixed port) stays
//! on a conntrack entry that points at a deleted endpoint until the entry times out.
//!
//! Measured in the VM tier (Debian 6.1): with `net.ipv4.vs.expire_nodest_conn=1` (which the dataplane sets) the
//! kernel (>= 5.9) already expires a deleted destination's IPVS connections and their conntrack entries, so
//! `conntrack -D` usually finds nothing left; it stays for older kernels and for the race where it runs first.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use crate::model::VirtualServerKey;

/// `conntrack -D` failed.
#[derive(Debug, thiserror::Error)]
#[error("conntrack {args:?}: {detail}")]
pub struct ConntrackError {
    /// The arguments.
    pub args: Vec<String>,
    /// Why (spawn error or stderr).
    pub detail: String,
}

/// The arguments that delete UDP entries to `key` (the virtual server) answered by `endpoint`, or every UDP
/// entry to `key` when `endpoint` is `None`.
pub fn delete_args(key: &VirtualServerKey, endpoint: Option<SocketAddr>) -> Vec<String> {
    let family = match key.address {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    };
    let mut args: Vec<String> = [
        "-D",
        "-f",
        family,
        "-p",
        "udp",
        "--orig-dst",
        &key.address.to_string(),
        "--orig-port-dst",
        &key.port.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(ep) = endpoint {
        args.extend([
            "--reply-src".to_owned(),
            ep.ip().to_string(),
            "--reply-port-src".to_owned(),
            ep.port().to_string(),
        ]);
    }
    args
}

/// Runs `conntrack` with `args` in the calling thread's network namespace. "0 flow entries" is success.
pub fn delete(args: Vec<String>) -> Result<usize, ConntrackError> {
    let out = Command::new("conntrack")
        .args(&args)
        .output()
        .map_err(|e| ConntrackError {
            args: args.clone(),
            detail: e.to_string(),
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // conntrack reports the count on stderr: "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted."
    let deleted = stderr
        .split("): ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    match deleted {
        Some(n) => Ok(n),
        None if out.status.success() => Ok(0),
        None => Err(ConntrackError {
            args,
            detail: stderr.trim().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    #[test]
    fn args_name_family_tuple_and_endpoint() {
        let key = VirtualServerKey::new("fd00:10:96::a".parse().unwrap(), 53, Protocol::Udp);
        let args = delete_args(&key, Some("[fd00:10:244:1::7]:5353".parse().unwrap()));
        assert_eq!(
            args.join(" "),
            "-D -f ipv6 -p udp --orig-dst fd00:10:96::a --orig-port-dst 53 \
             --reply-src fd00:10:244:1::7 --reply-port-src 5353"
        );
        let key = VirtualServerKey::new("198.18.240.10".parse().unwrap(), 53, Protocol::Udp);
        assert_eq!(
            delete_args(&key, None).join(" "),
            "-D -f ipv4 -p udp --orig-dst 198.18.240.10 --orig-port-dst 53"
        );
    }
}
