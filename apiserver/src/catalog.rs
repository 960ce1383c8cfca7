//! The resources this server currently serves — built-ins plus those of established
//! CustomResourceDefinitions — each with its strategy and the watch cache of its storage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::crd::CustomResource;
use crate::registry::Strategy;
use crate::resources::ResourceInfo;
use crate::storage::cacher::Cacher;

/// One served (group, version, resource).
pub struct Entry {
    pub info: Arc<ResourceInfo>,
    pub strategy: Arc<dyn Strategy>,
    pub cacher: Arc<Cacher>,
    /// The definition behind a custom resource.
    pub custom: Option<Arc<CustomResource>>,
}

impl Entry {
    pub fn group(&self) -> &str {
        &self.info.group
    }
    pub fn resource(&self) -> &str {
        &self.info.resource
    }
    /// Store key of an object of this resource.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.info.namespaced {
            format!("{}/{namespace}/{name}", self.info.storage_prefix)
        } else {
            format!("{}/{name}", self.info.storage_prefix)
        }
    }
    /// Key prefix of a namespace's objects (or of all objects when `namespace` is empty).
    pub fn scope_prefix(&self, namespace: &str) -> String {
        if self.info.namespaced && !namespace.is_empty() {
            format!("{}/{namespace}/", self.info.storage_prefix)
        } else {
            format!("{}/", self.info.storage_prefix)
        }
    }
}

/// Every served resource.
#[derive(Default)]
pub struct Catalog {
    entries: RwLock<Vec<Arc<Entry>>>,
    /// Caches by storage prefix, shared by resources stored together.
    cachers: RwLock<HashMap<String, Arc<Cacher>>>,
    /// Bumped on every change of the served set (documents derived from it are rebuilt).
    generation: AtomicU64,
}

impl Catalog {
    /// Changes whenever a resource is added or removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|e| {
                e.info.group == group && e.info.version == version && e.info.resource == resource
            })
            .cloned()
    }

    /// Any served version of a group's resource (for cross-resource lookups like namespaces).
    pub fn find_any(&self, group: &str, resource: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|e| e.info.group == group && e.info.resource == resource)
            .cloned()
    }

    pub fn cacher(&self, prefix: &str) -> Option<Arc<Cacher>> {
        self.cachers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
            .cloned()
    }

    pub fn cachers(&self) -> Vec<Arc<Cacher>> {
        self.cachers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn add_cacher(&self, prefix: &str, cacher: Arc<Cacher>) {
        self.cachers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prefix.to_string(), cacher);
    }

    pub fn add(&self, entry: Entry) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| {
            !(e.info.group == entry.info.group
                && e.info.version == entry.info.version
                && e.info.resource == entry.info.resource)
        });
        entries.push(Arc::new(entry));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Drops every custom resource of `group`/`resource` (its CRD went away or changed).
    pub fn remove_custom(&self, group: &str, resource: &str) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e| !(e.info.custom && e.info.group == group && e.info.resource == resource));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Group -> versions served, in a stable order (built-in groups first as registered).
    pub fn group_versions(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for e in self.all() {
            match out.iter_mut().find(|(g, _)| *g == e.info.group) {
                Some((_, vs)) => {
                    if !vs.contains(&e.info.version) {
                        vs.push(e.info.version.clone());
                    }
                }
                None => out.push((e.info.group.clone(), vec![e.info.version.clone()])),
            }
        }
        out
    }
}

impl crate::source::ObjectSource for Catalog {
    fn list(&self, group: &str, resource: &str, namespace: &str) -> Vec<Arc<serde_json::Value>> {
        let Some(entry) = self.find_any(group, resource) else {
            return Vec::new();
        };
        entry
            .cacher
            .list(&entry.scope_prefix(namespace), None)
            .0
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    fn get(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<serde_json::Value>> {
        let entry = self.find_any(group, resource)?;
        entry.cacher.get(&entry.key(namespace, name)).0
    }
}
