//! The bridge CNI network the runtime attaches pods to, written for the node's podCIDR.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::json;

/// File name of the conflist; `10-` sorts it before configs a distribution may ship.
pub const CONFLIST_NAME: &str = "10-kubelet-bridge.conflist";

/// Parses `a.b.c.d/len` (IPv4 only for now) into its network address and prefix length.
pub fn parse_ipv4_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    Some((Ipv4Addr::from(u32::from(addr) & mask), len))
}

/// The bridge + host-local + portmap (+ loopback, which the runtime adds itself) conflist for
/// `pod_cidr`; the bridge is the pods' gateway (first address of the range). No `ipMasq`: the
/// plugin would masquerade pod-to-pod traffic to other nodes too; the kubelet's own rule
/// ([`crate::masquerade`]) masquerades only what leaves the pod network.
pub fn bridge_conflist(
    pod_cidr: &str,
    bridge: &str,
    ipam_data_dir: &Path,
) -> Option<serde_json::Value> {
    let (network, len) = parse_ipv4_cidr(pod_cidr)?;
    let gateway = Ipv4Addr::from(u32::from(network) + 1);
    Some(json!({
        "cniVersion": "0.4.0",
        "name": bridge,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_data_dir,
                    "ranges": [[{"subnet": format!("{network}/{len}"), "gateway": gateway.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"},
        ],
    }))
}

/// Writes the conflist when its content changed (atomically: the runtime watches the directory).
/// Returns whether the file was (re)written.
pub fn write_conflist(dir: &Path, config: &serde_json::Value) -> std::io::Result<bool> {
    let path: PathBuf = dir.join(CONFLIST_NAME);
    let text = serde_json::to_string_pretty(config).map_err(std::io::Error::other)?;
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{CONFLIST_NAME}.tmp"));
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_normalized_and_validated() {
        assert_eq!(
            parse_ipv4_cidr("10.244.1.7/24"),
            Some((Ipv4Addr::new(10, 244, 1, 0), 24))
        );
        assert_eq!(parse_ipv4_cidr("10.244.1.0/31"), None);
        assert_eq!(parse_ipv4_cidr("10.244.1.0"), None);
        assert_eq!(parse_ipv4_cidr("fd00::/64"), None);
        assert_eq!(
            parse_ipv4_cidr("10.0.0.0/0"),
            Some((Ipv4Addr::UNSPECIFIED, 0))
        );
    }

    #[test]
    fn conflist_uses_the_first_address_as_gateway() {
        let c = bridge_conflist("10.88.3.0/24", "kb0", Path::new("/var/lib/cni")).expect("valid");
        assert_eq!(c["plugins"][0]["bridge"], "kb0");
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["gateway"],
            "10.88.3.1"
        );
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.88.3.0/24"
        );
        assert_eq!(c["plugins"][1]["type"], "portmap");
        // Pods talk to pods without NAT: the kubelet's masquerade chain exempts pod ranges.
        assert_eq!(c["plugins"][0]["ipMasq"], false);
    }

    #[test]
    fn conflist_is_written_only_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = bridge_conflist("10.88.3.0/24", "kb0", dir.path()).expect("valid");
        assert!(write_conflist(dir.path(), &c).expect("write"));
        assert!(!write_conflist(dir.path(), &c).expect("write"));
        let d = bridge_conflist("10.88.4.0/24", "kb0", dir.path()).expect("valid");
        assert!(write_conflist(dir.path(), &d).expect("write"));
    }
}
