//! ImageLocality: prefers nodes that already have the pod's images, scaled by how widely the
//! image is spread.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{
    normalize_image, CycleState, NodeInfo, Plugin, ScorePlugin, Snapshot, Status, MAX_NODE_SCORE,
};

/// The plugin's name.
pub const NAME: &str = "ImageLocality";
const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;
const STATE_KEY: &str = "PreScoreImageLocality";

/// The Score plugin; needs the node count and image spread, computed in PreScore.
pub struct ImageLocality;

struct Spread {
    total_nodes: i64,
    nodes_with: std::collections::HashMap<String, i64>,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_score(&self) -> Option<&dyn crate::framework::PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

fn images(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .filter_map(|c| c.image.as_deref())
        .map(normalize_image)
        .collect()
}

impl crate::framework::PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _nodes: &[std::sync::Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let mut nodes_with = std::collections::HashMap::new();
        for image in images(pod) {
            let n = snapshot
                .nodes
                .iter()
                .filter(|ni| ni.image_sizes.contains_key(&image))
                .count() as i64;
            nodes_with.insert(image, n);
        }
        state.write(
            STATE_KEY,
            Spread {
                total_nodes: snapshot.nodes.len() as i64,
                nodes_with,
            },
        );
        Status::success()
    }
}

/// Maps the summed scaled image sizes to 0..=100 for a pod with `containers` containers.
pub fn calculate_priority(sum: i64, containers: i64) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1);
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let images = images(pod);
        let spread = state.read::<Spread>(STATE_KEY);
        let mut sum = 0i64;
        for image in &images {
            if let Some(size) = node.image_sizes.get(image) {
                let (with, total) = spread
                    .map(|s| (s.nodes_with.get(image).copied().unwrap_or(1), s.total_nodes))
                    .unwrap_or((1, 1));
                sum += (*size as f64 * (with as f64 / total.max(1) as f64)) as i64;
            }
        }
        Ok(calculate_priority(sum, images.len() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_scales_between_thresholds() {
        let cases = [
            ("tiny", 10 * MB, 1, 0),
            ("max", 2000 * MB, 1, 100),
            ("half", 23 * MB + (977 * MB) / 2, 1, 50),
        ];
        for (name, sum, n, want) in cases {
            assert_eq!(calculate_priority(sum, n), want, "{name}");
        }
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("gcr.io/x/y:1"), "gcr.io/x/y:1");
    }
}
