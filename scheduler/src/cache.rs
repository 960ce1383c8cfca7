//! The scheduler cache: nodes and the pods assigned to them, including assumed pods whose
//! binding is in flight, so their resources count before the watch confirms them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{pod_key, NodeInfo, Snapshot};

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<String, Arc<NodeInfo>>,
    /// Every assigned pod by key, with its node.
    pods: HashMap<String, Arc<Pod>>,
    assumed: HashSet<String>,
}

/// Shared node/pod state.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces a node, keeping its pods.
    pub fn upsert_node(&self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut inner = self.lock();
        let mut ni = NodeInfo::new(node);
        for p in inner.pods.values() {
            if node_of(p) == Some(name.as_str()) {
                ni.add_pod(p.clone());
            }
        }
        inner.nodes.insert(name, Arc::new(ni));
    }

    /// Removes a node.
    pub fn remove_node(&self, name: &str) {
        self.lock().nodes.remove(name);
    }

    /// Names of the known nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.lock().nodes.keys().cloned().collect()
    }

    fn remove_pod_locked(inner: &mut Inner, key: &str) {
        if let Some(old) = inner.pods.remove(key) {
            if let Some(n) = node_of(&old).map(str::to_string) {
                if let Some(ni) = inner.nodes.get_mut(&n) {
                    Arc::make_mut(ni).remove_pod(key);
                }
            }
        }
    }

    fn add_pod_locked(inner: &mut Inner, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        Self::remove_pod_locked(inner, &key);
        if let Some(n) = node_of(&pod).map(str::to_string) {
            if let Some(ni) = inner.nodes.get_mut(&n) {
                Arc::make_mut(ni).add_pod(pod.clone());
            }
        }
        inner.pods.insert(key, pod);
    }

    /// Adds or updates an assigned pod seen by the informer (confirming an assumed one).
    pub fn upsert_pod(&self, pod: Arc<Pod>) {
        let mut inner = self.lock();
        inner.assumed.remove(&pod_key(&pod));
        Self::add_pod_locked(&mut inner, pod);
    }

    /// Removes a pod (deleted or terminated).
    pub fn remove_pod(&self, key: &str) {
        let mut inner = self.lock();
        inner.assumed.remove(key);
        Self::remove_pod_locked(&mut inner, key);
    }

    /// Counts `pod` on `node` now, before the binding is confirmed.
    pub fn assume(&self, pod: &Pod, node: &str) {
        let mut assumed = pod.clone();
        assumed.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        let mut inner = self.lock();
        inner.assumed.insert(pod_key(pod));
        Self::add_pod_locked(&mut inner, Arc::new(assumed));
    }

    /// Undoes `assume` after a failed binding.
    pub fn forget(&self, key: &str) {
        let mut inner = self.lock();
        if inner.assumed.remove(key) {
            Self::remove_pod_locked(&mut inner, key);
        }
    }

    /// Whether a pod key is assigned (bound or assumed).
    pub fn has_pod(&self, key: &str) -> bool {
        self.lock().pods.contains_key(key)
    }

    /// A consistent view of all nodes for one cycle.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            nodes: self.lock().nodes.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::helpers::testing::{node, pod_with_requests};
    use serde_json::json;

    #[test]
    fn assumed_pods_count_until_forgotten_and_survive_node_updates() {
        let cache = Cache::default();
        cache.upsert_node(Arc::new(node("a", "2", "2Gi", json!({}), json!([]))));
        let p = pod_with_requests("p", "1", "1Gi");
        cache.assume(&p, "a");
        assert_eq!(cache.snapshot().nodes[0].requested.milli_cpu, 1000);
        cache.upsert_node(Arc::new(node("a", "4", "2Gi", json!({}), json!([]))));
        let snap = cache.snapshot();
        assert_eq!(snap.nodes[0].requested.milli_cpu, 1000);
        assert_eq!(snap.nodes[0].allocatable.milli_cpu, 4000);
        cache.forget("default/p");
        assert_eq!(cache.snapshot().nodes[0].requested.milli_cpu, 0);
        // The old snapshot is unaffected.
        assert_eq!(snap.nodes[0].pods.len(), 1);
    }
}
