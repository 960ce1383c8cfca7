//! SchedulingGates: keeps pods with `spec.schedulingGates` out of the active queue.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Plugin, PreEnqueuePlugin, Status};

/// The plugin's name.
pub const NAME: &str = "SchedulingGates";

/// The PreEnqueue plugin.
pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        let gates: Vec<&str> = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .into_iter()
            .flatten()
            .map(|g| g.name.as_str())
            .collect();
        if gates.is_empty() {
            Status::success()
        } else {
            Status::unresolvable(format!(
                "waiting for scheduling gates: [{}]",
                gates.join(" ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::helpers::testing::pod;
    use serde_json::json;

    #[test]
    fn gated_pods_wait() {
        let cases = [
            ("no gates", json!({}), Code::Success),
            (
                "gated",
                json!({"schedulingGates": [{"name": "a"}, {"name": "b"}]}),
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, spec, code) in cases {
            let s = SchedulingGates.pre_enqueue(&pod("p", json!({}), spec));
            assert_eq!(s.code, code, "{name}");
        }
        let s = SchedulingGates.pre_enqueue(&pod(
            "p",
            json!({}),
            json!({"schedulingGates": [{"name": "a"}, {"name": "b"}]}),
        ));
        assert_eq!(s.message(), "waiting for scheduling gates: [a b]");
    }
}
