//! The in-tree plugins and the registry mapping their names to constructors.

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod helpers;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod volume_binding;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::framework::Plugin;

/// What a plugin constructor gets: its args from `pluginConfig` and an apiserver client
/// (absent in unit tests).
pub struct PluginContext {
    /// `pluginConfig[].args` for this plugin, or null.
    pub args: serde_json::Value,
    /// The scheduler's client.
    pub client: Option<kube::Client>,
    /// The scheduler's PVC/PV/StorageClass caches.
    pub volumes: Arc<crate::volumes::VolumeStore>,
}

/// Builds a plugin.
pub type Factory = fn(&PluginContext) -> Result<Arc<dyn Plugin>, String>;

fn args<T: serde::de::DeserializeOwned + Default>(ctx: &PluginContext) -> Result<T, String> {
    if ctx.args.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(ctx.args.clone()).map_err(|e| e.to_string())
}

/// Every in-tree plugin by name.
pub fn in_tree_registry() -> BTreeMap<&'static str, Factory> {
    let mut r: BTreeMap<&'static str, Factory> = BTreeMap::new();
    r.insert(scheduling_gates::NAME, |_| {
        Ok(Arc::new(scheduling_gates::SchedulingGates))
    });
    r.insert(priority_sort::NAME, |_| {
        Ok(Arc::new(priority_sort::PrioritySort))
    });
    r.insert(node_unschedulable::NAME, |_| {
        Ok(Arc::new(node_unschedulable::NodeUnschedulable))
    });
    r.insert(node_name::NAME, |_| Ok(Arc::new(node_name::NodeName)));
    r.insert(taint_toleration::NAME, |_| {
        Ok(Arc::new(taint_toleration::TaintToleration))
    });
    r.insert(node_affinity::NAME, |_| {
        Ok(Arc::new(node_affinity::NodeAffinity))
    });
    r.insert(node_ports::NAME, |_| Ok(Arc::new(node_ports::NodePorts)));
    r.insert(node_resources_fit::NAME, |ctx| {
        Ok(Arc::new(node_resources_fit::NodeResourcesFit::new(args(
            ctx,
        )?)?))
    });
    r.insert(volume_binding::NAME, |ctx| {
        Ok(Arc::new(volume_binding::VolumeBinding::with_args(
            ctx.volumes.clone(),
            ctx.client.clone(),
            args(ctx)?,
        )?))
    });
    r.insert(balanced_allocation::NAME, |_| {
        Ok(Arc::new(balanced_allocation::BalancedAllocation))
    });
    r.insert(image_locality::NAME, |_| {
        Ok(Arc::new(image_locality::ImageLocality))
    });
    r.insert(pod_topology_spread::NAME, |_| {
        Ok(Arc::new(pod_topology_spread::PodTopologySpread))
    });
    r.insert(inter_pod_affinity::NAME, |_| {
        Ok(Arc::new(inter_pod_affinity::InterPodAffinity))
    });
    r.insert(default_preemption::NAME, |ctx| {
        Ok(Arc::new(default_preemption::DefaultPreemption::new(
            ctx.client.clone(),
        )))
    });
    r.insert(default_binder::NAME, |ctx| {
        Ok(Arc::new(default_binder::DefaultBinder::new(
            ctx.client.clone(),
        )))
    });
    r
}

/// The default plugins in upstream's order with their score weights (0: not a scorer).
pub const DEFAULT_PLUGINS: &[(&str, i64)] = &[
    (scheduling_gates::NAME, 0),
    (priority_sort::NAME, 0),
    (node_unschedulable::NAME, 0),
    (node_name::NAME, 0),
    (taint_toleration::NAME, 3),
    (node_affinity::NAME, 2),
    (node_ports::NAME, 0),
    (node_resources_fit::NAME, 1),
    (volume_binding::NAME, 1),
    (pod_topology_spread::NAME, 2),
    (inter_pod_affinity::NAME, 2),
    (default_preemption::NAME, 0),
    (balanced_allocation::NAME, 1),
    (image_locality::NAME, 1),
    (default_binder::NAME, 0),
];
