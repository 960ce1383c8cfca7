//! Per-resource behaviour: defaulting, validation and update rules, one [`Strategy`] per
//! resource with upstream's hook names. The generic store (`crate::storage`) owns the call
//! order: default -> prepare -> validate -> canonicalize -> write with a resourceVersion guard.

use serde_json::Value;

use crate::error::FieldError;

/// The hooks upstream's `rest.RESTCreateStrategy`/`RESTUpdateStrategy` carry, for one resource.
/// `validate*` cannot mutate; `default`/`prepare_*` can.
pub trait Strategy: Send + Sync {
    /// Fill defaults (pod restartPolicy, deployment strategy, ...) into a create or update body.
    fn default(&self, _obj: &mut Value) {}
    /// Last changes before a create is validated (clear status, ...).
    fn prepare_for_create(&self, _obj: &mut Value) {}
    /// Everything wrong with a new object, metadata included.
    fn validate(&self, obj: &Value) -> Vec<FieldError>;
    /// Normalize an object before it is stored.
    fn canonicalize(&self, _obj: &mut Value) {}
    /// Carry over what an update may not change (status on the main resource is handled by
    /// the generic store).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}
    /// Everything wrong with an update: immutable fields and the new object itself.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }
    /// PUT of a missing object creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }
    /// An update without resourceVersion is accepted (last write wins).
    fn allow_unconditional_update(&self) -> bool {
        true
    }
    /// `metadata.generation` is 1 on create and bumped on every spec change.
    fn tracks_generation(&self) -> bool {
        false
    }
}

pub mod apps;
pub mod batch;
pub mod core;
pub mod other;
pub mod quantity;
pub mod validation;

use std::sync::Arc;

pub use self::core::event::{core_to_events_v1, events_v1_to_core};
use self::validation::{
    name_is_dns_subdomain, validate_object_meta, validate_object_meta_update, NameFn,
};

/// Metadata checks only: the fallback for resources without their own rules (custom
/// resources, component statuses).
pub struct GenericStrategy {
    /// `None` when the scope is not known here (the caller checks the namespace).
    pub namespaced: Option<bool>,
    pub name: NameFn,
    pub generation: bool,
}

impl Strategy for GenericStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_object_meta(obj, self.namespaced, self.name)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(self.validate(new));
        errs
    }

    fn tracks_generation(&self) -> bool {
        self.generation
    }
}

/// The strategy of a built-in resource by group and plural name; unknown resources get
/// [`GenericStrategy`] with generation tracking, as custom resources have.
pub fn strategy_for(group: &str, resource: &str) -> Arc<dyn Strategy> {
    use self::apps::{controllerrevision, daemonset, deployment, replicaset, statefulset};
    use self::batch::{cronjob, job};
    use self::core::{
        configmap, event, misc, namespace, node, pod, replicationcontroller, secret, service,
        volume,
    };
    match (group, resource) {
        ("", "pods") => Arc::new(pod::PodStrategy),
        ("", "podtemplates") => Arc::new(pod::PodTemplateStrategy),
        ("", "replicationcontrollers") => {
            Arc::new(replicationcontroller::ReplicationControllerStrategy)
        }
        ("", "services") => Arc::new(service::ServiceStrategy),
        ("", "namespaces") => Arc::new(namespace::NamespaceStrategy),
        ("", "nodes") => Arc::new(node::NodeStrategy),
        ("", "configmaps") => Arc::new(configmap::ConfigMapStrategy),
        ("", "secrets") => Arc::new(secret::SecretStrategy),
        ("", "serviceaccounts") => Arc::new(misc::ServiceAccountStrategy),
        ("", "endpoints") => Arc::new(misc::EndpointsStrategy),
        ("", "limitranges") => Arc::new(misc::LimitRangeStrategy),
        ("", "resourcequotas") => Arc::new(misc::ResourceQuotaStrategy),
        ("", "bindings") => Arc::new(misc::BindingStrategy),
        ("", "events") => Arc::new(event::EventStrategy),
        ("", "persistentvolumes") => Arc::new(volume::PersistentVolumeStrategy),
        ("", "persistentvolumeclaims") => Arc::new(volume::PersistentVolumeClaimStrategy),
        ("", "componentstatuses") => Arc::new(GenericStrategy {
            namespaced: Some(false),
            name: name_is_dns_subdomain,
            generation: false,
        }),
        ("apps", "deployments") => Arc::new(deployment::DeploymentStrategy),
        ("apps", "replicasets") => Arc::new(replicaset::ReplicaSetStrategy),
        ("apps", "statefulsets") => Arc::new(statefulset::StatefulSetStrategy),
        ("apps", "daemonsets") => Arc::new(daemonset::DaemonSetStrategy),
        ("apps", "controllerrevisions") => Arc::new(controllerrevision::ControllerRevisionStrategy),
        ("batch", "jobs") => Arc::new(job::JobStrategy),
        ("batch", "cronjobs") => Arc::new(cronjob::CronJobStrategy),
        ("coordination.k8s.io", "leases") => Arc::new(other::LeaseStrategy),
        ("discovery.k8s.io", "endpointslices") => Arc::new(other::EndpointSliceStrategy),
        ("events.k8s.io", "events") => Arc::new(event::EventsV1Strategy),
        ("policy", "poddisruptionbudgets") => Arc::new(other::PodDisruptionBudgetStrategy),
        ("scheduling.k8s.io", "priorityclasses") => Arc::new(other::PriorityClassStrategy),
        ("storage.k8s.io", "storageclasses") => Arc::new(other::StorageClassStrategy),
        // RBAC names are path segments (upstream's ValidateRBACName), so `system:coredns` is valid.
        (
            "rbac.authorization.k8s.io",
            "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings",
        ) => Arc::new(GenericStrategy {
            namespaced: None,
            name: validation::validate_path_segment_name,
            generation: true,
        }),
        // Its rules (schemas, names, status bookkeeping) live with the CRD serving code.
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            Arc::new(crate::crd::CrdStrategy::new())
        }
        _ => Arc::new(GenericStrategy {
            namespaced: None,
            name: name_is_dns_subdomain,
            generation: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rbac_names_are_path_segments() {
        let role = strategy_for("rbac.authorization.k8s.io", "clusterroles");
        let ok = json!({"metadata": {"name": "system:coredns"}});
        assert!(role.validate(&ok).is_empty());
        let bad = json!({"metadata": {"name": "a/b"}});
        assert!(!role.validate(&bad).is_empty());
    }

    #[test]
    fn every_builtin_resource_has_a_strategy_that_accepts_a_minimal_object() {
        for info in crate::resources::builtin() {
            let s = strategy_for(&info.group, &info.resource);
            let mut obj = json!({"metadata": {"name": "x"}});
            if info.namespaced {
                obj["metadata"]["namespace"] = json!("default");
            }
            s.default(&mut obj);
            s.prepare_for_create(&mut obj);
            // Validation may fail on required fields; it must not panic and must use paths.
            for e in s.validate(&obj) {
                assert!(!e.message().is_empty(), "{}", info.resource);
            }
        }
    }

    #[test]
    fn malformed_objects_are_reported_without_panicking() {
        let shapes = [
            json!({"metadata": {"name": "x", "namespace": "d"}, "spec": 5, "status": "x"}),
            json!({"metadata": {"name": "x", "namespace": "d"}, "spec": {"containers": [1, "c", null],
                "ports": ["a", 1], "template": {"spec": {"containers": [[]], "volumes": [3]}},
                "selector": "x", "strategy": [], "updateStrategy": 1, "jobTemplate": 2}}),
            json!({"metadata": {"name": "x", "namespace": "d", "labels": [1]}, "data": [1], "subsets": [2],
                "endpoints": ["x"], "spec": {"template": 7, "limits": [1], "hard": 3, "taints": [1]}}),
            json!(null),
        ];
        for info in crate::resources::builtin() {
            let s = strategy_for(&info.group, &info.resource);
            for shape in &shapes {
                let mut obj = shape.clone();
                s.default(&mut obj);
                s.prepare_for_create(&mut obj);
                let _ = s.validate(&obj);
                let mut new = shape.clone();
                s.default(&mut new);
                s.prepare_for_update(&mut new, &obj);
                let _ = s.validate_update(&new, &obj);
            }
        }
    }

    #[test]
    fn generation_is_tracked_for_workloads_and_custom_objects() {
        struct Case {
            name: &'static str,
            group: &'static str,
            resource: &'static str,
            tracks: bool,
        }
        let cases = [
            Case {
                name: "deployments",
                group: "apps",
                resource: "deployments",
                tracks: true,
            },
            Case {
                name: "replicasets",
                group: "apps",
                resource: "replicasets",
                tracks: true,
            },
            Case {
                name: "statefulsets",
                group: "apps",
                resource: "statefulsets",
                tracks: true,
            },
            Case {
                name: "daemonsets",
                group: "apps",
                resource: "daemonsets",
                tracks: true,
            },
            Case {
                name: "jobs",
                group: "batch",
                resource: "jobs",
                tracks: true,
            },
            Case {
                name: "cronjobs",
                group: "batch",
                resource: "cronjobs",
                tracks: true,
            },
            Case {
                name: "pdbs",
                group: "policy",
                resource: "poddisruptionbudgets",
                tracks: true,
            },
            Case {
                name: "rcs",
                group: "",
                resource: "replicationcontrollers",
                tracks: true,
            },
            Case {
                name: "crds",
                group: "apiextensions.k8s.io",
                resource: "customresourcedefinitions",
                tracks: true,
            },
            Case {
                name: "custom",
                group: "example.com",
                resource: "widgets",
                tracks: true,
            },
            Case {
                name: "pods",
                group: "",
                resource: "pods",
                tracks: false,
            },
            Case {
                name: "configmaps",
                group: "",
                resource: "configmaps",
                tracks: false,
            },
        ];
        for c in cases {
            assert_eq!(
                strategy_for(c.group, c.resource).tracks_generation(),
                c.tracks,
                "{}",
                c.name
            );
        }
    }
}
