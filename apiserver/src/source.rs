//! Read-only, synchronous access to stored objects as the watch caches hold them, for the
//! parts of the server that must look at other objects on every request (authentication of
//! bound tokens, authorization, admission).

use std::sync::Arc;

use serde_json::Value;

/// Objects by group and resource, from memory. Reads never block on the store; what they see
/// may lag the store by the watch delay.
pub trait ObjectSource: Send + Sync {
    /// Every object of `group`/`resource` in `namespace`; "" means every namespace for a
    /// namespaced resource, and is the only namespace of a cluster-scoped one.
    fn list(&self, group: &str, resource: &str, namespace: &str) -> Vec<Arc<Value>>;

    /// One object; `namespace` is "" for cluster-scoped resources.
    fn get(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Arc<Value>>;
}

/// An in-memory source for tests: objects keyed by (group, resource, namespace, name).
#[derive(Default, Clone)]
pub struct MemorySource {
    objects: std::collections::BTreeMap<(String, String, String, String), Arc<Value>>,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `obj`, reading namespace and name from its metadata.
    pub fn insert(&mut self, group: &str, resource: &str, obj: Value) {
        let meta = &obj["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or("").to_owned();
        let name = meta["name"].as_str().unwrap_or("").to_owned();
        self.objects.insert(
            (group.to_owned(), resource.to_owned(), ns, name),
            Arc::new(obj),
        );
    }

    pub fn remove(&mut self, group: &str, resource: &str, namespace: &str, name: &str) {
        self.objects.remove(&(
            group.to_owned(),
            resource.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        ));
    }
}

impl ObjectSource for MemorySource {
    fn list(&self, group: &str, resource: &str, namespace: &str) -> Vec<Arc<Value>> {
        self.objects
            .iter()
            .filter(|((g, r, ns, _), _)| {
                g == group && r == resource && (namespace.is_empty() || ns == namespace)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn get(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&(
                group.to_owned(),
                resource.to_owned(),
                namespace.to_owned(),
                name.to_owned(),
            ))
            .cloned()
    }
}
