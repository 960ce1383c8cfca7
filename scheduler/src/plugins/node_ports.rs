//! NodePorts: rejects nodes where a requested host port is already taken.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{host_ports, CycleState, FilterPlugin, HostPort, NodeInfo, Plugin, Status};

/// The plugin's name.
pub const NAME: &str = "NodePorts";
/// The reason for a port conflict.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The Filter plugin.
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

/// Whether two host ports collide: same protocol and port, and the same IP or a wildcard.
pub fn conflicts(a: &HostPort, b: &HostPort) -> bool {
    a.protocol == b.protocol
        && a.port == b.port
        && (a.ip == b.ip || a.ip == "0.0.0.0" || b.ip == "0.0.0.0")
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let wanted = host_ports(pod);
        if wanted
            .iter()
            .any(|w| node.used_ports.iter().any(|u| conflicts(w, u)))
        {
            Status::unschedulable(REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::helpers::testing::{node, node_info, pod};
    use serde_json::json;

    fn port_pod(port: i32, ip: &str, proto: &str) -> Pod {
        pod(
            "p",
            json!({}),
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": proto}]}]}),
        )
    }

    #[test]
    fn host_port_conflicts() {
        let ni = node_info(
            node("a", "1", "1Gi", json!({}), json!([])),
            vec![port_pod(8080, "", "TCP")],
        );
        let cases = [
            ("same port", port_pod(8080, "", "TCP"), Code::Unschedulable),
            (
                "specific ip vs wildcard",
                port_pod(8080, "10.0.0.1", "TCP"),
                Code::Unschedulable,
            ),
            ("other protocol", port_pod(8080, "", "UDP"), Code::Success),
            ("other port", port_pod(9090, "", "TCP"), Code::Success),
        ];
        for (name, p, code) in cases {
            assert_eq!(
                NodePorts.filter(&CycleState::default(), &p, &ni).code,
                code,
                "{name}"
            );
        }
    }
}
