//! The named controller descriptors behind `--controllers`, with upstream's names and aliases.

use std::collections::BTreeSet;

use futures::future::BoxFuture;

use crate::context::ControllerContext;
use crate::controllers;
use crate::options::OptionsError;

/// Full name of the garbage collector (also switched by --enable-garbage-collector).
pub const GARBAGE_COLLECTOR: &str = "garbage-collector-controller";

/// Builds a controller: subscribes to shared informers now, returns the loop to run once the
/// informers start.
pub type Constructor = fn(&ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error>;

/// One controller as `--controllers` knows it.
#[derive(Clone, Copy)]
pub struct Descriptor {
    /// Upstream's full name, e.g. `deployment-controller`.
    pub name: &'static str,
    /// Upstream's short alias, e.g. `deployment`.
    pub alias: &'static str,
    /// Whether `*` enables it.
    pub enabled_by_default: bool,
    /// `None` for upstream controllers this binary does not implement yet.
    pub constructor: Option<Constructor>,
}

const fn d(
    name: &'static str,
    alias: &'static str,
    enabled_by_default: bool,
    constructor: Option<Constructor>,
) -> Descriptor {
    Descriptor {
        name,
        alias,
        enabled_by_default,
        constructor,
    }
}

/// Every controller, in start order.
pub fn descriptors() -> Vec<Descriptor> {
    vec![
        d(
            "serviceaccount-controller",
            "serviceaccount",
            true,
            Some(controllers::serviceaccount::start),
        ),
        d(
            "root-ca-certificate-publisher-controller",
            "root-ca-cert-publisher",
            true,
            Some(controllers::rootcacert::start),
        ),
        d(
            "namespace-controller",
            "namespace",
            true,
            Some(controllers::namespace::start),
        ),
        d(
            GARBAGE_COLLECTOR,
            "garbagecollector",
            true,
            Some(controllers::garbagecollector::start),
        ),
        d(
            "replicaset-controller",
            "replicaset",
            true,
            Some(controllers::replicaset::start),
        ),
        d(
            "deployment-controller",
            "deployment",
            true,
            Some(controllers::deployment::start),
        ),
        d(
            "endpoints-controller",
            "endpoint",
            true,
            Some(controllers::endpoints::start),
        ),
        d(
            "endpointslice-controller",
            "endpointslice",
            true,
            Some(controllers::endpointslice::start),
        ),
        d(
            "serviceaccount-token-controller",
            "serviceaccount-token",
            true,
            None,
        ),
        d(
            "endpointslice-mirroring-controller",
            "endpointslicemirroring",
            true,
            None,
        ),
        d(
            "replicationcontroller-controller",
            "replicationcontroller",
            true,
            None,
        ),
        d(
            "pod-garbage-collector-controller",
            "podgc",
            true,
            Some(controllers::podgc::start),
        ),
        d(
            "resourcequota-controller",
            "resourcequota",
            true,
            Some(controllers::resourcequota::start),
        ),
        d(
            "horizontal-pod-autoscaler-controller",
            "horizontalpodautoscaling",
            true,
            None,
        ),
        d(
            "disruption-controller",
            "disruption",
            true,
            Some(controllers::disruption::start),
        ),
        d(
            "statefulset-controller",
            "statefulset",
            true,
            Some(controllers::statefulset::start),
        ),
        d(
            "cronjob-controller",
            "cronjob",
            true,
            Some(controllers::cronjob::start),
        ),
        d(
            "certificatesigningrequest-signing-controller",
            "csrsigning",
            true,
            Some(controllers::certificates::start_signing),
        ),
        d(
            "certificatesigningrequest-approving-controller",
            "csrapproving",
            true,
            Some(controllers::certificates::start_approving),
        ),
        d(
            "certificatesigningrequest-cleaner-controller",
            "csrcleaner",
            true,
            Some(controllers::certificates::start_cleaner),
        ),
        d("ttl-controller", "ttl", true, None),
        d(
            "bootstrap-signer-controller",
            "bootstrapsigner",
            false,
            Some(controllers::bootstrap::start_signer),
        ),
        d(
            "token-cleaner-controller",
            "tokencleaner",
            false,
            Some(controllers::bootstrap::start_cleaner),
        ),
        d(
            "node-ipam-controller",
            "nodeipam",
            true,
            Some(controllers::nodeipam::start),
        ),
        d(
            "node-lifecycle-controller",
            "nodelifecycle",
            true,
            Some(controllers::nodelifecycle::start),
        ),
        d(
            "taint-eviction-controller",
            "taint-eviction-controller",
            true,
            Some(controllers::tainteviction::start),
        ),
        d(
            "persistentvolume-binder-controller",
            "persistentvolume-binder",
            true,
            Some(controllers::persistentvolume::start),
        ),
        d(
            "persistentvolume-attach-detach-controller",
            "attachdetach",
            true,
            None,
        ),
        d(
            "persistentvolume-expander-controller",
            "persistentvolume-expander",
            true,
            None,
        ),
        d(
            "clusterrole-aggregation-controller",
            "clusterrole-aggregation",
            true,
            Some(controllers::clusterroleaggregation::start),
        ),
        d(
            "persistentvolumeclaim-protection-controller",
            "pvc-protection",
            true,
            Some(controllers::protection::start_pvc),
        ),
        d(
            "persistentvolume-protection-controller",
            "pv-protection",
            true,
            Some(controllers::protection::start_pv),
        ),
        d(
            "ttl-after-finished-controller",
            "ttl-after-finished",
            true,
            Some(controllers::ttlafterfinished::start),
        ),
        d("job-controller", "job", true, Some(controllers::job::start)),
        d(
            "daemonset-controller",
            "daemonset",
            true,
            Some(controllers::daemonset::start),
        ),
        d(
            "ephemeral-volume-controller",
            "ephemeral-volume",
            true,
            None,
        ),
        d(
            "validatingadmissionpolicy-status-controller",
            "validatingadmissionpolicy-status",
            true,
            None,
        ),
        d("service-cidr-controller", "service-cidr", true, None),
        d(
            "storageversion-garbage-collector-controller",
            "storageversion-gc",
            true,
            None,
        ),
        d(
            "legacy-serviceaccount-token-cleaner-controller",
            "legacy-serviceaccount-token-cleaner",
            true,
            None,
        ),
    ]
}

fn lookup(name: &str) -> Option<Descriptor> {
    descriptors()
        .into_iter()
        .find(|d| d.name == name || d.alias == name)
}

/// Resolves `--controllers` items (`*`, `name`, `-name`; names or aliases) to full names.
pub fn select(items: &[String]) -> Result<BTreeSet<&'static str>, OptionsError> {
    let star = items.iter().any(|i| i == "*");
    let mut enabled: BTreeSet<&'static str> = if star {
        descriptors()
            .into_iter()
            .filter(|d| d.enabled_by_default)
            .map(|d| d.name)
            .collect()
    } else {
        BTreeSet::new()
    };
    for item in items
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty() && *i != "*")
    {
        let (disable, name) = match item.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, item),
        };
        let descriptor =
            lookup(name).ok_or_else(|| OptionsError::UnknownController(name.to_owned()))?;
        if disable {
            enabled.remove(descriptor.name);
        } else {
            enabled.insert(descriptor.name);
        }
    }
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = BTreeSet::new();
        for d in descriptors() {
            assert!(seen.insert(d.name), "{}", d.name);
            if d.alias != d.name {
                assert!(seen.insert(d.alias), "{}", d.alias);
            }
        }
    }

    #[test]
    fn star_enables_only_on_by_default_controllers() {
        let all = select(&["*".to_owned()]).expect("valid");
        assert!(all.contains("namespace-controller"));
        assert!(!all.contains("token-cleaner-controller"));
    }
}
