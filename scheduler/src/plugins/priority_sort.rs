//! PrioritySort: higher `spec.priority` first, then earlier queue timestamp.

use std::cmp::Reverse;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Plugin, QueueSortKey, QueueSortPlugin};

/// The plugin's name.
pub const NAME: &str = "PrioritySort";

/// The QueueSort plugin.
pub struct PrioritySort;

/// The pod's priority (0 when unset).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        Some(self)
    }
}

impl QueueSortPlugin for PrioritySort {
    fn sort_key(&self, pod: &Pod, timestamp: Instant) -> QueueSortKey {
        QueueSortKey(Reverse(pod_priority(pod)), timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::helpers::testing::pod;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn higher_priority_then_older_pops_first() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let low = pod("low", json!({}), json!({"priority": 1}));
        let high = pod("high", json!({}), json!({"priority": 10}));
        assert!(
            PrioritySort.less(&high, t1, &low, t0),
            "priority wins over age"
        );
        assert!(
            PrioritySort.less(&low, t0, &low, t1),
            "older first on equal priority"
        );
        assert!(!PrioritySort.less(&low, t1, &low, t0));
    }
}
