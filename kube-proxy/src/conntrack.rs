//! Deletes the UDP conntrack entries of removed endpoints, one targeted `conntrack -D` each.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::changes::{Protocol, ServicePort};

/// One deletion: flows to `dst` (a Service IP) or to `node_port`, DNATed to `endpoint`; or, with
/// no endpoint, every flow to the Service IP (it had no endpoints, so they hit the reject).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stale {
    ServiceIp {
        dst: Ipv4Addr,
        port: u16,
        endpoint: Option<Ipv4Addr>,
    },
    NodePort {
        port: u16,
        endpoint: Ipv4Addr,
    },
}

/// What to delete when a Service's UDP ports go from `old` to `new`.
pub fn stale(old: &[ServicePort], new: &[ServicePort]) -> BTreeSet<Stale> {
    let mut out = BTreeSet::new();
    for o in old.iter().filter(|p| p.protocol == Protocol::Udp) {
        let n = new.iter().find(|n| {
            n.port_name == o.port_name && n.protocol == o.protocol && n.cluster_ip == o.cluster_ip
        });
        let kept: BTreeSet<(Ipv4Addr, u16)> = n
            .map(|n| {
                n.cluster_endpoints()
                    .iter()
                    .map(|e| (e.ip, e.port))
                    .collect()
            })
            .unwrap_or_default();
        for e in o.cluster_endpoints() {
            if kept.contains(&(e.ip, e.port)) {
                continue;
            }
            for dst in std::iter::once(o.cluster_ip).chain(o.external_ips.iter().copied()) {
                out.insert(Stale::ServiceIp {
                    dst,
                    port: o.port,
                    endpoint: Some(e.ip),
                });
            }
            if let Some(np) = o.node_port {
                out.insert(Stale::NodePort {
                    port: np,
                    endpoint: e.ip,
                });
            }
        }
    }
    // A UDP Service that just got endpoints: entries created while it rejected are stale.
    for n in new.iter().filter(|p| p.protocol == Protocol::Udp) {
        let had = old
            .iter()
            .find(|o| o.port_name == n.port_name && o.protocol == n.protocol)
            .map(|o| !o.cluster_endpoints().is_empty())
            .unwrap_or(false);
        if !had && !n.cluster_endpoints().is_empty() {
            out.insert(Stale::ServiceIp {
                dst: n.cluster_ip,
                port: n.port,
                endpoint: None,
            });
        }
    }
    out
}

/// Runs `conntrack -D` for each entry; "0 flow entries" is not an error.
pub fn delete(entries: &BTreeSet<Stale>) {
    for e in entries {
        let args: Vec<String> = match e {
            Stale::ServiceIp {
                dst,
                port,
                endpoint,
            } => {
                let mut a = vec![
                    "-D".into(),
                    "-p".into(),
                    "udp".into(),
                    "--orig-dst".into(),
                    dst.to_string(),
                    "--orig-port-dst".into(),
                    port.to_string(),
                ];
                if let Some(ep) = endpoint {
                    a.extend(["--dst-nat".into(), ep.to_string()]);
                }
                a
            }
            Stale::NodePort { port, endpoint } => vec![
                "-D".into(),
                "-p".into(),
                "udp".into(),
                "--orig-port-dst".into(),
                port.to_string(),
                "--dst-nat".into(),
                endpoint.to_string(),
            ],
        };
        match Command::new("conntrack")
            .args(&args)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {
                tracing::debug!(?args, "deleted stale conntrack entries")
            }
            // Exit 1 with "0 flow entries have been deleted" just means there were none.
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "failed to run conntrack"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::Endpoint;

    fn udp(eps: &[[u8; 4]]) -> ServicePort {
        ServicePort {
            namespace: "ns".into(),
            name: "dns".into(),
            port_name: "".into(),
            protocol: Protocol::Udp,
            cluster_ip: Ipv4Addr::new(10, 96, 0, 10),
            port: 53,
            node_port: None,
            external_ips: vec![],
            affinity_seconds: None,
            external_local: false,
            internal_local: false,
            endpoints: eps
                .iter()
                .map(|ip| Endpoint {
                    ip: Ipv4Addr::from(*ip),
                    port: 53,
                    ready: true,
                    serving: true,
                    terminating: false,
                    local: false,
                })
                .collect(),
        }
    }

    #[test]
    fn only_removed_endpoints_are_stale() {
        let s = stale(
            &[udp(&[[10, 0, 0, 1], [10, 0, 0, 2]])],
            &[udp(&[[10, 0, 0, 2]])],
        );
        assert_eq!(
            s.into_iter().collect::<Vec<_>>(),
            vec![Stale::ServiceIp {
                dst: Ipv4Addr::new(10, 96, 0, 10),
                port: 53,
                endpoint: Some(Ipv4Addr::new(10, 0, 0, 1)),
            }]
        );
    }

    #[test]
    fn first_endpoint_clears_entries_of_the_rejecting_service() {
        let s = stale(&[udp(&[])], &[udp(&[[10, 0, 0, 1]])]);
        assert_eq!(s.len(), 1);
        assert!(matches!(
            s.first(),
            Some(Stale::ServiceIp { endpoint: None, .. })
        ));
    }
}
